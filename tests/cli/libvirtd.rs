//! A real libvirtd of the test's own (root; CI installs libvirt and QEMU): [`Libvirt`], the
//! fixture every test against the daemon takes, and the helpers around it. Re-exported by
//! `common`, so tests use `crate::common::*` for all of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::*;

pub const URI: &str = "qemu:///system";
pub const QEMU_D: &str = "/etc/libvirt/hooks/qemu.d";
pub const DAEMON_D: &str = "/etc/libvirt/hooks/daemon.d";
pub const CACHE_DIR: &str = "/var/cache/libvirt/virt-perf-hook";
/// The hook entries read the real config: libvirt passes them no options or environment of ours.
pub const CONFIG_DIR: &str = "/etc/virt-perf-hook";
pub const CONFIG: &str = "/etc/virt-perf-hook/config.json";

pub fn virsh(args: &[&str]) -> Output {
    Command::new("virsh").args(["-q", "-c", URI]).args(args).output().unwrap()
}

pub fn virsh_ok(args: &[&str]) -> String {
    let o = virsh(args);
    assert!(o.status.success(), "virsh {args:?}: {}", stderr(&o));
    stdout(&o)
}

/// Whether a process named `name` runs in this PID namespace (see [`host_pids`]).
pub fn running(name: &str) -> bool {
    !host_pids(name).is_empty()
}

/// Whether `pid` still runs (a zombie waiting for its reaper does not).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_none_or(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The live processes named `name` in this PID namespace. A daemon in a container (another
/// namespace, e.g. a systemd-nspawn test's) has its own /run and sockets: it neither answers
/// qemu:///system here nor runs this host's hooks.
pub fn host_pids(name: &str) -> Vec<i32> {
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let ours = ns("self");
    let out = Command::new("pgrep").args(["-x", name]).output().map(|o| stdout(&o)).unwrap_or_default();
    // A zombie (a stopped daemon its reaper has not collected yet) runs no more.
    out.lines().filter(|p| ns(p.trim()) == ours).filter_map(|p| p.trim().parse().ok()).filter(|&p| alive(p)).collect()
}

/// The pid in `pidfile`, else the one process named `name` here (a daemon the fixture started
/// whose pid file is gone).
fn daemon_pid(pidfile: &str, name: &str) -> Option<i32> {
    let from_file = std::fs::read_to_string(pidfile).ok().and_then(|p| p.trim().parse::<i32>().ok());
    from_file.filter(|&p| alive(p)).or_else(|| host_pids(name).first().copied())
}

/// Stops the daemon `name` (`/run/NAME.pid`) and returns only once it is gone: SIGTERM, 15 s,
/// then SIGKILL, so no daemon of a test outlives its locks. Says so loudly when even that fails
/// (it cannot panic: it runs in `Drop`).
fn stop(name: &str) {
    use nix::sys::signal::{kill, Signal};
    let Some(pid) = daemon_pid(&format!("/run/{name}.pid"), name) else { return };
    let gone_within = |limit: Duration| {
        let deadline = Instant::now() + limit;
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        !alive(pid)
    };
    let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
    if gone_within(Duration::from_secs(15)) {
        return;
    }
    say(&format!("{name} (pid {pid}) ignored SIGTERM for 15 s: sending SIGKILL"));
    let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    if !gone_within(Duration::from_secs(15)) {
        say(&format!("FAIL: {name} (pid {pid}) still runs after SIGKILL; the host is not as the test found it"));
    }
}

/// Why a libvirt daemon would answer that the test did not start: one running, or a systemd
/// socket unit that starts one on the first connection.
fn foreign_daemon() -> Option<String> {
    for name in ["libvirtd", "virtqemud"] {
        if let Some(pid) = host_pids(name).first() {
            return Some(format!(
                "a {name} the test suite did not start is running (pid {pid}); stop it (kill {pid}): \
                 the tests start their own so it finds their hooks"
            ));
        }
    }
    if Path::new("/run/systemd/system").is_dir() {
        let units = ["libvirtd.socket", "libvirtd-ro.socket", "virtqemud.socket", "virtqemud-ro.socket"];
        let active: Vec<&str> = units
            .into_iter()
            .filter(|u| Command::new("systemctl").args(["is-active", "--quiet", u]).status().is_ok_and(|s| s.success()))
            .collect();
        if !active.is_empty() {
            let list = active.join(" ");
            return Some(format!("socket units {list} are active: systemd would start a daemon the tests did not; systemctl stop {list}"));
        }
    }
    None
}

/// A 64 MiB TCG guest (starts in about a second); `devices` go inside `<devices>`.
pub fn tcg_guest(name: &str, devices: &str) -> String {
    format!(
        "<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>\n\
         <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>\n\
         <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>{devices}</devices></domain>\n"
    )
}

/// The binary on the real host (root `/`) with `config`, against the test's daemon (the real config is not read).
/// Its cache is the test's own ([`test_cache_dir`]).
pub fn tool(config: &Path, args: &[&str]) -> Output {
    let mut cmd = clean_command(BIN, Path::new("/"), &[]);
    cmd.arg("--config").arg(config).args(args);
    feed(cmd, "")
}

/// A work directory and a config in it with `events`.
pub fn work(tag: &str, events: &[&str]) -> (TempDir, PathBuf) {
    let work = TempDir::new(tag);
    let config = work.path().join("config.json");
    write_config(&config, events);
    (work, config)
}

/// `<perf>` with `event` enabled, put in `xml` before `<devices>`.
pub fn with_event(xml: &str, event: &str) -> String {
    assert!(!xml.contains("<perf"), "{xml}");
    xml.replacen("<devices>", &format!("<perf><event name='{event}' enabled='yes'/></perf><devices>"), 1)
}

/// A disk for a busy guest: a 1 MiB raw image `NAME.img` in `dir` whose boot sector is `jmp $`
/// (EB FE) with the 55 AA signature, as an IDE disk. The guest spins, and TCG keeps one host core
/// busy. One image per guest: QEMU locks its image.
pub fn busy_disk(dir: &TempDir, name: &str) -> String {
    let mut img = vec![0u8; 1 << 20];
    img[..2].copy_from_slice(&[0xEB, 0xFE]);
    img[510..512].copy_from_slice(&[0x55, 0xAA]);
    let path = dir.path().join(format!("{name}.img"));
    std::fs::write(&path, img).unwrap();
    // qemu runs as another user: it must reach and read the image.
    set_mode(dir.path(), 0o755);
    set_mode(&path, 0o644);
    format!(
        "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{}'/><target dev='hda' bus='ide'/></disk>",
        path.display()
    )
}

/// Writes a config with `events` (mode 0644). `on_error: fail`: a hook that refuses the guest
/// (or fails in any way) aborts the restore, so such a failure cannot pass unnoticed.
pub fn write_config(path: &Path, events: &[&str]) {
    let cfg = serde_json::json!({ "enabled_perf_events": events, "on_error": "fail" });
    std::fs::write(path, cfg.to_string()).unwrap();
    set_mode(path, 0o644);
}

/// A libvirtd started by the test, and everything the test changed on the host, undone on drop
/// (also when an assertion fails): the daemons it started are stopped (and waited for), the
/// guests it defined undefined, and the host's config, hook entries and caches put back exactly
/// as found ([`HostSnapshot`]). Holds the in-process and the cross-process host locks, and gives
/// every run of the binary (also the hook entries libvirt runs) a cache of its own.
pub struct Libvirt {
    installed: Vec<PathBuf>,
    guests: Vec<String>,
    started_virtlogd: bool,
    started_libvirtd: bool,
    dev_log: bool,
    /// The host as found: the config, the hook tree, the caches.
    snapshot: HostSnapshot,
    /// Holds the binary's cache (`cache/virt-perf-hook`) and the symlinks the hook wrappers run.
    own: TempDir,
    // Dropped after the clean-up above (fields drop after `Drop::drop`).
    _flock: nix::fcntl::Flock<std::fs::File>,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl Libvirt {
    /// Checks for root and the programs, takes the locks; `Err` says why the test cannot run.
    pub fn prepare() -> Result<Libvirt, String> {
        if !is_root() {
            return Err("needs root to run libvirtd".into());
        }
        for prog in ["libvirtd", "virsh", "virtlogd"] {
            if !have(prog) {
                return Err(format!("{prog} not installed (apt-get install libvirt-daemon-system libvirt-clients qemu-system-x86)"));
            }
        }
        if !Path::new("/usr/bin/qemu-system-x86_64").exists() {
            return Err("qemu-system-x86_64 not installed".into());
        }
        if !cfg!(debug_assertions) {
            return Err("system tests need a debug build: only it honours the test cache dir (run cargo test without --release)".into());
        }
        let lock = host_lock();
        let flock = system_flock();
        if let Some(why) = foreign_daemon() {
            return Err(why);
        }
        // Another hook in the chain (an installed package, say) would change what the test sees.
        let foreign: Vec<String> = std::fs::read_dir(QEMU_D)
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        if !foreign.is_empty() {
            return Err(format!("{QEMU_D} already holds {}; remove it (or the package) first", foreign.join(", ")));
        }
        let own = TempDir::new("libvirt-fixture");
        let cache = own.path().join("cache/virt-perf-hook");
        *FIXTURE_CACHE.lock().unwrap_or_else(|p| p.into_inner()) = Some(cache);
        Ok(Libvirt {
            installed: Vec::new(),
            guests: Vec::new(),
            started_virtlogd: false,
            started_libvirtd: false,
            dev_log: false,
            snapshot: HostSnapshot::take(),
            own,
            _flock: flock,
            _lock: lock,
        })
    }

    /// The cache directory every run of the binary uses while this fixture lives (the hook
    /// entries and [`tool`] included): the test's own, never the host's.
    pub fn cache_dir(&self) -> PathBuf {
        self.own.path().join("cache/virt-perf-hook")
    }

    /// The shipped entry `src` (a symlink) at `dest`, pointing at `binary` (the built binary, or
    /// one that is gone); removed on drop. It reads the real config: see [`Libvirt::config`].
    /// For the built binary, `dest` is a two-line wrapper that gives it the test's cache (libvirt
    /// passes a hook no environment of ours) and execs the shipped symlink, recreated in the
    /// test's directory under the same `qemu.d`/`daemon.d` name, so the binary still sees the
    /// argv[0] libvirt would give it. Any other `binary` (one that is gone) is the bare symlink.
    pub fn install_entry(&mut self, src: &str, dest: &Path, binary: &Path) {
        if binary != Path::new(BIN) {
            self.installed.push(shipped_entry(src, dest, binary));
            return;
        }
        let sub = dest.parent().and_then(Path::file_name).unwrap().to_string_lossy().into_owned();
        let link = self.own.path().join("entries").join(&sub).join(dest.file_name().unwrap());
        shipped_entry(src, &link, binary);
        let script = format!("#!/bin/sh\n{CACHE_ENV}={} exec {} \"$@\"\n", self.cache_dir().display(), link.display());
        self.install_exec(dest, &script);
    }

    /// A qemu.d entry of the test's own that runs the built binary as the qemu hook with
    /// `config` and appends its stderr to `log`: libvirt drops a hook's stderr, and a symlink
    /// (the shipped entry) cannot redirect it. It uses the test's cache.
    pub fn install_logged_qemu_hook(&mut self, dest: &Path, config: &Path, log: &Path) {
        let cache = self.cache_dir();
        let script = format!(
            "#!/bin/sh\n{CACHE_ENV}={} exec {BIN} --config {} qemu \"$@\" 2>>{}\n",
            cache.display(),
            config.display(),
            log.display()
        );
        self.install_exec(dest, &script);
    }

    /// Writes the real config ([`CONFIG`], which the shipped entries read) with `events`; the
    /// one found before is put back on drop.
    pub fn config(&mut self, events: &[&str]) {
        std::fs::create_dir_all(CONFIG_DIR).unwrap();
        write_config(Path::new(CONFIG), events);
    }

    /// Writes an executable `path` with `text`, removed on drop.
    pub fn install_exec(&mut self, path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        set_mode(path, 0o755);
        self.installed.push(path.to_path_buf());
    }

    /// Collects syslog lines when no syslog daemon owns /dev/log (as in CI).
    pub fn listen_syslog(&mut self) -> Option<std::sync::Arc<std::sync::Mutex<Vec<String>>>> {
        if Path::new("/dev/log").exists() {
            return None;
        }
        let sock = std::os::unix::net::UnixDatagram::bind("/dev/log").ok()?;
        self.dev_log = true;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&lines);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = sock.recv(&mut buf) {
                sink.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        Some(lines)
    }

    /// Starts virtlogd (unless running) and libvirtd. libvirt finds hooks at daemon start only:
    /// install them before this.
    pub fn start(&mut self) {
        // A usable /dev/kvm spares libvirt a multi-second capability re-probe on every call.
        if Path::new("/dev/kvm").exists() {
            let _ = Command::new("chgrp").args(["kvm", "/dev/kvm"]).status();
            let _ = Command::new("chmod").args(["0660", "/dev/kvm"]).status();
        }
        if !running("virtlogd") {
            assert!(Command::new("virtlogd").arg("-d").status().unwrap().success());
            self.started_virtlogd = true;
        }
        assert!(Command::new("libvirtd").arg("-d").status().unwrap().success());
        self.started_libvirtd = true;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !virsh(&["version"]).status.success() {
            assert!(Instant::now() < deadline, "libvirtd did not come up");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the daemon and starts it again (guests keep running; libvirt reconnects to them).
    pub fn restart(&mut self) {
        stop("libvirtd");
        self.started_libvirtd = false;
        self.start();
    }

    /// Defines `xml` (a guest named `name`), destroyed and undefined on drop.
    pub fn define(&mut self, name: &str, xml: &str, dir: &TempDir) {
        self.guests.push(name.to_string());
        let f = dir.write(&format!("{name}.xml"), xml);
        virsh_ok(&["define", f.to_str().unwrap()]);
    }

    /// A guest to destroy and undefine on drop (e.g. one another helper defines).
    pub fn forget_at_end(&mut self, name: &str) {
        self.guests.push(name.to_string());
    }
}

impl Drop for Libvirt {
    fn drop(&mut self) {
        if self.started_libvirtd {
            for g in &self.guests {
                let _ = virsh(&["destroy", g]);
                let _ = virsh(&["undefine", g, "--managed-save"]);
            }
            stop("libvirtd");
        }
        if self.started_virtlogd {
            stop("virtlogd");
        }
        for p in &self.installed {
            let _ = std::fs::remove_file(p);
        }
        if self.dev_log {
            let _ = std::fs::remove_file("/dev/log");
        }
        *FIXTURE_CACHE.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.snapshot.restore();
    }
}

/// The first event the real host cannot open, by the tool's own probe (`events --json`):
/// `cmt` on every kernel since 4.14, so this holds on hosts with a PMU too.
pub fn unopenable_event() -> String {
    let out = clean_command(BIN, Path::new("/"), &[]).args(["events", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let row = rows.iter().find(|r| r["host"] == false).expect("an event this host cannot open");
    row["name"].as_str().unwrap().to_string()
}

//! End to end on a real libvirtd (root and VPH_SYSTEM_TESTS=1 only; CI installs libvirt and
//! QEMU): the shipped qemu.d and daemon.d entries (symlinks straight to the binary, here the built
//! one) run with the real config file, a TCG guest goes through save/restore and managedsave/start, and the configured
//! software events are live afterwards while the hardware event this host cannot open is dropped
//! (so the guest still restores). Entries whose binary is gone (dangling symlinks) are skipped by
//! libvirt: guests start with them in place.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::skip;

const URI: &str = "qemu:///system";
const GUEST: &str = "vph-e2e-t1";
const QEMU_D: &str = "/etc/libvirt/hooks/qemu.d";
const DAEMON_D: &str = "/etc/libvirt/hooks/daemon.d";
const CACHE_DIR: &str = "/var/cache/libvirt/virt-perf-hook";
/// The hook entries read the real config: libvirt passes them no options or environment of ours.
const CONFIG_DIR: &str = "/etc/virt-perf-hook";
const CONFIG: &str = "/etc/virt-perf-hook/config.json";

fn virsh(args: &[&str]) -> Output {
    Command::new("virsh").args(["-q", "-c", URI]).args(args).output().unwrap()
}

fn virsh_ok(args: &[&str]) -> String {
    let o = virsh(args);
    assert!(o.status.success(), "virsh {args:?}: {}", stderr(&o));
    stdout(&o)
}

fn running(name: &str) -> bool {
    Command::new("pgrep").args(["-x", name]).output().map(|o| o.status.success()).unwrap_or(false)
}

fn pid_of(pidfile: &str) -> Option<i32> {
    std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()
}

fn stop(pidfile: &str) {
    if let Some(pid) = pid_of(pidfile) {
        let _ = Command::new("kill").arg(pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Everything the test changed on the host, undone on drop (also when an assertion fails).
struct Host {
    installed: Vec<PathBuf>,
    started_virtlogd: bool,
    started_libvirtd: bool,
    cache_existed: bool,
    dev_log: bool,
    /// The config file as found (`None`: there was none), put back on drop.
    config_before: Option<Vec<u8>>,
    config_dir_existed: bool,
    /// Hook directories this test created (removed again when empty).
    created_dirs: Vec<&'static str>,
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.started_libvirtd {
            let _ = virsh(&["destroy", GUEST]);
            let _ = virsh(&["undefine", GUEST, "--managed-save"]);
            stop("/run/libvirtd.pid");
        }
        if self.started_virtlogd {
            stop("/run/virtlogd.pid");
        }
        for p in &self.installed {
            let _ = std::fs::remove_file(p);
        }
        for d in &self.created_dirs {
            let _ = std::fs::remove_dir(d);
        }
        if !self.cache_existed {
            let _ = std::fs::remove_dir_all(CACHE_DIR);
        }
        if self.dev_log {
            let _ = std::fs::remove_file("/dev/log");
        }
        match &self.config_before {
            Some(text) => {
                let _ = std::fs::write(CONFIG, text);
            }
            None => {
                let _ = std::fs::remove_file(CONFIG);
                if !self.config_dir_existed {
                    let _ = std::fs::remove_dir(CONFIG_DIR);
                }
            }
        }
    }
}

/// The shipped entry (a symlink to /usr/bin/virt-perf-hook), pointed at the built binary.
fn install_entry(src: &str, dest: &Path, host: &mut Host) {
    host.installed.push(shipped_entry(src, dest, Path::new(BIN)));
}

/// Collects syslog lines when no syslog daemon owns /dev/log (as in CI).
fn listen_syslog(host: &mut Host) -> Option<Arc<Mutex<Vec<String>>>> {
    if Path::new("/dev/log").exists() {
        return None;
    }
    let sock = UnixDatagram::bind("/dev/log").ok()?;
    host.dev_log = true;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = sock.recv(&mut buf) {
            sink.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    Some(lines)
}

/// The test's config. `on_error: fail`: a hook that refuses the guest (or fails in any way)
/// aborts the restore, so such a failure cannot pass unnoticed.
/// Holds an exclusive flock on `path` from another process (`flock -x`) for at most `limit`;
/// released when the returned child is dropped (killed).
fn hold_lock_for(path: &Path, limit: Duration) -> KillOnDrop {
    let child = Command::new("flock")
        .arg("-x")
        .arg(path)
        .arg("-c")
        .arg(format!("echo held; exec sleep {}", limit.as_secs()))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    // Wait until it has the lock.
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.0.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "held");
    child
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `apply --live --dry-run` on the running e2e guest given by ID and by UUID: the row is the
/// guest's name, it is running (config+live), and a config that excludes it skips it.
fn apply_by_id_and_uuid(work: &TempDir) {
    let id = virsh_ok(&["domid", GUEST]).trim().to_string();
    let uuid = virsh_ok(&["domuuid", GUEST]).trim().to_string();
    for (tag, domains, want) in [("incl", serde_json::json!({}), "would change"), ("excl", serde_json::json!({"exclude": [GUEST]}), "skipped")] {
        let cfg = work.path().join(format!("apply-{tag}.json"));
        let text = serde_json::json!({"enabled_perf_events": ["task_clock"], "libvirt_version": "9.0.0", "host_probe": false, "domains": domains});
        std::fs::write(&cfg, text.to_string()).unwrap();
        set_mode(&cfg, 0o644);
        for target in [&id, &uuid] {
            let out = run_in(work.path(), &["--config", cfg.to_str().unwrap(), "apply", "--connect", URI, "--live", "--dry-run", target], "");
            assert_eq!(out.status.code(), Some(0), "{tag} {target}: {}{}", stdout(&out), stderr(&out));
            let table = stdout(&out);
            let row = table.lines().nth(1).unwrap_or_default();
            assert!(row.starts_with(GUEST) && row.contains(want), "{tag} {target}: {table}");
            if want == "would change" {
                assert!(row.contains("(config+live)") && !row.contains("not running"), "{tag} {target}: {table}");
            }
        }
    }
}

fn write_config(path: &Path, events: &[&str]) {
    let cfg = serde_json::json!({ "enabled_perf_events": events, "on_error": "fail" });
    std::fs::write(path, cfg.to_string()).unwrap();
    set_mode(path, 0o644);
}

#[test]
fn save_restore_and_managedsave_on_real_libvirtd() {
    crate::require_system_tests!("starts libvirtd and virtlogd and installs hook entries in /etc/libvirt/hooks");
    if !is_root() {
        skip!("needs root to run libvirtd");
    }
    for prog in ["libvirtd", "virsh", "virtlogd"] {
        if !have(prog) {
            skip!("{prog} not installed (apt-get install libvirt-daemon-system libvirt-clients qemu-system-x86)");
        }
    }
    if !Path::new("/usr/bin/qemu-system-x86_64").exists() {
        skip!("qemu-system-x86_64 not installed");
    }
    let _lock = host_lock();
    let _flock = system_flock();
    if running("libvirtd") || running("virtqemud") {
        skip!("a libvirt daemon is already running; this test starts its own so it finds the hooks");
    }

    let work = TempDir::new("e2e");
    let mut host = Host {
        installed: Vec::new(),
        started_virtlogd: false,
        started_libvirtd: false,
        cache_existed: Path::new(CACHE_DIR).exists(),
        dev_log: false,
        config_before: std::fs::read(CONFIG).ok(),
        config_dir_existed: Path::new(CONFIG_DIR).exists(),
        created_dirs: [QEMU_D, DAEMON_D].into_iter().filter(|d| !Path::new(d).exists()).collect(),
    };
    std::fs::create_dir_all(CONFIG_DIR).unwrap();
    let config = Path::new(CONFIG);
    // cpu_cycles is hardware: it cannot be opened on a host without a PMU and must be dropped.
    write_config(config, &["page_faults", "cpu_clock", "cpu_cycles"]);
    let syslog = listen_syslog(&mut host);

    // A recorder first in the chain: it prints nothing, so libvirt hands our entry the original XML.
    let record = work.path().join("hook.log");
    let recorder = Path::new(QEMU_D).join("00-vph-e2e-record");
    std::fs::create_dir_all(QEMU_D).unwrap();
    std::fs::write(&recorder, format!("#!/bin/sh\necho \"$*\" >> {}\ncat >/dev/null\n", record.display())).unwrap();
    set_mode(&recorder, 0o755);
    host.installed.push(recorder);
    install_entry("hooks/qemu.d/virt-perf-hook", &Path::new(QEMU_D).join("zz-vph-e2e"), &mut host);
    install_entry("hooks/daemon.d/virt-perf-hook", &Path::new(DAEMON_D).join("zz-vph-e2e"), &mut host);
    // What a removed package's entry would be if it stayed behind: libvirt must skip it.
    for dir in [QEMU_D, DAEMON_D] {
        let gone = Path::new("/nonexistent/virt-perf-hook");
        host.installed.push(shipped_entry("hooks/qemu.d/virt-perf-hook", &Path::new(dir).join("zz-vph-e2e-gone"), gone));
    }

    // A usable /dev/kvm spares libvirt a multi-second capability re-probe on every call.
    if Path::new("/dev/kvm").exists() {
        let _ = Command::new("chgrp").args(["kvm", "/dev/kvm"]).status();
        let _ = Command::new("chmod").args(["0660", "/dev/kvm"]).status();
    }
    if !running("virtlogd") {
        assert!(Command::new("virtlogd").arg("-d").status().unwrap().success());
        host.started_virtlogd = true;
    }
    // Hooks are found at daemon start only: they are in place before this.
    assert!(Command::new("libvirtd").arg("-d").status().unwrap().success());
    host.started_libvirtd = true;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !virsh(&["version"]).status.success() {
        assert!(Instant::now() < deadline, "libvirtd did not come up");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The daemon hook refreshed the cache at daemon start.
    let state = Path::new(CACHE_DIR).join("state.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !state.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(state.exists(), "daemon start hook did not write {}", state.display());

    // Metadata nested to the deepest level libvirt accepts (257, <domain> being 1): the hook
    // must accept what libvirt accepts, or (on_error: fail) the restore is aborted.
    let deep = format!("<metadata>{}{}</metadata>", "<vph:a xmlns:vph='urn:vph'>".repeat(255), "</vph:a>".repeat(255));
    let xml = work.write(
        "t1.xml",
        &format!(
            "<domain type='qemu'><name>{GUEST}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>\n\
             {deep}\n<os><type arch='x86_64' machine='pc'>hvm</type></os>\n\
             <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>\n"
        ),
    );
    virsh_ok(&["define", xml.to_str().unwrap()]);
    virsh_ok(&["start", GUEST]);
    assert!(!virsh_ok(&["dumpxml", GUEST]).contains("<perf>"), "a plain start is not rewritten");

    // save + restore: libvirt runs 'restore begin' and uses the hook's XML. Another process
    // holds the cache lock and the cache is gone, so the hook must detect, fail to get the lock
    // within its bound and go on without writing the cache (the issue: restore waited 609 s).
    let save = work.path().join("t1.save");
    virsh_ok(&["save", GUEST, save.to_str().unwrap()]);
    let _ = std::fs::remove_file(&state);
    let held = hold_lock_for(&Path::new(CACHE_DIR).join("lock"), Duration::from_secs(90));
    let start = Instant::now();
    virsh_ok(&["restore", save.to_str().unwrap()]);
    let took = start.elapsed();
    drop(held);
    assert!(took < Duration::from_secs(45), "restore took {took:?} with the cache lock held");
    assert!(!state.exists(), "the cache was written although its lock was held");
    assert_eq!(virsh_ok(&["domstate", GUEST]).trim(), "running");
    assert!(virsh_ok(&["dumpxml", GUEST]).contains("<vph:a"), "the deep metadata went through");

    // apply by domain ID and by UUID: the running guest, by its name (domains rules), and live.
    apply_by_id_and_uuid(&work);
    let live = virsh_ok(&["dumpxml", GUEST]);
    assert!(live.contains("<event name='page_faults' enabled='yes'/>"), "{live}");
    assert!(live.contains("<event name='cpu_clock' enabled='yes'/>"), "{live}");
    assert!(!live.contains("cpu_cycles"), "the unopenable hardware event was added:\n{live}");
    let stats = virsh_ok(&["domstats", "--perf", GUEST]);
    assert!(stats.contains("perf.page_faults=") && stats.contains("perf.cpu_clock="), "{stats}");
    let calls = std::fs::read_to_string(&record).unwrap();
    assert!(calls.contains(&format!("{GUEST} restore begin -")), "{calls}");

    if let Some(lines) = &syslog {
        let all = lines.lock().unwrap().join("\n");
        let line = format!("restore begin: domain '{GUEST}': added cpu_clock,page_faults; dropped cpu_cycles (the host cannot open it: ");
        assert!(all.contains(&line), "rewrite and drop not logged:\n{all}");
    } else {
        skipping(&format!("the syslog check of {}", module_path!()), "/dev/log belongs to a syslog daemon; log lines not checked");
    }

    // managedsave + start also goes through 'restore begin'; a config change is picked up.
    write_config(config, &["page_faults", "cpu_clock", "task_clock", "cpu_cycles"]);
    virsh_ok(&["managedsave", GUEST]);
    virsh_ok(&["start", GUEST]);
    let live = virsh_ok(&["dumpxml", GUEST]);
    assert!(live.contains("<event name='task_clock' enabled='yes'/>"), "{live}");
    assert_eq!(live.matches("<perf>").count(), 1);
    let stats = virsh_ok(&["domstats", "--perf", GUEST]);
    assert!(stats.contains("perf.task_clock="), "{stats}");

    virsh_ok(&["destroy", GUEST]);
    virsh_ok(&["undefine", GUEST, "--managed-save"]);

    // define/apply against the same daemon.
    crate::virsh::real_libvirtd_checks(URI);
}

//! Shared helpers: run the binary, fake a host root, skip with a reason.
#![allow(dead_code)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use crate::snapshot::HostSnapshot;

pub const BIN: &str = env!("CARGO_BIN_EXE_virt-perf-hook");

/// Prints why a test did not run and returns from it; with `VPH_NO_SKIP=1` (CI) it panics
/// with the reason instead, so a missing tool or a busy host cannot pass silently.
#[macro_export]
macro_rules! skip {
    ($($why:tt)*) => {{
        $crate::common::skipping(module_path!(), &format!($($why)*));
        return;
    }};
}

/// A started-on-demand libvirtd of the test's own ([`common::Libvirt`]), or a skip with the
/// reason it cannot run here. Such a test changes the host, so it runs only with
/// `VPH_SYSTEM_TESTS=1` ([`require_system_tests!`]).
#[macro_export]
macro_rules! libvirt_or_skip {
    () => {{
        $crate::require_system_tests!("starts libvirtd and virtlogd and installs hook entries in /etc/libvirt/hooks");
        match $crate::common::Libvirt::prepare() {
            Ok(host) => host,
            Err(why) => $crate::skip!("{why}"),
        }
    }};
}

/// Whether `VPH_NO_SKIP=1` forbids skipping (`.ci/run` sets it; CI has every tool and root).
pub fn no_skip() -> bool {
    std::env::var_os("VPH_NO_SKIP").is_some_and(|v| v == "1")
}

/// Reports that `what` (a test, or a part of one) does not run and why: `SKIP …` on stderr, or a
/// panic under `VPH_NO_SKIP=1`.
pub fn skipping(what: &str, why: &str) {
    if no_skip() {
        panic!("{what} would skip, but VPH_NO_SKIP=1 is set: {why}");
    }
    say(&format!("SKIP {what}: {why}"));
}

/// A line on the real stderr: `eprintln!` in a test is captured and shown only on failure, and
/// a skip should be seen in a plain `cargo test`.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Returns from a test that changes this host (starts libvirtd, writes /etc, installs packages)
/// unless `VPH_SYSTEM_TESTS=1` asks for such tests (`.ci/run` sets it), printing
/// `SKIP … (set VPH_SYSTEM_TESTS=1 to run)`. Not asked is not a missing tool: it skips under
/// `VPH_NO_SKIP=1` too.
#[macro_export]
macro_rules! require_system_tests {
    ($($what:tt)*) => {{
        if !$crate::common::system_tests(module_path!(), &format!($($what)*)) {
            return;
        }
    }};
}

/// Whether `VPH_SYSTEM_TESTS=1` is set; says `SKIP what: it changes …` when not.
pub fn system_tests(test: &str, changes: &str) -> bool {
    let asked = std::env::var_os("VPH_SYSTEM_TESTS").is_some_and(|v| v == "1");
    if !asked {
        say(&format!("SKIP {test}: it {changes} (set VPH_SYSTEM_TESTS=1 to run)"));
    }
    asked
}

/// A temporary directory removed on drop, also when the test fails; doubles as a fake host root.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        TempDir(tempfile::Builder::new().prefix(&format!("vph-{tag}-")).tempdir().unwrap())
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Writes `rel` (parents created) with mode 0644 and returns its path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path().join(rel.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        set_mode(&p, 0o644);
        p
    }

    /// Writes `rel` (parents created) with mode 0755 and returns its path.
    pub fn write_exec(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.write(rel, text);
        set_mode(&p, 0o755);
        p
    }

    /// A fake root whose config is `config` and which pins nothing else.
    pub fn with_config(tag: &str, config: &str) -> TempDir {
        let t = TempDir::new(tag);
        t.write("/etc/virt-perf-hook/config.json", config);
        t
    }
}

pub fn set_mode(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Where the packages install the binary; the shipped hook entries are symlinks to it.
pub const INSTALLED_BIN: &str = "/usr/bin/virt-perf-hook";

/// The shipped hook entry `src_rel` (e.g. `hooks/qemu.d/virt-perf-hook`, a symlink to
/// `/usr/bin/virt-perf-hook`) recreated at `dest` as a symlink to `binary` (parents created, an
/// existing `dest` replaced): what the packages install, pointed at the binary under test.
pub fn shipped_entry(src_rel: &str, dest: &Path, binary: &Path) -> PathBuf {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join(src_rel);
    let target = std::fs::read_link(&shipped).unwrap_or_else(|e| panic!("{}: not a symlink: {e}", shipped.display()));
    assert_eq!(target, Path::new(INSTALLED_BIN), "{src_rel} should point at {INSTALLED_BIN}");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(dest);
    std::os::unix::fs::symlink(binary, dest).unwrap();
    dest.to_path_buf()
}

/// How long any run of the binary may take before it is killed and the test fails: generous,
/// only there so that a hang fails instead of blocking the suite.
pub const LIMIT: Duration = Duration::from_secs(120);

/// Runs the binary with `args`, `stdin`, and the fake `root` (also used for the cache), with
/// a clean environment apart from PATH.
pub fn run_in(root: &Path, args: &[&str], stdin: &str) -> Output {
    run_with(root, args, stdin, &[])
}

/// `run_in` with extra environment variables.
pub fn run_with(root: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    run_limited(root, args, env, Input::Bytes(stdin.as_bytes().to_vec()), LIMIT).out
}

/// `program` (the binary, or a path that runs it) with a clean environment: PATH, the fake
/// `root`, and `env`. On the real root (`/`) the binary's cache is the test's own
/// ([`test_cache_dir`]): no test run of the binary touches the host's cache.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>, root: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("VIRT_PERF_HOOK_ROOT", root);
    if root == Path::new("/") {
        cmd.env(CACHE_ENV, test_cache_dir());
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs any command with `stdin` and collects its output (killed after `LIMIT`).
pub fn feed(cmd: Command, stdin: &str) -> Output {
    feed_limited(cmd, Input::Bytes(stdin.as_bytes().to_vec()), LIMIT).out
}

/// What a child's stdin gets: bytes, or a generator writing to the pipe (returns bytes written).
pub enum Input {
    Bytes(Vec<u8>),
    Stream(Box<dyn FnOnce(&mut dyn Write) -> u64 + Send>),
}

pub struct Run {
    pub out: Output,
    /// Bytes the writer managed to push before the child closed its stdin.
    pub written: u64,
    pub elapsed: Duration,
}

/// Runs the binary under `root` with a clean environment (PATH + `env`), killing it after
/// `limit` (a hang is a failure too).
pub fn run_limited(root: &Path, args: &[&str], env: &[(&str, &str)], input: Input, limit: Duration) -> Run {
    let mut cmd = clean_command(BIN, root, env);
    cmd.args(args);
    feed_limited(cmd, input, limit)
}

/// Runs `cmd` with `input` on stdin, collecting stdout and stderr; panics (after killing it)
/// when it runs longer than `limit`.
pub fn feed_limited(mut cmd: Command, input: Input, limit: Duration) -> Run {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    // Write from a thread: the child may exit without reading (that is allowed).
    let writer = std::thread::spawn(move || match input {
        Input::Bytes(b) => {
            let mut n = 0u64;
            for chunk in b.chunks(64 << 10) {
                if stdin.write_all(chunk).is_err() {
                    break;
                }
                n += chunk.len() as u64;
            }
            n
        }
        Input::Stream(f) => f(&mut stdin),
    });
    let read_all = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out_t = read_all(Box::new(child.stdout.take().unwrap()));
    let err_t = read_all(Box::new(child.stderr.take().unwrap()));
    // Poll from 0.1 ms up to 10 ms: a quick run is not slowed down, a long one costs little.
    let mut nap = Duration::from_micros(100);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {limit:?} (killed): a hang");
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    let written = writer.join().unwrap();
    let out = Output { status, stdout: out_t.join().unwrap(), stderr: err_t.join().unwrap() };
    Run { out, written, elapsed }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether a program is on PATH.
pub fn have(prog: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {prog}")).output().map(|o| o.status.success()).unwrap_or(false)
}

pub fn is_root() -> bool {
    nix_uid() == 0
}

fn nix_uid() -> u32 {
    // SAFETY-free: read our own uid from /proc rather than adding a libc dependency to tests.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|u| u.parse().ok()))
        .unwrap_or(u32::MAX)
}

/// A small, realistic domain (shape of `virsh dumpxml` on libvirt 9).
pub const DOMAIN: &str = include_str!("../golden/basic/in.xml");

/// Serializes tests that change the real host (libvirtd, /etc/libvirt/hooks, dpkg): they run
/// in one process with the other tests, which only ever use fake roots.
pub fn host_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The cross-process lock every test that changes this host holds (`packaging/test-deb.sh`,
/// `.ci/run`'s host check and manual experiments take it too, with `flock`), so two of them never
/// change /etc/libvirt/hooks or run a libvirtd at the same time. Released on drop. Not getting it
/// is an error, never a silent go-ahead: it panics after [`FLOCK_PATIENCE`] with who holds it.
pub fn system_flock() -> nix::fcntl::Flock<std::fs::File> {
    use nix::fcntl::{Flock, FlockArg};
    let path = system_flock_path();
    // Read-only suffices for flock; create it only when missing.
    let opened = std::fs::File::open(&path).or_else(|_| std::fs::OpenOptions::new().write(true).create(true).open(&path));
    let mut file = opened.unwrap_or_else(|e| panic!("cannot open the system test lock {path}: {e}"));
    let start = Instant::now();
    let mut told = false;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return lock,
            Err((f, nix::errno::Errno::EWOULDBLOCK)) if start.elapsed() < FLOCK_PATIENCE => {
                if !told {
                    say(&format!("waiting for {path} (held by another system test; see fuser -v {path})"));
                    told = true;
                }
                file = f;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err((_, e)) => panic!("cannot take the system test lock {path} within {FLOCK_PATIENCE:?}: {e} (see fuser -v {path})"),
        }
    }
}

/// How long [`system_flock`] waits for another holder (a whole other suite may run meanwhile).
pub const FLOCK_PATIENCE: Duration = Duration::from_secs(30 * 60);

pub fn system_flock_path() -> String {
    let dir = if Path::new("/run/lock").is_dir() { "/run/lock" } else { "/tmp" };
    format!("{dir}/virt-perf-hook-system-test.lock")
}

/// Both host locks (in-process, then cross-process), for a test that changes the host without
/// a [`Libvirt`] (which holds them itself): package installs, say.
pub struct HostLocks {
    _flock: nix::fcntl::Flock<std::fs::File>,
    _lock: std::sync::MutexGuard<'static, ()>,
}

pub fn host_locks() -> HostLocks {
    let lock = host_lock();
    HostLocks { _flock: system_flock(), _lock: lock }
}

/// The environment variable a debug build of the binary takes its cache directory from (the
/// tool's `VIRT_PERF_HOOK_CACHE_DIR`; release builds ignore it).
pub const CACHE_ENV: &str = "VIRT_PERF_HOOK_CACHE_DIR";

/// The cache directory of the running [`Libvirt`] fixture, if one is alive.
static FIXTURE_CACHE: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// The cache directory the binary gets whenever a test runs it on the real root: the live
/// [`Libvirt`] fixture's own (removed with it), else one under Cargo's target dir. Never the
/// host's /var/cache/libvirt/virt-perf-hook, which only the package tests touch.
pub fn test_cache_dir() -> PathBuf {
    let fixture = FIXTURE_CACHE.lock().unwrap_or_else(|p| p.into_inner()).clone();
    fixture.unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("vph-real-root-cache"))
}

// ---- a real libvirtd of the test's own (root; CI installs libvirt and QEMU) ----

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

pub fn running(name: &str) -> bool {
    Command::new("pgrep").args(["-x", name]).output().map(|o| o.status.success()).unwrap_or(false)
}

/// Whether `pid` still runs (a zombie waiting for its reaper does not).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').map_or(true, |(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The pid in `pidfile`, else the one process named `name` (a daemon the fixture started whose
/// pid file is gone).
fn daemon_pid(pidfile: &str, name: &str) -> Option<i32> {
    let from_file = std::fs::read_to_string(pidfile).ok().and_then(|p| p.trim().parse::<i32>().ok());
    from_file.filter(|&p| alive(p)).or_else(|| {
        let out = Command::new("pgrep").args(["-x", name]).output().ok()?;
        stdout(&out).lines().next()?.trim().parse().ok()
    })
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
        if running(name) {
            return Some(format!(
                "a {name} the test suite did not start is running (pgrep -x {name}); stop it (kill $(pgrep -x {name})): \
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

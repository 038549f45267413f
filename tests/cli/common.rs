//! Shared helpers: run the binary, fake a host root, skip with a reason.
#![allow(dead_code)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use crate::libvirtd::*;
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
pub fn say(line: &str) {
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

/// Writes a child's stdin; returns the bytes written.
pub type Writer = Box<dyn FnOnce(&mut dyn Write) -> u64 + Send>;

/// What a child's stdin gets: bytes, or a generator writing to the pipe (returns bytes written).
pub enum Input {
    Bytes(Vec<u8>),
    Stream(Writer),
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
    let opened = std::fs::File::open(&path).or_else(|_| std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(&path));
    let file = opened.unwrap_or_else(|e| panic!("cannot open the system test lock {path}: {e}"));
    if let Ok(lock) = Flock::lock(file.try_clone().unwrap(), FlockArg::LockExclusiveNonblock) {
        return lock;
    }
    say(&format!("waiting for {path} (held by another system test; see fuser -v {path})"));
    // A blocking wait, woken by the kernel on release like `flock` itself (polling would lose to
    // every blocked waiter), in a thread so that it can be given up after FLOCK_PATIENCE.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| e));
    });
    match rx.recv_timeout(FLOCK_PATIENCE) {
        Ok(Ok(lock)) => lock,
        Ok(Err(e)) => panic!("cannot take the system test lock {path}: {e}"),
        Err(_) => panic!("the system test lock {path} is still held after {FLOCK_PATIENCE:?} (see fuser -v {path})"),
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
pub(crate) static FIXTURE_CACHE: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// The cache directory the binary gets whenever a test runs it on the real root: the live
/// [`Libvirt`] fixture's own (removed with it), else one under Cargo's target dir. Never the
/// host's /var/cache/libvirt/virt-perf-hook, which only the package tests touch.
pub fn test_cache_dir() -> PathBuf {
    let fixture = FIXTURE_CACHE.lock().unwrap_or_else(|p| p.into_inner()).clone();
    fixture.unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("vph-real-root-cache"))
}

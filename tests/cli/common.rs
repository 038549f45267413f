//! Shared helpers: run the binary, fake a host root, skip with a reason.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

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
    eprintln!("SKIP {what}: {why}");
}

/// A temporary directory removed on drop; doubles as a fake host root.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vph-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `rel` (parents created) with mode 0644 and returns its path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.0.join(rel.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        p
    }

    /// A fake root whose config is `config` and which pins nothing else.
    pub fn with_config(tag: &str, config: &str) -> TempDir {
        let t = TempDir::new(tag);
        t.write("/etc/virt-perf-hook/config.json", config);
        t
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary with `args`, `stdin`, and the fake `root` (also used for the cache), with
/// a clean environment apart from PATH.
pub fn run_in(root: &Path, args: &[&str], stdin: &str) -> Output {
    run_with(root, args, stdin, &[])
}

pub fn run_with(root: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("VIRT_PERF_HOOK_ROOT", root);
    for (k, v) in env {
        cmd.env(k, v);
    }
    feed(cmd, stdin)
}

/// Runs any command with `stdin` and collects its output.
pub fn feed(mut cmd: Command, stdin: &str) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.as_bytes().to_vec();
    // Write from a thread: the child may exit without reading (that is allowed).
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    out
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

/// The cross-process lock `packaging/test-deb.sh` takes too, so a manual run of it and this test
/// suite never change /etc/libvirt/hooks at the same time. Released on drop.
pub fn system_flock() -> Option<nix::fcntl::Flock<std::fs::File>> {
    let dir = if Path::new("/run/lock").is_dir() { "/run/lock" } else { "/tmp" };
    let file = std::fs::File::create(format!("{dir}/virt-perf-hook-system-test.lock")).ok()?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).ok()
}

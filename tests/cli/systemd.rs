//! virt-perf-hook.service under a real systemd: `packaging/test-systemd.sh` boots a Debian 12
//! container (systemd-nspawn, systemd as its PID 1, libvirt inside), installs the built .deb,
//! checks the service (enable/start, reload, define latency, libvirtd restart, guest shutdowns,
//! stop and kill -9, the journal, remove and purge), then runs the Ansible role inside it.
//! Root and `VPH_SYSTEM_TESTS=1` only; the script prints `SKIP …` itself (no rootfs without a
//! mirror, a libvirt daemon already running on this machine), a failure under `VPH_NO_SKIP=1`.
//! It takes the system-test lock for the container's whole life: the container's libvirtd shows
//! in this machine's process list.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// 1.5–2.5 minutes warm on 2 cores, plus the rootfs (~100 s) on the first run, plus up to 10
/// minutes waiting for the system-test lock when other processes hold it.
const LIMIT: Duration = Duration::from_secs(1200);
/// After SIGTERM the script stops the container (its trap); then it is killed.
const GRACE: Duration = Duration::from_secs(60);

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/test-systemd.sh")
}

/// Runs the script to its end or to `LIMIT` (then SIGTERM, so its trap stops the container,
/// and SIGKILL plus `--stop` after `GRACE`). Returns whether it exited 0 and its output.
fn run_bounded(mut cmd: Command) -> (bool, String) {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let (out, err) = (read(Box::new(child.stdout.take().unwrap())), read(Box::new(child.stderr.take().unwrap())));
    let start = Instant::now();
    let mut termed = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if !termed && start.elapsed() > LIMIT {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
            termed = true;
        }
        if start.elapsed() > LIMIT + GRACE {
            let _ = child.kill();
            let _ = child.wait();
            let _ = Command::new(script()).arg("--stop").status();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = format!("{}{}", out.join().unwrap(), err.join().unwrap());
    match status {
        Some(s) if !termed => (s.success(), text),
        _ => (false, format!("{text}\n(still running after {LIMIT:?}: stopped)")),
    }
}

#[test]
fn service_under_systemd_in_a_container() {
    crate::require_system_tests!("boots a container with libvirt and installs the .deb in it");
    let _lock = host_lock();
    let mut cmd = Command::new(script());
    if let Some(deb) = crate::package::built_packages().iter().find(|p| p.extension().is_some_and(|e| e == "deb")) {
        cmd.arg(deb);
    }
    cmd.env_remove("VIRT_PERF_HOOK_CONFIG").env_remove("VIRT_PERF_HOOK_ROOT");
    let (ok, text) = run_bounded(cmd);
    eprintln!("{text}");
    assert!(ok, "test-systemd.sh failed:\n{text}");
}

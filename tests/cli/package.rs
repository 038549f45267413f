//! The distro packages. `packaging/build.sh` builds both once; `packaging/test-deb.sh` lints the
//! .deb, installs it with dpkg, checks files, modes, conffiles and the installed program, then
//! removes and purges it (root only; it always leaves the package purged), and
//! `packaging/test-rpm.sh` checks the .rpm with `rpm -qp`. The scripts check for root and their
//! tools themselves and print `SKIP …` (or, with `VPH_NO_SKIP=1`, fail); these tests run them,
//! echo their output and assert they exit 0.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::host_lock;

/// The packages `packaging/build.sh` wrote, built once for both tests and the Ansible test. Empty when it failed
/// (e.g. rpmbuild is missing): each script then builds its own package, or says why it cannot.
pub(crate) fn built_packages() -> &'static [PathBuf] {
    static BUILT: OnceLock<Vec<PathBuf>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/build.sh");
        let out = Command::new(&path).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
        if !out.status.success() {
            eprintln!("build.sh failed ({}); each script builds its own package:\n{}", out.status, String::from_utf8_lossy(&out.stderr));
            return Vec::new();
        }
        String::from_utf8_lossy(&out.stdout).lines().map(PathBuf::from).collect()
    })
}

/// Runs `packaging/<script>` on the package of that format from `built_packages` (or lets it
/// build one), echoes its output and fails with it unless it exits 0.
fn run_script(script: &str, format: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging").join(script);
    let mut cmd = Command::new(&path);
    if let Some(package) = built_packages().iter().find(|p| p.extension().is_some_and(|e| e == format)) {
        cmd.arg(package);
    }
    let out = cmd
        .env_remove("VIRT_PERF_HOOK_CONFIG")
        .env_remove("VIRT_PERF_HOOK_ROOT")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(out.status.success(), "{script} failed ({}):\n{stdout}\n{stderr}", out.status);
}

#[test]
fn deb_lints_installs_removes_and_purges_cleanly() {
    // The hook end-to-end test also installs into /etc/libvirt/hooks; test-deb.sh additionally
    // takes /run/lock/virt-perf-hook-system-test.lock against other processes.
    let _lock = host_lock();
    run_script("test-deb.sh", "deb");
}

#[test]
fn rpm_has_the_layout_config_file_and_scripts() {
    run_script("test-rpm.sh", "rpm");
}

//! The distro packages. `packaging/test-deb.sh` builds the .deb, runs lintian, installs it with
//! dpkg, checks files, modes, conffiles and the installed program, then removes and purges it
//! (root only; it always leaves the package purged). `packaging/test-rpm.sh` builds the .rpm and
//! checks it with `rpm -qp`. The scripts check for root and their tools themselves and print
//! `SKIP …` (or, with `VPH_NO_SKIP=1`, fail); these tests run them, echo their output and assert
//! they exit 0.

use std::path::Path;
use std::process::Command;

use crate::common::host_lock;

/// Runs `packaging/<script>`, echoes its output and fails with it unless it exits 0.
fn run_script(script: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging").join(script);
    let out = Command::new(&path)
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
    run_script("test-deb.sh");
}

#[test]
fn rpm_has_the_layout_config_file_and_scripts() {
    run_script("test-rpm.sh");
}

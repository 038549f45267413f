//! The distro packages. `packaging/test-deb.sh` builds the .deb, runs lintian, installs it with
//! dpkg, checks files, modes, conffiles and the installed program, then removes and purges it
//! (root only; it always leaves the package purged). `packaging/test-rpm.sh` builds the .rpm and
//! checks it with `rpm -qp`. The scripts print every check; these tests assert they pass, and skip
//! with a reason where root or the tools are missing.

use std::path::Path;
use std::process::Command;

use crate::common::{have, host_lock, is_root};
use crate::skip;

/// Runs `packaging/<script>` and fails with its whole output unless it exits 0.
fn run_script(script: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging").join(script);
    let out = Command::new(&path)
        .env_remove("VIRT_PERF_HOOK_CONFIG")
        .env_remove("VIRT_PERF_HOOK_ROOT")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A script that skipped itself (e.g. the package is already installed here) says why.
    for line in stdout.lines().filter(|l| l.starts_with("SKIP ")) {
        eprintln!("{line}");
    }
    assert!(out.status.success(), "{script} failed ({}):\n{stdout}\n{stderr}", out.status);
}

#[test]
fn deb_lints_installs_removes_and_purges_cleanly() {
    if !is_root() {
        skip!("needs root: it installs and purges the .deb with dpkg");
    }
    for tool in ["dpkg", "dpkg-deb", "dpkg-shlibdeps", "lintian"] {
        if !have(tool) {
            skip!("{tool} not found (apt-get install dpkg-dev lintian)");
        }
    }
    // The hook end-to-end test also installs into /etc/libvirt/hooks; test-deb.sh additionally
    // takes /run/lock/virt-perf-hook-system-test.lock against other processes.
    let _lock = host_lock();
    run_script("test-deb.sh");
}

#[test]
fn rpm_has_the_layout_config_file_and_scripts() {
    for tool in ["rpm", "rpmbuild"] {
        if !have(tool) {
            skip!("{tool} not found (apt-get install rpm)");
        }
    }
    run_script("test-rpm.sh");
}

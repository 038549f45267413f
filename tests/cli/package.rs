//! The distro packages. `packaging/build.sh` builds both once; `packaging/test-deb.sh` lints the
//! .deb, installs it with dpkg, checks files, modes, conffiles and the installed program, then
//! removes and purges it (root and VPH_SYSTEM_TESTS=1 only; it always leaves the package purged), and
//! `packaging/test-rpm.sh` checks the .rpm with `rpm -qp`. The scripts check for root and their
//! tools themselves and print `SKIP …` (or, with `VPH_NO_SKIP=1`, fail); these tests run them,
//! echo their output and assert they exit 0. The hook entries both packages ship are also checked
//! against the AppArmor profile libvirt installs on this machine, with `check`'s own matcher.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::common::*;

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
fn run_script(script: &str, format: &str, env: &[(&str, &str)]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging").join(script);
    let mut cmd = Command::new(&path);
    if let Some(package) = built_packages().iter().find(|p| p.extension().is_some_and(|e| e == format)) {
        cmd.arg(package);
    }
    let out = cmd
        .env_remove("VIRT_PERF_HOOK_CONFIG")
        .env_remove("VIRT_PERF_HOOK_ROOT")
        .env_remove(CACHE_ENV)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(out.status.success(), "{script} failed ({}):\n{stdout}\n{stderr}", out.status);
}

#[test]
fn deb_lints_installs_removes_and_purges_cleanly() {
    crate::require_system_tests!("installs, removes and purges the .deb on this machine");
    // Both host locks, held for the script (it would take the cross-process one itself; told by
    // VPH_SYSTEM_FLOCK_HELD that its parent holds it), and the host put back as found.
    let _locks = host_locks();
    let snapshot = HostSnapshot::take();
    run_script("test-deb.sh", "deb", &[("VPH_SYSTEM_FLOCK_HELD", "1")]);
    let left = snapshot.restore();
    assert!(left.is_empty(), "test-deb.sh left the host changed: {left:?}");
}

#[test]
fn rpm_has_the_layout_config_file_and_scripts() {
    run_script("test-rpm.sh", "rpm", &[]);
}

/// The stock libvirtd profile of this machine (libvirt-daemon-system; CI installs it).
const LIBVIRTD_PROFILE: &str = "/etc/apparmor.d/usr.sbin.libvirtd";

/// The name the profile file declares (`profile libvirtd /usr/sbin/libvirtd …` on Debian 12),
/// which is what the kernel lists once it is loaded.
fn declared_profile_name(text: &str) -> String {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("profile "))
        .find_map(|rest| rest.split_whitespace().next().filter(|n| n.contains("libvirtd")).map(String::from))
        .unwrap_or_else(|| "/usr/sbin/libvirtd".to_string())
}

/// The built `format` package, when the libvirtd profile, `tool` (to read the package) and the
/// package are all there; else the test does not run (a skip, or a failure under VPH_NO_SKIP=1).
fn package_to_check(format: &str, tool: &str) -> Option<&'static PathBuf> {
    let why = if !Path::new(LIBVIRTD_PROFILE).is_file() {
        format!("{LIBVIRTD_PROFILE} not installed (apt-get install libvirt-daemon-system)")
    } else if !have(tool) {
        format!("{tool} not found (apt-get install {})", if tool == "rpm" { "rpm" } else { "dpkg" })
    } else if let Some(p) = built_packages().iter().find(|p| p.extension().is_some_and(|e| e == format)) {
        return Some(p);
    } else {
        format!("packaging/build.sh built no .{format} (its error is printed above)")
    };
    skipping(&format!("{}: the .{format} against the AppArmor profile", module_path!()), &why);
    None
}

/// Runs `check` on `root` (a package's files) with this machine's /etc/apparmor.d copied in and
/// the libvirtd profile listed as enforced, and asserts both hook entries are allowed by it.
fn assert_entries_allowed_by_libvirtd_profile(root: &TempDir) {
    let etc = root.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let cp = std::process::Command::new("cp").arg("-a").arg("/etc/apparmor.d").arg(&etc).status().unwrap();
    assert!(cp.success(), "cp -a /etc/apparmor.d");
    let name = declared_profile_name(&std::fs::read_to_string(LIBVIRTD_PROFILE).unwrap());
    root.write("/sys/kernel/security/apparmor/profiles", &format!("{name} (enforce)\n"));
    let out = run_in(root.path(), &["check", "--json"], "");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&out)));
    let items: Vec<&Value> = v["items"].as_array().unwrap().iter().filter(|i| i["what"] == "apparmor").collect();
    let text: Vec<String> = items.iter().map(|i| format!("{} {}", i["status"], i["message"])).collect();
    assert_eq!(items.len(), 2, "one verdict per hook entry: {text:#?}");
    for (item, kind) in items.iter().zip(["qemu", "daemon"]) {
        let msg = item["message"].as_str().unwrap();
        assert_eq!(item["status"], "ok", "{kind}.d entry blocked by {LIBVIRTD_PROFILE}: {text:#?}");
        assert!(msg.contains(&format!("{kind}.d/virt-perf-hook -> {INSTALLED_BIN}")), "{msg}");
    }
}

/// Every hook entry the .deb ships resolves to a file an `x` rule of the installed libvirtd
/// profile allows. (The 0.1.0 entries resolved to /usr/lib/virt-perf-hook/hooks/…, which no
/// rule allows: every guest start failed under AppArmor.)
#[test]
fn deb_hook_entries_are_allowed_by_the_libvirtd_apparmor_profile() {
    let Some(deb) = package_to_check("deb", "dpkg-deb") else { return };
    let root = TempDir::new("deb-apparmor");
    let x = Command::new("dpkg-deb").arg("-x").arg(deb).arg(root.path()).status().unwrap();
    assert!(x.success(), "dpkg-deb -x {}", deb.display());
    assert_entries_allowed_by_libvirtd_profile(&root);
    // And they are the links the package owns (dpkg replaces them on upgrade, removes them on remove).
    let listing = Command::new("dpkg-deb").arg("-c").arg(deb).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for kind in ["qemu", "daemon"] {
        let want = format!("./etc/libvirt/hooks/{kind}.d/virt-perf-hook -> {INSTALLED_BIN}");
        assert!(listing.lines().any(|l| l.starts_with('l') && l.ends_with(&want)), "no '{want}' symlink in:\n{listing}");
    }
}

/// The same for the .rpm (openSUSE confines libvirtd with AppArmor too): its files, directories
/// and (relative) links, as `rpm -qp` lists them, recreated empty in a root.
#[test]
fn rpm_hook_entries_are_allowed_by_the_libvirtd_apparmor_profile() {
    let Some(rpm) = package_to_check("rpm", "rpm") else { return };
    let qf = "[%{FILEMODES:perms}\t%{FILENAMES}\t%{FILELINKTOS}\n]";
    // A scratch database: rpm on Debian otherwise creates ~/.rpmdb on first use.
    let db = TempDir::new("rpmdb");
    let out = Command::new("rpm").arg("--dbpath").arg(db.path()).args(["-qp", "--qf", qf]).arg(rpm).output().unwrap();
    assert!(out.status.success(), "rpm -qp {}", rpm.display());
    let root = TempDir::new("rpm-apparmor");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.split('\t');
        let (Some(perms), Some(file), link) = (f.next(), f.next(), f.next().unwrap_or("")) else { continue };
        let at = root.path().join(file.trim_start_matches('/'));
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        match perms.chars().next() {
            Some('d') => std::fs::create_dir_all(&at).unwrap(),
            Some('l') => std::os::unix::fs::symlink(link, &at).unwrap(),
            _ if perms.contains('x') => drop(root.write_exec(file, "")),
            _ => drop(root.write(file, "")),
        }
    }
    assert_entries_allowed_by_libvirtd_profile(&root);
}

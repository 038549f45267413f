//! `check` on AppArmor and SELinux, against a fake host root: a fake kernel list of loaded
//! profiles (`/sys/kernel/security/apparmor/profiles`), a profile file in `/etc/apparmor.d`, hook
//! entries that resolve to the old (`/usr/lib/virt-perf-hook/hooks/…`) or the new
//! (`/usr/bin/virt-perf-hook`) place, and SELinux labels set as `security.selinux` xattrs.

use std::path::Path;

use serde_json::Value;

use crate::common::*;
use crate::skip;

/// A profile in the stock profiles' shape (not their text): a lenient body without x on `/**`,
/// exec of `/usr/bin/*`, a variable, a child profile whose rules are not libvirtd's, and the
/// operator's local include.
const PROFILE: &str = "#include <tunables/global>
@{LIBEXEC}=\"libexec\"

profile libvirtd /usr/sbin/libvirtd flags=(attach_disconnected) {
  #include <abstractions/base>
  capability perfmon,
  / r,
  /** rwmkl,

  /usr/bin/* PUx,
  /usr/{lib,@{LIBEXEC}}/libvirt/* PUxr,
  /etc/libvirt/hooks/** rmix,

  profile helper {
    /usr/lib/virt-perf-hook/** rix,
  }

  # Site-specific additions.
  #include <local/usr.sbin.libvirtd>
}
";

const OLD: &str = "/usr/lib/virt-perf-hook/hooks";

/// A host whose hook entries are symlinks to `target(kind)` (an executable in the root), with
/// the profile above on disk.
fn host(tag: &str, target: impl Fn(&str) -> String) -> TempDir {
    let t = TempDir::with_config(tag, r#"{"enabled_perf_events": []}"#);
    for kind in ["qemu", "daemon"] {
        let to = target(kind);
        if !t.path().join(to.trim_start_matches('/')).exists() {
            t.write_exec(&to, "");
        }
        let entry = t.path().join(format!("etc/libvirt/hooks/{kind}.d/virt-perf-hook"));
        std::fs::create_dir_all(entry.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&to, &entry).unwrap();
    }
    t.write("/etc/apparmor.d/usr.sbin.libvirtd", PROFILE);
    t.write("/etc/apparmor.d/local/usr.sbin.libvirtd", "");
    t
}

fn old_layout(tag: &str) -> TempDir {
    host(tag, |kind| format!("{OLD}/{kind}.d/virt-perf-hook"))
}

fn new_layout(tag: &str) -> TempDir {
    host(tag, |_| INSTALLED_BIN.to_string())
}

fn loaded(t: &TempDir, list: &str) {
    t.write("/sys/kernel/security/apparmor/profiles", list);
}

/// `check --json`: the exit code and the (status, message) items about `what`.
fn mac_items(root: &Path, what: &str) -> (i32, Vec<(String, String)>) {
    let out = run_in(root, &["check", "--json"], "");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&out)));
    let items = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["what"] == what)
        .map(|i| (i["status"].as_str().unwrap().to_string(), i["message"].as_str().unwrap().to_string()))
        .collect();
    (out.status.code().unwrap_or(-1), items)
}

fn statuses(items: &[(String, String)]) -> Vec<&str> {
    items.iter().map(|(s, _)| s.as_str()).collect()
}

#[test]
fn enforced_profile_blocking_the_old_layout_is_a_problem_with_the_fix() {
    let t = old_layout("aa-old");
    loaded(&t, "libvirtd (enforce)\nlibvirtd//helper (enforce)\nman (enforce)\n");
    let (code, items) = mac_items(t.path(), "apparmor");
    assert_eq!(code, 1);
    assert_eq!(statuses(&items), ["problem", "problem"], "{items:?}");
    for ((_, msg), kind) in items.iter().zip(["qemu", "daemon"]) {
        let target = format!("{OLD}/{kind}.d/virt-perf-hook");
        for want in [
            "AppArmor: profile libvirtd (enforce, /etc/apparmor.d/usr.sbin.libvirtd) blocks hook ".to_string(),
            format!("/etc/libvirt/hooks/{kind}.d/virt-perf-hook -> {target} (no exec rule matches it)"),
            "every guest start fails".to_string(),
            "make the entry a symlink to /usr/bin/virt-perf-hook".to_string(),
            format!("add '{target} PUx,' to /etc/apparmor.d/local/usr.sbin.libvirtd"),
            "apparmor_parser -r /etc/apparmor.d/usr.sbin.libvirtd".to_string(),
        ] {
            assert!(msg.contains(&want), "{want:?} not in {msg}");
        }
    }
    // The child profile's rule for /usr/lib/virt-perf-hook/** is not libvirtd's. The fix the
    // message gives, applied, works.
    t.write("/etc/apparmor.d/local/usr.sbin.libvirtd", &format!("{OLD}/qemu.d/virt-perf-hook PUx,\n{OLD}/daemon.d/virt-perf-hook PUx,\n"));
    let (_, items) = mac_items(t.path(), "apparmor");
    assert_eq!(statuses(&items), ["ok", "ok"], "{items:?}");
}

#[test]
fn entries_that_resolve_to_usr_bin_are_allowed() {
    let t = new_layout("aa-new");
    loaded(&t, "libvirtd (enforce)\n");
    let (_, items) = mac_items(t.path(), "apparmor");
    assert_eq!(statuses(&items), ["ok", "ok"], "{items:?}");
    assert!(items[0].1.contains("lets libvirt run hook "), "{items:?}");
    assert!(items[0].1.contains("qemu.d/virt-perf-hook -> /usr/bin/virt-perf-hook (rule '/usr/bin/* PUx,')"), "{items:?}");

    // An entry installed as a plain file runs inside the profile (`/etc/libvirt/hooks/** rmix`).
    let entry = t.path().join("etc/libvirt/hooks/qemu.d/virt-perf-hook");
    std::fs::remove_file(&entry).unwrap();
    t.write_exec("/etc/libvirt/hooks/qemu.d/virt-perf-hook", "#!/bin/sh\n");
    let (_, items) = mac_items(t.path(), "apparmor");
    assert!(items[0].0 == "ok" && items[0].1.contains("(rule '/etc/libvirt/hooks/** rmix,')"), "{items:?}");

    // A relative link (the .rpm's) resolves the same way.
    std::fs::remove_file(&entry).unwrap();
    std::os::unix::fs::symlink("../../../../usr/bin/virt-perf-hook", &entry).unwrap();
    let (_, items) = mac_items(t.path(), "apparmor");
    assert_eq!(statuses(&items), ["ok", "ok"], "{items:?}");
}

#[test]
fn a_deny_rule_wins_and_complain_mode_is_a_note() {
    let t = new_layout("aa-deny");
    t.write("/etc/apparmor.d/local/usr.sbin.libvirtd", "audit deny /usr/bin/virt-perf-hook x,\n");
    loaded(&t, "libvirtd (enforce)\n");
    let (code, items) = mac_items(t.path(), "apparmor");
    assert_eq!(code, 1);
    assert_eq!(statuses(&items), ["problem", "problem"], "{items:?}");
    assert!(items[0].1.contains("(rule 'audit deny /usr/bin/virt-perf-hook x,')"), "{items:?}");

    loaded(&t, "libvirtd (complain)\n");
    let (_, items) = mac_items(t.path(), "apparmor");
    assert_eq!(statuses(&items), ["note", "note"], "{items:?}");
    assert!(items[0].1.contains("mode complain does not block it, under enforce every guest start would fail"), "{items:?}");
}

#[test]
fn apparmor_not_in_force_says_what_the_profile_would_do() {
    let t = old_layout("aa-off");
    let (_, items) = mac_items(t.path(), "apparmor");
    assert_eq!(statuses(&items), ["note", "note", "note"], "{items:?}");
    assert!(items[0].1.starts_with("AppArmor is not in force here (no /sys/kernel/security/apparmor/profiles)"), "{items:?}");
    assert!(items[1].1.starts_with("AppArmor, if enabled: profile libvirtd (/etc/apparmor.d/usr.sbin.libvirtd) blocks hook"), "{items:?}");
    assert!(items[1].1.contains("every guest start would fail"), "{items:?}");

    let t = new_layout("aa-off2");
    let (_, items) = mac_items(t.path(), "apparmor");
    assert_eq!(statuses(&items), ["note", "note", "note"], "{items:?}");
    assert!(items[1].1.contains("lets libvirt run hook"), "{items:?}");

    // No profile at all: one note.
    std::fs::remove_dir_all(t.path().join("etc/apparmor.d")).unwrap();
    let (_, items) = mac_items(t.path(), "apparmor");
    assert_eq!(statuses(&items), ["note"], "{items:?}");
}

#[test]
fn loaded_profiles_other_than_the_daemons_or_without_a_file() {
    let t = old_layout("aa-other");
    loaded(&t, "man (enforce)\n");
    let (_, items) = mac_items(t.path(), "apparmor");
    assert_eq!(statuses(&items), ["ok"], "{items:?}");
    assert!(items[0].1.contains("libvirt runs the hooks unconfined"), "{items:?}");

    loaded(&t, "virtqemud (enforce)\n");
    let (_, items) = mac_items(t.path(), "apparmor");
    assert_eq!(statuses(&items), ["note"], "{items:?}");
    assert!(items[0].1.contains("virtqemud (enforce) is loaded, but no file in /etc/apparmor.d declares it"), "{items:?}");
}

/// Sets the `security.selinux` xattr (root, and a file system that keeps it).
fn label(path: &Path, context: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let value = format!("{context}\0");
    // SAFETY: both names are NUL-terminated and value is valid for its length.
    let rc = unsafe {
        nix::libc::lsetxattr(c.as_ptr(), c"security.selinux".as_ptr(), value.as_ptr().cast(), value.len(), 0)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[test]
fn selinux_labels_of_the_hook_target_and_the_cache() {
    let t = new_layout("se");
    let bin = t.path().join("usr/bin/virt-perf-hook");
    let cache = t.path().join("var/cache/libvirt/virt-perf-hook");
    std::fs::create_dir_all(&cache).unwrap();
    if let Err(e) = label(&bin, "system_u:object_r:lib_t:s0") {
        skip!("cannot set security.selinux here ({e}); needs root");
    }
    label(&cache, "system_u:object_r:var_t:s0").unwrap();

    let (_, items) = mac_items(t.path(), "selinux");
    assert_eq!(statuses(&items), ["note"], "not enabled: {items:?}");

    t.write("/sys/fs/selinux/enforce", "1");
    let (code, items) = mac_items(t.path(), "selinux");
    assert_eq!(code, 1);
    // One per entry (both resolve to the binary), the cache, and the perf_event note.
    assert_eq!(statuses(&items), ["problem", "problem", "problem", "note"], "{items:?}");
    assert!(
        items[0].1.starts_with("SELinux (enforcing): /usr/bin/virt-perf-hook is labelled system_u:object_r:lib_t:s0, not bin_t")
            && items[0].1.ends_with("fix: restorecon -v /usr/bin/virt-perf-hook"),
        "{items:?}"
    );
    assert!(items[2].1.contains("virt_cache_t") && items[2].1.ends_with("fix: restorecon -Rv /var/cache/libvirt/virt-perf-hook"), "{items:?}");
    assert!(items[3].1.contains("no perf_event rules"), "{items:?}");

    label(&bin, "system_u:object_r:bin_t:s0").unwrap();
    label(&cache, "system_u:object_r:virt_cache_t:s0").unwrap();
    let (_, items) = mac_items(t.path(), "selinux");
    assert_eq!(statuses(&items), ["ok", "ok", "ok", "note"], "{items:?}");

    t.write("/sys/fs/selinux/enforce", "0");
    label(&bin, "system_u:object_r:usr_t:s0").unwrap();
    let (_, items) = mac_items(t.path(), "selinux");
    assert_eq!(statuses(&items), ["note", "note", "ok"], "permissive: {items:?}");
    assert!(items[0].1.starts_with("SELinux (permissive: denials are only logged)"), "{items:?}");
}

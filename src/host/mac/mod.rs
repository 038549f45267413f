//! Mandatory access control around the hook, for `check` only (never on the hook path):
//! whether the AppArmor profile of the libvirt daemon lets it execute what each hook entry
//! resolves to ([`apparmor`]), and whether SELinux labels the entries' target and the cache as
//! the stock policy expects ([`selinux`]).
//!
//! AppArmor judges an exec by the file a symlink resolves to, not by the link, so every entry
//! is resolved first (inside the `VIRT_PERF_HOOK_ROOT`, like everything else): [`resolve`].

pub mod apparmor;
pub mod selinux;

use std::path::{Path, PathBuf};

use crate::core::finding::{Finding, Status};
use crate::support::paths::Paths;

/// The hook entries the packages install, under the hooks dir.
pub const ENTRIES: [&str; 2] = ["qemu.d/virt-perf-hook", "daemon.d/virt-perf-hook"];
/// Where the kernel lists loaded AppArmor profiles and their modes (`libvirtd (enforce)`).
pub const AA_PROFILES: &str = "/sys/kernel/security/apparmor/profiles";
pub const AA_DIR: &str = "/etc/apparmor.d";
pub const SELINUX_ENFORCE: &str = "/sys/fs/selinux/enforce";
/// The daemons that run hooks and have stock AppArmor profiles (Debian/Ubuntu, openSUSE).
const DAEMONS: [&str; 2] = ["libvirtd", "virtqemud"];
/// SELinux types the stock policy expects (fedora-selinux `virt.te`, `corecommands`): the
/// daemon may execute `bin_t` (`corecmd_exec_bin`) and manage `virt_cache_t`.
const BIN_T: &str = "bin_t";
const CACHE_T: &str = "virt_cache_t";

fn finding(status: Status, what: &'static str, message: String) -> Finding {
    Finding { status, what, message }
}

/// Everything `check` says about AppArmor and SELinux.
pub fn check(paths: &Paths) -> Vec<Finding> {
    let mut out = apparmor::check(paths);
    out.extend(selinux::check(paths));
    out
}

/// Each installed entry with what it resolves to (host path), or why it does not resolve.
pub(super) fn entries(paths: &Paths) -> Vec<(PathBuf, Result<String, std::io::Error>)> {
    ENTRIES
        .iter()
        .map(|rel| format!("{}/{rel}", crate::support::paths::HOOKS_DIR))
        .filter(|abs| std::fs::symlink_metadata(paths.host(abs)).is_ok())
        .map(|abs| (paths.host(&abs), resolve(paths, &abs)))
        .collect()
}

/// `abs` with every symlink resolved the way the kernel does, inside `paths`' root (an
/// absolute link target starts again at the root). The host path of the final file.
pub fn resolve(paths: &Paths, abs: &str) -> std::io::Result<String> {
    let mut todo: Vec<String> = abs.split('/').rev().map(String::from).collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => done.push(c),
        }
        let host = paths.host(&format!("/{}", done.join("/")));
        if std::fs::symlink_metadata(&host)?.file_type().is_symlink() {
            links += 1;
            if links > 40 {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ELOOP));
            }
            let target = std::fs::read_link(&host)?.to_string_lossy().into_owned();
            done.pop();
            if target.starts_with('/') {
                done.clear();
            }
            todo.extend(target.split('/').rev().map(String::from));
        }
    }
    Ok(format!("/{}", done.join("/")))
}

/// The path as the operator knows it (without a test root).
pub(super) fn shown(paths: &Paths, p: &Path) -> String {
    match p.strip_prefix(paths.root()) {
        Ok(rel) if paths.root() != Path::new("/") => format!("/{}", rel.display()),
        _ => p.display().to_string(),
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolving_inside_a_root() {
        let root = std::env::temp_dir().join(format!("vph-mac-res-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let paths = Paths::new(&root);
        std::fs::create_dir_all(paths.host("/usr/bin")).unwrap();
        std::fs::create_dir_all(paths.host("/etc/libvirt/hooks/qemu.d")).unwrap();
        std::fs::write(paths.host("/usr/bin/virt-perf-hook"), "").unwrap();
        let link = |target: &str, at: &str| std::os::unix::fs::symlink(target, paths.host(at)).unwrap();
        link("/usr/bin/virt-perf-hook", "/etc/libvirt/hooks/qemu.d/abs");
        link("../../../../usr/bin/virt-perf-hook", "/etc/libvirt/hooks/qemu.d/rel");
        link("abs", "/etc/libvirt/hooks/qemu.d/chain");
        link("/nowhere", "/etc/libvirt/hooks/qemu.d/dangling");
        link("loop", "/etc/libvirt/hooks/qemu.d/loop");
        for name in ["abs", "rel", "chain"] {
            assert_eq!(
                resolve(&paths, &format!("/etc/libvirt/hooks/qemu.d/{name}")).unwrap(),
                "/usr/bin/virt-perf-hook",
                "{name}"
            );
        }
        assert!(resolve(&paths, "/etc/libvirt/hooks/qemu.d/dangling").is_err());
        assert!(resolve(&paths, "/etc/libvirt/hooks/qemu.d/loop").is_err());
        let _ = std::fs::remove_dir_all(&root);
    }
}

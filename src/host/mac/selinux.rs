//! SELinux: whether the hook entries' target and the cache carry the types the stock policy
//! lets the libvirt daemon execute and manage.

use std::path::Path;

use super::{entries, finding, shown, BIN_T, CACHE_T, SELINUX_ENFORCE};
use crate::core::finding::{Finding, Status};
use crate::support::paths::Paths;

/// The `security.selinux` label of `path` itself (symlinks not followed).
pub fn selinux_label(path: &Path) -> std::io::Result<String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(nix::libc::EINVAL))?;
    let mut buf = vec![0u8; 1024];
    // SAFETY: both names are NUL-terminated C strings and buf is valid for buf.len() bytes.
    let n = unsafe {
        nix::libc::lgetxattr(c.as_ptr(), c"security.selinux".as_ptr(), buf.as_mut_ptr().cast(), buf.len())
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    while buf.last() == Some(&0) {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// `system_u:object_r:bin_t:s0` → `bin_t`.
fn label_type(label: &str) -> &str {
    label.split(':').nth(2).unwrap_or(label)
}

pub(super) fn check(paths: &Paths) -> Vec<Finding> {
    const W: &str = "selinux";
    let enforce_file = paths.host(SELINUX_ENFORCE);
    let enforcing = match std::fs::read_to_string(&enforce_file) {
        Ok(t) if t.trim() == "1" => true,
        Ok(_) => false,
        Err(_) => {
            return vec![finding(
                Status::Note,
                W,
                format!("SELinux is not enabled here (no {}): nothing to check", shown(paths, &enforce_file)),
            )]
        }
    };
    let status = if enforcing { Status::Problem } else { Status::Note };
    let mode = if enforcing { "enforcing" } else { "permissive: denials are only logged" };
    let mut out = Vec::new();
    let mut expect = |path: &Path, want: &str, why: &str, fix: String| match selinux_label(path) {
        Ok(label) if label_type(&label) == want => {
            out.push(finding(Status::Ok, W, format!("SELinux ({mode}): {} is {want}", shown(paths, path))))
        }
        Ok(label) => out.push(finding(
            status,
            W,
            format!("SELinux ({mode}): {} is labelled {label}, not {want}: {why}; fix: {fix}", shown(paths, path)),
        )),
        Err(e) => out.push(finding(
            status,
            W,
            format!("SELinux ({mode}): cannot read the label of {}: {e}", shown(paths, path)),
        )),
    };
    for (entry, target) in entries(paths) {
        let Ok(target) = target else { continue };
        let fix = if target.starts_with("/usr/bin/") {
            format!("restorecon -v {target}")
        } else {
            "make the entry a symlink to /usr/bin/virt-perf-hook (reinstall the package)".to_string()
        };
        let why = format!(
            "the stock policy lets libvirt's daemons execute bin_t (corecmd_exec_bin), and they run {}",
            shown(paths, &entry)
        );
        expect(&paths.host(&target), BIN_T, &why, fix);
    }
    // The hook creates the cache dir on first use, inheriting the parent's label.
    let cache = paths.cache_dir();
    let cache = if cache.exists() { cache } else { cache.parent().map(Path::to_path_buf).unwrap_or(cache) };
    if cache.exists() {
        let shown_cache = shown(paths, &cache);
        expect(
            &cache,
            CACHE_T,
            "the stock policy lets libvirt's daemons write virt_cache_t (virt_manage_cache), so the hook would run \
             without its cache",
            format!("restorecon -Rv {shown_cache}"),
        );
    }
    if enforcing {
        out.push(finding(
            Status::Note,
            W,
            "SELinux: the hook runs in the daemon's domain; virtqemud_t (Fedora 40+, RHEL 10) has no perf_event rules \
             and is permissive in the stock policy: made enforcing, libvirt itself could not open guest perf events \
             and the hook's probe would drop every event (denials: ausearch -m avc -ts recent)"
                .to_string(),
        ));
    }
    out
}


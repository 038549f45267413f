//! Every host path the tool touches, resolved under an optional root.
//!
//! `VIRT_PERF_HOOK_ROOT` (tests only) re-roots `/etc`, `/usr/lib`, `/sys`, `/proc`, `/run` and
//! `/var/cache`, so tests fake a whole host in a temporary directory.
//!
//! `VIRT_PERF_HOOK_CACHE_DIR` (debug builds only) moves just the cache, so a test against the
//! real libvirtd and the real `/etc` never writes the host's cache. A release build (what the
//! packages ship) ignores it: nothing in the environment may redirect what the root hook trusts.

use std::path::{Path, PathBuf};

pub const ROOT_ENV: &str = "VIRT_PERF_HOOK_ROOT";
pub const CONFIG_ENV: &str = "VIRT_PERF_HOOK_CONFIG";
/// Honoured only when built with debug assertions (`cargo build`/`cargo test`): see the module doc.
pub const CACHE_ENV: &str = "VIRT_PERF_HOOK_CACHE_DIR";

pub const DEFAULT_CONFIG: &str = "/etc/virt-perf-hook/config.json";
/// Under libvirt's own cache dir, so it carries libvirt's SELinux label (`virt_cache_t`), which
/// the confined libvirt daemons that run the hook may write (`/var/cache/<new dir>` is `var_t`).
pub const CACHE_DIR: &str = "/var/cache/libvirt/virt-perf-hook";
pub const HOOKS_DIR: &str = "/etc/libvirt/hooks";

/// Directories searched for `libvirt.so.0.AGE.REV` (Debian multiarch, Fedora/RHEL, SUSE, Arch).
pub const LIB_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib/powerpc64le-linux-gnu",
    "/usr/lib/s390x-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/lib64",
    "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
];

/// Daemons whose `--version` prints the libvirt version (modular daemon first).
pub const DAEMON_BINARIES: &[&str] = &[
    "/usr/sbin/virtqemud",
    "/usr/sbin/libvirtd",
    "/usr/bin/virtqemud",
    "/usr/bin/libvirtd",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    root: PathBuf,
    /// The cache directory when not `CACHE_DIR` under the root (tests only).
    cache: Option<PathBuf>,
}

impl Paths {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Paths { root: root.into(), cache: None }
    }

    /// `/`, or `$VIRT_PERF_HOOK_ROOT` when set and non-empty; in a debug build the cache dir
    /// is `$VIRT_PERF_HOOK_CACHE_DIR` when that is an absolute path.
    pub fn from_env() -> Self {
        let mut paths = match std::env::var_os(ROOT_ENV) {
            Some(r) if !r.is_empty() => Paths::new(r),
            _ => Paths::new("/"),
        };
        if cfg!(debug_assertions) {
            paths.cache = std::env::var_os(CACHE_ENV).map(PathBuf::from).filter(|p| p.is_absolute());
        }
        paths
    }

    /// These paths with the cache in `dir`.
    #[cfg(test)]
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache = Some(dir.into());
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// An absolute host path under the root.
    pub fn host(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    pub fn default_config(&self) -> PathBuf {
        self.host(DEFAULT_CONFIG)
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.cache.clone().unwrap_or_else(|| self.host(CACHE_DIR))
    }

    pub fn state_file(&self) -> PathBuf {
        self.cache_dir().join("state.json")
    }

    pub fn hooks_dir(&self) -> PathBuf {
        self.host(HOOKS_DIR)
    }

    pub fn boot_id(&self) -> PathBuf {
        self.host("/proc/sys/kernel/random/boot_id")
    }

    pub fn intel_cqm_type(&self) -> PathBuf {
        self.host("/sys/devices/intel_cqm/type")
    }

    pub fn cpu_pmu(&self) -> PathBuf {
        self.host("/sys/bus/event_source/devices/cpu")
    }

    pub fn lib_dirs(&self) -> Vec<PathBuf> {
        LIB_DIRS.iter().map(|d| self.host(d)).collect()
    }

    pub fn daemon_binaries(&self) -> Vec<PathBuf> {
        DAEMON_BINARIES.iter().map(|d| self.host(d)).collect()
    }
}

/// A fake host root in a new temporary directory, removed on drop (also when a test fails);
/// derefs to its [`Paths`].
#[cfg(test)]
pub struct FakeRoot {
    paths: Paths,
    _dir: tempfile::TempDir,
}

#[cfg(test)]
impl FakeRoot {
    /// `tag` names the directory (`vph-TAG-…`) for whoever looks into the temp dir meanwhile.
    pub fn new(tag: &str) -> FakeRoot {
        let dir = tempfile::Builder::new().prefix(&format!("vph-{tag}-")).tempdir().unwrap();
        FakeRoot { paths: Paths::new(dir.path()), _dir: dir }
    }
}

#[cfg(test)]
impl std::ops::Deref for FakeRoot {
    type Target = Paths;

    fn deref(&self) -> &Paths {
        &self.paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rerooting() {
        let p = Paths::new("/tmp/fake");
        assert_eq!(p.default_config(), PathBuf::from("/tmp/fake/etc/virt-perf-hook/config.json"));
        assert_eq!(p.state_file(), PathBuf::from("/tmp/fake/var/cache/libvirt/virt-perf-hook/state.json"));
        assert_eq!(Paths::new("/").boot_id(), PathBuf::from("/proc/sys/kernel/random/boot_id"));
        let moved = Paths::new("/").with_cache_dir("/tmp/c");
        assert_eq!(moved.state_file(), PathBuf::from("/tmp/c/state.json"));
        assert_eq!(moved.default_config(), PathBuf::from("/etc/virt-perf-hook/config.json"), "only the cache moves");
    }
}

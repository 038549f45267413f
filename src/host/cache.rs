//! The state file `/var/cache/libvirt/virt-perf-hook/state.json`: the detected libvirt version with the
//! identity of the file it came from, and the host probe keyed on the boot id.
//!
//! A warm run costs one small read of this file, one read of `boot_id` and one `stat` of the
//! version's source; no exec. Readers take no lock: writers serialise on `lock` with `flock` and
//! publish with `rename`, so a reader sees the old or the new file, never a torn one. A corrupt,
//! foreign or symlinked file is ignored and replaced (rename replaces a symlink, never writes
//! through it). Nothing is fsynced: a file lost in a crash is simply rebuilt.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::libc;

use crate::core::version::Version;
use crate::host::detect::Source;
use crate::host::probe;
use crate::support::fsutil::{self, Remedy, Untrusted};
use crate::support::paths::Paths;

/// Bumped when the layout changes; other values are ignored as foreign.
pub const FORMAT: u32 = 1;
/// The file is a few KiB; anything much larger is not ours.
const MAX_BYTES: u64 = 256 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub format: u32,
    pub version: Option<CachedVersion>,
    pub probe: Option<CachedProbe>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachedVersion {
    pub version: Version,
    pub source: Source,
    pub path: PathBuf,
    pub identity: Identity,
}

/// Which file a version was read from; a package upgrade changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
}

impl Identity {
    pub fn of(path: &Path) -> Option<Identity> {
        let m = std::fs::metadata(path).ok()?;
        Some(Identity { dev: m.dev(), ino: m.ino(), size: m.size(), mtime: m.mtime(), mtime_nsec: m.mtime_nsec() })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachedProbe {
    pub boot_id: String,
    pub results: probe::Results,
}

impl CachedVersion {
    /// `None` when still valid, else why not. A version that contradicts its own library file
    /// name (`libvirt.so.0.9000.0` recorded as 1.0.0) was not written by us: it is not believed.
    pub fn stale_reason(&self) -> Option<String> {
        if self.source == Source::Library {
            let named = self.path.file_name().and_then(|n| n.to_str()).and_then(crate::host::detect::parse_soname);
            if named != Some(self.version) {
                return Some(format!("cached version {} contradicts its library file {}", self.version, self.path.display()));
            }
        }
        match Identity::of(&self.path) {
            Some(id) if id == self.identity => None,
            Some(_) => Some(format!("{} changed", self.path.display())),
            None => Some(format!("{} is gone", self.path.display())),
        }
    }
}

impl CachedProbe {
    pub fn stale_reason(&self, boot_id: Option<&str>) -> Option<String> {
        match boot_id {
            None => return Some("boot id unreadable, so the probe cannot be tied to this boot".to_string()),
            Some(b) if b != self.boot_id => return Some("host rebooted since the probe".to_string()),
            Some(_) => {}
        }
        let complete = crate::core::events::CATALOG.iter().all(|e| self.results.contains_key(e.name));
        (!complete).then(|| "probe lacks events".to_string())
    }
}

/// The boot id, which keys the probe: another boot may have another kernel or CPU.
///
/// Read as PID 1 sees it (through `/proc/1/root`) where this process may, else as it sees it
/// itself. In a container whose boot id is a bind mount of its own (systemd-nspawn), a sandboxed
/// service (`ProtectKernelTunables=yes` re-mounts `/proc/sys`) sees the kernel's id while the hooks
/// libvirtd runs see the container's: each would take the other's probe for another boot and
/// probe again. PID 1's view is one value for the whole system, sandboxed or not, and it changes
/// with every kernel boot and every container start (a new container may have another seccomp
/// filter or devices; its libvirtd start refreshes the probe anyway). Where the id is not
/// overmounted (a host, KubeVirt's virt-launcher pod) both views are the kernel's.
pub fn boot_id(paths: &Paths) -> Option<String> {
    let read = |p: PathBuf| {
        let s = std::fs::read_to_string(p).ok()?;
        let s = s.trim();
        (!s.is_empty() && s.len() <= 64).then(|| s.to_string())
    };
    read(paths.host("/proc/1/root/proc/sys/kernel/random/boot_id")).or_else(|| read(paths.boot_id()))
}

/// What reading the state file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    Missing,
    /// Unreadable, corrupt, foreign or a symlink: ignored, and replaced on the next write.
    Ignored(String),
    /// The directory or file is open to others (owner, mode, symlinked dir): someone else may
    /// have written it, so it is ignored and never written; says what and how to fix it.
    Untrusted(String),
    Found(State),
}

impl Loaded {
    pub fn state(&self) -> State {
        match self {
            Loaded::Found(s) => s.clone(),
            _ => State { format: FORMAT, ..State::default() },
        }
    }
}

pub fn load(paths: &Paths) -> Loaded {
    let dir = paths.cache_dir();
    match fsutil::trusted_dir(&dir) {
        Ok(()) => {}
        Err(Untrusted::Missing) => return Loaded::Missing,
        Err(why @ (Untrusted::Symlink | Untrusted::Owner(_) | Untrusted::Writable(_))) => {
            return untrusted(&dir, &why, &fsutil::advice(&dir, &why, Remedy::Rebuild))
        }
        // Nothing can be read there, and writes fail on it (reported as unwritable).
        Err(why) => return Loaded::Ignored(format!("{} {why}", dir.display())),
    }
    let path = paths.state_file();
    match fsutil::read_trusted(&path, MAX_BYTES) {
        Ok(text) => parse(&text),
        Err(Untrusted::Missing) => Loaded::Missing,
        Err(why @ (Untrusted::Owner(_) | Untrusted::Writable(_))) => untrusted(&path, &why, &fsutil::advice(&path, &why, Remedy::Rebuild)),
        // A symlink or junk in our own trusted directory: replaced by the next write's rename.
        Err(why) => Loaded::Ignored(why.to_string()),
    }
}

fn untrusted(path: &Path, why: &Untrusted, fix: &str) -> Loaded {
    let msg = format!("{} {why}; not using or writing the cache ({fix})", path.display());
    crate::support::logging::log_once(log::Level::Warn, format!("cache {msg}"));
    Loaded::Untrusted(msg)
}

fn parse(text: &str) -> Loaded {
    let foreign = |f: Option<u64>| {
        Loaded::Ignored(match f {
            Some(f) => format!("foreign format {f}, expected {FORMAT}"),
            None => format!("foreign: no \"format\" number, expected format {FORMAT}"),
        })
    };
    match serde_json::from_str::<State>(text) {
        Ok(state) if state.format == FORMAT => Loaded::Found(state),
        Ok(state) => foreign(Some(u64::from(state.format))),
        // Parsed again only to tell a future layout (foreign) from a broken file (corrupt).
        Err(e) => match serde_json::from_str::<serde_json::Value>(text).map(|v| v.get("format").and_then(|f| f.as_u64())) {
            Ok(f) if f != Some(u64::from(FORMAT)) => foreign(f),
            _ => Loaded::Ignored(format!("corrupt: {e}")),
        },
    }
}

/// Why the state was not written. The tool works without a cache, only slower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotStored {
    /// Another process held the lock longer than [`limits::cache_lock`].
    Busy(String),
    /// The directory or the lock file is open to others (or a symlink): never written.
    Untrusted(String),
    /// Anything else: no such directory possible, no space, no permission.
    Unwritable(String),
}

impl std::fmt::Display for NotStored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotStored::Busy(m) | NotStored::Untrusted(m) | NotStored::Unwritable(m) => f.write_str(m),
        }
    }
}

/// Writes `state` atomically. Why it could not be is logged once per process and returned.
pub fn store(paths: &Paths, state: &State) -> Result<(), NotStored> {
    let result = write_locked(paths, state);
    if let Err(e) = &result {
        // Root can write anywhere it should: then the message itself (ENOSPC, a file in the
        // way) is the whole story.
        let hint = match e {
            NotStored::Unwritable(_) if !nix::unistd::geteuid().is_root() => " (run as root, or make the directory writable)",
            _ => "",
        };
        crate::support::logging::log_once(log::Level::Warn, format!("not caching host state: {e}; detection runs on every call{hint}"));
    }
    result
}

fn write_locked(paths: &Paths, state: &State) -> Result<(), NotStored> {
    let dir = paths.cache_dir();
    ensure_dir(&dir)?;
    let _guard = lock(&dir.join("lock"))?;
    let final_path = paths.state_file();
    let tmp = dir.join(format!(".state.json.{}", std::process::id()));
    let text = serde_json::to_string_pretty(state).map_err(|e| NotStored::Unwritable(format!("cannot encode state: {e}")))?;
    // Left over by a crashed writer whose pid came back; we hold the lock, so it is no one's.
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut f| f.write_all(format!("{text}\n").as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, &final_path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        NotStored::Unwritable(format!("cannot write {}: {e}", final_path.display()))
    })
}

/// Takes the writers' lock on `path`, which must be a trusted regular file (it is created 0600
/// when missing). Waits at most [`limits::cache_lock`]: a holder that keeps it longer is stuck or
/// hostile, and the caller goes on without the cache.
fn lock(path: &Path) -> Result<Flock<std::fs::File>, NotStored> {
    let p = path.display();
    // O_NONBLOCK: a FIFO planted there cannot stall the open.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => {
                let why = Untrusted::Symlink;
                NotStored::Untrusted(format!("{p} {why} ({})", fsutil::advice(path, &why, Remedy::Rebuild)))
            }
            _ => NotStored::Unwritable(format!("cannot open {p}: {e}")),
        })?;
    fsutil::trusted_open_file(&file).map_err(|why| match why {
        Untrusted::Io(..) => NotStored::Unwritable(format!("{p} {why}")),
        _ => NotStored::Untrusted(format!("{p} {why} ({})", fsutil::advice(path, &why, Remedy::Rebuild))),
    })?;
    let patience = crate::support::limits::cache_lock();
    let deadline = Instant::now() + patience;
    let mut nap = Duration::from_millis(1);
    let mut file = file;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(guard) => return Ok(guard),
            Err((f, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                file = f;
                std::thread::sleep(nap.min(deadline.saturating_duration_since(Instant::now())));
                nap = (nap * 2).min(Duration::from_millis(20));
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(NotStored::Busy(format!(
                    "{p} is held by another process (gave up after {} ms; see fuser -v {p})",
                    patience.as_millis()
                )))
            }
            Err((_, e)) => return Err(NotStored::Unwritable(format!("cannot lock {p}: {e}"))),
        }
    }
}

/// Makes an untrusted cache safe to rebuild, for `refresh`: a cache directory that is a symlink
/// or open to others is moved aside (within its trusted parent), removed, and created anew
/// (0700); an untrusted state or lock file in a trusted directory is removed. Nothing is ever
/// written into a directory others can write. Returns what was done, one line each.
pub fn repair(paths: &Paths) -> Result<Vec<String>, String> {
    let dir = paths.cache_dir();
    let d = dir.display();
    let mut done = Vec::new();
    if let Err(why @ (Untrusted::Symlink | Untrusted::Owner(_) | Untrusted::Writable(_))) = fsutil::trusted_dir(&dir) {
        let parent = dir.parent().ok_or_else(|| format!("{d} has no parent directory"))?;
        // In a parent others can write, the name could be re-pointed between our steps.
        fsutil::trusted_dir(parent).map_err(|p| format!("not repairing {d}: its parent {} {p}", parent.display()))?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let aside = parent.join(format!(".{name}.untrusted.{}", std::process::id()));
        std::fs::rename(&dir, &aside).map_err(|e| format!("cannot move {d} aside: {e}"))?;
        std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| format!("cannot create {d}: {e}"))?;
        let removed = match why {
            Untrusted::Symlink => std::fs::remove_file(&aside),
            _ => std::fs::remove_dir_all(&aside),
        };
        let tail = match removed {
            Ok(()) => "removed it".to_string(),
            Err(e) => format!("moved it to {} (cannot remove it: {e})", aside.display()),
        };
        done.push(format!("{d} {why}: {tail} and created it anew (mode 700)"));
    }
    if fsutil::trusted_dir(&dir).is_err() {
        return Ok(done);
    }
    for name in ["state.json", "lock"] {
        let path = dir.join(name);
        let why = match std::fs::symlink_metadata(&path) {
            Err(_) => continue,
            Ok(m) if m.file_type().is_symlink() => Untrusted::Symlink,
            Ok(m) if m.is_dir() => Untrusted::Directory,
            Ok(m) if !m.is_file() => Untrusted::NotRegular,
            Ok(m) => match fsutil::check_owner_mode(&m) {
                Ok(()) => continue,
                Err(why) => why,
            },
        };
        let removed = match why {
            Untrusted::Directory => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        removed.map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
        done.push(format!("{} {why}: removed it", path.display()));
    }
    Ok(done)
}

/// Creates the cache dir 0700 and refuses one that is a symlink or open to others: the hook
/// runs as root and trusts what it reads back.
fn ensure_dir(dir: &Path) -> Result<(), NotStored> {
    let unwritable = |what: &Path, e: std::io::Error| NotStored::Unwritable(format!("cannot create {}: {e}", what.display()));
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| unwritable(parent, e))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(unwritable(dir, e)),
    }
    fsutil::trusted_dir(dir).map_err(|why| match why {
        Untrusted::Symlink | Untrusted::Owner(_) | Untrusted::Writable(_) => {
            NotStored::Untrusted(format!("{} {why} ({})", dir.display(), fsutil::advice(dir, &why, Remedy::Rebuild)))
        }
        _ => NotStored::Unwritable(format!("{} {why}", dir.display())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_root(tag: &str) -> crate::support::paths::FakeRoot {
        crate::support::paths::FakeRoot::new(&format!("cache-{tag}"))
    }

    fn sample(paths: &Paths) -> State {
        let lib = paths.host("/usr/lib64/libvirt.so.0.9000.0");
        std::fs::create_dir_all(lib.parent().unwrap()).unwrap();
        std::fs::write(&lib, "").unwrap();
        let results = crate::core::events::CATALOG.iter().map(|e| (e.name.to_string(), None)).collect();
        State {
            format: FORMAT,
            version: Some(CachedVersion {
                version: Version::new(9, 0, 0),
                source: Source::Library,
                identity: Identity::of(&lib).unwrap(),
                path: lib,
            }),
            probe: Some(CachedProbe { boot_id: "b1".into(), results }),
        }
    }

    #[test]
    fn boot_id_is_pid_1s_view_where_readable() {
        let paths = fake_root("boot");
        let put = |rel: &str, id: &str| {
            let p = paths.host(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, id).unwrap();
        };
        assert_eq!(boot_id(&paths), None);
        put("/proc/sys/kernel/random/boot_id", "kernel\n");
        assert_eq!(boot_id(&paths).as_deref(), Some("kernel"), "own view when PID 1's is unreadable");
        put("/proc/1/root/proc/sys/kernel/random/boot_id", "container\n");
        assert_eq!(boot_id(&paths).as_deref(), Some("container"));
    }

    #[test]
    fn round_trip_and_invalidation() {
        let paths = fake_root("rt");
        assert_eq!(load(&paths), Loaded::Missing);
        let state = sample(&paths);
        store(&paths, &state).unwrap();
        let mode = std::fs::metadata(paths.cache_dir()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let Loaded::Found(got) = load(&paths) else { panic!("not found") };
        assert_eq!(got, state);
        let v = got.version.as_ref().unwrap();
        assert_eq!(v.stale_reason(), None, "hit");
        let p = got.probe.as_ref().unwrap();
        assert_eq!(p.stale_reason(Some("b1")), None);
        assert!(p.stale_reason(Some("b2")).unwrap().contains("rebooted"));
        assert!(p.stale_reason(None).unwrap().contains("boot id unreadable"));

        // A package upgrade rewrites the file (identity changes), or removes it.
        std::fs::write(&v.path, "new contents").unwrap();
        assert!(v.stale_reason().unwrap().contains("changed"));
        std::fs::remove_file(&v.path).unwrap();
        assert!(v.stale_reason().unwrap().contains("gone"));
    }

    #[test]
    fn a_version_contradicting_its_library_name_is_not_believed() {
        let paths = fake_root("contra");
        let mut state = sample(&paths);
        let v = state.version.as_mut().unwrap();
        assert_eq!(v.stale_reason(), None);
        v.version = Version::new(1, 0, 0);
        let why = v.stale_reason().expect("1.0.0 from libvirt.so.0.9000.0 believed");
        assert!(why.contains("contradicts") && why.contains("libvirt.so.0.9000.0"), "{why}");
        // Read back from disk too: a file that says so is stale, and the plan detects anew.
        store(&paths, &state).unwrap();
        let Loaded::Found(got) = load(&paths) else { panic!("not found") };
        assert!(got.version.unwrap().stale_reason().is_some());
        let cfg = crate::core::config::Config { enabled_perf_events: vec!["page_faults"], ..Default::default() };
        let a = crate::host::plan::assess(&paths, &cfg, crate::host::plan::Mode::Plan, None, crate::host::plan::CacheUse::ReadOnly);
        assert_eq!(a.detected.version, Some(Version::new(9, 0, 0)), "detected from the file name, not the cache");
        // A daemon version has no name to contradict.
        let mut d = sample(&paths).version.unwrap();
        (d.source, d.version) = (Source::Daemon, Version::new(1, 0, 0));
        assert_eq!(d.stale_reason(), None);
    }

    #[test]
    fn corrupt_foreign_and_symlinked_files_are_ignored_and_replaced() {
        let paths = fake_root("bad");
        let state = sample(&paths);
        store(&paths, &state).unwrap();
        let f = paths.state_file();
        for (text, want) in [
            ("{\"format\": 1, \"version\": ", "corrupt"),
            ("", "corrupt"),
            ("{\"format\": 99}", "foreign format 99, expected 1"),
            ("[1,2]", "foreign: no \"format\" number"),
            ("{\"format\": 1, \"version\": null, \"probe\": null, \"extra\": 1}", "corrupt"),
        ] {
            std::fs::write(&f, text).unwrap();
            match load(&paths) {
                Loaded::Ignored(why) => assert!(why.contains(want), "{text}: {why}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        store(&paths, &state).unwrap();
        assert_eq!(load(&paths), Loaded::Found(state.clone()));

        // A symlink at state.json is never read nor written through.
        let target = paths.root().join("target.json");
        std::fs::write(&target, "precious").unwrap();
        std::fs::remove_file(&f).unwrap();
        std::os::unix::fs::symlink(&target, &f).unwrap();
        assert_eq!(load(&paths), Loaded::Ignored("is a symlink".into()));
        store(&paths, &state).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
        assert!(!std::fs::symlink_metadata(&f).unwrap().file_type().is_symlink());
        assert_eq!(load(&paths), Loaded::Found(state));
    }

    #[test]
    fn open_dir_or_file_is_untrusted_and_not_written() {
        use std::os::unix::fs::PermissionsExt;
        let paths = fake_root("trust");
        let state = sample(&paths);
        store(&paths, &state).unwrap();
        let set = |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        set(&paths.state_file(), 0o666);
        match load(&paths) {
            Loaded::Untrusted(why) => assert!(why.contains("writable by group or others") && why.contains("rm -f "), "{why}"),
            other => panic!("{other:?}"),
        }
        set(&paths.state_file(), 0o644);
        assert_eq!(load(&paths), Loaded::Found(state.clone()));
        set(&paths.cache_dir(), 0o777);
        match load(&paths) {
            Loaded::Untrusted(why) => assert!(why.contains("rm -rf ") && !why.contains("chmod"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(store(&paths, &state), Err(NotStored::Untrusted(e)) if e.contains("rm -rf ")));
        assert_eq!(repair(&paths).unwrap().len(), 1);
        assert_eq!(std::fs::metadata(paths.cache_dir()).unwrap().mode() & 0o777, 0o700);
        store(&paths, &state).unwrap();
    }

    #[test]
    fn unusable_dir_is_an_error_not_a_panic() {
        let paths = fake_root("unw");
        // A file where the cache dir should be.
        std::fs::create_dir_all(paths.cache_dir().parent().unwrap()).unwrap();
        std::fs::write(paths.cache_dir(), "").unwrap();
        assert!(store(&paths, &State::default()).is_err());
        assert!(matches!(load(&paths), Loaded::Missing | Loaded::Ignored(_)));
    }
}

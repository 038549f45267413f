//! The libvirt version, found without ever connecting to libvirt (a hook that calls back into the
//! daemon deadlocks it): the config pin, else the library file name, else `<daemon> --version`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::core::version::Version;
use crate::support::fsutil;
use crate::support::paths::Paths;

/// Where a version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Pin,
    Library,
    Daemon,
    /// `virsh version --daemon` (define/apply); never cached.
    Virsh,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub version: Option<Version>,
    pub source: Source,
    /// The library file or daemon binary the version was read from.
    pub path: Option<PathBuf>,
}

impl Detected {
    pub fn pin(v: Version) -> Self {
        Detected { version: Some(v), source: Source::Pin, path: None }
    }

    pub fn reported(v: Version) -> Self {
        Detected { version: Some(v), source: Source::Virsh, path: None }
    }

    pub fn unknown() -> Self {
        Detected { version: None, source: Source::Unknown, path: None }
    }

    /// For messages and `Plan::version_source`.
    pub fn describe(&self) -> String {
        let path = self.path.as_deref().map(Path::display);
        match (self.source, path) {
            (Source::Pin, _) => "config pin".to_string(),
            (Source::Virsh, _) => "virsh version --daemon".to_string(),
            (Source::Library, Some(p)) => format!("library file {p}"),
            (Source::Daemon, Some(p)) => format!("{p} --version"),
            _ => "unknown".to_string(),
        }
    }
}

/// Detects the version from the host (library, then daemon); no pin, no cache.
pub fn detect(paths: &Paths) -> Detected {
    if let Some((v, p)) = from_library(paths) {
        return Detected { version: Some(v), source: Source::Library, path: Some(p) };
    }
    if let Some((v, p)) = from_daemon(paths) {
        return Detected { version: Some(v), source: Source::Daemon, path: Some(p) };
    }
    Detected::unknown()
}

/// `libvirt.so.0.AGE.REV` → AGE/1000 . AGE%1000 . REV (libtool's `-version-info` as libvirt
/// sets it). Anything else (`libvirt.so.0`, `libvirt-qemu.so.…`, two parts) is not a match.
pub fn parse_soname(name: &str) -> Option<Version> {
    let rest = name.strip_prefix("libvirt.so.0.")?;
    let (age, rev) = rest.split_once('.')?;
    let num = |s: &str| if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) { s.parse::<u32>().ok() } else { None };
    let (age, rev) = (num(age)?, num(rev)?);
    Some(Version::new(age / 1000, age % 1000, rev))
}

/// The highest `libvirt.so.0.AGE.REV` in the library dirs.
pub fn from_library(paths: &Paths) -> Option<(Version, PathBuf)> {
    let mut best: Option<(Version, PathBuf)> = None;
    for dir in fsutil::unique_dirs(paths.lib_dirs()) {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(v) = name.to_str().and_then(parse_soname) else { continue };
            if best.as_ref().is_none_or(|(b, _)| v > *b) {
                best = Some((v, entry.path()));
            }
        }
    }
    best
}

/// The version in `libvirtd (libvirt) 9.0.0` / `virtqemud (libvirt) 10.0.0`: the first word
/// of the first line that reads as `X.Y.Z`.
pub fn parse_version_output(out: &str) -> Option<Version> {
    let line = out.lines().find(|l| !l.trim().is_empty())?;
    line.split_whitespace().filter(|w| w.matches('.').count() == 2).find_map(|w| w.parse().ok())
}

/// `virtqemud --version`, else `libvirtd --version` (modular daemon first).
pub fn from_daemon(paths: &Paths) -> Option<(Version, PathBuf)> {
    paths.daemon_binaries().into_iter().filter(|p| fsutil::is_executable(p)).find_map(|p| {
        let out = run_version(&p)?;
        match parse_version_output(&out) {
            Some(v) => Some((v, p)),
            None => {
                log::debug!("{} --version printed no version: {}", p.display(), crate::support::error::one_line(&out));
                None
            }
        }
    })
}

/// Runs `bin --version` with a minimal environment and a deadline; its stdout is captured so
/// nothing reaches the hook's own stdout (libvirt reads that as the domain XML).
fn run_version(bin: &Path) -> Option<String> {
    let mut child = Command::new(bin)
        .arg("--version")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| log::debug!("cannot run {} --version: {e}", bin.display()))
        .ok()?;
    // A daemon binary must not stall a hook: it gets a bounded time to print its version.
    let limit = crate::support::limits::daemon_version();
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                log::warn!("{} --version did not finish within {}s; ignoring it", bin.display(), limit.as_secs());
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    let mut out = String::new();
    // The version line is short; a pipe buffer holds it even after the child exited.
    child.stdout.take()?.take(4096).read_to_string(&mut out).ok()?;
    status.success().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sonames() {
        assert_eq!(parse_soname("libvirt.so.0.9000.0"), Some(Version::new(9, 0, 0)));
        assert_eq!(parse_soname("libvirt.so.0.10010.0"), Some(Version::new(10, 10, 0)));
        assert_eq!(parse_soname("libvirt.so.0.11003.0"), Some(Version::new(11, 3, 0)));
        assert_eq!(parse_soname("libvirt.so.0.8000.2"), Some(Version::new(8, 0, 2)));
        for odd in [
            "libvirt.so.0",
            "libvirt.so.0.9000",
            "libvirt-qemu.so.0.9000.0",
            "libvirt.so.0.abc.0",
            "libvirt.so.0.9000.0.1",
            "libvirt.so.0.9000.",
            "libvirt.so.0..0",
            "libvirt.so.0.+9000.0",
            "libvirt.so.0.99999999999.0",
            "libvirt.so",
        ] {
            assert_eq!(parse_soname(odd), None, "{odd}");
        }
    }

    #[test]
    fn version_output() {
        assert_eq!(parse_version_output("libvirtd (libvirt) 9.0.0\n"), Some(Version::new(9, 0, 0)));
        assert_eq!(parse_version_output("virtqemud (libvirt) 10.10.0"), Some(Version::new(10, 10, 0)));
        assert_eq!(parse_version_output("\nlibvirtd (libvirt) 8.0.0\nextra 1.2.3\n"), Some(Version::new(8, 0, 0)));
        for bad in ["", "libvirtd (libvirt)", "garbage", "libvirtd version nine", "libvirtd 9.0"] {
            assert_eq!(parse_version_output(bad), None, "{bad}");
        }
    }

    #[test]
    fn library_wins_and_highest_is_taken() {
        let paths = crate::support::paths::FakeRoot::new("detect");
        assert_eq!(detect(&paths), Detected::unknown());
        let lib = paths.host("/usr/lib64");
        std::fs::create_dir_all(&lib).unwrap();
        for f in ["libvirt.so.0", "libvirt.so.0.9000.0", "libvirt.so.0.10010.0", "libvirt-qemu.so.0.11000.0"] {
            std::fs::write(lib.join(f), "").unwrap();
        }
        let d = detect(&paths);
        assert_eq!(d.version, Some(Version::new(10, 10, 0)));
        assert_eq!(d.source, Source::Library);
        assert_eq!(d.describe(), format!("library file {}", lib.join("libvirt.so.0.10010.0").display()));
    }
}

//! Reading files the root hook acts on. The config and the cache both decide what the hook adds
//! to every guest, so both are held to sshd's StrictModes standard: no symlink, a regular file,
//! owned by root or the caller, not writable by group or others.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Why a file or directory is not trusted (or could not be read).
#[derive(Debug)]
pub enum Untrusted {
    Missing,
    Symlink,
    Directory,
    NotRegular,
    NotDirectory,
    /// Owned by this uid, neither root nor the caller.
    Owner(u32),
    /// Writable by group or others; the permission bits.
    Writable(u32),
    /// The size in bytes.
    TooLarge(u64),
    NotUtf8,
    Io(Step, std::io::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Open,
    Stat,
    Read,
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Untrusted::Missing => write!(f, "does not exist"),
            Untrusted::Symlink => write!(f, "is a symlink"),
            Untrusted::Directory => write!(f, "is a directory"),
            Untrusted::NotRegular => write!(f, "is not a regular file"),
            Untrusted::NotDirectory => write!(f, "is not a directory"),
            Untrusted::Owner(uid) => write!(f, "is owned by uid {uid}, not root"),
            Untrusted::Writable(mode) => write!(f, "is writable by group or others (mode {mode:o})"),
            Untrusted::TooLarge(n) => write!(f, "is {n} bytes, too large"),
            Untrusted::NotUtf8 => write!(f, "is not UTF-8 text"),
            Untrusted::Io(step, e) => {
                let verb = match step {
                    Step::Open => "open",
                    Step::Stat => "stat",
                    Step::Read => "read",
                };
                write!(f, "cannot {verb}: {e}")
            }
        }
    }
}

/// Whose a file is, which decides how to make an untrusted one usable again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// The operator's own file (the config): fix its owner or mode, after checking it.
    Fix,
    /// A file the tool rebuilds (the cache): remove it. Fixing its owner or mode would adopt
    /// whatever someone else may have written there.
    Rebuild,
}

/// The one command that makes `path`, untrusted because of `why`, trusted again.
pub fn advice(path: &Path, why: &Untrusted, remedy: Remedy) -> String {
    let p = path.display();
    match (remedy, why) {
        (Remedy::Fix, Untrusted::Owner(_)) => format!("chown root {p}"),
        (Remedy::Fix, _) => format!("chmod go-w {p}"),
        (Remedy::Rebuild, _) if path.is_dir() && !matches!(why, Untrusted::Symlink) => {
            format!("remove it and rebuild: rm -rf {p} && virt-perf-hook refresh")
        }
        (Remedy::Rebuild, _) => format!("remove it and rebuild: rm -f {p} && virt-perf-hook refresh"),
    }
}

/// Owner and mode checks shared by files and directories.
pub fn check_owner_mode(m: &std::fs::Metadata) -> Result<(), Untrusted> {
    let euid = nix::unistd::geteuid().as_raw();
    if m.uid() != 0 && m.uid() != euid {
        return Err(Untrusted::Owner(m.uid()));
    }
    if m.mode() & 0o022 != 0 {
        return Err(Untrusted::Writable(m.mode() & 0o7777));
    }
    Ok(())
}

/// Reads `path` as text when it is a trusted regular file of at most `max_bytes`. Opened with
/// O_NOFOLLOW (no symlink) and O_NONBLOCK (a FIFO cannot stall the hook), checked with fstat
/// on the open descriptor, so what is checked is what is read.
pub fn read_trusted(path: &Path, max_bytes: u64) -> Result<String, Untrusted> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;

    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let fd = open(path, flags, Mode::empty()).map_err(|errno| match errno {
        nix::errno::Errno::ELOOP => Untrusted::Symlink,
        nix::errno::Errno::ENOENT => Untrusted::Missing,
        e => Untrusted::Io(Step::Open, std::io::Error::from(e)),
    })?;
    let file = std::fs::File::from(fd);
    let meta = trusted_open_file(&file)?;
    if meta.len() > max_bytes {
        return Err(Untrusted::TooLarge(meta.len()));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes + 1).read_to_end(&mut buf).map_err(|e| Untrusted::Io(Step::Read, e))?;
    // It grew after the fstat.
    if buf.len() as u64 > max_bytes {
        return Err(Untrusted::TooLarge(buf.len() as u64));
    }
    String::from_utf8(buf).map_err(|_| Untrusted::NotUtf8)
}

/// Whether the open `file` is a regular file owned by root or the caller and not writable by
/// group or others (fstat on the descriptor, so what is checked is what is used); its metadata.
pub fn trusted_open_file(file: &std::fs::File) -> Result<std::fs::Metadata, Untrusted> {
    let meta = file.metadata().map_err(|e| Untrusted::Io(Step::Stat, e))?;
    if meta.is_dir() {
        return Err(Untrusted::Directory);
    }
    if !meta.is_file() {
        return Err(Untrusted::NotRegular);
    }
    check_owner_mode(&meta)?;
    Ok(meta)
}

/// Whether `dir` is a real directory (not a symlink) owned by root or the caller and not
/// writable by group or others: only then is what others cannot have planted there.
pub fn trusted_dir(dir: &Path) -> Result<(), Untrusted> {
    let m = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Untrusted::Missing),
        Err(e) => return Err(Untrusted::Io(Step::Stat, e)),
    };
    if m.file_type().is_symlink() {
        return Err(Untrusted::Symlink);
    }
    if !m.is_dir() {
        return Err(Untrusted::NotDirectory);
    }
    check_owner_mode(&m)
}

/// A regular file with an execute bit (hook entries, daemon binaries).
pub fn is_executable_file(m: &std::fs::Metadata) -> bool {
    m.is_file() && m.mode() & 0o111 != 0
}

pub fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).map(|m| is_executable_file(&m)).unwrap_or(false)
}

/// `dirs` that exist, each once: on merged-/usr systems `/lib64` is `/usr/lib64`.
pub fn unique_dirs(dirs: Vec<std::path::PathBuf>) -> Vec<std::path::PathBuf> {
    let mut seen: Vec<(u64, u64)> = Vec::new();
    dirs.into_iter()
        .filter(|d| match std::fs::metadata(d) {
            Ok(m) if m.is_dir() && !seen.contains(&(m.dev(), m.ino())) => {
                seen.push((m.dev(), m.ino()));
                true
            }
            _ => false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn trust_rules() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        let set = |p: &Path, mode| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        set(&dir, 0o700);
        let f = dir.join("f");
        std::fs::write(&f, "abc").unwrap();
        set(&f, 0o644);
        assert_eq!(read_trusted(&f, 3).unwrap(), "abc");
        assert!(matches!(read_trusted(&f, 2), Err(Untrusted::TooLarge(3))));
        set(&f, 0o666);
        assert!(matches!(read_trusted(&f, 10), Err(Untrusted::Writable(0o666))));
        assert!(matches!(read_trusted(&dir.join("none"), 10), Err(Untrusted::Missing)));
        assert!(matches!(read_trusted(&dir, 10), Err(Untrusted::Directory)));
        let link = dir.join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(matches!(read_trusted(&link, 10), Err(Untrusted::Symlink)));
        assert!(trusted_dir(&dir).is_ok());
        assert!(matches!(trusted_dir(&f), Err(Untrusted::NotDirectory)));
        let dlink = dir.join("dlink");
        std::os::unix::fs::symlink(&dir, &dlink).unwrap();
        assert!(matches!(trusted_dir(&dlink), Err(Untrusted::Symlink)));
        set(&dir, 0o777);
        assert_eq!(trusted_dir(&dir).unwrap_err().to_string(), "is writable by group or others (mode 777)");
    }

    #[test]
    fn merged_usr_dirs_are_listed_once() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("usr/lib64")).unwrap();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib64", root.join("lib64")).unwrap();
        let dirs = ["usr/lib64", "usr/lib", "lib64", "missing"].map(|d| root.join(d)).to_vec();
        assert_eq!(unique_dirs(dirs), vec![root.join("usr/lib64"), root.join("usr/lib")]);
    }
}

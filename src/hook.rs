//! The libvirt hook protocol.
//!
//! libvirt runs `/etc/libvirt/hooks/qemu` and every executable in `qemu.d/` with
//! `<domain> <op> <subop> <extra>` and the domain XML on stdin, for every operation of every
//! guest. Only `migrate begin` and `restore begin` read the hook's stdout (the new XML; empty
//! means unchanged), so every other call exits at once without reading anything. A hook must
//! never call back into libvirt (it would deadlock), so nothing here runs virsh.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::{printable, Config, OnError};
use crate::error::{exit, Error, Result};
use crate::paths::Paths;
use crate::{cli, filter, host, logging};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Qemu,
    Daemon,
}

/// The hook a file name stands for: `.../qemu`, `.../qemu.d/<any>`, `.../daemon`, `.../daemon.d/<any>`.
pub fn kind_from_argv0(argv0: &Path) -> Option<Kind> {
    let name = argv0.file_name()?.to_str()?;
    let parent = argv0.parent().and_then(Path::file_name).and_then(|p| p.to_str());
    match (name, parent) {
        ("qemu", _) | (_, Some("qemu.d")) => Some(Kind::Qemu),
        ("daemon", _) | (_, Some("daemon.d")) => Some(Kind::Daemon),
        _ => None,
    }
}

/// Whether libvirt reads the hook's stdout for this operation.
pub fn rewrites(op: &str, subop: &str) -> bool {
    matches!(op, "migrate" | "restore") && subop == "begin"
}

/// Runs a hook call and returns the exit code.
pub fn run(kind: Kind, args: &[String], config_flag: Option<PathBuf>) -> i32 {
    let op = args.get(1).map(String::as_str).unwrap_or("");
    let subop = args.get(2).map(String::as_str).unwrap_or("");
    // The hot path: every lifecycle event of every guest lands here. Touch nothing.
    let wanted = match kind {
        Kind::Qemu => rewrites(op, subop),
        Kind::Daemon => matches!(op, "start" | "reload"),
    };
    if !wanted {
        return exit::OK;
    }
    crate::limits::enter_hook_mode();
    let paths = Paths::from_env();
    logging::init_hook(&paths);
    let config_path = cli::config_path(&paths, config_flag);
    let domain = args.first().map(String::as_str).unwrap_or("-");
    // How the domain is named in messages: control characters escaped, one line.
    let shown = printable(domain);
    let cfg = Config::load(&config_path);
    if kind == Kind::Daemon {
        // The version and probe do not depend on the config (only a pin): refresh them even
        // without one. Nothing here can fail the daemon.
        let pin = match &cfg {
            Ok(cfg) => cfg.libvirt_version,
            Err(e) => {
                log::warn!("daemon {op}: {e}; refreshing the cache anyway");
                None
            }
        };
        host::refresh(&paths, pin);
        log::info!("daemon {op}: cache refreshed");
        return exit::OK;
    }
    let on_error = cfg.as_ref().map(|c| c.on_error).unwrap_or(OnError::Pass);
    match cfg.and_then(|cfg| qemu_rewrite(&paths, &cfg, domain, op)) {
        Ok(()) => exit::OK,
        Err(e) if on_error == OnError::Pass => {
            log::error!("{shown} {op} {subop}: {e}; leaving the guest unchanged");
            exit::OK
        }
        Err(e) => {
            log::error!(target: logging::SYSLOG_ONLY, "{shown} {op} {subop}: {e}; aborting the operation (on_error: fail)");
            // libvirt shows this line to whoever started the operation.
            let _ = writeln!(std::io::stderr(), "virt-perf-hook: {shown} {op} {subop}: {e}");
            exit::FAILURE
        }
    }
}

fn qemu_rewrite(paths: &Paths, cfg: &Config, domain: &str, op: &str) -> Result<()> {
    let xml = cli::read_input(None)?;
    let result = filter::filter(paths, cfg, &xml, Some(domain))?;
    result.log(&format!("{op} begin: "));
    if let Some(new) = result.xml() {
        let mut out = std::io::stdout().lock();
        // One write of the whole document: libvirt must never see a partial XML.
        out.write_all(new.as_bytes()).and_then(|()| out.flush()).map_err(|e| Error::io("stdout", "write XML to", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv0_kinds() {
        assert_eq!(kind_from_argv0(Path::new("/etc/libvirt/hooks/qemu")), Some(Kind::Qemu));
        assert_eq!(kind_from_argv0(Path::new("/etc/libvirt/hooks/qemu.d/50-virt-perf-hook")), Some(Kind::Qemu));
        assert_eq!(kind_from_argv0(Path::new("/etc/libvirt/hooks/daemon")), Some(Kind::Daemon));
        assert_eq!(kind_from_argv0(Path::new("/etc/libvirt/hooks/daemon.d/x")), Some(Kind::Daemon));
        assert_eq!(kind_from_argv0(Path::new("/usr/bin/virt-perf-hook")), None);
        assert_eq!(kind_from_argv0(Path::new("virt-perf-hook")), None);
    }

    #[test]
    fn rewriting_ops() {
        assert!(rewrites("restore", "begin"));
        assert!(rewrites("migrate", "begin"));
        for (op, sub) in [("prepare", "begin"), ("start", "begin"), ("restore", "end"), ("started", "begin"), ("x", "begin")] {
            assert!(!rewrites(op, sub), "{op} {sub}");
        }
    }
}

//! The libvirt hook protocol.
//!
//! libvirt runs `/etc/libvirt/hooks/qemu` and every executable in `qemu.d/` with
//! `<domain> <op> <subop> <extra>` and the domain XML on stdin, for every operation of every
//! guest. Only `migrate begin` and `restore begin` read the hook's stdout (the new XML; empty
//! means unchanged), so every other call exits at once without reading anything. A hook must
//! never call back into libvirt (it would deadlock), so nothing here runs virsh.

use std::cell::Cell;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::cmd::{config_path, filter, read_input};
use crate::core::config::{Config, OnError};
use crate::support::text::printable;
use crate::host::plan;
use crate::support::error::{exit, Error, Result};
use crate::support::logging;
use crate::support::paths::Paths;

/// Which libvirt hook a call is: the qemu driver's or the daemon's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Qemu,
    Daemon,
}

/// The hook a file name stands for: `.../qemu`, `.../qemu.d/<any>`, `.../daemon`, `.../daemon.d/<any>`.
pub fn hook_from_argv0(argv0: &Path) -> Option<Hook> {
    let name = argv0.file_name()?.to_str()?;
    let parent = argv0.parent().and_then(Path::file_name).and_then(|p| p.to_str());
    match (name, parent) {
        ("qemu", _) | (_, Some("qemu.d")) => Some(Hook::Qemu),
        ("daemon", _) | (_, Some("daemon.d")) => Some(Hook::Daemon),
        _ => None,
    }
}

/// Whether libvirt reads the hook's stdout for this operation.
pub fn rewrites(op: &str, subop: &str) -> bool {
    matches!(op, "migrate" | "restore") && subop == "begin"
}

/// Runs a hook call and returns the exit code.
pub fn run(hook: Hook, args: &[String], config_flag: Option<PathBuf>) -> i32 {
    let op = args.get(1).map(String::as_str).unwrap_or("");
    let subop = args.get(2).map(String::as_str).unwrap_or("");
    // The hot path: every lifecycle event of every guest lands here. Touch nothing.
    let wanted = match hook {
        Hook::Qemu => rewrites(op, subop),
        Hook::Daemon => matches!(op, "start" | "reload"),
    };
    if !wanted {
        return exit::OK;
    }
    crate::support::limits::enter_hook_mode();
    let paths = Paths::from_env();
    logging::init_hook(&paths);
    let domain = args.first().map(String::as_str).unwrap_or("-");
    // How the domain is named in messages: control characters escaped, one line.
    let shown = printable(domain);
    // A panic is an internal error like any other: with on_error pass the guest goes on unchanged
    // (nothing is written before the rewrite is complete), so it must not abort the process.
    // The hook records it instead of printing Rust's multi-line report.
    std::panic::set_hook(Box::new(|info| record_panic(info.payload(), info.location())));
    let on_error = Cell::new(OnError::Pass);
    let done = std::panic::catch_unwind(AssertUnwindSafe(|| match hook {
        Hook::Daemon => {
            daemon_refresh(&paths, config_flag, op);
            Ok(())
        }
        Hook::Qemu => Config::load(&config_path(&paths, config_flag)).and_then(|cfg| {
            on_error.set(cfg.on_error);
            qemu_rewrite(&paths, &cfg, domain, op)
        }),
    }));
    let err = match done {
        Ok(Ok(())) => return exit::OK,
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("internal error ({})", take_panic()),
    };
    match (hook, on_error.get()) {
        (Hook::Daemon, _) => {
            // Nothing here can fail the daemon.
            log::error!("daemon {op}: {err}");
            exit::OK
        }
        (Hook::Qemu, OnError::Pass) => {
            log::error!("{shown} {op} {subop}: {err}; leaving the guest unchanged");
            exit::OK
        }
        (Hook::Qemu, OnError::Fail) => {
            log::error!(target: logging::SYSLOG_ONLY, "{shown} {op} {subop}: {err}; aborting the operation (on_error: fail)");
            // libvirt shows this line to whoever started the operation.
            let _ = writeln!(std::io::stderr(), "virt-perf-hook: {shown} {op} {subop}: {err}");
            exit::FAILURE
        }
    }
}

fn daemon_refresh(paths: &Paths, config_flag: Option<PathBuf>, op: &str) {
    // The version and probe do not depend on the config (only a pin): refresh them even
    // without one.
    let pin = match Config::load(&config_path(paths, config_flag)) {
        Ok(cfg) => cfg.libvirt_version,
        Err(e) => {
            log::warn!("daemon {op}: {e}; refreshing the cache anyway");
            None
        }
    };
    plan::refresh(paths, pin);
    log::info!("daemon {op}: cache refreshed");
}

/// The last panic's message and place, kept by the panic hook for the one-line report.
static PANIC: Mutex<Option<String>> = Mutex::new(None);

fn record_panic(payload: &(dyn std::any::Any + Send), place: Option<&std::panic::Location<'_>>) {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string());
    let place = place.map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
    if let Ok(mut last) = PANIC.lock() {
        *last = Some(crate::support::error::one_line(&format!("panic{place}: {msg}")));
    }
}

fn take_panic() -> String {
    PANIC.lock().ok().and_then(|mut p| p.take()).unwrap_or_else(|| "panic".to_string())
}

fn qemu_rewrite(paths: &Paths, cfg: &Config, domain: &str, op: &str) -> Result<()> {
    let xml = read_input(None)?;
    let result = filter::filter(paths, cfg, &xml, Some(domain))?;
    test_panic();
    result.log(&format!("{op} begin: "));
    if let Some(new) = result.xml() {
        let mut out = std::io::stdout().lock();
        // One write of the whole document: libvirt must never see a partial XML.
        out.write_all(new.as_bytes()).and_then(|()| out.flush()).map_err(|e| Error::io("stdout", "write XML to", e))?;
    }
    Ok(())
}

/// Tests force a panic in hook mode with `VIRT_PERF_HOOK_TEST_PANIC=1`, after the rewrite and
/// before any output; debug builds only, so the shipped binary has no such switch.
fn test_panic() {
    #[cfg(debug_assertions)]
    if std::env::var_os("VIRT_PERF_HOOK_TEST_PANIC").is_some_and(|v| v == "1") {
        panic!("forced by VIRT_PERF_HOOK_TEST_PANIC=1\nsecond line");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv0_kinds() {
        assert_eq!(hook_from_argv0(Path::new("/etc/libvirt/hooks/qemu")), Some(Hook::Qemu));
        assert_eq!(hook_from_argv0(Path::new("/etc/libvirt/hooks/qemu.d/50-virt-perf-hook")), Some(Hook::Qemu));
        assert_eq!(hook_from_argv0(Path::new("/etc/libvirt/hooks/daemon")), Some(Hook::Daemon));
        assert_eq!(hook_from_argv0(Path::new("/etc/libvirt/hooks/daemon.d/x")), Some(Hook::Daemon));
        assert_eq!(hook_from_argv0(Path::new("/usr/bin/virt-perf-hook")), None);
        assert_eq!(hook_from_argv0(Path::new("virt-perf-hook")), None);
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

//! Logging: `env_logger` on stderr for the CLI; syslog (`/dev/log`) plus stderr for hook runs,
//! because libvirt throws a successful hook's stderr away.

use std::io::Write;
use std::os::unix::net::UnixDatagram;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::support::paths::Paths;

/// CLI logging: warnings by default, `-v` info, `-vv` debug, `-q` errors only; `RUST_LOG` wins.
pub fn init_cli(verbosity: i8) {
    let level = match verbosity {
        i8::MIN..=-1 => LevelFilter::Error,
        0 => LevelFilter::Warn,
        1 => LevelFilter::Info,
        _ => LevelFilter::Debug,
    };
    let _ = env_logger::Builder::new()
        .filter_level(level)
        .parse_env("RUST_LOG")
        .format(|buf, rec| writeln!(buf, "virt-perf-hook: {}: {}", rec.level().as_str().to_lowercase(), rec.args()))
        .try_init();
}

/// Hook logging: info and above to syslog (facility daemon) and stderr.
pub fn init_hook(paths: &Paths) {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::Info);
    // Non-blocking: when syslog's queue is full the line is dropped rather than stalling the hook.
    let socket = UnixDatagram::unbound()
        .ok()
        .filter(|s| s.connect(paths.host("/dev/log")).is_ok() && s.set_nonblocking(true).is_ok());
    let logger = Box::new(HookLogger { socket, level });
    if log::set_boxed_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

struct HookLogger {
    socket: Option<UnixDatagram>,
    level: LevelFilter,
}

/// Log target for records that go to syslog but not stderr (where the caller writes its own
/// line, e.g. the one-line reason libvirt shows when the hook fails).
pub const SYSLOG_ONLY: &str = "syslog";

/// syslog facility "daemon".
const FACILITY_DAEMON: u8 = 3;

impl Log for HookLogger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= self.level
    }

    fn log(&self, rec: &Record<'_>) {
        if !self.enabled(rec.metadata()) {
            return;
        }
        let msg = crate::support::error::one_line(&rec.args().to_string());
        let severity = match rec.level() {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
            Level::Debug | Level::Trace => 7,
        };
        if let Some(sock) = &self.socket {
            let line = format!("<{}>virt-perf-hook[{}]: {msg}", FACILITY_DAEMON * 8 + severity, std::process::id());
            let _ = sock.send(line.as_bytes());
        }
        if rec.target() != SYSLOG_ONLY {
            let _ = writeln!(std::io::stderr(), "virt-perf-hook: {}: {msg}", rec.level().as_str().to_lowercase());
        }
    }

    fn flush(&self) {}
}

/// Messages [`log_once`] has logged since the start or the last [`forget_logged_once`].
static LOGGED_ONCE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Logs `msg` unless the same message was logged by this function before: the one warn-once
/// helper. What would otherwise repeat for every guest of a sweep, every event `watch` receives
/// or every retry (a configured event dropped, the cache's state, an unknown version) is said
/// once.
pub fn log_once(level: Level, msg: String) {
    let mut seen = LOGGED_ONCE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if seen.contains(&msg) {
        return;
    }
    // A bound, for a service that runs for months: forgetting only means saying it again.
    if seen.len() >= 256 {
        seen.clear();
    }
    log::log!(level, "{msg}");
    seen.push(msg);
}

/// Lets [`log_once`] say everything again (a new config: its diagnostics are news).
pub fn forget_logged_once() {
    LOGGED_ONCE.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
}

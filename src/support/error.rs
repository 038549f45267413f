//! The one error type. Every message is a single line that names the problem and, where there
//! is one, what to do about it.

use std::fmt;
use std::path::PathBuf;

/// Process exit codes, documented in `--help` and the man page.
pub mod exit {
    pub const OK: i32 = 0;
    /// Runtime failure (I/O, virsh, a `check` that found problems).
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const CONFIG: i32 = 3;
    /// The domain XML given was rejected (not a domain, malformed, too large, DOCTYPE).
    pub const BAD_XML: i32 = 4;
}

#[derive(Debug)]
pub enum Error {
    /// Bad command line.
    Usage(String),
    /// The config file is unusable; `path` names it.
    Config { path: PathBuf, msg: String },
    /// The domain XML was rejected.
    Xml(String),
    /// An I/O operation on `path` failed.
    Io { path: PathBuf, action: &'static str, source: std::io::Error },
    /// virsh (or another external command) failed; `code` is passed through as our exit code.
    Command { what: String, code: i32, msg: String },
    /// Anything else, already phrased for the operator.
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn config(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Config { path: path.into(), msg: msg.into() }
    }

    pub fn io(path: impl Into<PathBuf>, action: &'static str, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), action, source }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Config { .. } => exit::CONFIG,
            Error::Xml(_) => exit::BAD_XML,
            Error::Command { code, .. } if *code > 0 && *code < 256 => *code,
            _ => exit::FAILURE,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Error::Usage(m) => format!("{m} (see 'virt-perf-hook --help')"),
            Error::Config { path, msg } => format!("config {}: {msg}", path.display()),
            Error::Xml(m) => format!("domain XML rejected: {m}"),
            Error::Io { path, action, source } => {
                format!("cannot {action} {}: {source}", path.display())
            }
            Error::Command { what, msg, .. } => format!("{what}: {msg}"),
            Error::Other(m) => m.clone(),
        };
        // One line, always: libvirt shows a failing hook's stderr verbatim.
        f.write_str(&one_line(&text))
    }
}

impl std::error::Error for Error {}

/// Collapse whitespace runs containing newlines so a message is a single line.
pub fn one_line(s: &str) -> String {
    if !s.contains(['\n', '\r']) {
        return s.trim_end().to_string();
    }
    s.split(['\n', '\r']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line() {
        let e = Error::Command { what: "virsh define".into(), code: 1, msg: "error: a\n\nerror: b\n".into() };
        assert_eq!(e.to_string(), "virsh define: error: a error: b");
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Error::Usage("x".into()).exit_code(), exit::USAGE);
        assert_eq!(Error::config("/c", "x").exit_code(), exit::CONFIG);
        assert_eq!(Error::Xml("x".into()).exit_code(), exit::BAD_XML);
        let c = Error::Command { what: "v".into(), code: 300, msg: String::new() };
        assert_eq!(c.exit_code(), exit::FAILURE);
    }
}

//! A line of the `check` report. `host::mac` produces them and `cmd::report` the rest, so the
//! type lives below both.

/// How a line of the `check` report counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Something to fix: `check` exits non-zero.
    Problem,
    /// Worth knowing, nothing to fix.
    Note,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::support::text::fmt_serde_name(self, f)
    }
}

/// One line of the `check` report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub status: Status,
    /// The area: `config`, `cache`, `hook`, `apparmor`, …
    pub what: &'static str,
    pub message: String,
}

//! What this host supports: the libvirt version ([`detect`]), which events the kernel opens
//! ([`probe`]), both cached on disk ([`cache`]), and the [`plan`] made from them.

pub mod cache;
pub mod detect;
pub mod domstats;
pub mod mac;
pub mod plan;
pub mod probe;
pub mod resctrl;

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

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Problem => "problem",
            Status::Note => "note",
        }
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

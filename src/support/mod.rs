//! What every layer uses: the one error type, host paths (re-rooted in tests), trusted-file
//! reads, logging, text helpers and time limits.

pub mod error;
pub mod fsutil;
pub mod http;
pub mod limits;
pub mod logging;
pub mod paths;
pub mod text;

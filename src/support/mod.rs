//! What every layer uses: the one error type, host paths (re-rooted in tests), trusted-file
//! reads and logging.

pub mod error;
pub mod fsutil;
pub mod limits;
pub mod logging;
pub mod paths;

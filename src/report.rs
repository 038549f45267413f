//! The `events`, `check` and `refresh` commands (in progress).

use crate::cli::Ctx;
use crate::error::{Error, Result};

pub fn events(_ctx: &Ctx, _json: bool) -> Result<i32> {
    Err(Error::Other("events: not implemented yet".into()))
}

pub fn check(_ctx: &Ctx, _json: bool) -> Result<i32> {
    Err(Error::Other("check: not implemented yet".into()))
}

pub fn refresh(_ctx: &Ctx) -> Result<i32> {
    Err(Error::Other("refresh: not implemented yet".into()))
}

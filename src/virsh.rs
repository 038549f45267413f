//! The `define` and `apply` commands, which talk to libvirt through virsh (in progress).

use crate::cli::Ctx;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefineOpts {
    pub connect: Option<String>,
    pub validate: bool,
    /// A file path, or `-` for stdin.
    pub input: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOpts {
    pub connect: Option<String>,
    pub all: bool,
    pub live: bool,
    pub dry_run: bool,
    pub domains: Vec<String>,
}

pub fn define(_ctx: &Ctx, _o: &DefineOpts) -> Result<i32> {
    Err(Error::Other("define: not implemented yet".into()))
}

pub fn apply(_ctx: &Ctx, _o: &ApplyOpts) -> Result<i32> {
    Err(Error::Other("apply: not implemented yet".into()))
}

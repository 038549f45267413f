//! virt-perf-hook: give every libvirt/QEMU guest the operator's perf events.
//!
//! Layers, each using only those below it (nothing imports [`cli`]):
//! - [`cli`]: argv → a [`cmd::Command`](cmd) and its dispatch; the only front end;
//! - [`cmd`]: the commands (`filter`, the libvirt hooks, `define`/`apply`, the reports);
//! - [`libvirt`]: the libvirt client, the only code that runs virsh (time-bounded, batched,
//!   typed), beside `host` and never used by it (hook mode must not call virsh);
//! - [`host`]: what this host's libvirt and kernel support (version detection, cache, probe), the
//!   plan made from it, and whether AppArmor or SELinux lets libvirt run the hook;
//! - [`core`]: the config, the event catalog, the pure XML rewrite and its diff (no I/O);
//! - [`support`]: the error type, host paths, trusted-file reads, logging and the time limits on
//!   anything outside the tool.

pub mod cli;
pub(crate) mod cmd;
pub mod core;
pub(crate) mod host;
pub(crate) mod libvirt;
pub(crate) mod support;

pub use support::error::{Error, Result};

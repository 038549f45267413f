//! virt-perf-hook: give every libvirt/QEMU guest the operator's perf events.
//!
//! Modules by responsibility:
//! - [`config`]: the JSON config, strictly validated;
//! - [`events`]: the catalog of libvirt's 22 perf events;
//! - [`rewrite`]: the pure domain-XML rewrite;
//! - [`detect`], [`cache`], [`probe`], [`host`]: libvirt version, cached state, host probe, and the
//!   resulting plan of which events to add;
//! - [`hook`]: the libvirt qemu/daemon hook protocol;
//! - [`virsh`]: the `define`/`apply` commands that talk to libvirt through virsh;
//! - [`report`]: the `events` and `check` commands;
//! - [`mac`]: whether AppArmor and SELinux let libvirt run the hooks (for `check`);
//! - [`cli`]: argument parsing and dispatch.

pub mod cache;
pub mod cli;
pub mod config;
pub mod detect;
pub mod error;
pub mod events;
pub mod filter;
pub mod fsutil;
pub mod hook;
pub mod host;
pub mod logging;
pub mod mac;
pub mod paths;
pub mod probe;
pub mod report;
pub mod rewrite;
pub mod version;
pub mod virsh;

pub use error::{Error, Result};

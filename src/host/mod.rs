//! What this host supports: the libvirt version ([`detect`]), which events the kernel opens
//! ([`probe`]), both cached on disk ([`cache`]), and the [`plan`] made from them.

pub mod cache;
pub mod detect;
pub mod domstats;
pub mod mac;
pub mod plan;
pub mod probe;
pub mod resctrl;

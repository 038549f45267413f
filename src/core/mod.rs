//! The pure core: the config, the event catalog, resctrl monitors, libvirt versions and the
//! domain-XML rewrite.
//! Nothing here looks at the host; the config reads its own file through `support::fsutil`.

pub mod config;
pub mod delta;
pub mod diff;
pub mod events;
pub mod finding;
pub mod monitor;
pub mod resctrl;
pub mod rewrite;
pub mod version;

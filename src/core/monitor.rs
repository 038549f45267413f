//! What a resctrl monitor is, apart from where it goes in a guest's XML (`core::resctrl`): its
//! kinds, the removed perf events each stands in for, and a monitor-only tune taken out. The
//! rewrite's outcome and the host's plan name these; keeping them here, below both, is what lets
//! `core::resctrl` build on the rewrite without the rewrite importing it back.

use crate::core::version::Version;

/// The kind of resctrl monitor libvirt creates for a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Monitor {
    /// `<cachetune><monitor level='3'/>`: LLC occupancy (`cpu.cache.monitor.*` in domstats).
    Cache,
    /// `<memorytune><monitor/>`: memory bandwidth (`memory.bandwidth.monitor.*`).
    MemoryBandwidth,
}

/// The serde name: logs and tables say what the JSON says.
impl std::fmt::Display for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::support::text::fmt_serde_name(self, f)
    }
}

impl Monitor {
    /// The `<cputune>` child that holds it.
    pub fn element(self) -> &'static str {
        match self {
            Monitor::Cache => "cachetune",
            Monitor::MemoryBandwidth => "memorytune",
        }
    }

    /// The first libvirt that accepts the monitor: `<cachetune><monitor>` came with 4.10.0;
    /// `<memorytune><monitor>` with the memory bandwidth monitoring series released in 6.0.0
    /// (with `virsh domstats --memory`).
    pub fn since(self) -> Version {
        match self {
            Monitor::Cache => Version::new(4, 10, 0),
            Monitor::MemoryBandwidth => Version::new(6, 0, 0),
        }
    }
}

/// A perf event Linux removed and the resctrl feature that replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replacement {
    pub event: &'static str,
    /// The name in `/sys/fs/resctrl/info/L3_MON/mon_features`.
    pub feature: &'static str,
    /// The CPU flag (`/proc/cpuinfo`) behind it, for messages.
    pub cpu_flag: &'static str,
    pub monitor: Monitor,
}

pub const REPLACEMENTS: [Replacement; 3] = [
    Replacement { event: "cmt", feature: "llc_occupancy", cpu_flag: "cqm_occup_llc", monitor: Monitor::Cache },
    Replacement { event: "mbmt", feature: "mbm_total_bytes", cpu_flag: "cqm_mbm_total", monitor: Monitor::MemoryBandwidth },
    Replacement { event: "mbml", feature: "mbm_local_bytes", cpu_flag: "cqm_mbm_local", monitor: Monitor::MemoryBandwidth },
];

/// The resctrl replacement of a perf event, if it has one.
pub fn replacement(event: &str) -> Option<&'static Replacement> {
    REPLACEMENTS.iter().find(|r| r.event == event)
}

/// A monitor-only tune taken out of a guest because this host cannot have its monitor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RemovedTune {
    pub monitor: Monitor,
    /// Why the host cannot have it (the plan's reason).
    pub reason: String,
}

/// The summary parts for `removed`: one per kind, e.g. `removed <cachetune> monitor: why`
/// (`2 <cachetune> monitors` when a guest had more than one).
pub fn removed_summary(removed: &[RemovedTune]) -> Vec<String> {
    let mut out = Vec::new();
    for m in [Monitor::Cache, Monitor::MemoryBandwidth] {
        let of: Vec<&RemovedTune> = removed.iter().filter(|r| r.monitor == m).collect();
        let Some(first) = of.first() else { continue };
        let what = match of.len() {
            1 => format!("<{}> monitor", m.element()),
            n => format!("{n} <{}> monitors", m.element()),
        };
        out.push(format!("removed {what}: {}", first.reason));
    }
    out
}

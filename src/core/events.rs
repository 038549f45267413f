//! The catalog of libvirt's `<perf>` events: name, the libvirt that first accepts it, and the
//! perf_event_open(2) type/config libvirt opens for it (src/util/virperf.c).

use crate::core::version::Version;
use crate::support::text::closest;

/// How the host provides an event, which decides how it is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Intel CQM/MBM (RDT via perf): needs `/sys/devices/intel_cqm`, removed in Linux 4.14.
    /// The perf type is read from `/sys/devices/intel_cqm/type` at run time.
    Rdt,
    /// `PERF_TYPE_HARDWARE`: needs a CPU PMU the kernel exposes to this host.
    Hardware,
    /// `PERF_TYPE_SOFTWARE`: kernel counters, available almost everywhere.
    Software,
}

pub const PERF_TYPE_HARDWARE: u32 = 0;
pub const PERF_TYPE_SOFTWARE: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub name: &'static str,
    pub since: Version,
    pub kind: Kind,
    /// perf_event_attr.config; for RDT the type comes from sysfs.
    pub config: u64,
    pub description: &'static str,
}

impl Event {
    /// The perf_event_attr.type, when it is fixed (not RDT).
    pub fn perf_type(&self) -> Option<u32> {
        match self.kind {
            Kind::Hardware => Some(PERF_TYPE_HARDWARE),
            Kind::Software => Some(PERF_TYPE_SOFTWARE),
            Kind::Rdt => None,
        }
    }

    /// Why libvirt `v` rejects this event, or `None` when it accepts it.
    pub fn unsupported_by(&self, v: Version) -> Option<String> {
        if v < PERF_FLOOR {
            Some(format!("libvirt {v} has no <perf> support (needs {PERF_FLOOR})"))
        } else if v < self.since {
            Some(format!("needs libvirt {}, this host has {v}", self.since))
        } else {
            None
        }
    }
}

/// libvirt accepts no `<perf>` element at all before this version.
pub const PERF_FLOOR: Version = Version::new(2, 0, 0);

const fn ev(name: &'static str, since: Version, kind: Kind, config: u64, description: &'static str) -> Event {
    Event { name, since, kind, config, description }
}

const V1_3_3: Version = Version::new(1, 3, 3);
const V1_3_5: Version = Version::new(1, 3, 5);
const V2_3_0: Version = Version::new(2, 3, 0);
const V3_0_0: Version = Version::new(3, 0, 0);
const V3_2_0: Version = Version::new(3, 2, 0);

use Kind::{Hardware as H, Rdt as R, Software as S};

/// All events in libvirt's own order; new `<event>` elements are written in this order.
pub const CATALOG: [Event; 22] = [
    ev("cmt", V1_3_3, R, 1, "last level cache occupancy (Intel CMT)"),
    ev("mbmt", V1_3_5, R, 2, "total memory bandwidth (Intel MBM)"),
    ev("mbml", V1_3_5, R, 3, "local memory bandwidth (Intel MBM)"),
    ev("cpu_cycles", V2_3_0, H, 0, "CPU cycles"),
    ev("instructions", V2_3_0, H, 1, "instructions retired"),
    ev("cache_references", V2_3_0, H, 2, "cache references"),
    ev("cache_misses", V2_3_0, H, 3, "cache misses"),
    ev("branch_instructions", V3_0_0, H, 4, "branch instructions retired"),
    ev("branch_misses", V3_0_0, H, 5, "mispredicted branches"),
    ev("bus_cycles", V3_0_0, H, 6, "bus cycles"),
    ev("stalled_cycles_frontend", V3_0_0, H, 7, "stalled cycles in the instruction fetch frontend"),
    ev("stalled_cycles_backend", V3_0_0, H, 8, "stalled cycles in the instruction retire backend"),
    ev("ref_cpu_cycles", V3_0_0, H, 9, "CPU cycles not affected by frequency scaling"),
    ev("cpu_clock", V3_2_0, S, 0, "CPU clock (high-resolution per-CPU timer)"),
    ev("task_clock", V3_2_0, S, 1, "task clock (time the guest's threads ran)"),
    ev("page_faults", V3_2_0, S, 2, "page faults"),
    ev("context_switches", V3_2_0, S, 3, "context switches"),
    ev("cpu_migrations", V3_2_0, S, 4, "migrations of the guest's threads between CPUs"),
    ev("page_faults_min", V3_2_0, S, 5, "minor page faults"),
    ev("page_faults_maj", V3_2_0, S, 6, "major page faults"),
    ev("alignment_faults", V3_2_0, S, 7, "alignment faults"),
    ev("emulation_faults", V3_2_0, S, 8, "emulation faults"),
];

pub fn lookup(name: &str) -> Option<&'static Event> {
    CATALOG.iter().find(|e| e.name == name)
}

/// Position in the catalog, used to order new events.
pub fn index_of(name: &str) -> Option<usize> {
    CATALOG.iter().position(|e| e.name == name)
}

/// The catalog name closest to `name`, if it is close enough to be a likely typo.
pub fn suggest(name: &str) -> Option<&'static str> {
    closest(&name.to_ascii_lowercase().replace('-', "_"), CATALOG.iter().map(|e| e.name))
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_complete_and_unique() {
        for (i, e) in CATALOG.iter().enumerate() {
            assert_eq!(index_of(e.name), Some(i), "{} duplicated", e.name);
            assert!(e.since >= Version::new(1, 3, 3));
        }
        assert_eq!(lookup("cpu_cycles").unwrap().since, Version::new(2, 3, 0));
        assert_eq!(lookup("ref_cpu_cycles").unwrap().since, Version::new(3, 0, 0));
        assert_eq!(lookup("emulation_faults").unwrap().since, Version::new(3, 2, 0));
        assert_eq!(lookup("mbml").unwrap().kind, Kind::Rdt);
        assert!(lookup("CPU_CYCLES").is_none(), "names are case-sensitive");
    }

    #[test]
    fn version_gate() {
        let pf = lookup("page_faults").unwrap();
        assert_eq!(pf.unsupported_by(Version::new(3, 2, 0)), None);
        assert_eq!(pf.unsupported_by(Version::new(3, 0, 0)).unwrap(), "needs libvirt 3.2.0, this host has 3.0.0");
        assert!(lookup("cmt").unwrap().unsupported_by(Version::new(1, 3, 5)).unwrap().contains("no <perf> support"));
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("cpu_cycle"), Some("cpu_cycles"));
        assert_eq!(suggest("CPU_CYCLES"), Some("cpu_cycles"));
        assert_eq!(suggest("page-faults"), Some("page_faults"));
        assert_eq!(suggest("instruction"), Some("instructions"));
        assert_eq!(suggest("totally_unrelated"), None);
    }
}

//! What this host's libvirt and kernel support, turned into a plan: which configured events get
//! added and which are dropped, and why.

use crate::config::Config;
use crate::events::{self, Event, PERF_FLOOR};
use crate::paths::Paths;
use crate::version::Version;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dropped {
    pub event: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    /// The libvirt version the plan was made for, if known.
    pub version: Option<Version>,
    /// Where the version came from, for messages (`config pin`, `library file …`, …).
    pub version_source: String,
    /// Configured events to add, in catalog order.
    pub add: Vec<&'static str>,
    /// Configured events left out, with the reason.
    pub dropped: Vec<Dropped>,
}

/// Result of probing one event on this host: `Ok` when it opens, else why not.
pub type ProbeResult = Result<(), String>;

/// The pure core: filter the configured events by libvirt version and host support.
/// `probe` is `None` when probing is disabled (`host_probe: false`).
pub fn plan_with(
    cfg: &Config,
    version: Option<Version>,
    version_source: &str,
    probe: Option<&dyn Fn(&Event) -> ProbeResult>,
) -> Plan {
    let mut configured: Vec<&'static Event> =
        cfg.enabled_perf_events.iter().filter_map(|n| events::lookup(n)).collect();
    configured.sort_by_key(|e| events::index_of(e.name));
    let mut plan = Plan { version, version_source: version_source.to_string(), add: Vec::new(), dropped: Vec::new() };
    for ev in configured {
        let reason = match version {
            None => Some("libvirt version unknown (set \"libvirt_version\" in the config or install libvirt)".to_string()),
            Some(v) if v < PERF_FLOOR => Some(format!("libvirt {v} has no <perf> support (needs {PERF_FLOOR})")),
            Some(v) if v < ev.since => Some(format!("needs libvirt {}, this host has {v}", ev.since)),
            Some(_) => probe.and_then(|p| p(ev).err()).map(|why| format!("the host cannot open it: {why}")),
        };
        match reason {
            None => plan.add.push(ev.name),
            Some(reason) => plan.dropped.push(Dropped { event: ev.name, reason }),
        }
    }
    plan
}

/// The plan for this host. Until version detection lands, only a pinned version is known.
pub fn plan(_paths: &Paths, cfg: &Config) -> Plan {
    match cfg.libvirt_version {
        Some(v) => plan_with(cfg, Some(v), "config pin", None),
        None => plan_with(cfg, None, "unknown", None),
    }
}

/// Re-detect the version and re-probe the host, rewriting the cache (daemon hook, `refresh`).
/// Until the cache exists there is nothing to refresh.
pub fn refresh(_paths: &Paths, _cfg: &Config) -> crate::error::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(events: &[&'static str]) -> Config {
        Config { enabled_perf_events: events.to_vec(), ..Config::default() }
    }

    #[test]
    fn version_gates_events() {
        let c = cfg(&["page_faults", "cpu_cycles", "cmt"]);
        let p = plan_with(&c, Some(Version::new(3, 0, 0)), "pin", None);
        assert_eq!(p.add, vec!["cmt", "cpu_cycles"], "catalog order");
        assert_eq!(p.dropped.len(), 1);
        assert_eq!(p.dropped[0].event, "page_faults");
        assert_eq!(p.dropped[0].reason, "needs libvirt 3.2.0, this host has 3.0.0");

        let old = plan_with(&c, Some(Version::new(1, 3, 5)), "pin", None);
        assert!(old.add.is_empty());
        assert!(old.dropped.iter().all(|d| d.reason.contains("no <perf> support")));

        let unknown = plan_with(&c, None, "unknown", None);
        assert!(unknown.add.is_empty());
        assert_eq!(unknown.dropped.len(), 3);
    }

    #[test]
    fn probe_drops_unopenable() {
        let c = cfg(&["page_faults", "cpu_cycles"]);
        let probe = |e: &Event| if e.kind == events::Kind::Hardware { Err("ENOENT".to_string()) } else { Ok(()) };
        let p = plan_with(&c, Some(Version::new(9, 0, 0)), "pin", Some(&probe));
        assert_eq!(p.add, vec!["page_faults"]);
        assert_eq!(p.dropped[0].reason, "the host cannot open it: ENOENT");
    }
}

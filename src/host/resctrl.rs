//! Whether this host can give guests resctrl monitors in place of `cmt`, `mbmt` and `mbml`:
//! resctrl mounted at `/sys/fs/resctrl` (libvirt does not mount it), the feature listed in
//! `info/L3_MON/mon_features`, and a libvirt that accepts the monitor. `num_rmids` bounds how
//! many monitoring groups can exist at once. A few small sysfs reads, so not cached.

use crate::core::monitor::{Monitor, Replacement, REPLACEMENTS};
use crate::core::version::Version;
use crate::support::paths::Paths;

pub const MOUNT: &str = "/sys/fs/resctrl";
const MON_FEATURES: &str = "/sys/fs/resctrl/info/L3_MON/mon_features";
const NUM_RMIDS: &str = "/sys/fs/resctrl/info/L3_MON/num_rmids";

/// What `/sys/fs/resctrl` says.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Probe {
    /// The monitoring features, or why there are none.
    pub features: Option<Vec<String>>,
    /// Why `features` is `None`.
    pub why_not: Option<String>,
    pub num_rmids: Option<u64>,
}

impl Probe {
    /// What a host we cannot look at says.
    pub fn unknown(why: &str) -> Probe {
        Probe { features: None, why_not: Some(why.to_string()), num_rmids: None }
    }
}

pub fn probe(paths: &Paths) -> Probe {
    let read = |p: &str| std::fs::read_to_string(paths.host(p));
    if !paths.host("/sys/fs/resctrl/info").is_dir() {
        return Probe::unknown(&format!(
            "resctrl is not mounted at {MOUNT} (libvirt does not mount it: mount -t resctrl resctrl {MOUNT})"
        ));
    }
    if !paths.host("/sys/fs/resctrl/info/L3_MON").is_dir() {
        return Probe::unknown("no /sys/fs/resctrl/info/L3_MON: this CPU or kernel has no RDT monitoring");
    }
    let num_rmids = read(NUM_RMIDS).ok().and_then(|s| s.trim().parse().ok());
    match read(MON_FEATURES) {
        Ok(text) => Probe { features: Some(text.split_whitespace().map(str::to_string).collect()), why_not: None, num_rmids },
        Err(e) => Probe { features: None, why_not: Some(format!("cannot read {MON_FEATURES}: {e}")), num_rmids },
    }
}

/// One replaced event on this host: available, or why not.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MonitorState {
    pub event: &'static str,
    pub feature: &'static str,
    pub monitor: Monitor,
    pub available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The reason of a monitor the host has but whose libvirt is not known: not a reason to take
/// one out of a guest.
pub const VERSION_UNKNOWN: &str = "libvirt version unknown";

impl MonitorState {
    /// `cmt → resctrl llc_occupancy: available|unavailable (why)`.
    pub fn describe(&self) -> String {
        match &self.reason {
            None => format!("{} → resctrl {}: available", self.event, self.feature),
            Some(why) => format!("{} → resctrl {}: unavailable ({why})", self.event, self.feature),
        }
    }
}

/// Each replacement judged by the probe and the libvirt version.
pub fn judge(probe: &Probe, version: Option<Version>) -> Vec<MonitorState> {
    REPLACEMENTS.iter().map(|r| state(r, probe, version)).collect()
}

fn state(r: &Replacement, probe: &Probe, version: Option<Version>) -> MonitorState {
    let since = r.monitor.since();
    let reason = match (&probe.features, version) {
        (None, _) => Some(probe.why_not.clone().unwrap_or_else(|| "not probed".to_string())),
        (Some(f), _) if !f.iter().any(|x| x == r.feature) => Some(format!(
            "{MON_FEATURES} does not list {} (CPU flag {})",
            r.feature, r.cpu_flag
        )),
        (_, None) => Some(VERSION_UNKNOWN.to_string()),
        (_, Some(v)) if v < since => {
            Some(format!("<{}><monitor> needs libvirt {since}, this host has {v}", r.monitor.element()))
        }
        _ => None,
    };
    MonitorState { event: r.event, feature: r.feature, monitor: r.monitor, available: reason.is_none(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::paths::FakeRoot;

    fn mon(root: &Paths, features: &str) {
        let dir = root.host("/sys/fs/resctrl/info/L3_MON");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("mon_features"), features).unwrap();
        std::fs::write(dir.join("num_rmids"), "144\n").unwrap();
    }

    #[test]
    fn fake_roots() {
        let v = Some(Version::new(9, 0, 0));
        let none = FakeRoot::new("resctrl-none");
        let s = judge(&probe(&none), v);
        assert!(s.iter().all(|s| !s.available));
        assert!(s[0].describe().starts_with("cmt → resctrl llc_occupancy: unavailable (resctrl is not mounted at /sys/fs/resctrl"), "{}", s[0].describe());

        let llc = FakeRoot::new("resctrl-llc");
        mon(&llc, "llc_occupancy\n");
        let p = probe(&llc);
        assert_eq!(p.num_rmids, Some(144));
        let s = judge(&p, v);
        assert_eq!(s[0].describe(), "cmt → resctrl llc_occupancy: available");
        assert!(s[1].reason.as_deref().unwrap().contains("does not list mbm_total_bytes (CPU flag cqm_mbm_total)"));

        let all = FakeRoot::new("resctrl-all");
        mon(&all, "llc_occupancy\nmbm_total_bytes\nmbm_local_bytes\n");
        assert!(judge(&probe(&all), v).iter().all(|s| s.available));
        let old = judge(&probe(&all), Some(Version::new(5, 0, 0)));
        assert!(old[0].available);
        assert_eq!(old[2].reason.as_deref(), Some("<memorytune><monitor> needs libvirt 6.0.0, this host has 5.0.0"));
        assert!(!judge(&probe(&all), None)[0].available);
    }
}

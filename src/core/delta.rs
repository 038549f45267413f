//! A rewrite said as libvirt's atomic perf change: events to enable, events to disable, and what
//! cannot be said that way (XML surgery).
//!
//! `watch` and `apply` change a defined guest with `virsh perf --enable … --disable … --config`,
//! which touches only `<perf>` of the persistent config under libvirt's domain lock, so an
//! operator's concurrent define is never overwritten. What that call cannot express needs the
//! guarded define: names this libvirt rejects (even with `enabled='no'`), duplicate events or
//! extra `<perf>` blocks, and one policy case (below). Other rewrites (a later `<cputune>`
//! monitor, say) add a [`Surgery`] reason and take the same guarded path.
//!
//! Healing and `existing: respect`: `--disable` leaves `enabled='no'` where the byte rewrite
//! removes the event. For an event the guest carries on its own, `no` is what libvirt does
//! without the element, so disabling is healing. For a *configured* event the host cannot open,
//! a `no` would be kept by `existing: respect` once the guest moves to a host that can open it,
//! and the operator's event would never come back: that one is removed (surgery), as before.

use crate::core::config::Existing;
use crate::core::rewrite::Outcome;

/// Why a rewrite needs the guest's XML written back whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Surgery {
    /// A name this libvirt rejects in any state: only its removal helps.
    Rejected(String),
    /// A configured event this host cannot open, under `existing: respect` (see the module docs).
    ConfiguredUnusable(String),
    /// Duplicate `<event>`s or more than one `<perf>` block.
    Structure,
    /// Another rewrite's change outside `<perf>`.
    Other(String),
}

impl std::fmt::Display for Surgery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Surgery::Rejected(e) => write!(f, "{e} is rejected by this libvirt"),
            Surgery::ConfiguredUnusable(e) => write!(f, "configured {e} cannot open here (kept out, not disabled)"),
            Surgery::Structure => f.write_str("duplicate events or <perf> blocks"),
            Surgery::Other(why) => f.write_str(why),
        }
    }
}

/// What a guest's `<perf>` needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerfDelta {
    pub enable: Vec<String>,
    pub disable: Vec<String>,
    /// Empty when `virsh perf` can do all of it.
    pub surgery: Vec<Surgery>,
}

impl PerfDelta {
    /// The delta of a rewrite `outcome`. `rejected`: names this libvirt rejects; `configured`:
    /// the config's events.
    pub fn of(outcome: &Outcome, rejected: &[&str], configured: &[&str], existing: Existing) -> PerfDelta {
        let mut d = PerfDelta::default();
        d.enable.extend(outcome.added.iter().chain(&outcome.enabled).map(|e| e.to_string()));
        for e in &outcome.removed {
            if rejected.contains(&e.as_str()) {
                d.surgery.push(Surgery::Rejected(e.clone()));
            } else if existing == Existing::Respect && configured.contains(&e.as_str()) {
                d.surgery.push(Surgery::ConfiguredUnusable(e.clone()));
            } else {
                d.disable.push(e.clone());
            }
        }
        if outcome.merged_blocks > 0 || !outcome.removed_duplicates.is_empty() {
            d.surgery.push(Surgery::Structure);
        }
        if outcome.beyond_perf() {
            d.surgery.push(Surgery::Other("resctrl monitors go into <cputune>".into()));
        }
        if !outcome.monitors_removed.is_empty() {
            d.surgery.push(Surgery::Other("monitor-only resctrl tunes come out of <cputune>".into()));
        }
        d
    }

    /// Whether `virsh perf` says all of it.
    pub fn atomic(&self) -> bool {
        self.surgery.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.enable.is_empty() && self.disable.is_empty() && self.surgery.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rewrite::{rewrite, Removals};

    const DOM: &str = "<domain type='kvm'><name>a</name><perf><event name='cmt' enabled='yes'/><event name='cpu_clock' enabled='yes'/></perf></domain>";

    #[test]
    fn adds_and_heals_are_atomic() {
        let o = rewrite(DOM, &["page_faults"], &Removals { if_enabled: &["cmt"], always: &[] }, Existing::Respect).unwrap();
        let d = PerfDelta::of(&o, &[], &["page_faults"], Existing::Respect);
        assert_eq!(d, PerfDelta { enable: vec!["page_faults".into()], disable: vec!["cmt".into()], surgery: vec![] });
        assert!(d.atomic());
    }

    #[test]
    fn rejected_names_and_structure_need_surgery() {
        let o = rewrite(DOM, &[], &Removals { if_enabled: &[], always: &["cmt"] }, Existing::Respect).unwrap();
        assert_eq!(PerfDelta::of(&o, &["cmt"], &[], Existing::Respect).surgery, vec![Surgery::Rejected("cmt".into())]);
        let two = "<domain><name>a</name><perf><event name='cpu_clock' enabled='yes'/></perf><perf><event name='cpu_clock' enabled='yes'/></perf></domain>";
        let o = rewrite(two, &[], &Removals::default(), Existing::Respect).unwrap();
        assert_eq!(PerfDelta::of(&o, &[], &[], Existing::Respect).surgery, vec![Surgery::Structure]);
    }

    /// A guest healed on a host that cannot open a configured event, then migrated to one
    /// that can: under `respect` the event must come back there.
    #[test]
    fn migration_shaped_heal_then_capable_host() {
        let configured = ["cpu_clock"];
        // Host A cannot open cpu_clock.
        let a = rewrite(DOM, &[], &Removals { if_enabled: &["cpu_clock"], always: &[] }, Existing::Respect).unwrap();
        let d = PerfDelta::of(&a, &[], &configured, Existing::Respect);
        assert_eq!(d.surgery, vec![Surgery::ConfiguredUnusable("cpu_clock".into())], "removed, not disabled");
        // Host B can: the healed XML (event gone) gets it back enabled.
        let healed = a.xml.clone().unwrap();
        let b = rewrite(&healed, &["cpu_clock"], &Removals::default(), Existing::Respect).unwrap();
        assert_eq!(b.added, vec!["cpu_clock"]);
        // Had it been disabled instead, respect would have kept it off on host B.
        let disabled = DOM.replace("name='cpu_clock' enabled='yes'", "name='cpu_clock' enabled='no'");
        let kept = rewrite(&disabled, &["cpu_clock"], &Removals::default(), Existing::Respect).unwrap();
        assert_eq!(kept.kept_disabled, vec!["cpu_clock"]);
        // Under override a disable is fine: host B turns it back on.
        let d = PerfDelta::of(&a, &[], &configured, Existing::Override);
        assert_eq!((d.disable, d.surgery), (vec!["cpu_clock".to_string()], vec![]));
        let back = rewrite(&disabled, &["cpu_clock"], &Removals::default(), Existing::Override).unwrap();
        assert_eq!(back.enabled, vec!["cpu_clock"]);
    }

    /// A resctrl monitor goes into `<cputune>`, which `virsh perf` cannot write: guarded define.
    #[test]
    fn resctrl_monitors_need_surgery() {
        let o = Outcome { added: vec!["page_faults"], monitors: vec![crate::core::monitor::Monitor::Cache], ..Outcome::default() };
        let d = PerfDelta::of(&o, &[], &["page_faults"], Existing::Respect);
        assert!(!d.atomic());
        assert_eq!(d.surgery, vec![Surgery::Other("resctrl monitors go into <cputune>".into())]);
    }

    /// Taking a monitor-only tune out of `<cputune>` is beyond `virsh perf` too.
    #[test]
    fn removed_monitors_need_surgery() {
        use crate::core::monitor::{Monitor, RemovedTune};
        let gone = RemovedTune { monitor: Monitor::Cache, reason: "no resctrl".into() };
        let o = Outcome { xml: Some(String::new()), monitors_removed: vec![gone], ..Outcome::default() };
        let d = PerfDelta::of(&o, &[], &[], Existing::Respect);
        assert!(!d.atomic() && !d.is_empty());
        assert_eq!(d.surgery, vec![Surgery::Other("monitor-only resctrl tunes come out of <cputune>".into())]);
    }

    /// Log lines show odd names from a guest's XML escaped (issue 19): an empty one, a tab.
    #[test]
    fn odd_event_names_are_escaped_in_summaries() {
        let o = Outcome { removed: vec![String::new(), "a\tb".into()], removed_duplicates: vec!["x\ny".into()], ..Outcome::default() };
        assert_eq!(o.summary(), "removed duplicate x\\ny; removed '', a\\tb");
    }

    /// Namespaces as libvirt 9.0.0 reads them (checked with `virsh define` + `dumpxml` on the
    /// test driver): a prefixed `x:enabled` counts (the first `enabled` whatever its prefix); a
    /// `<perf>` or `<event>` in a foreign namespace is ignored, so it is neither changed nor
    /// counted, and the configured events are added in a `<perf>` of libvirt's own.
    #[test]
    fn namespaces_as_libvirt_reads_them() {
        let add = ["cpu_clock", "page_faults"];
        // (perf content, added, kept disabled, foreign part kept byte for byte)
        let cases: &[(&str, &[&str], &[&str], &str)] = &[
            ("<perf><event name='cpu_clock' x:enabled='yes'/></perf>", &["page_faults"], &[], ""),
            ("<perf><event name='cpu_clock' x:enabled='no' enabled='yes'/></perf>", &["page_faults"], &["cpu_clock"], ""),
            ("<perf xmlns='urn:f'><event name='cpu_clock' enabled='yes'/></perf>", &["cpu_clock", "page_faults"], &[], "<perf xmlns='urn:f'><event name='cpu_clock' enabled='yes'/></perf>"),
            ("<x:perf><x:event name='cpu_clock' enabled='yes'/></x:perf>", &["cpu_clock", "page_faults"], &[], "<x:perf><x:event name='cpu_clock' enabled='yes'/></x:perf>"),
            ("<perf><event xmlns='urn:f' name='cpu_clock' enabled='yes'/></perf>", &["cpu_clock", "page_faults"], &[], "<event xmlns='urn:f' name='cpu_clock' enabled='yes'/>"),
            ("<perf xmlns=''><event name='cpu_clock' enabled='yes'/></perf>", &["page_faults"], &[], ""),
        ];
        for (perf, added, kept, foreign) in cases {
            let xml = format!("<domain type='test' xmlns:x='urn:x'><name>a</name>{perf}</domain>");
            let o = rewrite(&xml, &add, &Removals::default(), Existing::Respect).unwrap();
            assert_eq!((o.added.as_slice(), o.kept_disabled.as_slice()), (*added, *kept), "{perf}");
            assert!(o.xml.as_deref().unwrap_or(&xml).contains(foreign), "{perf}: {:?}", o.xml);
        }
    }
}

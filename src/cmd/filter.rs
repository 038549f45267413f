//! The job shared by `filter`, `define` and the hook: config + host plan + XML → rewritten XML.

use std::collections::HashSet;

use super::{read_input, write_stdout, Ctx};
use crate::core::config::{Config, Unsupported};
use crate::support::text::printable;
use crate::core::diff;
use crate::core::resctrl;
use crate::core::rewrite::{Document, Outcome, Removals};
use crate::host::plan::{self, CacheUse, Plan, Target, Unusable};
use crate::support::error::{exit, Result};
use crate::support::paths::Paths;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterMode {
    Print,
    DryRun,
    Diff,
}

#[derive(Debug, Clone)]
pub struct Filtered {
    /// The domain name (from the hook's argument, else the XML's `<name>`).
    pub domain: String,
    /// `None` when `domains.include/exclude` left the domain alone.
    pub outcome: Option<Outcome>,
    pub plan: Plan,
    /// Events taken out of the XML because this host cannot have them, with why.
    pub removed: Vec<Unusable>,
}

impl Filtered {
    /// The new XML, when there is a change.
    pub fn xml(&self) -> Option<&str> {
        self.outcome.as_ref().and_then(|o| o.xml.as_deref())
    }

    /// Logs the one line describing this rewrite: a warning when events were dropped (the
    /// operator asked for something this host cannot give) or removed from the guest, else info.
    pub fn log(&self, context: &str) {
        let level = if self.notable() { log::Level::Warn } else { log::Level::Info };
        log::log!(level, "{context}{}", self.describe());
    }

    /// Whether configured events were dropped, the guest lost events or a monitor, or a wanted
    /// monitor could not be added: worth a warning.
    pub fn notable(&self) -> bool {
        let skipped = self.outcome.as_ref().is_some_and(|o| !o.monitors_skipped.is_empty() || !o.monitors_removed.is_empty());
        !self.plan.dropped.is_empty() || !self.removed.is_empty() || skipped
    }

    /// Why the event `name` was removed, for messages.
    pub fn why_removed(&self, name: &str) -> Option<String> {
        self.removed.iter().find(|u| u.event == name).map(|u| u.reason.clone())
    }

    /// One line for logs and `filter --dry-run`.
    pub fn describe(&self) -> String {
        let mut s = format!("domain '{}': ", printable(&self.domain));
        match &self.outcome {
            None => s.push_str("not selected by the config's domains include/exclude; unchanged"),
            Some(o) => s.push_str(&o.summary_with(|e| self.why_removed(e))),
        }
        for d in &self.plan.dropped {
            s.push_str(&format!("; dropped {} ({})", d.event, d.reason));
        }
        s
    }
}

/// Plans for this host and rewrites `xml`. `domain` overrides the XML's `<name>` (hook argv).
pub fn filter(paths: &Paths, cfg: &Config, xml: &str, domain: Option<&str>) -> Result<Filtered> {
    filter_for(paths, cfg, xml, domain, &Target::Local)
}

/// [`filter`] for the host `target` names (`define --connect` may point at another host).
pub fn filter_for(paths: &Paths, cfg: &Config, xml: &str, domain: Option<&str>, target: &Target) -> Result<Filtered> {
    filter_using(paths, cfg, xml, domain, target, CacheUse::ReadWrite)
}

/// [`filter_for`], writing the cache only with [`CacheUse::ReadWrite`] (`--dry-run` only reads it).
pub fn filter_using(paths: &Paths, cfg: &Config, xml: &str, domain: Option<&str>, target: &Target, use_: CacheUse) -> Result<Filtered> {
    let doc = Document::parse(xml)?;
    let domain = domain.or(doc.name()).unwrap_or_default().to_string();
    if !cfg.domains.selects(&domain) {
        log::info!("domain '{}' is not selected by the config's domains include/exclude", printable(&domain));
        return Ok(Filtered { domain, outcome: None, plan: Plan::default(), removed: Vec::new() });
    }
    let plan = plan::plan_with(paths, cfg, target, use_);
    rewrite_planned(cfg, plan, &doc, domain)
}

/// Rewrites a selected domain with `plan`: adds the plan's events and monitors and, unless the
/// config says `"unsupported": "keep"`, takes out what this host cannot have (events, and
/// monitor-only resctrl tunes).
pub fn rewrite_planned(cfg: &Config, plan: Plan, doc: &Document<'_>, domain: String) -> Result<Filtered> {
    let unusable = match cfg.unsupported {
        Unsupported::Remove => unusable_in(&plan, doc),
        Unsupported::Keep => Vec::new(),
    };
    let names = |rejected: bool| -> Vec<&str> {
        unusable.iter().filter(|u| u.rejected == rejected).map(|u| u.event.as_str()).collect()
    };
    let (always, if_enabled) = (names(true), names(false));
    let outcome = doc.rewrite(&plan.add, &Removals { if_enabled: &if_enabled, always: &always }, cfg.existing)?;
    // Replace, don't remove: configured events and events healed out of the guest that resctrl
    // can monitor get their monitor.
    let mut monitors = plan.monitors.clone();
    monitors.extend(outcome.removed.iter().filter_map(|e| plan.monitor_for(e)));
    // A monitor-only tune of a kind this host cannot have stops the guest's start here (libvirt:
    // "Resource control is not supported on this host"): it goes, like an unusable event. Not
    // for another host (`plan.remote`: its resctrl is unknown) nor with "unsupported": "keep".
    let unavailable = match cfg.unsupported {
        Unsupported::Remove => plan.monitors_unavailable(),
        Unsupported::Keep => Vec::new(),
    };
    let outcome = resctrl::apply_monitors(doc, outcome, &monitors, &unavailable)?;
    let gone: HashSet<&str> = outcome.removed.iter().map(String::as_str).collect();
    let removed = unusable.iter().filter(|u| gone.contains(u.event.as_str())).cloned().collect();
    Ok(Filtered { domain, outcome: Some(outcome), plan, removed })
}

/// The events in `doc` that make the guest fail here: enabled ones the host cannot open, and
/// names this libvirt rejects in any state. The first occurrence of a name decides (later ones
/// are duplicates, which the rewrite drops anyway).
pub fn unusable_in(plan: &Plan, doc: &Document<'_>) -> Vec<Unusable> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    for (name, enabled) in doc.perf_events() {
        if !seen.insert(name) {
            continue;
        }
        match plan.unusable(name) {
            Some(u) if u.rejected || enabled == Some("yes") => out.push(u),
            _ => {}
        }
    }
    out
}

pub fn run(ctx: &Ctx, mode: FilterMode, input: Option<&str>) -> Result<i32> {
    let cfg = ctx.load_config()?;
    let xml = read_input(input)?;
    let use_ = if mode == FilterMode::DryRun { CacheUse::ReadOnly } else { CacheUse::ReadWrite };
    let result = filter_using(&ctx.paths, &cfg, &xml, None, &Target::Local, use_)?;
    if result.notable() && mode != FilterMode::DryRun {
        result.log("");
    }
    match mode {
        FilterMode::Print => write_stdout(result.xml().unwrap_or(&xml))?,
        FilterMode::DryRun => write_stdout(&format!("{}\n", result.describe()))?,
        FilterMode::Diff => {
            let edits = result.outcome.as_ref().map_or(&[][..], |o| &o.edits[..]);
            write_stdout(&diff::unified(&xml, edits, input.unwrap_or("-")))?
        }
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::monitor::Monitor;
    use crate::host::resctrl::MonitorState;

    const GUEST: &str = "<domain type='kvm'>\n  <name>g</name>\n  <vcpu>2</vcpu>\n  <cputune>\n    <cachetune vcpus='0-1'>\n      <monitor level='3' vcpus='0-1'/>\n    </cachetune>\n  </cputune>\n</domain>\n";

    fn no_resctrl() -> Plan {
        let state = |event, monitor| MonitorState {
            event,
            feature: "f",
            monitor,
            available: false,
            reason: Some("resctrl is not mounted at /sys/fs/resctrl".into()),
        };
        Plan {
            resctrl: vec![state("cmt", Monitor::Cache), state("mbmt", Monitor::MemoryBandwidth), state("mbml", Monitor::MemoryBandwidth)],
            ..Plan::default()
        }
    }

    fn run(cfg: &Config, plan: Plan, xml: &str) -> Filtered {
        rewrite_planned(cfg, plan, &Document::parse(xml).unwrap(), "g".into()).unwrap()
    }

    #[test]
    fn monitor_only_tune_goes_here_only() {
        let f = run(&Config::default(), no_resctrl(), GUEST);
        assert_eq!(f.xml().unwrap(), "<domain type='kvm'>\n  <name>g</name>\n  <vcpu>2</vcpu>\n  <cputune>\n  </cputune>\n</domain>\n");
        assert!(f.notable());
        assert_eq!(f.describe(), "domain 'g': removed <cachetune> monitor: resctrl is not mounted at /sys/fs/resctrl");
        assert_eq!(run(&Config::default(), no_resctrl(), f.xml().unwrap()).xml(), None, "idempotent");

        // Another host (define --connect, migration): its resctrl decides.
        let remote = Plan { remote: true, ..no_resctrl() };
        let f = run(&Config::default(), remote, GUEST);
        assert_eq!(f.xml(), None);
        assert_eq!(f.describe(), "domain 'g': unchanged");
        // "unsupported": "keep": the operator keeps what the host cannot have.
        let keep = Config { unsupported: Unsupported::Keep, ..Config::default() };
        assert_eq!(run(&keep, no_resctrl(), GUEST).xml(), None);
        // Not judged (no resctrl states): nothing to go by.
        assert_eq!(run(&Config::default(), Plan::default(), GUEST).xml(), None);
    }
}

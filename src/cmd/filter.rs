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

    /// Whether configured events were dropped or the guest lost events: worth a warning.
    pub fn notable(&self) -> bool {
        let skipped = self.outcome.as_ref().is_some_and(|o| !o.monitors_skipped.is_empty());
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

/// Rewrites a selected domain with `plan`: adds the plan's events and, unless the config says
/// `"unsupported": "keep"`, takes out what this host cannot have.
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
    let outcome = resctrl::add_monitors(doc, outcome, &monitors)?;
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

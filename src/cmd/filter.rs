//! The job shared by `filter`, `define` and the hook: config + host plan + XML → rewritten XML.

use std::io::Write;

use super::{read_input, Ctx};
use crate::core::config::{printable, Config};
use crate::core::diff;
use crate::core::rewrite::{Document, Outcome};
use crate::host::plan::{self, Plan, Target};
use crate::support::error::{exit, Error, Result};
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
}

impl Filtered {
    /// The new XML, when there is a change.
    pub fn xml(&self) -> Option<&str> {
        self.outcome.as_ref().and_then(|o| o.xml.as_deref())
    }

    /// Logs the one line describing this rewrite: a warning when events were dropped (the
    /// operator asked for something this host cannot give), else info.
    pub fn log(&self, context: &str) {
        let level = if self.plan.dropped.is_empty() { log::Level::Info } else { log::Level::Warn };
        log::log!(level, "{context}{}", self.describe());
    }

    /// One line for logs and `filter --dry-run`.
    pub fn describe(&self) -> String {
        let mut s = format!("domain '{}': ", printable(&self.domain));
        match &self.outcome {
            None => s.push_str("not selected by the config's domains include/exclude; unchanged"),
            Some(o) => s.push_str(&o.summary()),
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
    let doc = Document::parse(xml)?;
    let domain = domain.or(doc.name()).unwrap_or_default().to_string();
    if !cfg.domains.selects(&domain) {
        log::info!("domain '{}' is not selected by the config's domains include/exclude", printable(&domain));
        return Ok(Filtered { domain, outcome: None, plan: Plan::default() });
    }
    let plan = plan::plan_for(paths, cfg, target);
    let outcome = doc.rewrite(&plan.add, cfg.existing)?;
    Ok(Filtered { domain, outcome: Some(outcome), plan })
}

pub fn run(ctx: &Ctx, mode: FilterMode, input: Option<&str>) -> Result<i32> {
    let cfg = ctx.load_config()?;
    let xml = read_input(input)?;
    let result = filter(&ctx.paths, &cfg, &xml, None)?;
    if !result.plan.dropped.is_empty() && mode != FilterMode::DryRun {
        result.log("");
    }
    let mut out = std::io::stdout().lock();
    let written = match mode {
        FilterMode::Print => out.write_all(result.xml().unwrap_or(&xml).as_bytes()),
        FilterMode::DryRun => writeln!(out, "{}", result.describe()),
        FilterMode::Diff => {
            let edits = result.outcome.as_ref().map_or(&[][..], |o| &o.edits[..]);
            out.write_all(diff::unified(&xml, edits, input.unwrap_or("-")).as_bytes())
        }
    };
    written.map(|()| exit::OK).map_err(|e| Error::io("stdout", "write to", e))
}

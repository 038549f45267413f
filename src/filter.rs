//! The job shared by `filter`, `define` and the hook: config + host plan + XML → rewritten XML.

use crate::config::{printable, Config};
use crate::error::Result;
use crate::host::{self, Plan, Target};
use crate::paths::Paths;
use crate::rewrite::{Document, Outcome};

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
    let plan = host::plan_for(paths, cfg, target);
    let outcome = doc.rewrite(&plan.add, cfg.existing)?;
    Ok(Filtered { domain, outcome: Some(outcome), plan })
}

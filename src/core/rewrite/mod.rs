//! The domain-XML rewrite: a pure function from XML text, the events to add and the events to
//! remove to XML text.
//!
//! The document is tokenized (quick-xml) only to learn the byte spans of `<domain>`'s direct
//! children and of every `<perf>/<event>`; the output is the input with a few splices applied.
//! So everything outside `<perf>` — comments, CDATA, foreign namespaces, entity escapes, quote
//! style, attribute order, whitespace — is kept byte for byte, and an input that already has
//! what is asked for comes back unchanged (`Outcome::xml` is `None`).
//!
//! Three parts, split where the work changes kind: `scan` reads the document (input checks,
//! spans, the limits libvirt has); this module decides what changes (which events stay, go,
//! move or are added); `splice` writes it in the document's own layout. resctrl splices
//! `<cputune>` with the same `Style` and `splice`, so they are shared rather than private here.

use std::collections::HashSet;
use std::ops::Range;

use crate::core::config::Existing;
use crate::core::events;
use crate::support::error::Result;

mod scan;
mod splice;
#[cfg(test)]
mod tests;

pub use scan::line_col;
pub(crate) use splice::{splice, Style};
use splice::event_xml;

/// libvirt itself refuses larger documents long before this; the cap bounds our memory.
pub const MAX_XML_BYTES: usize = 16 << 20;
/// The deepest element libvirt accepts is at level 257, `<domain>` being level 1: libxml2 (which
/// libvirt parses with) allows 256 ancestors. Measured with `virsh define` on libvirt 9.0.0.
pub const MAX_DEPTH: usize = 257;

/// A replacement of a byte range of the input.
type Edit = (Range<usize>, String);

#[derive(Debug, Clone, PartialEq, Eq)]
struct PerfEvent {
    name: String,
    enabled: Option<String>,
    span: Range<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PerfBlock {
    span: Range<usize>,
    /// `<perf/>`: no content and no end tag.
    self_closing: bool,
    /// Start of `</perf>` (equals `span.end` when self-closing).
    close_start: usize,
    events: Vec<PerfEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Child {
    name: String,
    span: Range<usize>,
}

/// A parsed domain document: the spans the rewrite needs, borrowed text kept alongside.
#[derive(Debug)]
pub struct Document<'a> {
    text: &'a str,
    name: Option<String>,
    uuid: Option<String>,
    children: Vec<Child>,
    perf: Vec<PerfBlock>,
    domain_start: usize,
    /// Start of `</domain>`.
    domain_close: usize,
    /// The quote around the document's first attribute value, if it has any attribute.
    quote: Option<char>,
}

/// What a rewrite did. `xml` is `None` when the input already matched (nothing to write).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub xml: Option<String>,
    /// Events newly added with `enabled='yes'`.
    pub added: Vec<&'static str>,
    /// Events that were present but not `yes`, now `yes` (`existing: override`, or no valid state).
    pub enabled: Vec<&'static str>,
    /// Events left at `enabled='no'` because of `existing: respect`.
    pub kept_disabled: Vec<&'static str>,
    /// Extra `<perf>` blocks merged into the first.
    pub merged_blocks: usize,
    /// Duplicate `<event>` elements removed (libvirt rejects duplicates).
    pub removed_duplicates: Vec<String>,
    /// What produced `xml`: byte ranges of the input and their replacements, sorted, not
    /// overlapping (`filter --diff` shows just these).
    pub edits: Vec<(Range<usize>, String)>,
    /// Events taken out because of [`Removals`], document order.
    pub removed: Vec<String>,
    /// resctrl monitors added (`core::resctrl`). Not empty means the change touches more than
    /// `<perf>` (`<cputune>`): it needs a whole-XML define, `virsh perf` cannot make it.
    pub monitors: Vec<crate::core::monitor::Monitor>,
    /// Why a wanted monitor was not added (the guest's layout cannot take it safely).
    pub monitors_skipped: Vec<String>,
    /// Monitor-only `<cachetune>`/`<memorytune>` taken out (`core::resctrl`): this host cannot
    /// have them and libvirt would not start the guest. Also a change outside `<perf>`.
    pub monitors_removed: Vec<crate::core::monitor::RemovedTune>,
}

/// Events to take out of `<perf>`. The rewrite only matches names; why an event goes is the
/// caller's business (the host plan). An event named here is never added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removals<'r> {
    /// Removed when `enabled='yes'` (libvirt would open it): events this host cannot open. An
    /// entry with `enabled='no'` stays, so the guest's own choice survives a trip to a host
    /// that can open it.
    pub if_enabled: &'r [&'r str],
    /// Removed whatever `enabled` says: names this libvirt rejects outright.
    pub always: &'r [&'r str],
}

impl<'r> Removals<'r> {
    /// The names as sets: a hostile document may name thousands of events.
    fn sets(&self) -> (HashSet<&'r str>, HashSet<&'r str>) {
        (self.if_enabled.iter().copied().collect(), self.always.iter().copied().collect())
    }
}

impl Outcome {
    pub fn changed(&self) -> bool {
        self.xml.is_some()
    }

    /// The change touches more than `<perf>` (a resctrl monitor in `<cputune>`).
    pub fn beyond_perf(&self) -> bool {
        !self.monitors.is_empty()
    }

    /// One-line summary for logs and `--dry-run`.
    pub fn summary(&self) -> String {
        self.summary_with(|_| None)
    }

    /// [`Outcome::summary`], with `why(event)` after each removed event when it says something.
    pub fn summary_with(&self, why: impl Fn(&str) -> Option<String>) -> String {
        let mut parts = Vec::new();
        let list = |v: &[&str]| v.join(",");
        if !self.added.is_empty() {
            parts.push(format!("added {}", list(&self.added)));
        }
        if !self.enabled.is_empty() {
            parts.push(format!("enabled {}", list(&self.enabled)));
        }
        if !self.kept_disabled.is_empty() {
            parts.push(format!("kept disabled {} (existing: respect)", list(&self.kept_disabled)));
        }
        if self.merged_blocks > 0 {
            parts.push(format!("merged {} extra <perf> block(s)", self.merged_blocks));
        }
        if !self.removed_duplicates.is_empty() {
            // Bounded: a hostile document may repeat an event a million times.
            let d: Vec<String> = self.removed_duplicates.iter().take(8).map(|e| shown(e)).collect();
            let more = self.removed_duplicates.len().saturating_sub(d.len());
            let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
            parts.push(format!("removed duplicate {}{tail}", d.join(",")));
        }
        if !self.removed.is_empty() {
            // Bounded like the duplicates.
            let each: Vec<String> = self
                .removed
                .iter()
                .take(8)
                .map(|e| match why(e) {
                    Some(w) => format!("{} ({w})", shown(e)),
                    None => shown(e),
                })
                .collect();
            let more = self.removed.len().saturating_sub(each.len());
            let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
            parts.push(format!("removed {}{tail}", each.join(", ")));
        }
        if !self.monitors.is_empty() {
            let names: Vec<String> = self.monitors.iter().map(|m| m.to_string()).collect();
            parts.push(format!("added resctrl monitor {}", names.join(",")));
        }
        for why in &self.monitors_skipped {
            parts.push(format!("no resctrl monitor: {why}"));
        }
        parts.extend(crate::core::monitor::removed_summary(&self.monitors_removed));
        if parts.is_empty() {
            "unchanged".to_string()
        } else {
            parts.join("; ")
        }
    }
}

/// An event name from a guest's XML as a log line shows it: control characters escaped, an
/// empty name as `''`.
fn shown(name: &str) -> String {
    if name.is_empty() {
        "''".to_string()
    } else {
        crate::support::text::printable(name)
    }
}

/// Parse `xml`, then add `add` (catalog names, any order) following the `existing` policy and
/// take out `remove`.
pub fn rewrite(xml: &str, add: &[&'static str], remove: &Removals<'_>, existing: Existing) -> Result<Outcome> {
    Document::parse(xml)?.rewrite(add, remove, existing)
}

impl<'a> Document<'a> {
    /// Tokenize and check the document; see the module docs for what is rejected.
    pub fn parse(text: &'a str) -> Result<Document<'a>> {
        scan::parse(text)
    }

    /// The domain's `<name>`, when present.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The domain's `<uuid>`, when present (as written; not checked).
    pub fn uuid(&self) -> Option<&str> {
        self.uuid.as_deref()
    }

    /// Names of the events present in `<perf>` with their `enabled` value, document order.
    pub fn perf_events(&self) -> Vec<(&str, Option<&str>)> {
        self.perf.iter().flat_map(|b| &b.events).map(|e| (e.name.as_str(), e.enabled.as_deref())).collect()
    }

    /// The document's text, as given.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// [`rewrite`] of the parsed document: the wanted events in catalog order, present ones
    /// kept, fixed or moved into the first `<perf>`, new ones appended, then the edits spliced.
    pub fn rewrite(&self, add: &[&'static str], remove: &Removals<'_>, existing: Existing) -> Result<Outcome> {
        let (if_enabled, always) = remove.sets();
        let removes = |name: &str, enabled: Option<&str>| {
            always.contains(name) || (enabled == Some("yes") && if_enabled.contains(name))
        };
        let mut want: Vec<&'static str> =
            add.iter().copied().filter(|n| !if_enabled.contains(n) && !always.contains(n)).collect();
        want.sort_by_key(|n| events::index_of(n).unwrap_or(usize::MAX));
        want.dedup();

        let style = Style::detect(self);
        let mut out = Outcome::default();
        let present = self.present(&want, removes, existing, &style, &mut out);
        let mut edits = present.merged;
        let mut first_edits = present.first_edits;

        let new: Vec<&'static str> = want.iter().copied().filter(|w| !present.seen.contains(w)).collect();
        out.added = new.clone();
        let mut lines: Vec<String> = present.moved;
        lines.extend(new.iter().map(|n| event_xml(n, &style)));

        match self.perf.first() {
            // Removal left nothing: no empty <perf/> behind (it would mean nothing to libvirt).
            Some(first) if lines.is_empty() && present.first_kept == 0 && !out.removed.is_empty() => {
                edits.push((style.whole_lines(first.span.clone()), String::new()));
            }
            Some(first) => {
                edits.append(&mut first_edits);
                if !lines.is_empty() {
                    edits.push(self.append_to_block(first, &lines, &style));
                }
            }
            None if !lines.is_empty() => edits.push(self.new_block(&lines, &style)),
            None => {}
        }

        if edits.is_empty() {
            return Ok(out);
        }
        edits.sort_by_key(|(r, _)| (r.start, r.end));
        out.xml = Some(splice(self.text, &edits));
        out.edits = edits;
        Ok(out)
    }

    /// Walks the events already in `<perf>`, in document order: the first occurrence of a name
    /// wins, later ones are duplicates; an event `removes` names goes; the others stay, made
    /// `enabled='yes'` when wanted (see [`make_yes`]), and move into the first block from later
    /// ones. Notes all of it in `out`.
    fn present(
        &self,
        want: &[&'static str],
        removes: impl Fn(&str, Option<&str>) -> bool,
        existing: Existing,
        style: &Style<'_>,
        out: &mut Outcome,
    ) -> Present<'_> {
        let mut p =
            Present { seen: HashSet::new(), first_edits: Vec::new(), first_kept: 0, moved: Vec::new(), merged: Vec::new() };
        for (bi, block) in self.perf.iter().enumerate() {
            for ev in &block.events {
                let duplicate = !p.seen.insert(&ev.name);
                let removed = !duplicate && removes(&ev.name, ev.enabled.as_deref());
                if duplicate {
                    out.removed_duplicates.push(ev.name.clone());
                } else if removed {
                    out.removed.push(ev.name.clone());
                }
                if duplicate || removed {
                    if bi == 0 {
                        p.first_edits.push((style.whole_lines(ev.span.clone()), String::new()));
                    }
                    continue;
                }
                let yes = make_yes(want, ev, existing, out);
                if bi == 0 {
                    p.first_kept += 1;
                    if yes {
                        p.first_edits.push((ev.span.clone(), event_xml(&ev.name, style)));
                    }
                } else {
                    p.moved.push(if yes { event_xml(&ev.name, style) } else { self.text[ev.span.clone()].to_string() });
                }
            }
            if bi > 0 {
                out.merged_blocks += 1;
                p.merged.push((style.whole_lines(block.span.clone()), String::new()));
            }
        }
        p
    }
}

/// What [`Document::present`] decided about the events already in `<perf>`.
struct Present<'d> {
    /// Every event name met; the first occurrence won.
    seen: HashSet<&'d str>,
    /// Edits inside the first `<perf>`, dropped when the whole block goes.
    first_edits: Vec<Edit>,
    /// Events of the first `<perf>` that stay.
    first_kept: usize,
    /// Raw text of events that move from later `<perf>` blocks into the first.
    moved: Vec<String>,
    /// Deletions of the later `<perf>` blocks (merged into the first).
    merged: Vec<Edit>,
}

/// Whether the kept event `ev` is to become `enabled='yes'`: wanted and not `yes` yet, unless
/// it is `no` under `existing: respect`. Notes the decision in `out`.
fn make_yes(want: &[&'static str], ev: &PerfEvent, existing: Existing, out: &mut Outcome) -> bool {
    let wanted = want.iter().find(|w| **w == ev.name).copied();
    let yes = match (wanted, ev.enabled.as_deref()) {
        (Some(_), Some("yes")) | (None, _) => false,
        (Some(w), Some("no")) if existing == Existing::Respect => {
            out.kept_disabled.push(w);
            false
        }
        (Some(_), _) => true,
    };
    if yes {
        out.enabled.push(wanted.unwrap_or_default());
    }
    yes
}

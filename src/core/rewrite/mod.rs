//! The domain-XML rewrite: a pure function from XML text, the events to add and the events to
//! remove to XML text.
//!
//! The document is tokenized (quick-xml) only to learn the byte spans of `<domain>`'s direct
//! children and of every `<perf>/<event>`; the output is the input with a few splices applied.
//! So everything outside `<perf>` — comments, CDATA, foreign namespaces, entity escapes, quote
//! style, attribute order, whitespace — is kept byte for byte, and an input that already has
//! what is asked for comes back unchanged (`Outcome::xml` is `None`).

use std::collections::HashSet;
use std::ops::Range;

use quick_xml::events::{BytesStart, Event as XmlEvent};
use quick_xml::Reader;

use crate::core::config::Existing;
use crate::core::events;
use crate::support::error::{Error, Result};

/// libvirt itself refuses larger documents long before this; the cap bounds our memory.
pub const MAX_XML_BYTES: usize = 16 << 20;
/// The deepest element libvirt accepts is at level 257, `<domain>` being level 1: libxml2 (which
/// libvirt parses with) allows 256 ancestors. Measured with `virsh define` on libvirt 9.0.0.
pub const MAX_DEPTH: usize = 257;

/// Elements after which a new `<perf>` goes when there is no `<devices>` (libvirt's order).
const BEFORE_PERF: &[&str] = &["on_poweroff", "on_reboot", "on_crash", "on_lockfailure", "pm"];

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
    pub monitors: Vec<crate::core::resctrl::Monitor>,
    /// Why a wanted monitor was not added (the guest's layout cannot take it safely).
    pub monitors_skipped: Vec<String>,
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
            let names: Vec<&str> = self.monitors.iter().map(|m| m.as_str()).collect();
            parts.push(format!("added resctrl monitor {}", names.join(",")));
        }
        for why in &self.monitors_skipped {
            parts.push(format!("no resctrl monitor: {why}"));
        }
        if parts.is_empty() {
            "unchanged".to_string()
        } else {
            parts.join("; ")
        }
    }
}

/// Whether an element declares a default namespace of its own (`<perf xmlns='urn:x'>`): libvirt
/// reads only `<perf>`/`<event>` in no namespace and ignores such a one (checked on 9.0.0), so
/// the rewrite leaves it alone as it leaves `<x:perf>`.
fn foreign(e: &BytesStart<'_>) -> bool {
    e.attributes().with_checks(false).flatten().any(|a| a.key.as_ref() == b"xmlns" && !a.value.is_empty())
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
        if text.len() > MAX_XML_BYTES {
            return Err(Error::Xml(format!(
                "input is {} bytes, more than the {} MiB limit",
                text.len(),
                MAX_XML_BYTES >> 20
            )));
        }
        if text.trim().is_empty() {
            return Err(Error::Xml("input is empty".into()));
        }
        if let Some(pos) = text.find(|c: char| (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r')) {
            return Err(Error::Xml(format!(
                "control character U+{:04X} at {} (not allowed in XML)",
                text[pos..].chars().next().map_or(0, |c| c as u32),
                line_col(text, pos)
            )));
        }
        // quick-xml skips one byte-order mark without counting it; the scanner strips the first
        // itself, so a second would shift every offset. It is stray text before the root anyway.
        if text.strip_prefix('\u{feff}').unwrap_or(text).starts_with('\u{feff}') {
            return Err(Error::Xml("more than one byte-order mark before <domain>".into()));
        }
        Scanner::new(text).run()
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
        let mut edits: Vec<(Range<usize>, String)> = Vec::new();
        // Edits inside the first <perf>, dropped when the whole block goes.
        let mut first_edits: Vec<(Range<usize>, String)> = Vec::new();
        let mut first_kept = 0usize;

        // First occurrence of each event name wins; later ones are removed.
        let mut seen: HashSet<&str> = HashSet::new();
        // Raw text of events that move from later <perf> blocks into the first.
        let mut moved: Vec<String> = Vec::new();
        for (bi, block) in self.perf.iter().enumerate() {
            for ev in &block.events {
                let duplicate = !seen.insert(&ev.name);
                let removed = !duplicate && removes(&ev.name, ev.enabled.as_deref());
                if duplicate {
                    out.removed_duplicates.push(ev.name.clone());
                } else if removed {
                    out.removed.push(ev.name.clone());
                }
                if duplicate || removed {
                    if bi == 0 {
                        first_edits.push((style.whole_lines(ev.span.clone()), String::new()));
                    }
                    continue;
                }
                let wanted = want.iter().find(|w| **w == ev.name).copied();
                let make_yes = match (wanted, ev.enabled.as_deref()) {
                    (Some(_), Some("yes")) | (None, _) => false,
                    (Some(w), Some("no")) if existing == Existing::Respect => {
                        out.kept_disabled.push(w);
                        false
                    }
                    (Some(_), _) => true,
                };
                if make_yes {
                    out.enabled.push(wanted.unwrap_or_default());
                }
                if bi == 0 {
                    first_kept += 1;
                    if make_yes {
                        first_edits.push((ev.span.clone(), event_xml(&ev.name, &style)));
                    }
                } else {
                    moved.push(if make_yes { event_xml(&ev.name, &style) } else { self.text[ev.span.clone()].to_string() });
                }
            }
            if bi > 0 {
                out.merged_blocks += 1;
                edits.push((style.whole_lines(block.span.clone()), String::new()));
            }
        }

        let new: Vec<&'static str> = want.iter().copied().filter(|w| !seen.contains(w)).collect();
        out.added = new.clone();
        let mut lines: Vec<String> = moved;
        lines.extend(new.iter().map(|n| event_xml(n, &style)));

        match self.perf.first() {
            // Removal left nothing: no empty <perf/> behind (it would mean nothing to libvirt).
            Some(first) if lines.is_empty() && first_kept == 0 && !out.removed.is_empty() => {
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

    /// The document's text, as given.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// How the document is laid out (indentation, quotes, line ends), for other splicers.
    pub(crate) fn style(&self) -> Style<'a> {
        Style::detect(self)
    }

    /// Edit that adds `lines` at the end of the existing first `<perf>`.
    fn append_to_block(&self, block: &PerfBlock, lines: &[String], style: &Style) -> (Range<usize>, String) {
        let perf_indent = style.indent_before(block.span.start);
        let child_indent = block
            .events
            .first()
            .and_then(|e| style.indent_before(e.span.start))
            .or_else(|| perf_indent.as_ref().map(|i| format!("{i}{}", style.unit)));
        if block.self_closing {
            return (block.span.clone(), render_block(lines, perf_indent.as_deref(), style));
        }
        let close_line = style.line_start_if_indented(block.close_start);
        match (child_indent, close_line) {
            // `</perf>` on its own line: add whole lines just before it.
            (Some(ci), Some(ls)) => {
                let text: String = lines.iter().map(|l| format!("{ci}{l}{}", style.nl)).collect();
                (ls..ls, text)
            }
            // `<perf>` content on one line, e.g. `<perf><event …/></perf>`: stay on one line.
            _ => (block.close_start..block.close_start, lines.concat()),
        }
    }

    /// Edit that inserts a new `<perf>` block where libvirt would put it.
    fn new_block(&self, lines: &[String], style: &Style) -> (Range<usize>, String) {
        if let Some(dev) = self.children.iter().find(|c| c.name == "devices") {
            return beside(dev.span.start, dev.span.start, Side::Before, lines, style);
        }
        let after = self.children.iter().rev().find(|c| BEFORE_PERF.contains(&c.name.as_str()));
        if let Some(prev) = after {
            return beside(prev.span.end, prev.span.start, Side::After, lines, style);
        }
        // No anchor: last child of <domain>.
        match style.line_start_if_indented(self.domain_close) {
            Some(ls) => {
                let ind = style.child_indent.clone().unwrap_or_else(|| {
                    format!("{}{}", style.indent_before(self.domain_start).unwrap_or_default(), style.unit)
                });
                let block = render_block(lines, Some(&ind), style);
                (ls..ls, format!("{ind}{block}{}", style.nl))
            }
            None => (self.domain_close..self.domain_close, render_block(lines, None, style)),
        }
    }
}

enum Side {
    Before,
    After,
}

/// Edit that inserts a new block at `at`, just before or after the sibling element starting at
/// `sibling`, indented like it (or on the same line when the sibling is not on its own line).
fn beside(at: usize, sibling: usize, side: Side, lines: &[String], style: &Style) -> (Range<usize>, String) {
    let text = match style.indent_before(sibling) {
        Some(ind) => {
            let block = render_block(lines, Some(&ind), style);
            match side {
                Side::Before => format!("{block}{}{ind}", style.nl),
                Side::After => format!("{}{ind}{block}", style.nl),
            }
        }
        None => render_block(lines, None, style),
    };
    (at..at, text)
}

/// `<perf>` with `lines` inside: one per line at `indent`+unit, or all on one line when the
/// surrounding text is not indented.
fn render_block(lines: &[String], indent: Option<&str>, style: &Style) -> String {
    match indent {
        Some(ind) => {
            let nl = style.nl;
            let body: String = lines.iter().map(|l| format!("{ind}{}{l}{nl}", style.unit)).collect();
            format!("<perf>{nl}{body}{ind}</perf>")
        }
        None => format!("<perf>{}</perf>", lines.concat()),
    }
}

fn event_xml(name: &str, style: &Style) -> String {
    let q = style.quote;
    format!("<event name={q}{name}{q} enabled={q}yes{q}/>")
}

/// `text` with `edits` (sorted, not overlapping; equal starts keep their order) applied.
pub(crate) fn splice(text: &str, edits: &[(Range<usize>, String)]) -> String {
    let mut xml = String::with_capacity(text.len() + edits.iter().map(|(_, t)| t.len()).sum::<usize>());
    let mut at = 0;
    for (range, new) in edits {
        debug_assert!(range.start >= at, "overlapping edits");
        let start = range.start.max(at);
        xml.push_str(&text[at..start]);
        xml.push_str(new);
        at = range.end.max(at);
    }
    xml.push_str(&text[at..]);
    xml
}

/// How the input is laid out, so additions look like they belong.
pub(crate) struct Style<'a> {
    text: &'a str,
    pub(crate) nl: &'static str,
    pub(crate) unit: String,
    pub(crate) quote: char,
    /// Indentation of `<domain>`'s children when they sit on their own lines.
    child_indent: Option<String>,
}

impl<'a> Style<'a> {
    fn detect(doc: &Document<'a>) -> Style<'a> {
        let text = doc.text;
        let nl = if text.contains("\r\n") { "\r\n" } else { "\n" };
        let mut style = Style { text, nl, unit: String::new(), quote: '\'', child_indent: None };
        let domain_indent = style.indent_before(doc.domain_start).unwrap_or_default();
        style.child_indent = doc.children.iter().find_map(|c| style.indent_before(c.span.start));
        style.unit = match &style.child_indent {
            Some(ci) if ci.len() > domain_indent.len() && ci.starts_with(&domain_indent) => {
                ci[domain_indent.len()..].to_string()
            }
            _ => "  ".to_string(),
        };
        // libvirt writes single quotes; follow the document when it uses double quotes.
        style.quote = doc.quote.unwrap_or('\'');
        style
    }

    /// The whitespace between the start of `pos`'s line and `pos`, if that is all there is.
    pub(crate) fn indent_before(&self, pos: usize) -> Option<String> {
        let ls = self.line_start_if_indented(pos)?;
        Some(self.text[ls..pos].to_string())
    }

    /// Start of `pos`'s line when only spaces/tabs precede `pos` on it and it is not line 1's
    /// start of document (a document on one line counts as unindented).
    pub(crate) fn line_start_if_indented(&self, pos: usize) -> Option<usize> {
        // Walk back over the indentation only: a search for the newline could cross a whole
        // one-line document, once per edit.
        let bytes = self.text.as_bytes();
        let mut i = pos;
        while i > 0 && matches!(bytes[i - 1], b' ' | b'\t') {
            i -= 1;
        }
        (i > 0 && bytes[i - 1] == b'\n').then_some(i)
    }

    /// `span` widened to its whole line(s) when it stands alone on them, so deleting it leaves no
    /// blank line; otherwise `span` itself.
    fn whole_lines(&self, span: Range<usize>) -> Range<usize> {
        let Some(ls) = self.line_start_if_indented(span.start) else { return span };
        let rest = &self.text[span.end..];
        let trailing = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        let after = &rest[trailing..];
        let eol = if after.starts_with("\r\n") {
            2
        } else if after.starts_with('\n') {
            1
        } else {
            return span;
        };
        ls..span.end + trailing + eol
    }
}

/// A repeated name among `keys` (which it may reorder), if any.
fn duplicate<'k>(keys: &mut [&'k [u8]]) -> Option<&'k [u8]> {
    if keys.len() <= 16 {
        return keys.iter().enumerate().find(|(i, k)| keys[..*i].contains(k)).map(|(_, k)| *k);
    }
    keys.sort_unstable();
    keys.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// Human position `line L, column C` (1-based, columns in characters) of a byte offset.
pub fn line_col(text: &str, pos: usize) -> String {
    let pos = pos.min(text.len());
    let mut pos = pos;
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    let before = &text[..pos];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {col}")
}

/// A `<domain>` child whose text the scanner keeps.
#[derive(Debug, Clone, Copy)]
enum Field {
    Name,
    Uuid,
}

impl Document<'_> {
    fn field(&mut self, f: Field) -> &mut Option<String> {
        match f {
            Field::Name => &mut self.name,
            Field::Uuid => &mut self.uuid,
        }
    }
}

struct Scanner<'a> {
    text: &'a str,
    /// Bytes before what the tokenizer sees (a UTF-8 byte-order mark, which quick-xml would
    /// otherwise skip without counting): added to every position it reports.
    base: usize,
    reader: Reader<&'a [u8]>,
    depth: usize,
    root_seen: bool,
    doc: Document<'a>,
    child_start: usize,
    child_name: String,
    /// The `<domain>` child whose text is being collected (`<name>` or `<uuid>`).
    capture: Option<Field>,
    captured: String,
    perf: Option<PerfBlock>,
    /// An `<event>` with content (`<event …>…</event>`) whose end is pending.
    open_event: Option<PerfEvent>,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        let body = text.strip_prefix('\u{feff}').unwrap_or(text);
        let base = text.len() - body.len();
        let mut reader = Reader::from_str(body);
        let cfg = reader.config_mut();
        cfg.check_end_names = true;
        cfg.check_comments = true;
        cfg.trim_text(false);
        cfg.expand_empty_elements = false;
        Scanner {
            text,
            base,
            reader,
            depth: 0,
            root_seen: false,
            doc: Document {
                text,
                name: None,
                uuid: None,
                children: Vec::new(),
                perf: Vec::new(),
                domain_start: 0,
                domain_close: 0,
                quote: None,
            },
            child_start: 0,
            child_name: String::new(),
            capture: None,
            captured: String::new(),
            perf: None,
            open_event: None,
        }
    }

    fn err(&self, pos: usize, msg: impl std::fmt::Display) -> Error {
        Error::Xml(format!("{msg} at {}", line_col(self.text, pos)))
    }

    fn run(mut self) -> Result<Document<'a>> {
        loop {
            let start = self.base + self.reader.buffer_position() as usize;
            let event = match self.reader.read_event() {
                Ok(e) => e,
                Err(e) => {
                    let pos = self.base + self.reader.error_position() as usize;
                    return Err(self.err(pos, format!("malformed XML ({e})")));
                }
            };
            let end = self.base + self.reader.buffer_position() as usize;
            match event {
                XmlEvent::Start(e) => self.open(&e, start, end, false)?,
                XmlEvent::Empty(e) => self.open(&e, start, end, true)?,
                XmlEvent::End(_) => self.close(start, end),
                XmlEvent::Text(t) => {
                    let raw = std::str::from_utf8(t.as_ref()).unwrap_or_default();
                    if self.depth == 0 && !raw.trim().is_empty() {
                        return Err(self.err(start, "text outside the <domain> element"));
                    }
                    if self.capture.is_some() {
                        self.captured.push_str(raw);
                    }
                }
                XmlEvent::GeneralRef(r) => {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        Ok(None) => match r.as_ref() {
                            b"lt" => "<".into(),
                            b"gt" => ">".into(),
                            b"amp" => "&".into(),
                            b"apos" => "'".into(),
                            b"quot" => "\"".into(),
                            other => {
                                let name = String::from_utf8_lossy(other);
                                return Err(self.err(start, format!("unknown entity '&{name};' (only XML's five are allowed)")));
                            }
                        },
                        Err(e) => return Err(self.err(start, format!("bad character reference ({e})"))),
                    };
                    if self.depth == 0 {
                        return Err(self.err(start, "text outside the <domain> element"));
                    }
                    if self.capture.is_some() {
                        self.captured.push_str(&resolved);
                    }
                }
                XmlEvent::CData(c) => {
                    if self.depth == 0 {
                        return Err(self.err(start, "CDATA outside the <domain> element"));
                    }
                    if self.capture.is_some() {
                        self.captured.push_str(&String::from_utf8_lossy(c.as_ref()));
                    }
                }
                XmlEvent::DocType(_) => {
                    return Err(self.err(start, "a DOCTYPE is not allowed (libvirt never writes one)"));
                }
                XmlEvent::Decl(_) | XmlEvent::PI(_) | XmlEvent::Comment(_) => {}
                XmlEvent::Eof => break,
            }
        }
        if !self.root_seen {
            return Err(Error::Xml("no <domain> element".into()));
        }
        if self.depth > 0 {
            return Err(Error::Xml("truncated document: <domain> is not closed".into()));
        }
        Ok(self.doc)
    }

    fn open(&mut self, e: &BytesStart<'_>, start: usize, end: usize, empty: bool) -> Result<()> {
        let name = e.name();
        let qname = name.as_ref();
        // Check every attribute: duplicates, syntax, entity references.
        let mut attrs: Vec<(Vec<u8>, String)> = Vec::new();
        let want_attrs = self.depth == 2 && self.perf.is_some() && qname == b"event" && !foreign(e);
        // quick-xml's own duplicate check compares every pair (quadratic in attributes per
        // element); collect the names and check them once, sorted when there are many.
        let mut keys: Vec<&[u8]> = Vec::new();
        for attr in e.attributes().with_checks(false) {
            let attr = attr.map_err(|err| self.err(start, format!("bad attribute ({err})")))?;
            keys.push(attr.key.into_inner());
            let value = attr
                .unescape_value()
                .map_err(|err| self.err(start, format!("bad attribute value ({err})")))?;
            if want_attrs {
                attrs.push((attr.key.as_ref().to_vec(), value.into_owned()));
            }
        }
        if let Some(dup) = duplicate(&mut keys) {
            let dup = String::from_utf8_lossy(dup);
            return Err(self.err(start, format!("duplicate attribute '{dup}'")));
        }
        if self.doc.quote.is_none() && !keys.is_empty() {
            // Names hold no '=', so the tag's first '=' belongs to its first attribute.
            let tag = &self.text[start..end];
            self.doc.quote = tag.find('=').and_then(|i| tag[i + 1..].trim_start().chars().next());
        }
        match self.depth {
            0 => {
                if self.root_seen {
                    return Err(self.err(start, "more than one root element"));
                }
                if qname != b"domain" {
                    let got = String::from_utf8_lossy(qname);
                    return Err(self.err(start, format!("the root element is <{got}>, not <domain>")));
                }
                if empty {
                    return Err(self.err(start, "the <domain> element is empty"));
                }
                self.root_seen = true;
                self.doc.domain_start = start;
            }
            1 => {
                self.child_start = start;
                self.child_name = String::from_utf8_lossy(qname).into_owned();
                if qname == b"perf" && !foreign(e) {
                    self.perf = Some(PerfBlock {
                        span: start..end,
                        self_closing: empty,
                        close_start: end,
                        events: Vec::new(),
                    });
                } else {
                    let field = match qname {
                        b"name" if self.doc.name.is_none() => Some(Field::Name),
                        b"uuid" if self.doc.uuid.is_none() => Some(Field::Uuid),
                        _ => None,
                    };
                    if let Some(field) = field {
                        if empty {
                            *self.doc.field(field) = Some(String::new());
                        } else {
                            self.capture = Some(field);
                        }
                    }
                }
            }
            2 if want_attrs => {
                // As libvirt reads them (libxml2's xmlGetProp): the first attribute with that
                // local name, whatever its prefix (`x:enabled`); namespace declarations aside.
                let get = |k: &[u8]| {
                    let local = |n: &[u8]| n.iter().rposition(|&b| b == b':').map_or(n.to_vec(), |i| n[i + 1..].to_vec());
                    attrs.iter().filter(|(n, _)| !n.starts_with(b"xmlns")).find(|(n, _)| local(n) == k).map(|(_, v)| v.clone())
                };
                let ev = PerfEvent { name: get(b"name").unwrap_or_default(), enabled: get(b"enabled"), span: start..end };
                if empty {
                    if let Some(p) = self.perf.as_mut() {
                        p.events.push(ev);
                    }
                } else {
                    self.open_event = Some(ev);
                }
            }
            d if d >= MAX_DEPTH => {
                return Err(self.err(start, format!("elements nested deeper than {MAX_DEPTH} levels")));
            }
            _ => {}
        }
        if empty {
            self.close_at(start, end);
        } else {
            self.depth += 1;
        }
        Ok(())
    }

    /// An end tag `</x>` spanning `start..end`.
    fn close(&mut self, start: usize, end: usize) {
        self.depth -= 1;
        self.close_at(start, end);
    }

    /// Bookkeeping when the element at `self.depth` ends; `start` is where its end tag begins.
    fn close_at(&mut self, start: usize, end: usize) {
        match self.depth {
            0 => self.doc.domain_close = start,
            1 => {
                if let Some(mut p) = self.perf.take() {
                    p.span.end = end;
                    p.close_start = if p.self_closing { end } else { start };
                    self.doc.perf.push(p);
                }
                if let Some(field) = self.capture.take() {
                    *self.doc.field(field) = Some(std::mem::take(&mut self.captured));
                }
                let name = std::mem::take(&mut self.child_name);
                self.doc.children.push(Child { name, span: self.child_start..end });
            }
            2 => {
                if let Some(mut ev) = self.open_event.take() {
                    ev.span.end = end;
                    if let Some(p) = self.perf.as_mut() {
                        p.events.push(ev);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Existing::{Override, Respect};

    const BASIC: &str = "<domain type='kvm'>\n  <name>vm1</name>\n  <memory unit='KiB'>65536</memory>\n  <pm>\n    <suspend-to-mem enabled='no'/>\n  </pm>\n  <devices>\n    <emulator>/usr/bin/qemu</emulator>\n  </devices>\n</domain>\n";

    fn run(xml: &str, add: &[&'static str], existing: Existing) -> Outcome {
        rewrite(xml, add, &Removals::default(), existing).unwrap()
    }

    fn remove(xml: &str, add: &[&'static str], if_enabled: &[&str], always: &[&str]) -> Outcome {
        rewrite(xml, add, &Removals { if_enabled, always }, Respect).unwrap()
    }

    fn with_perf(events: &str) -> String {
        BASIC.replace("  <devices>", &format!("  <perf>\n{events}  </perf>\n  <devices>"))
    }

    #[test]
    fn removes_enabled_unopenable_keeps_disabled() {
        let xml = with_perf("    <event name='cmt' enabled='yes'/>\n    <event name='cpu_cycles' enabled='no'/>\n    <event name='page_faults' enabled='yes'/>\n");
        let out = remove(&xml, &[], &["cmt", "cpu_cycles"], &[]);
        assert_eq!(out.removed, vec!["cmt"]);
        assert_eq!(out.summary(), "removed cmt");
        let new = out.xml.unwrap();
        assert_eq!(new, with_perf("    <event name='cpu_cycles' enabled='no'/>\n    <event name='page_faults' enabled='yes'/>\n"));
        assert_eq!(remove(&new, &[], &["cmt", "cpu_cycles"], &[]).xml, None, "idempotent");
    }

    #[test]
    fn removal_that_empties_perf_removes_the_block() {
        let xml = with_perf("    <event name='cmt' enabled='yes'/>\n    <event name='mbml' enabled='yes'/>\n");
        let out = remove(&xml, &[], &["cmt", "mbmt", "mbml"], &[]);
        assert_eq!(out.removed, vec!["cmt", "mbml"]);
        assert_eq!(out.xml.as_deref(), Some(BASIC), "the whole <perf> and its line go");
        let one_line = "<domain><name>d</name><pm/><perf><event name='cmt' enabled='yes'/></perf><devices/></domain>";
        assert_eq!(remove(one_line, &[], &["cmt"], &[]).xml.as_deref(), Some("<domain><name>d</name><pm/><devices/></domain>"));
        // An empty block that was there already is none of the removal's business.
        let empty = BASIC.replace("  <devices>", "  <perf/>\n  <devices>");
        assert_eq!(remove(&empty, &[], &["cmt"], &[]).xml, None);
        // Adding in the same run keeps the block.
        let out = remove(&xml, &["page_faults"], &["cmt", "mbml"], &[]);
        assert_eq!(out.xml.unwrap(), with_perf("    <event name='page_faults' enabled='yes'/>\n"));
    }

    #[test]
    fn always_removes_any_state_and_removed_events_are_never_added() {
        let xml = with_perf("    <event name='future_event' enabled='no'/>\n    <event name='page_faults'/>\n");
        let out = remove(&xml, &["cmt", "page_faults"], &["cmt"], &["future_event"]);
        assert_eq!(out.removed, vec!["future_event"]);
        assert!(out.added.is_empty(), "cmt is to be removed, so it is not added: {out:?}");
        assert_eq!(out.enabled, vec!["page_faults"], "no state: made yes");
        assert_eq!(out.xml.unwrap(), with_perf("    <event name='page_faults' enabled='yes'/>\n"));
    }

    #[test]
    fn removal_across_blocks_and_duplicates() {
        let xml = "<domain>\n  <name>d</name>\n  <perf>\n    <event name='cmt' enabled='yes'/>\n    <event name='cmt' enabled='no'/>\n  </perf>\n  <devices/>\n  <perf>\n    <event name='cpu_cycles' enabled='yes'/>\n    <event name='task_clock' enabled='yes'/>\n  </perf>\n</domain>";
        let out = remove(xml, &[], &["cmt", "cpu_cycles"], &[]);
        assert_eq!(out.removed, vec!["cmt", "cpu_cycles"]);
        assert_eq!(out.removed_duplicates, vec!["cmt"]);
        assert_eq!(out.merged_blocks, 1);
        assert_eq!(
            out.xml.unwrap(),
            "<domain>\n  <name>d</name>\n  <perf>\n    <event name='task_clock' enabled='yes'/>\n  </perf>\n  <devices/>\n</domain>"
        );
        // Everything in both blocks removed: no <perf> at all.
        let out = remove(xml, &[], &["cmt", "cpu_cycles", "task_clock"], &[]);
        assert_eq!(out.xml.unwrap(), "<domain>\n  <name>d</name>\n  <devices/>\n</domain>");
    }

    #[test]
    fn summary_names_why() {
        let xml = with_perf("    <event name='cmt' enabled='yes'/>\n");
        let out = remove(&xml, &["page_faults"], &["cmt"], &[]);
        let why = |e: &str| (e == "cmt").then(|| "no CQM".to_string());
        assert_eq!(out.summary_with(why), "added page_faults; removed cmt (no CQM)");
    }

    /// Every small `<perf>` shape (blocks, states, duplicates, layouts) against every removal
    /// set: the result parses (xmltree), equals the input outside `<perf>` byte for byte, has no
    /// removed event enabled, keeps the first `enabled='no'` entry of every other event, has
    /// no empty `<perf>` it made, and a second run changes nothing.
    #[test]
    fn removal_invariants_exhaustive() {
        let entries = ["<event name='cmt' enabled='yes'/>", "<event name='cmt' enabled='no'/>", "<event name='page_faults' enabled='yes'/>", "<event name='zz' enabled='no'/>"];
        let sets: [(&[&str], &[&str]); 4] = [(&["cmt"], &[]), (&["cmt", "page_faults"], &[]), (&[], &["zz"]), (&["page_faults"], &["zz", "cmt"])];
        let (mut cases, mut changed) = (0, 0);
        for (nl, ind) in [("\n", "  "), ("", ""), ("\r\n", "\t")] {
            for mask in 0u32..(1 << 6) {
                // Two blocks of up to three entries picked by `mask`.
                let pick = |shift: u32| -> String {
                    (0..3).filter(|i| mask >> (shift + i) & 1 == 1).map(|i| format!("{nl}{ind}{ind}{}", entries[(i as usize + shift as usize) % 4])).collect()
                };
                let (b1, b2) = (pick(0), pick(3));
                let block = |body: &str| if body.is_empty() { String::new() } else { format!("{nl}{ind}<perf>{body}{nl}{ind}</perf>") };
                let xml = format!("<domain type='qemu'>{nl}{ind}<name>d</name><!-- c -->{}{nl}{ind}<devices/>{}{nl}</domain>{nl}", block(&b1), block(&b2));
                for (if_enabled, always) in sets {
                    cases += 1;
                    let out = remove(&xml, &[], if_enabled, always);
                    let Some(new) = out.xml.as_deref() else { continue };
                    changed += 1;
                    let a = xmltree::Element::parse(xml.as_bytes()).unwrap();
                    let b = xmltree::Element::parse(new.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{new}"));
                    let events = |e: &xmltree::Element| -> Vec<(String, String)> {
                        e.children.iter().filter_map(|c| c.as_element()).filter(|c| c.name == "perf")
                            .flat_map(|p| p.children.iter().filter_map(|c| c.as_element()))
                            .map(|ev| (ev.attributes["name"].clone(), ev.attributes["enabled"].clone()))
                            .collect()
                    };
                    let (before, after) = (events(&a), events(&b));
                    for (name, state) in &after {
                        assert!(!always.contains(&name.as_str()), "{name} kept:\n{new}");
                        assert!(!(state == "yes" && if_enabled.contains(&name.as_str())), "{name} still enabled:\n{new}");
                    }
                    for (i, (name, state)) in before.iter().enumerate() {
                        let first = !before[..i].iter().any(|(n, _)| n == name);
                        if first && state == "no" && !always.contains(&name.as_str()) {
                            assert!(after.contains(&(name.clone(), "no".into())), "{name}='no' lost:\n{xml}\n{new}");
                        }
                    }
                    let perf_count = b.children.iter().filter_map(|c| c.as_element()).filter(|c| c.name == "perf").count();
                    assert!(perf_count <= 1 && (perf_count == 0 || !after.is_empty()), "empty or extra <perf>:\n{new}");
                    let outside = |t: &str| -> String {
                        let mut s = t.to_string();
                        while let (Some(i), Some(j)) = (s.find("<perf>"), s.find("</perf>")) {
                            s.replace_range(i..j + "</perf>".len(), "");
                        }
                        // Lines the removal left blank go too; every other byte must stay.
                        s.split_inclusive('\n').filter(|l| !l.trim().is_empty()).collect()
                    };
                    assert_eq!(outside(&xml), outside(new), "changed outside <perf>:\n{xml}\n{new}");
                    assert_eq!(remove(new, &[], if_enabled, always).xml, None, "not idempotent:\n{new}");
                }
            }
        }
        assert_eq!(cases, 3 * 64 * 4);
        assert!(changed > cases / 2, "only {changed} of {cases} cases changed anything");
    }

    #[test]
    fn adds_block_before_devices_in_catalog_order() {
        let out = run(BASIC, &["page_faults", "cpu_cycles"], Respect);
        assert_eq!(out.added, vec!["cpu_cycles", "page_faults"]);
        let xml = out.xml.unwrap();
        assert!(xml.contains(
            "  </pm>\n  <perf>\n    <event name='cpu_cycles' enabled='yes'/>\n    <event name='page_faults' enabled='yes'/>\n  </perf>\n  <devices>\n"
        ), "{xml}");
        // Idempotent.
        let again = run(&xml, &["page_faults", "cpu_cycles"], Respect);
        assert_eq!(again.xml, None);
        assert_eq!(again.summary(), "unchanged");
    }

    #[test]
    fn nothing_to_add_is_unchanged() {
        assert_eq!(run(BASIC, &[], Respect).xml, None);
    }

    #[test]
    fn merges_into_existing_block() {
        let xml = BASIC.replace("  <devices>", "  <perf>\n    <event name='cmt' enabled='no'/>\n  </perf>\n  <devices>");
        let out = run(&xml, &["page_faults"], Respect);
        assert_eq!(
            out.xml.unwrap(),
            BASIC.replace(
                "  <devices>",
                "  <perf>\n    <event name='cmt' enabled='no'/>\n    <event name='page_faults' enabled='yes'/>\n  </perf>\n  <devices>"
            )
        );
    }

    #[test]
    fn respect_and_override() {
        let xml = BASIC.replace("  <devices>", "  <perf>\n    <event name='page_faults' enabled='no'/>\n  </perf>\n  <devices>");
        let kept = run(&xml, &["page_faults"], Respect);
        assert_eq!(kept.xml, None);
        assert_eq!(kept.kept_disabled, vec!["page_faults"]);
        let forced = run(&xml, &["page_faults"], Override);
        assert_eq!(forced.enabled, vec!["page_faults"]);
        assert_eq!(forced.xml.unwrap(), xml.replace("'page_faults' enabled='no'", "'page_faults' enabled='yes'"));
    }

    #[test]
    fn two_blocks_and_duplicates_become_one() {
        let xml = "<domain>\n  <name>d</name>\n  <perf>\n    <event name='cpu_clock' enabled='yes'/>\n    <event name='cpu_clock' enabled='no'/>\n  </perf>\n  <devices/>\n  <perf>\n    <event name='task_clock' enabled='yes'/>\n  </perf>\n</domain>";
        let out = run(xml, &["page_faults"], Respect);
        assert_eq!(out.merged_blocks, 1);
        assert_eq!(out.removed_duplicates, vec!["cpu_clock"]);
        assert_eq!(
            out.xml.unwrap(),
            "<domain>\n  <name>d</name>\n  <perf>\n    <event name='cpu_clock' enabled='yes'/>\n    <event name='task_clock' enabled='yes'/>\n    <event name='page_faults' enabled='yes'/>\n  </perf>\n  <devices/>\n</domain>"
        );
        // Cleaning alone is a change too.
        let clean_only = run(xml, &[], Respect);
        assert!(clean_only.changed());
    }

    #[test]
    fn self_closing_and_one_line_perf() {
        let xml = BASIC.replace("  <devices>", "  <perf/>\n  <devices>");
        let out = run(&xml, &["page_faults"], Respect).xml.unwrap();
        assert!(out.contains("  <perf>\n    <event name='page_faults' enabled='yes'/>\n  </perf>\n  <devices>"), "{out}");

        let xml = BASIC.replace("  <devices>", "  <perf><event name='cmt' enabled='yes'/></perf>\n  <devices>");
        let out = run(&xml, &["page_faults"], Respect).xml.unwrap();
        assert!(out.contains("  <perf><event name='cmt' enabled='yes'/><event name='page_faults' enabled='yes'/></perf>\n"), "{out}");
    }

    #[test]
    fn placement_without_devices() {
        let xml = "<domain>\n  <name>d</name>\n  <on_crash>destroy</on_crash>\n  <seclabel type='none'/>\n</domain>\n";
        let out = run(xml, &["cpu_clock"], Respect).xml.unwrap();
        assert_eq!(out, "<domain>\n  <name>d</name>\n  <on_crash>destroy</on_crash>\n  <perf>\n    <event name='cpu_clock' enabled='yes'/>\n  </perf>\n  <seclabel type='none'/>\n</domain>\n");

        let xml = "<domain>\n\t<name>d</name>\n</domain>";
        let out = run(xml, &["cpu_clock"], Respect).xml.unwrap();
        assert_eq!(out, "<domain>\n\t<name>d</name>\n\t<perf>\n\t\t<event name='cpu_clock' enabled='yes'/>\n\t</perf>\n</domain>");
    }

    #[test]
    fn one_line_document_stays_one_line() {
        let xml = r#"<domain type="qemu"><name>d</name><devices/></domain>"#;
        let out = run(xml, &["cpu_clock"], Respect).xml.unwrap();
        assert_eq!(out, r#"<domain type="qemu"><name>d</name><perf><event name="cpu_clock" enabled="yes"/></perf><devices/></domain>"#);
    }

    #[test]
    fn byte_order_mark_is_kept_and_counted() {
        let xml = "\u{feff}<domain>\n  <name>bom</name>\n  <devices/>\n</domain>\n";
        let out = run(xml, &["cpu_clock"], Respect).xml.unwrap();
        assert_eq!(out, "\u{feff}<domain>\n  <name>bom</name>\n  <perf>\n    <event name='cpu_clock' enabled='yes'/>\n  </perf>\n  <devices/>\n</domain>\n");
    }

    #[test]
    fn crlf_is_kept() {
        let xml = BASIC.replace('\n', "\r\n");
        let out = run(&xml, &["cpu_clock"], Respect).xml.unwrap();
        assert!(out.contains("  <perf>\r\n    <event name='cpu_clock' enabled='yes'/>\r\n  </perf>\r\n  <devices>"));
        assert!(!out.replace("\r\n", "").contains('\n'));
    }

    #[test]
    fn name_and_events_are_read() {
        let xml = "<domain><name>a&amp;b</name><perf><event name='cmt' enabled='no'/><event enabled=\"yes\" name=\"page_faults\"></event></perf></domain>";
        let doc = Document::parse(xml).unwrap();
        assert_eq!(doc.name(), Some("a&b"));
        assert_eq!(doc.perf_events(), vec![("cmt", Some("no")), ("page_faults", Some("yes"))]);
    }

    #[test]
    fn rejects_bad_input() {
        let cases: &[(&str, &str)] = &[
            ("", "input is empty"),
            ("   \n", "input is empty"),
            ("<vm/>", "the root element is <vm>, not <domain>"),
            ("<domain/>", "the <domain> element is empty"),
            ("<domain><name>x</name>", "truncated"),
            ("<domain><name>x</domain>", "malformed XML"),
            ("<domain></domain><domain></domain>", "more than one root element"),
            ("<!DOCTYPE domain><domain></domain>", "DOCTYPE is not allowed"),
            ("<domain>&xxe;</domain>", "unknown entity '&xxe;'"),
            ("<domain a='1' a='2'></domain>", "duplicate attribute 'a'"),
            ("<domain a=1></domain>", "bad attribute"),
            ("<domain>\u{0}</domain>", "control character U+0000"),
            ("<domain></domain>trailing", "text outside the <domain> element"),
            ("<nova:domain xmlns:nova='x'></nova:domain>", "not <domain>"),
            ("\u{feff}\u{feff}<domain><name>d</name></domain>", "more than one byte-order mark"),
        ];
        for (xml, want) in cases {
            let err = Document::parse(xml).unwrap_err().to_string();
            assert!(err.contains(want), "{xml:?}: {err}");
            assert!(!err.contains('\n'));
        }
        let deep = format!("<domain>{}{}</domain>", "<a>".repeat(300), "</a>".repeat(300));
        assert!(Document::parse(&deep).unwrap_err().to_string().contains("deeper than 257 levels"));
        let big = format!("<domain>{}</domain>", " ".repeat(MAX_XML_BYTES));
        assert!(Document::parse(&big).unwrap_err().to_string().contains("MiB limit"));
    }

    /// `levels` elements deep in all, `<domain>` being level 1, the deepest one empty or not.
    fn nested(levels: usize, empty_leaf: bool) -> String {
        let open = levels - 2;
        let leaf = if empty_leaf { "<b/>" } else { "<b>x</b>" };
        format!("<domain><name>d</name>{}{leaf}{}</domain>", "<a>".repeat(open), "</a>".repeat(open))
    }

    /// libvirt (libxml2) accepts an element with 256 ancestors and refuses one with 257:
    /// measured with `virsh -c test:///default define` on libvirt 9.0.0.
    #[test]
    fn depth_limit_matches_libvirt() {
        for empty_leaf in [false, true] {
            let ok = nested(257, empty_leaf);
            assert!(run(&ok, &["cpu_clock"], Respect).changed(), "257 levels are accepted");
            let err = Document::parse(&nested(258, empty_leaf)).unwrap_err().to_string();
            assert!(err.contains("nested deeper than 257 levels"), "{err}");
        }
    }

    /// New events take the quote style of the document's first attribute, wherever it is.
    #[test]
    fn quote_style_from_the_first_attribute_anywhere() {
        let xml = "<domain>\n  <name>d</name>\n  <os>\n    <type arch=\"x86_64\">hvm</type>\n  </os>\n  <devices/>\n</domain>\n";
        let out = run(xml, &["cpu_clock"], Respect).xml.unwrap();
        assert!(out.contains("<event name=\"cpu_clock\" enabled=\"yes\"/>"), "{out}");
        let xml = xml.replace('"', "'");
        let out = run(&xml, &["cpu_clock"], Respect).xml.unwrap();
        assert!(out.contains("<event name='cpu_clock' enabled='yes'/>"), "{out}");
        // The first attribute decides, also when <domain> has one of the other style.
        let xml = "<domain type='kvm'><name>d</name><os><type arch=\"x86_64\">hvm</type></os></domain>";
        assert!(run(xml, &["cpu_clock"], Respect).xml.unwrap().contains("<event name='cpu_clock'"));
        // No attribute at all: libvirt's single quotes.
        let xml = "<domain><name>d</name></domain>";
        assert!(run(xml, &["cpu_clock"], Respect).xml.unwrap().contains("<event name='cpu_clock'"));
    }

    #[test]
    fn duplicate_attributes_among_many() {
        let attrs: String = (0..40).map(|i| format!(" a{i}='x'")).collect();
        assert!(Document::parse(&format!("<domain{attrs}><name>n</name></domain>")).is_ok());
        let err = Document::parse(&format!("<domain{attrs} a7='y'><name>n</name></domain>")).unwrap_err();
        assert!(err.to_string().contains("duplicate attribute 'a7'"), "{err}");
    }

    #[test]
    fn many_duplicates_on_one_line() {
        let events = "<event name='cpu_clock' enabled='yes'/>".repeat(5000);
        let xml = format!("<domain><name>d</name><perf>{events}</perf></domain>");
        let out = run(&xml, &["cpu_clock"], Respect);
        assert_eq!(out.removed_duplicates.len(), 4999);
        assert_eq!(out.xml.as_deref(), Some("<domain><name>d</name><perf><event name='cpu_clock' enabled='yes'/></perf></domain>"));
        assert_eq!(out.summary(), "removed duplicate cpu_clock,cpu_clock,cpu_clock,cpu_clock,cpu_clock,cpu_clock,cpu_clock,cpu_clock and 4991 more");
    }

    #[test]
    fn line_col_positions() {
        assert_eq!(line_col("ab\ncd", 4), "line 2, column 2");
        assert_eq!(line_col("é\n", 2), "line 1, column 2");
    }
}

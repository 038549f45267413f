//! Writing the edits: the document's layout ([`Style`]: line ends, indentation unit, quotes),
//! the new text rendered in it, where a new `<perf>` goes, and [`splice`], which applies the
//! edits to the original text.

use std::ops::Range;

use super::{Document, Edit, PerfBlock};

/// Elements after which a new `<perf>` goes when there is no `<devices>` (libvirt's order).
const BEFORE_PERF: &[&str] = &["on_poweroff", "on_reboot", "on_crash", "on_lockfailure", "pm"];

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
    pub(super) fn detect(doc: &Document<'a>) -> Style<'a> {
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
    pub(crate) fn whole_lines(&self, span: Range<usize>) -> Range<usize> {
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

impl<'a> Document<'a> {
    /// How the document is laid out (indentation, quotes, line ends), for other splicers.
    pub(crate) fn style(&self) -> Style<'a> {
        Style::detect(self)
    }

    /// Edit that adds `lines` at the end of the existing first `<perf>`.
    pub(super) fn append_to_block(&self, block: &PerfBlock, lines: &[String], style: &Style) -> Edit {
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
    pub(super) fn new_block(&self, lines: &[String], style: &Style) -> Edit {
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
fn beside(at: usize, sibling: usize, side: Side, lines: &[String], style: &Style) -> Edit {
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

/// `<event name='…' enabled='yes'/>` in the document's quotes.
pub(super) fn event_xml(name: &str, style: &Style) -> String {
    let q = style.quote;
    format!("<event name={q}{name}{q} enabled={q}yes{q}/>")
}

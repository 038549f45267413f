//! Reading the document: the input checks, then one pass of quick-xml's tokenizer that records
//! byte spans (of `<domain>`, its direct children, every `<perf>` and its `<event>`s), the
//! domain's `<name>`/`<uuid>` and the quote style. Positions in errors are `line L, column C`.

use std::ops::Range;

use quick_xml::events::{BytesRef, BytesStart, Event as XmlEvent};
use quick_xml::Reader;

use super::{Child, Document, PerfBlock, PerfEvent, MAX_DEPTH, MAX_XML_BYTES};
use crate::support::error::{Error, Result};

/// Tokenize and check `text`; see the module docs of `rewrite` for what is rejected.
pub(super) fn parse(text: &str) -> Result<Document<'_>> {
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

/// Whether an element declares a default namespace of its own (`<perf xmlns='urn:x'>`): libvirt
/// reads only `<perf>`/`<event>` in no namespace and ignores such a one (checked on 9.0.0), so
/// the rewrite leaves it alone as it leaves `<x:perf>`.
fn foreign(e: &BytesStart<'_>) -> bool {
    e.attributes().with_checks(false).flatten().any(|a| a.key.as_ref() == b"xmlns" && !a.value.is_empty())
}

/// A repeated name among `keys` (which it may reorder), if any.
fn duplicate<'k>(keys: &mut [&'k [u8]]) -> Option<&'k [u8]> {
    if keys.len() <= 16 {
        return keys.iter().enumerate().find(|(i, k)| keys[..*i].contains(k)).map(|(_, k)| *k);
    }
    keys.sort_unstable();
    keys.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// An attribute as the scanner keeps it: raw name, unescaped value.
type Attr = (Vec<u8>, String);

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
                    let resolved = self.entity(&r, start)?;
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

    /// The text an entity or character reference at `start` stands for: a character reference
    /// or one of XML's five entities; anything else is an error (no DTD, so no others).
    fn entity(&self, r: &BytesRef<'_>, start: usize) -> Result<String> {
        match r.resolve_char_ref() {
            Ok(Some(c)) => Ok(c.to_string()),
            Ok(None) => match r.as_ref() {
                b"lt" => Ok("<".into()),
                b"gt" => Ok(">".into()),
                b"amp" => Ok("&".into()),
                b"apos" => Ok("'".into()),
                b"quot" => Ok("\"".into()),
                other => {
                    let name = String::from_utf8_lossy(other);
                    Err(self.err(start, format!("unknown entity '&{name};' (only XML's five are allowed)")))
                }
            },
            Err(e) => Err(self.err(start, format!("bad character reference ({e})"))),
        }
    }

    /// A start tag (or an empty element when `empty`) spanning `start..end`.
    fn open(&mut self, e: &BytesStart<'_>, start: usize, end: usize, empty: bool) -> Result<()> {
        let name = e.name();
        let qname = name.as_ref();
        let is_event = self.depth == 2 && self.perf.is_some() && qname == b"event" && !foreign(e);
        let attrs = self.attributes(e, start, end, is_event)?;
        match self.depth {
            0 => self.open_root(qname, start, empty)?,
            1 => self.open_child(e, qname, start..end, empty),
            2 if is_event => self.open_perf_event(&attrs, start..end, empty),
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

    /// Checks every attribute of the tag at `start..end` (duplicates, syntax, entity
    /// references) and notes the document's quote style at its first attribute. Returns the
    /// attributes when `keep`, else none.
    fn attributes(&mut self, e: &BytesStart<'_>, start: usize, end: usize, keep: bool) -> Result<Vec<Attr>> {
        let mut attrs: Vec<Attr> = Vec::new();
        // quick-xml's own duplicate check compares every pair (quadratic in attributes per
        // element); collect the names and check them once, sorted when there are many.
        let mut keys: Vec<&[u8]> = Vec::new();
        for attr in e.attributes().with_checks(false) {
            let attr = attr.map_err(|err| self.err(start, format!("bad attribute ({err})")))?;
            keys.push(attr.key.into_inner());
            let value = attr
                .unescape_value()
                .map_err(|err| self.err(start, format!("bad attribute value ({err})")))?;
            if keep {
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
        Ok(attrs)
    }

    /// The root element: one, and a non-empty `<domain>`.
    fn open_root(&mut self, qname: &[u8], start: usize, empty: bool) -> Result<()> {
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
        Ok(())
    }

    /// A direct child of `<domain>`: a `<perf>` block starts, or the text of the first
    /// `<name>`/`<uuid>` is to be kept.
    fn open_child(&mut self, e: &BytesStart<'_>, qname: &[u8], span: Range<usize>, empty: bool) {
        self.child_start = span.start;
        self.child_name = String::from_utf8_lossy(qname).into_owned();
        if qname == b"perf" && !foreign(e) {
            let close_start = span.end;
            self.perf = Some(PerfBlock { span, self_closing: empty, close_start, events: Vec::new() });
            return;
        }
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

    /// An `<event>` directly in `<perf>`, its attributes read as libvirt reads them (libxml2's
    /// xmlGetProp): the first attribute with that local name, whatever its prefix
    /// (`x:enabled`); namespace declarations aside.
    fn open_perf_event(&mut self, attrs: &[Attr], span: Range<usize>, empty: bool) {
        let get = |k: &[u8]| {
            let local = |n: &[u8]| n.iter().rposition(|&b| b == b':').map_or(n.to_vec(), |i| n[i + 1..].to_vec());
            attrs.iter().filter(|(n, _)| !n.starts_with(b"xmlns")).find(|(n, _)| local(n) == k).map(|(_, v)| v.clone())
        };
        let ev = PerfEvent { name: get(b"name").unwrap_or_default(), enabled: get(b"enabled"), span };
        if empty {
            if let Some(p) = self.perf.as_mut() {
                p.events.push(ev);
            }
        } else {
            self.open_event = Some(ev);
        }
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

    #[test]
    fn duplicate_attributes_among_many() {
        let attrs: String = (0..40).map(|i| format!(" a{i}='x'")).collect();
        assert!(Document::parse(&format!("<domain{attrs}><name>n</name></domain>")).is_ok());
        let err = Document::parse(&format!("<domain{attrs} a7='y'><name>n</name></domain>")).unwrap_err();
        assert!(err.to_string().contains("duplicate attribute 'a7'"), "{err}");
    }

    #[test]
    fn line_col_positions() {
        assert_eq!(line_col("ab\ncd", 4), "line 2, column 2");
        assert_eq!(line_col("é\n", 2), "line 1, column 2");
    }
}

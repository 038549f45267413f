//! resctrl monitors in place of the perf events Linux 4.14 removed (`cmt`, `mbmt`, `mbml`).
//!
//! The same Intel RDT counters are read through resctrl, and libvirt makes one per guest from
//! `<cputune>`: `<cachetune vcpus='…'><monitor level='3' vcpus='…'/></cachetune>` (LLC
//! occupancy) and `<memorytune vcpus='…'><monitor vcpus='…'/></memorytune>` (memory bandwidth,
//! total and local). This module decides where a monitor for all of a guest's vCPUs goes and
//! returns the splices, like the `<perf>` rewrite: nothing outside the inserted elements
//! changes. libvirt's rules it follows (libvirt 9.0.0, `src/conf/domain_conf.c`):
//! a tune's vCPU set must not overlap another's unless equal ("Overlapping vcpus in resctrls"),
//! a monitor's vCPUs must lie inside its tune's ("Monitor vcpus conflicts with allocation"),
//! and two monitors of one type must not share a vCPU set ("Identical vcpus found in same type
//! monitors"). Where a monitor cannot be added within those rules the guest is left alone.

use std::collections::BTreeSet;
use std::ops::Range;

use quick_xml::events::{BytesStart, Event as XmlEvent};
use quick_xml::Reader;

use crate::core::monitor::{Monitor, RemovedTune};
use crate::core::rewrite::{splice, Document, Outcome, Style};
use crate::support::error::Result;

/// libvirt's limit on vCPU ids in a cpuset (`VIR_DOMAIN_CPUMASK_LEN`).
const MAX_VCPUS: u32 = 16384;

/// Adds `want` (deduplicated) to `outcome`, the `<perf>` rewrite of `doc`: the monitors' splices
/// join its edits and `xml` is made again from the original text. A monitor the guest already
/// has is not added again; one its layout cannot take goes to `monitors_skipped`, with why.
pub fn add_monitors(doc: &Document<'_>, outcome: Outcome, want: &[Monitor]) -> Result<Outcome> {
    apply_monitors(doc, outcome, want, &[])
}

/// [`add_monitors`], and first takes out every monitor-only tune (children only `<monitor>`s)
/// of a kind in `unavailable` (with why this host cannot have it): libvirt refuses to start such
/// a guest ("Resource control is not supported on this host"). A tune that also allocates
/// (`<cache>`, `<node>`) is the operator's and stays; a warning says the guest may not start.
/// The removals go to `monitors_removed`; a kind being removed is never added.
pub fn apply_monitors(
    doc: &Document<'_>,
    mut outcome: Outcome,
    want: &[Monitor],
    unavailable: &[(Monitor, String)],
) -> Result<Outcome> {
    let mut want: Vec<Monitor> = want.iter().copied().filter(|m| !unavailable.iter().any(|(u, _)| u == m)).collect();
    want.sort();
    want.dedup();
    let text = doc.text();
    // The hook runs on every start: no second parse unless a tune could be there.
    let removing = !unavailable.is_empty() && (text.contains("<cachetune") || text.contains("<memorytune"));
    if want.is_empty() && !removing {
        return Ok(outcome);
    }
    let mut layout = match Layout::scan(text) {
        Ok(l) => l,
        Err(why) => {
            if !want.is_empty() {
                outcome.monitors_skipped.push(why);
            }
            return Ok(outcome);
        }
    };
    let style = doc.style();
    let mut ours = Vec::new();
    if removing {
        let (edits, removed) = removals(doc, &mut layout, &style, unavailable, &outcome.edits);
        ours = edits;
        outcome.monitors_removed = removed;
    }
    if !want.is_empty() {
        let (edits, added, skipped) = match plan_edits(&layout, &style, &want) {
            Ok(planned) => planned,
            Err(why) => (Vec::new(), Vec::new(), vec![why]),
        };
        outcome.monitors_skipped.extend(skipped);
        // An insertion inside a span the <perf> rewrite replaces would be lost or split it.
        let inside = |(r, _): &&Edit| edits.iter().any(|(e, _)| r.start < e.start && e.start < r.end);
        if let Some((r, _)) = outcome.edits.iter().chain(&ours).find(inside) {
            outcome.monitors_skipped.push(format!("a <perf> change at bytes {}..{} meets the <cputune> insertion", r.start, r.end));
        } else {
            ours.extend(edits);
            outcome.monitors = added;
        }
    }
    if ours.is_empty() {
        return Ok(outcome);
    }
    // Ours first: at an equal position the stable sort keeps <cputune> before a new <perf>,
    // libvirt's order, and an insertion before a removal starting there.
    ours.sort_by_key(|(r, _)| (r.start, r.end));
    let mut all = ours;
    all.append(&mut outcome.edits);
    all.sort_by_key(|(r, _)| (r.start, r.end));
    outcome.xml = Some(splice(text, &all));
    outcome.edits = all;
    Ok(outcome)
}

/// The splices that take out the monitor-only tunes of the `unavailable` kinds (each with its
/// line when it stands alone on it), and what they take out. The tunes go from `l` too, so the
/// insertions that follow neither keep clear of them nor anchor on them. A tune an edit of
/// `others` meets stays (logged).
fn removals(
    doc: &Document<'_>,
    l: &mut Layout,
    style: &Style<'_>,
    unavailable: &[(Monitor, String)],
    others: &[Edit],
) -> (Vec<Edit>, Vec<RemovedTune>) {
    let domain = crate::support::text::printable(doc.name().unwrap_or_default());
    let (mut edits, mut removed, mut gone) = (Vec::new(), Vec::new(), Vec::new());
    for t in &l.tunes {
        let m = t.kind();
        let Some((_, why)) = unavailable.iter().find(|(u, _)| *u == m) else { continue };
        if t.monitors.is_empty() {
            continue;
        }
        let raw = t.vcpus.as_deref().unwrap_or_default();
        let raw = crate::support::text::printable(raw);
        if let Some(child) = &t.allocates {
            log::warn!(
                "domain '{domain}': <{} vcpus='{raw}'> kept: it also allocates (<{}>), but this host cannot have                  its monitor ({why}); the guest may not start here",
                t.elem.name,
                crate::support::text::printable(child)
            );
            continue;
        }
        let span = style.whole_lines(t.elem.span.clone());
        let meets = |(r, _): &Edit| {
            if r.is_empty() {
                span.start < r.start && r.start < span.end
            } else {
                r.start < span.end && span.start < r.end
            }
        };
        if let Some((r, _)) = others.iter().find(|e| meets(e)) {
            log::warn!(
                "domain '{domain}': <{} vcpus='{raw}'> kept: a <perf> change at bytes {}..{} meets it",
                t.elem.name,
                r.start,
                r.end
            );
            continue;
        }
        edits.push((span, String::new()));
        removed.push(RemovedTune { monitor: m, reason: why.clone() });
        gone.push(t.elem.span.start);
    }
    l.tunes.retain(|t| !gone.contains(&t.elem.span.start));
    l.cputune_children.retain(|c| !gone.contains(&c.span.start));
    (edits, removed)
}

/// The monitor-only tunes of `doc` that [`apply_monitors`] would take out for `unavailable`
/// (allocations and all else left), without logging: for the reports.
pub fn removable(doc: &Document<'_>, unavailable: &[(Monitor, String)]) -> Vec<RemovedTune> {
    let text = doc.text();
    if unavailable.is_empty() || !(text.contains("<cachetune") || text.contains("<memorytune")) {
        return Vec::new();
    }
    let Ok(l) = Layout::scan(text) else { return Vec::new() };
    l.tunes
        .iter()
        .filter(|t| !t.monitors.is_empty() && t.allocates.is_none())
        .filter_map(|t| {
            let m = t.kind();
            let (_, why) = unavailable.iter().find(|(u, _)| *u == m)?;
            Some(RemovedTune { monitor: m, reason: why.clone() })
        })
        .collect()
}

/// The kinds of monitor `doc` has in its `<cputune>` (any vCPUs), e.g. from a live XML.
pub fn monitors_in(doc: &Document<'_>) -> Vec<Monitor> {
    let Ok(l) = Layout::scan(doc.text()) else { return Vec::new() };
    let mut out: Vec<Monitor> = l
        .tunes
        .iter()
        .filter(|t| !t.monitors.is_empty())
        .map(Tune::kind)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// An element's position in the text.
#[derive(Debug, Clone, Default)]
struct Elem {
    name: String,
    span: Range<usize>,
    self_closing: bool,
    /// Start of the end tag (`span.end` when self-closing).
    close_start: usize,
}

#[derive(Debug, Clone, Default)]
struct Tune {
    elem: Elem,
    vcpus: Option<String>,
    /// `(level, vcpus)` of each `<monitor>`.
    monitors: Vec<(Option<String>, Option<String>)>,
    /// Start of the first child element, for its indentation.
    first_child: Option<usize>,
    /// The first child that is not a `<monitor>` (`<cache>`, `<node>`): an allocation.
    allocates: Option<String>,
}

impl Tune {
    /// The kind of monitor its element holds: `<cachetune>` or `<memorytune>` (the only tunes
    /// the layout keeps).
    fn kind(&self) -> Monitor {
        if self.elem.name == Monitor::Cache.element() {
            Monitor::Cache
        } else {
            Monitor::MemoryBandwidth
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Layout {
    children: Vec<Elem>,
    vcpu: Option<String>,
    cputunes: Vec<Elem>,
    /// Children of the first `<cputune>`.
    cputune_children: Vec<Elem>,
    /// The `<cachetune>`s and `<memorytune>`s of every `<cputune>`, in document order.
    tunes: Vec<Tune>,
    /// `<domain type='…'>`.
    domain_type: Option<String>,
}

impl Layout {
    /// The parts of `<domain>` the insertion needs. The document was checked by
    /// [`Document::parse`]; an error here is reported as a reason, not raised.
    fn scan(text: &str) -> std::result::Result<Layout, String> {
        let body = text.strip_prefix('\u{feff}').unwrap_or(text);
        let base = text.len() - body.len();
        let mut reader = Reader::from_str(body);
        reader.config_mut().expand_empty_elements = false;
        let mut l = Layout::default();
        // The open elements, `<domain>` first.
        let mut stack: Vec<Elem> = Vec::new();
        let mut in_vcpu = false;
        loop {
            let start = base + reader.buffer_position() as usize;
            let ev = reader.read_event().map_err(|e| format!("cannot read the XML ({e})"))?;
            let end = base + reader.buffer_position() as usize;
            match ev {
                XmlEvent::Start(_) | XmlEvent::Empty(_) => {
                    let (e, empty) = match &ev {
                        XmlEvent::Empty(e) => (e, true),
                        XmlEvent::Start(e) => (e, false),
                        _ => unreachable!("matched above"),
                    };
                    let elem = Elem { name: name_of(e), span: start..end, self_closing: empty, close_start: end };
                    l.open(&stack, &elem, e)?;
                    in_vcpu = stack.len() == 1 && elem.name == "vcpu" && !empty;
                    if in_vcpu {
                        l.vcpu = Some(String::new());
                    }
                    if empty {
                        l.close(&stack, elem);
                    } else {
                        stack.push(elem);
                    }
                }
                XmlEvent::End(_) => {
                    in_vcpu = false;
                    if let Some(mut elem) = stack.pop() {
                        elem.span.end = end;
                        elem.close_start = start;
                        l.close(&stack, elem);
                    }
                }
                XmlEvent::Text(t) if in_vcpu => {
                    l.vcpu.get_or_insert_with(String::new).push_str(&String::from_utf8_lossy(t.as_ref()));
                }
                XmlEvent::Eof => break,
                _ => {}
            }
        }
        Ok(l)
    }

    /// An element opens with `stack` as its ancestors.
    fn open(&mut self, stack: &[Elem], elem: &Elem, e: &BytesStart<'_>) -> std::result::Result<(), String> {
        if stack.is_empty() {
            self.domain_type = attr(e, b"type")?;
        }
        // Tunes of every `<cputune>`: libvirt reads `./cputune/cachetune` of all of them.
        let in_cputune = stack.len() == 2 && stack[1].name == "cputune";
        if in_cputune && (elem.name == "cachetune" || elem.name == "memorytune") {
            self.tunes.push(Tune { elem: elem.clone(), vcpus: attr(e, b"vcpus")?, ..Tune::default() });
        }
        let in_tune = stack.len() == 3 && stack[1].name == "cputune";
        if in_tune {
            if let Some(t) = self.tunes.last_mut().filter(|t| t.elem.span.start == stack[2].span.start) {
                t.first_child.get_or_insert(elem.span.start);
                if elem.name == "monitor" {
                    t.monitors.push((attr(e, b"level")?, attr(e, b"vcpus")?));
                } else {
                    t.allocates.get_or_insert_with(|| elem.name.clone());
                }
            }
        }
        Ok(())
    }

    /// An element closes (`elem` complete) with `stack` as its ancestors.
    fn close(&mut self, stack: &[Elem], elem: Elem) {
        match stack.len() {
            1 => {
                if elem.name == "cputune" {
                    self.cputunes.push(elem.clone());
                }
                self.children.push(elem);
            }
            2 if stack[1].name == "cputune" => {
                if let Some(t) = self.tunes.last_mut().filter(|t| t.elem.span.start == elem.span.start) {
                    t.elem = elem.clone();
                }
                if self.cputunes.is_empty() {
                    self.cputune_children.push(elem);
                }
            }
            _ => {}
        }
    }
}

fn name_of(e: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(e.name().as_ref()).into_owned()
}

fn attr(e: &BytesStart<'_>, key: &[u8]) -> std::result::Result<Option<String>, String> {
    for a in e.attributes().with_checks(false) {
        let a = a.map_err(|err| format!("bad attribute ({err})"))?;
        if a.key.as_ref() == key {
            let v = a.unescape_value().map_err(|err| format!("bad attribute value ({err})"))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

/// libvirt's cpuset syntax: `0-3,^2,5` (ranges, exclusions, blanks around items).
fn parse_cpuset(s: &str) -> Option<BTreeSet<u32>> {
    let mut set = BTreeSet::new();
    let mut excluded = BTreeSet::new();
    for item in s.split(',').map(str::trim) {
        let (neg, item) = match item.strip_prefix('^') {
            Some(rest) => (true, rest.trim()),
            None => (false, item),
        };
        let (a, b) = match item.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?),
            None => {
                let n = item.parse::<u32>().ok()?;
                (n, n)
            }
        };
        if a > b || b >= MAX_VCPUS || (neg && a != b) {
            return None;
        }
        if neg {
            excluded.insert(a);
        } else {
            set.extend(a..=b);
        }
    }
    let set: BTreeSet<u32> = set.difference(&excluded).copied().collect();
    (!set.is_empty()).then_some(set)
}

/// The guest's vCPU count (`<vcpu>`'s text; libvirt's default is 1).
fn vcpu_count(l: &Layout) -> std::result::Result<u32, String> {
    let Some(text) = &l.vcpu else { return Ok(1) };
    match text.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_VCPUS).contains(&n) => Ok(n),
        _ => Err(format!("<vcpu> holds {:?}, not a vCPU count", text.trim())),
    }
}

fn cpuset_text(n: u32) -> String {
    if n == 1 {
        "0".to_string()
    } else {
        format!("0-{}", n - 1)
    }
}

/// What a monitor of one kind needs: nothing (present), a monitor in an existing tune, or a
/// new tune.
enum Need<'l> {
    Present,
    Into(&'l Tune),
    NewTune,
}

/// Where the monitor `m` for all of `all` goes, or why it cannot go anywhere safely.
fn need<'l>(l: &'l Layout, m: Monitor, all: &BTreeSet<u32>) -> std::result::Result<Need<'l>, String> {
    let all_text = cpuset_text(all.len() as u32);
    let mut target = None;
    for t in &l.tunes {
        let raw = t.vcpus.as_deref().unwrap_or_default();
        let set = parse_cpuset(raw).ok_or_else(|| format!("cannot read <{} vcpus='{raw}'>", t.elem.name))?;
        let set: BTreeSet<u32> = set.intersection(all).copied().collect();
        let own = t.elem.name == m.element();
        let monitors: Vec<Option<BTreeSet<u32>>> =
            t.monitors.iter().filter(|(level, _)| m == Monitor::MemoryBandwidth || level.as_deref() == Some("3"))
                .map(|(_, v)| v.as_deref().and_then(parse_cpuset)).collect();
        if own && monitors.iter().any(|v| v.as_ref() == Some(all)) {
            return Ok(Need::Present);
        }
        if !set.is_empty() && set != *all {
            return Err(format!(
                "<{} vcpus='{raw}'> covers only some of the guest's vCPUs ({all_text}); a {} monitor for all of them \
                 would overlap it (libvirt: \"Overlapping vcpus in resctrls\")",
                t.elem.name,
                m
            ));
        }
        if own && set == *all {
            if t.elem.self_closing || !monitors.is_empty() {
                return Err(format!(
                    "<{} vcpus='{raw}'> already has a monitor for other vCPUs; another would overlap it",
                    t.elem.name
                ));
            }
            target = Some(t);
        }
    }
    Ok(target.map_or(Need::NewTune, Need::Into))
}

/// `<domain>` children that libvirt writes before `<cputune>`; a new one goes after the last
/// of them present (libvirt's `virDomainDefFormatInternal` order).
const BEFORE_CPUTUNE: &[&str] = &[
    "name", "uuid", "genid", "title", "description", "metadata", "maxMemory", "memory", "currentMemory",
    "blkiotune", "memtune", "memoryBacking", "vcpu", "vcpus", "iothreads", "iothreadids", "defaultiothread",
];

type Edit = (Range<usize>, String);
/// The splices, the monitors they add, and why others are not added.
type Planned = (Vec<Edit>, Vec<Monitor>, Vec<String>);
/// Lines of a fragment: nesting depth and text.
type Lines = Vec<(usize, String)>;

/// The splices for `want`, the monitors they add, and why others were not added.
fn plan_edits(l: &Layout, style: &Style<'_>, want: &[Monitor]) -> std::result::Result<Planned, String> {
    // Seen on libvirt 9.0.0: `virsh define` of a type='qemu' guest with any tune fails.
    if l.domain_type.as_deref() != Some("kvm") {
        let t = l.domain_type.as_deref().unwrap_or_default();
        return Err(format!(
            "libvirt allows resctrl only for type='kvm' guests, this one is type='{t}' \
             (libvirt: \"cachetune is only supported for KVM domains\")"
        ));
    }
    if l.cputunes.len() > 1 {
        return Err("the guest has more than one <cputune>".to_string());
    }
    let n = vcpu_count(l)?;
    let all: BTreeSet<u32> = (0..n).collect();
    let vcpus = cpuset_text(n);
    let q = style.quote;
    let (mut edits, mut added, mut skipped, mut new_tunes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for &m in want {
        let monitor = match m {
            Monitor::Cache => format!("<monitor level={q}3{q} vcpus={q}{vcpus}{q}/>"),
            Monitor::MemoryBandwidth => format!("<monitor vcpus={q}{vcpus}{q}/>"),
        };
        match need(l, m, &all) {
            Ok(Need::Present) => {}
            Ok(Need::Into(t)) => {
                edits.push(append_inside(style, &t.elem, t.first_child, &[(0, monitor)]));
                added.push(m);
            }
            Ok(Need::NewTune) => {
                let el = m.element();
                new_tunes.push((m, vec![(0, format!("<{el} vcpus={q}{vcpus}{q}>")), (1, monitor), (0, format!("</{el}>"))]));
                added.push(m);
            }
            Err(why) => skipped.push(why),
        }
    }
    if !new_tunes.is_empty() {
        edits.extend(place_tunes(l, style, new_tunes)?);
    }
    Ok((edits, added, skipped))
}

/// Edits that put new tunes (cachetune before memorytune) where libvirt writes them.
fn place_tunes(l: &Layout, style: &Style<'_>, tunes: Vec<(Monitor, Lines)>) -> std::result::Result<Vec<Edit>, String> {
    let Some(cputune) = l.cputunes.first() else {
        let mut lines: Lines = vec![(0, "<cputune>".to_string())];
        lines.extend(tunes.into_iter().flat_map(|(_, t)| t).map(|(d, t)| (d + 1, t)));
        lines.push((0, "</cputune>".to_string()));
        let anchor = l.children.iter().rev().find(|c| BEFORE_CPUTUNE.contains(&c.name.as_str()));
        return match (anchor, l.children.first()) {
            (Some(a), _) => Ok(vec![after(style, &a.span, &lines)]),
            (None, Some(first)) => Ok(vec![before(style, first.span.start, &lines)]),
            (None, None) => Err("<domain> has no child element to place <cputune> by".to_string()),
        };
    };
    if cputune.self_closing {
        let mut lines: Lines = vec![(0, "<cputune>".to_string())];
        lines.extend(tunes.into_iter().flat_map(|(_, t)| t).map(|(d, t)| (d + 1, t)));
        lines.push((0, "</cputune>".to_string()));
        let ind = style.indent_before(cputune.span.start);
        return Ok(vec![(cputune.span.clone(), render(&lines, ind.as_deref(), style))]);
    }
    let first_child = l.cputune_children.first().map(|c| c.span.start);
    let last = |name: &str| l.cputune_children.iter().rev().find(|c| c.name == name);
    let first_mem = l.cputune_children.iter().find(|c| c.name == "memorytune");
    Ok(tunes
        .into_iter()
        .map(|(m, lines)| match (m, last(m.element()), first_mem) {
            (_, Some(prev), _) => after(style, &prev.span, &lines),
            (Monitor::Cache, None, Some(mem)) => before(style, mem.span.start, &lines),
            _ => append_inside(style, cputune, first_child, &lines),
        })
        .collect())
}

/// `lines` as text whose first line starts at `ind` (already written), the others on their own
/// lines; all on one line when the surroundings are not indented.
fn render(lines: &[(usize, String)], ind: Option<&str>, style: &Style<'_>) -> String {
    match ind {
        Some(ind) => lines
            .iter()
            .enumerate()
            .map(|(i, (d, l))| {
                let pre = if i == 0 { String::new() } else { format!("{}{ind}", style.nl) };
                format!("{pre}{}{l}", style.unit.repeat(*d))
            })
            .collect(),
        None => lines.iter().map(|(_, l)| l.as_str()).collect(),
    }
}

/// Insertion just before the sibling starting at `pos`, indented like it.
fn before(style: &Style<'_>, pos: usize, lines: &[(usize, String)]) -> Edit {
    let text = match style.indent_before(pos) {
        Some(ind) => format!("{}{}{ind}", render(lines, Some(&ind), style), style.nl),
        None => render(lines, None, style),
    };
    (pos..pos, text)
}

/// Insertion just after the sibling spanning `span`, indented like it.
fn after(style: &Style<'_>, span: &Range<usize>, lines: &[(usize, String)]) -> Edit {
    let text = match style.indent_before(span.start) {
        Some(ind) => format!("{}{ind}{}", style.nl, render(lines, Some(&ind), style)),
        None => render(lines, None, style),
    };
    (span.end..span.end, text)
}

/// Insertion at the end of `container`'s content, indented like its first child (or one unit
/// deeper than it).
fn append_inside(style: &Style<'_>, container: &Elem, first_child: Option<usize>, lines: &[(usize, String)]) -> Edit {
    let child_ind = first_child
        .and_then(|c| style.indent_before(c))
        .or_else(|| style.indent_before(container.span.start).map(|i| format!("{i}{}", style.unit)));
    match (child_ind, style.line_start_if_indented(container.close_start)) {
        (Some(ci), Some(ls)) => {
            let text = lines.iter().map(|(d, l)| format!("{ci}{}{l}{}", style.unit.repeat(*d), style.nl)).collect();
            (ls..ls, text)
        }
        _ => (container.close_start..container.close_start, render(lines, None, style)),
    }
}

#[cfg(test)]
mod tests;

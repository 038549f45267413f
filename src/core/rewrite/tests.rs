//! Tests of the whole rewrite: additions, removals, merging, placement and layout.

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
fn many_duplicates_on_one_line() {
    let events = "<event name='cpu_clock' enabled='yes'/>".repeat(5000);
    let xml = format!("<domain><name>d</name><perf>{events}</perf></domain>");
    let out = run(&xml, &["cpu_clock"], Respect);
    assert_eq!(out.removed_duplicates.len(), 4999);
    assert_eq!(out.xml.as_deref(), Some("<domain><name>d</name><perf><event name='cpu_clock' enabled='yes'/></perf></domain>"));
    assert_eq!(out.summary(), "removed duplicate cpu_clock,cpu_clock,cpu_clock,cpu_clock,cpu_clock,cpu_clock,cpu_clock,cpu_clock and 4991 more");
}

use super::*;
use crate::core::config::Existing;
use crate::core::rewrite::{Document, Removals};

fn add(xml: &str, want: &[Monitor]) -> Outcome {
    let doc = Document::parse(xml).unwrap();
    let out = doc.rewrite(&[], &Removals::default(), Existing::Respect).unwrap();
    add_monitors(&doc, out, want).unwrap()
}

const BOTH: &[Monitor] = &[Monitor::Cache, Monitor::MemoryBandwidth];

#[test]
fn new_cputune_after_vcpu() {
    let xml = "<domain type='kvm'>\n  <name>d</name>\n  <vcpu placement='static'>4</vcpu>\n  <os>\n    <type>hvm</type>\n  </os>\n</domain>\n";
    let out = add(xml, BOTH);
    assert_eq!(out.monitors, BOTH);
    assert_eq!(
        out.xml.as_deref().unwrap(),
        "<domain type='kvm'>\n  <name>d</name>\n  <vcpu placement='static'>4</vcpu>\n  <cputune>\n    <cachetune vcpus='0-3'>\n      <monitor level='3' vcpus='0-3'/>\n    </cachetune>\n    <memorytune vcpus='0-3'>\n      <monitor vcpus='0-3'/>\n    </memorytune>\n  </cputune>\n  <os>\n    <type>hvm</type>\n  </os>\n</domain>\n"
    );
    let again = add(out.xml.as_deref().unwrap(), BOTH);
    assert_eq!(again.xml, None, "idempotent");
    assert!(again.monitors_skipped.is_empty());
}

#[test]
fn into_existing_allocation_and_partial_is_refused() {
    let xml = "<domain type='kvm'>\n  <vcpu>2</vcpu>\n  <cputune>\n    <shares>2048</shares>\n    <cachetune vcpus='0-1'>\n      <cache id='0' level='3' type='both' size='3' unit='MiB'/>\n    </cachetune>\n  </cputune>\n</domain>";
    let out = add(xml, &[Monitor::Cache]);
    assert_eq!(
        out.xml.unwrap(),
        "<domain type='kvm'>\n  <vcpu>2</vcpu>\n  <cputune>\n    <shares>2048</shares>\n    <cachetune vcpus='0-1'>\n      <cache id='0' level='3' type='both' size='3' unit='MiB'/>\n      <monitor level='3' vcpus='0-1'/>\n    </cachetune>\n  </cputune>\n</domain>"
    );
    let partial = xml.replace("<vcpu>2</vcpu>", "<vcpu>4</vcpu>");
    let out = add(&partial, BOTH);
    assert_eq!(out.xml, None);
    assert_eq!(out.monitors_skipped.len(), 2);
    assert!(out.monitors_skipped[0].contains("covers only some"), "{:?}", out.monitors_skipped);
}

#[test]
fn one_line_and_self_closing() {
    let xml = "<domain type='kvm'><name>d</name><vcpu>1</vcpu><devices/></domain>";
    let out = add(xml, &[Monitor::MemoryBandwidth]);
    assert_eq!(out.xml.unwrap(), "<domain type='kvm'><name>d</name><vcpu>1</vcpu><cputune><memorytune vcpus='0'><monitor vcpus='0'/></memorytune></cputune><devices/></domain>");
    let xml = "<domain type='kvm'>\n  <vcpu>2</vcpu>\n  <cputune/>\n</domain>";
    let out = add(xml, &[Monitor::Cache]);
    assert_eq!(out.xml.unwrap(), "<domain type='kvm'>\n  <vcpu>2</vcpu>\n  <cputune>\n    <cachetune vcpus='0-1'>\n      <monitor level='3' vcpus='0-1'/>\n    </cachetune>\n  </cputune>\n</domain>");
}

#[test]
fn cpusets() {
    assert_eq!(parse_cpuset("0-3,^2").unwrap().into_iter().collect::<Vec<_>>(), vec![0, 1, 3]);
    assert_eq!(parse_cpuset(" 1 , 3-4 ").unwrap().len(), 3);
    for bad in ["", "a", "3-1", "^1-2", "0-99999", "^0"] {
        assert!(parse_cpuset(bad).is_none(), "{bad}");
    }
}

#[test]
fn bad_layouts_are_left_alone() {
    let two = "<domain type='kvm'><vcpu>2</vcpu><cputune/><cputune/></domain>";
    assert!(add(two, &[Monitor::Cache]).monitors_skipped[0].contains("more than one"));
    let bad_count = "<domain type='kvm'><vcpu>many</vcpu></domain>";
    assert!(add(bad_count, &[Monitor::Cache]).monitors_skipped[0].contains("not a vCPU count"));
    let other = "<domain type='kvm'><vcpu>2</vcpu><cputune><cachetune vcpus='0-1'><monitor level='3' vcpus='1'/></cachetune></cputune></domain>";
    let out = add(other, &[Monitor::Cache]);
    assert_eq!(out.xml, None);
    assert!(out.monitors_skipped[0].contains("already has a monitor"));
}

#[test]
fn only_kvm_guests() {
    let out = add("<domain type='qemu'><vcpu>1</vcpu></domain>", &[Monitor::Cache]);
    assert_eq!(out.xml, None);
    assert!(out.monitors_skipped[0].contains("only for type='kvm' guests, this one is type='qemu'"), "{:?}", out.monitors_skipped);
}

#[test]
fn live_monitors_are_read() {
    let xml = "<domain type='kvm'><vcpu>2</vcpu><cputune><cachetune vcpus='0-1'><cache id='0' level='3' type='both' size='1' unit='MiB'/></cachetune><memorytune vcpus='0-1'><monitor vcpus='1'/></memorytune></cputune></domain>";
    assert_eq!(monitors_in(&Document::parse(xml).unwrap()), vec![Monitor::MemoryBandwidth]);
}

/// A small deterministic fuzz of the insertion (the cargo-fuzz target `resctrl` does this at
/// scale): every golden resctrl input cut at each line, with odd layouts spliced in, never
/// panics, and whatever changes parses again and is stable on a second pass.
#[test]
fn mutated_inputs_stay_sound() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let extras = ["<cputune/>", "<cputune></cputune>", "<cachetune vcpus='0-99'/>", "<vcpu>0</vcpu>", "<memorytune vcpus='^0'><monitor vcpus='x'/></memorytune>"];
    for entry in std::fs::read_dir(dir).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("resctrl-")) {
        let xml = std::fs::read_to_string(entry.path().join("in.xml")).unwrap();
        let lines: Vec<&str> = xml.split_inclusive('\n').collect();
        for i in 1..lines.len() {
            for extra in extras {
                let input = format!("{}{extra}\n{}", lines[..i].concat(), lines[i..].concat());
                let Ok(doc) = Document::parse(&input) else { continue };
                let out = doc.rewrite(&[], &Removals::default(), Existing::Respect).unwrap();
                let out = add_monitors(&doc, out, BOTH).unwrap();
                let Some(new) = out.xml else { continue };
                let again = add(&new, BOTH);
                assert_eq!(again.xml, None, "not idempotent:\n{input}\n---\n{new}");
            }
        }
    }
}

/// The rewrite with `unavailable` kinds taken out and `want` added.
fn apply(xml: &str, want: &[Monitor], unavailable: &[Monitor]) -> Outcome {
    let doc = Document::parse(xml).unwrap();
    let out = doc.rewrite(&[], &Removals::default(), Existing::Respect).unwrap();
    let gone: Vec<(Monitor, String)> = unavailable.iter().map(|m| (*m, "no resctrl mount".to_string())).collect();
    apply_monitors(&doc, out, want, &gone).unwrap()
}

const MONITOR_ONLY: &str = "<domain type='kvm'>\n  <name>d</name>\n  <vcpu>2</vcpu>\n  <cputune>\n    <shares>2048</shares>\n    <cachetune vcpus='0-1'>\n      <monitor level='3' vcpus='0-1'/>\n    </cachetune>\n    <memorytune vcpus='0-1'>\n      <monitor vcpus='0-1'/>\n    </memorytune>\n  </cputune>\n</domain>\n";

#[test]
fn monitor_only_tunes_are_removed() {
    let out = apply(MONITOR_ONLY, &[], BOTH);
    assert_eq!(
        out.xml.as_deref().unwrap(),
        "<domain type='kvm'>\n  <name>d</name>\n  <vcpu>2</vcpu>\n  <cputune>\n    <shares>2048</shares>\n  </cputune>\n</domain>\n"
    );
    let kinds: Vec<Monitor> = out.monitors_removed.iter().map(|r| r.monitor).collect();
    assert_eq!(kinds, BOTH);
    assert_eq!(out.summary(), "removed <cachetune> monitor: no resctrl mount; removed <memorytune> monitor: no resctrl mount");
    assert_eq!(out.edits.len(), 2);
    assert!(out.edits.iter().all(|(_, t)| t.is_empty()), "pure deletions: {:?}", out.edits);
    let again = apply(out.xml.as_deref().unwrap(), &[], BOTH);
    assert_eq!(again.xml, None, "idempotent");
    assert!(again.monitors_removed.is_empty());

    // One kind only: the other stays, byte for byte.
    let out = apply(MONITOR_ONLY, &[], &[Monitor::MemoryBandwidth]);
    assert_eq!(out.xml.as_deref().unwrap(), MONITOR_ONLY.replace("    <memorytune vcpus='0-1'>\n      <monitor vcpus='0-1'/>\n    </memorytune>\n", ""));
    assert_eq!(out.summary(), "removed <memorytune> monitor: no resctrl mount");

    // Nothing unavailable: nothing removed.
    assert_eq!(apply(MONITOR_ONLY, &[], &[]).xml, None);
}

#[test]
fn allocations_stay_even_with_a_monitor() {
    let xml = "<domain type='kvm'>\n  <vcpu>2</vcpu>\n  <cputune>\n    <cachetune vcpus='0-1'>\n      <cache id='0' level='3' type='both' size='3' unit='MiB'/>\n      <monitor level='3' vcpus='0-1'/>\n    </cachetune>\n    <memorytune vcpus='0-1'>\n      <node id='0' bandwidth='60'/>\n      <monitor vcpus='0-1'/>\n    </memorytune>\n  </cputune>\n</domain>";
    let out = apply(xml, &[], BOTH);
    assert_eq!(out.xml, None);
    assert!(out.monitors_removed.is_empty());
    // A tune without a monitor is nobody's business here either.
    let bare = "<domain type='kvm'><vcpu>2</vcpu><cputune><cachetune vcpus='0-1'/><memorytune vcpus='0-1'></memorytune></cputune></domain>";
    assert_eq!(apply(bare, &[], BOTH).xml, None);
}

#[test]
fn removal_beside_an_insertion() {
    // This host has the LLC monitor but not MBM: the memorytune goes, a cachetune comes in
    // (where the memorytune was, before it in libvirt's order).
    let xml = "<domain type='kvm'>\n  <vcpu>2</vcpu>\n  <cputune>\n    <memorytune vcpus='0-1'>\n      <monitor vcpus='0-1'/>\n    </memorytune>\n  </cputune>\n</domain>\n";
    let out = apply(xml, &[Monitor::Cache], &[Monitor::MemoryBandwidth]);
    assert_eq!(
        out.xml.as_deref().unwrap(),
        "<domain type='kvm'>\n  <vcpu>2</vcpu>\n  <cputune>\n    <cachetune vcpus='0-1'>\n      <monitor level='3' vcpus='0-1'/>\n    </cachetune>\n  </cputune>\n</domain>\n"
    );
    assert_eq!(out.monitors, vec![Monitor::Cache]);
    assert_eq!(apply(out.xml.as_deref().unwrap(), &[Monitor::Cache], &[Monitor::MemoryBandwidth]).xml, None, "idempotent");

    // On one line, and a memorytune for other vCPUs no longer blocks the new cachetune.
    let xml = "<domain type='kvm'><vcpu>2</vcpu><cputune><memorytune vcpus='1'><monitor vcpus='1'/></memorytune></cputune></domain>";
    let out = apply(xml, &[Monitor::Cache], &[Monitor::MemoryBandwidth]);
    assert_eq!(out.xml.as_deref().unwrap(), "<domain type='kvm'><vcpu>2</vcpu><cputune><cachetune vcpus='0-1'><monitor level='3' vcpus='0-1'/></cachetune></cputune></domain>");
    // A kind both wanted and unavailable is only removed.
    let out = apply(MONITOR_ONLY, BOTH, BOTH);
    assert!(out.monitors.is_empty());
    assert_eq!(out.monitors_removed.len(), 2);
}

#[test]
fn removal_in_every_cputune_and_odd_layouts() {
    let two = "<domain type='kvm'><vcpu>2</vcpu><cputune/><cputune><cachetune vcpus='0-1'><monitor level='3' vcpus='0-1'/></cachetune></cputune></domain>";
    let out = apply(two, &[], &[Monitor::Cache]);
    assert_eq!(out.xml.as_deref().unwrap(), "<domain type='kvm'><vcpu>2</vcpu><cputune/><cputune></cputune></domain>");
    // CRLF, tabs, a comment inside, two tunes of one kind.
    let crlf = "<domain type='kvm'>\r\n\t<vcpu>4</vcpu>\r\n\t<cputune>\r\n\t\t<cachetune vcpus='0-1'>\r\n\t\t\t<!-- mine -->\r\n\t\t\t<monitor level='3' vcpus='0-1'/>\r\n\t\t</cachetune>\r\n\t\t<cachetune vcpus='2-3'><monitor level='3' vcpus='2-3'/></cachetune>\r\n\t</cputune>\r\n</domain>\r\n";
    let out = apply(crlf, &[], &[Monitor::Cache]);
    assert_eq!(out.xml.as_deref().unwrap(), "<domain type='kvm'>\r\n\t<vcpu>4</vcpu>\r\n\t<cputune>\r\n\t</cputune>\r\n</domain>\r\n");
    assert_eq!(out.summary(), "removed 2 <cachetune> monitors: no resctrl mount");
    // A child of another <cputune> element named monitor is not a tune's.
    let other = "<domain type='kvm'><vcpu>1</vcpu><cputune><cachetune vcpus='0'><cache id='0' level='3' type='both' size='1' unit='MiB'/></cachetune><vcpusched vcpus='0'><monitor/></vcpusched></cputune></domain>";
    assert_eq!(apply(other, &[], BOTH).xml, None);
}

#[test]
fn removal_with_a_perf_change() {
    let xml = MONITOR_ONLY.replace("  <cputune>", "  <perf>\n    <event name='cmt' enabled='yes'/>\n  </perf>\n  <cputune>");
    let doc = Document::parse(&xml).unwrap();
    let out = doc.rewrite(&["page_faults"], &Removals { if_enabled: &["cmt"], always: &[] }, Existing::Respect).unwrap();
    let gone = [(Monitor::Cache, "no resctrl mount".to_string())];
    let out = apply_monitors(&doc, out, &[], &gone).unwrap();
    let new = out.xml.as_deref().unwrap();
    assert!(new.contains("<event name='page_faults' enabled='yes'/>") && !new.contains("cmt") && !new.contains("cachetune"), "{new}");
    assert!(new.contains("<memorytune"), "{new}");
    assert_eq!(out.summary(), "added page_faults; removed cmt; removed <cachetune> monitor: no resctrl mount");
}

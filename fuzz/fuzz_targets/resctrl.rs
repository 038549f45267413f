//! Arbitrary bytes → the `<perf>` rewrite plus `resctrl::apply_monitors` for each set of monitors
//! to add and of monitor kinds this host cannot have (whose monitor-only tunes come out).
//! Never panics; when it changes the XML, the output parses again, holds every monitor it says
//! it added and no monitor-only tune of a removed kind, differs from the input only by
//! insertions, deletions of whole tunes or `<perf>` parts (or a `<cputune/>` made whole), and a
//! second pass changes nothing (idempotence).
#![no_main]

use libfuzzer_sys::fuzz_target;
use virt_perf_hook::core::config::Existing;
use virt_perf_hook::core::monitor::Monitor;
use virt_perf_hook::core::resctrl::{apply_monitors, monitors_in, removable};
use virt_perf_hook::core::rewrite::{Document, Outcome, Removals};

const C: Monitor = Monitor::Cache;
const M: Monitor = Monitor::MemoryBandwidth;
/// (monitors to add, kinds this host cannot have): a kind is never in both.
const CASES: &[(&[Monitor], &[Monitor])] = &[
    (&[C], &[]),
    (&[M], &[]),
    (&[C, M], &[]),
    (&[], &[C]),
    (&[], &[M]),
    (&[], &[C, M]),
    (&[C], &[M]),
    (&[M], &[C]),
];
const SETS: &[&[&str]] = &[&[], &["page_faults", "cpu_clock"]];

fn why(gone: &[Monitor]) -> Vec<(Monitor, String)> {
    gone.iter().map(|m| (*m, "no resctrl here".to_string())).collect()
}

fn pass(xml: &str, set: &[&'static str], want: &[Monitor], gone: &[Monitor]) -> Option<Outcome> {
    let doc = Document::parse(xml).ok()?;
    let remove = Removals { if_enabled: &["cmt", "mbmt", "mbml"], always: &[] };
    let out = doc.rewrite(set, &remove, Existing::Respect).ok()?;
    Some(apply_monitors(&doc, out, want, &why(gone)).expect("apply_monitors failed on a parsed document"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else { return };
    for set in SETS {
        for (want, gone) in CASES {
            let Some(out) = pass(xml, set, want, gone) else { continue };
            // What it says it removed is what the reports say a guest must not carry.
            let before = Document::parse(xml).expect("parsed above");
            let said: Vec<Monitor> = out.monitors_removed.iter().map(|r| r.monitor).collect();
            let found: Vec<Monitor> = removable(&before, &why(gone)).iter().map(|r| r.monitor).collect();
            if said != found {
                // Only a tune a <perf> change meets is kept back (logged); nothing else differs.
                assert!(said.len() < found.len(), "removed {said:?}, reports {found:?}\n--- in\n{xml}");
            }
            let Some(new) = out.xml.as_deref() else {
                assert!(out.monitors_removed.is_empty() && out.monitors.is_empty(), "a change without XML\n{xml}");
                continue;
            };
            let ctx = || format!("set {set:?} want {want:?} gone {gone:?}\n--- in\n{xml}\n--- out\n{new}");
            let doc = Document::parse(new).unwrap_or_else(|e| panic!("output does not parse again ({e}); {}", ctx()));
            let live = monitors_in(&doc);
            for m in &out.monitors {
                assert!(live.contains(m), "{m:?} said added but not found; {}", ctx());
            }
            if said == found {
                assert!(removable(&doc, &why(gone)).is_empty(), "a monitor-only tune of a removed kind is left; {}", ctx());
            }
            for (range, text) in &out.edits {
                let old = &xml[range.clone()];
                let pure = old.is_empty() || old.trim_start().starts_with("<cputune") || !text.contains("tune");
                assert!(pure, "a monitor edit replaced {old:?}; {}", ctx());
                if text.is_empty() && old.contains("tune") && !old.contains("<perf") && !old.contains("<event") {
                    let t = old.trim();
                    let whole = (t.starts_with("<cachetune") && t.ends_with("</cachetune>"))
                        || (t.starts_with("<memorytune") && t.ends_with("</memorytune>"));
                    assert!(whole, "a deletion cut {old:?}; {}", ctx());
                }
            }
            let again = pass(new, set, want, gone).expect("output rejected on a second pass");
            assert_eq!(again.xml, None, "not idempotent; {}", ctx());
        }
    }
});

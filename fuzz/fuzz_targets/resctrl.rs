//! Arbitrary bytes → the `<perf>` rewrite plus `resctrl::add_monitors` for each set of monitors.
//! Never panics; when it changes the XML, the output parses again, holds every monitor it says
//! it added, differs from the input only by insertions (or a `<cputune/>` made whole), and a
//! second pass changes nothing (idempotence).
#![no_main]

use libfuzzer_sys::fuzz_target;
use virt_perf_hook::core::resctrl::{add_monitors, monitors_in, Monitor};
use virt_perf_hook::core::config::Existing;
use virt_perf_hook::core::rewrite::{Document, Removals};

const WANTS: &[&[Monitor]] = &[&[Monitor::Cache], &[Monitor::MemoryBandwidth], &[Monitor::Cache, Monitor::MemoryBandwidth]];
const SETS: &[&[&str]] = &[&[], &["page_faults", "cpu_clock"]];

fn pass(xml: &str, set: &[&'static str], want: &[Monitor]) -> Option<virt_perf_hook::core::rewrite::Outcome> {
    let doc = Document::parse(xml).ok()?;
    let remove = Removals { if_enabled: &["cmt", "mbmt", "mbml"], always: &[] };
    let out = doc.rewrite(set, &remove, Existing::Respect).ok()?;
    Some(add_monitors(&doc, out, want).expect("add_monitors failed on a parsed document"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else { return };
    for set in SETS {
        for want in WANTS {
            let Some(out) = pass(xml, set, want) else { continue };
            let Some(new) = out.xml.as_deref() else { continue };
            let ctx = || format!("set {set:?} want {want:?}\n--- in\n{xml}\n--- out\n{new}");
            let doc = Document::parse(new).unwrap_or_else(|e| panic!("output does not parse again ({e}); {}", ctx()));
            let live = monitors_in(&doc);
            for m in &out.monitors {
                assert!(live.contains(m), "{m:?} said added but not found; {}", ctx());
            }
            for (range, text) in &out.edits {
                let old = &xml[range.clone()];
                let pure = old.is_empty() || old.trim_start().starts_with("<cputune") || !text.contains("tune");
                assert!(pure, "a monitor edit replaced {old:?}; {}", ctx());
            }
            let again = pass(new, set, want).expect("output rejected on a second pass");
            assert_eq!(again.xml, None, "not idempotent; {}", ctx());
        }
    }
});

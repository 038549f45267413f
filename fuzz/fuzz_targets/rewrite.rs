//! Arbitrary bytes → `rewrite::rewrite` for a few event sets and both `existing` policies.
//! Never panics; when it returns changed XML, the output parses again, has each requested
//! event exactly once, and a second rewrite changes nothing (idempotence).
#![no_main]

use libfuzzer_sys::fuzz_target;
use virt_perf_hook::core::rewrite::Existing;
use virt_perf_hook::core::rewrite::{rewrite, Document};

const SETS: &[&[&'static str]] = &[
    &[],
    &["page_faults"],
    &["cpu_cycles", "instructions", "cache_misses", "page_faults", "cpu_clock"],
    &["cmt", "task_clock", "cpu_clock", "emulation_faults"],
];

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else { return };
    for set in SETS {
        for existing in [Existing::Respect, Existing::Override] {
            let Ok(out) = rewrite(xml, set, existing) else { continue };
            let Some(new) = out.xml.as_deref() else { continue };
            let doc = match Document::parse(new) {
                Ok(d) => d,
                Err(e) => panic!("output does not parse again ({e}); set {set:?} {existing:?}\n--- in\n{xml}\n--- out\n{new}"),
            };
            let events = doc.perf_events();
            for want in set.iter() {
                let n = events.iter().filter(|(name, _)| name == want).count();
                assert_eq!(n, 1, "event {want} present {n} times; set {set:?} {existing:?}\n--- in\n{xml}\n--- out\n{new}");
            }
            // No duplicates of anything after a rewrite (libvirt rejects them).
            for (i, (name, _)) in events.iter().enumerate() {
                assert!(
                    !events[..i].iter().any(|(n, _)| n == name),
                    "duplicate event {name} after rewrite\n--- in\n{xml}\n--- out\n{new}"
                );
            }
            let again = rewrite(new, set, existing).expect("rewritten output is rejected on a second pass");
            assert_eq!(again.xml, None, "not idempotent; set {set:?} {existing:?}\n--- in\n{xml}\n--- out\n{new}");
        }
    }
});

//! Arbitrary bytes → `rewrite::rewrite` for a few event sets, removal sets and both `existing`
//! policies. Never panics; when it returns changed XML, the output parses again, has each
//! requested event exactly once (unless it is to be removed), no removed event enabled (none at
//! all of those removed in any state), keeps the first `enabled='no'` entry of every other event,
//! and a second rewrite changes nothing (idempotence).
#![no_main]

use libfuzzer_sys::fuzz_target;
use virt_perf_hook::core::config::Existing;
use virt_perf_hook::core::rewrite::{rewrite, Document, Removals};

const SETS: &[&[&str]] = &[
    &[],
    &["page_faults"],
    &["cpu_cycles", "instructions", "cache_misses", "page_faults", "cpu_clock"],
    &["cmt", "task_clock", "cpu_clock", "emulation_faults"],
];

/// (removed when enabled='yes', removed in any state)
const REMOVALS: &[(&[&str], &[&str])] = &[
    (&[], &[]),
    (&["cmt", "mbmt", "mbml", "cpu_cycles", "instructions"], &[]),
    (&["cmt"], &["page_faults", "future_event"]),
];

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else { return };
    // The input's first state of each event, for the "enabled='no' is kept" check.
    let before: Vec<(String, Option<String>)> = match Document::parse(xml) {
        Ok(d) => d.perf_events().into_iter().map(|(n, e)| (n.to_string(), e.map(str::to_string))).collect(),
        Err(_) => Vec::new(),
    };
    for set in SETS {
        for &(if_enabled, always) in REMOVALS {
            let remove = Removals { if_enabled, always };
            for existing in [Existing::Respect, Existing::Override] {
                let ctx = || format!("set {set:?} remove {remove:?} {existing:?}\n--- in\n{xml}");
                let Ok(out) = rewrite(xml, set, &remove, existing) else { continue };
                let Some(new) = out.xml.as_deref() else { continue };
                let doc = match Document::parse(new) {
                    Ok(d) => d,
                    Err(e) => panic!("output does not parse again ({e}); {}\n--- out\n{new}", ctx()),
                };
                let events = doc.perf_events();
                for want in set.iter().filter(|w| !if_enabled.contains(w) && !always.contains(w)) {
                    let n = events.iter().filter(|(name, _)| name == want).count();
                    assert_eq!(n, 1, "event {want} present {n} times; {}\n--- out\n{new}", ctx());
                }
                for (name, enabled) in &events {
                    assert!(!always.contains(name), "{name} not removed; {}\n--- out\n{new}", ctx());
                    let on = *enabled == Some("yes");
                    assert!(!(on && if_enabled.contains(name)), "{name} still enabled; {}\n--- out\n{new}", ctx());
                }
                for (i, (name, enabled)) in before.iter().enumerate() {
                    let first = !before[..i].iter().any(|(n, _)| n == name);
                    let forced = existing == Existing::Override && set.contains(&name.as_str());
                    if first && enabled.as_deref() == Some("no") && !always.contains(&name.as_str()) && !forced {
                        assert!(
                            events.contains(&(name.as_str(), Some("no"))),
                            "{name}='no' was not kept; {}\n--- out\n{new}",
                            ctx()
                        );
                    }
                }
                // No duplicates of anything after a rewrite (libvirt rejects them).
                for (i, (name, _)) in events.iter().enumerate() {
                    assert!(!events[..i].iter().any(|(n, _)| n == name), "duplicate event {name}; {}\n--- out\n{new}", ctx());
                }
                let again = rewrite(new, set, &remove, existing).expect("rewritten output is rejected on a second pass");
                assert_eq!(again.xml, None, "not idempotent; {}\n--- out\n{new}", ctx());
            }
        }
    }
});

//! Namespaces, checked against libvirt itself (the test driver's parser is the one every driver
//! uses): after `filter`, libvirt sees exactly the configured events enabled, whether the guest
//! brought a prefixed `x:enabled`, a `<perf>` in a foreign namespace, or an `<x:perf>`.

use std::process::Command;

use crate::common::*;
use crate::skip;

#[test]
fn libvirt_sees_the_configured_events_after_filter() {
    if !have("virsh") {
        skip!("virsh not installed (apt-get install libvirt-clients)");
    }
    let cfg = r#"{"enabled_perf_events": ["page_faults", "cpu_clock"], "libvirt_version": "9.0.0", "host_probe": false, "existing": "override"}"#;
    let root = TempDir::with_config("namespaces", cfg);
    let cases = [
        "<perf><event name='cpu_clock' x:enabled='no'/></perf>",
        "<perf><event name='cpu_clock' x:enabled='no' enabled='yes'/></perf>",
        "<perf xmlns='urn:f'><event name='cpu_clock' enabled='no'/></perf>",
        "<x:perf><x:event name='task_clock' enabled='yes'/></x:perf>",
        "<perf><event xmlns='urn:f' name='cpu_clock' enabled='no'/></perf>",
    ];
    for (i, perf) in cases.iter().enumerate() {
        let name = format!("ns{i}");
        let xml = format!(
            "<domain type='test' xmlns:x='urn:x'><name>{name}</name><memory>65536</memory><os><type>hvm</type></os>{perf}</domain>\n"
        );
        let input = root.write(&format!("{name}.xml"), &xml);
        let out = run_in(root.path(), &["filter", input.to_str().unwrap()], "");
        assert_eq!(out.status.code(), Some(0), "{perf}: {}", stderr(&out));
        let filtered = root.write(&format!("{name}-out.xml"), &stdout(&out));
        let seen = Command::new("virsh")
            .args(["-q", "-c", "test:///default", &format!("define {}; dumpxml {name}", filtered.display())])
            .output()
            .unwrap();
        let seen = stdout(&seen);
        for e in ["page_faults", "cpu_clock"] {
            assert!(seen.contains(&format!("<event name='{e}' enabled='yes'/>")), "{perf}: libvirt sees\n{seen}");
        }
        assert!(!seen.contains("task_clock"), "{perf}: a foreign event is not libvirt's:\n{seen}");
    }
}

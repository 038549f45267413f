//! `status` against a fake `$VIRSH` (see `virsh.rs`): what each guest has in its config and live,
//! the counters judged from two `virsh domstats` samples, events at risk, the JSON and the exit
//! status. The real-libvirtd side is in `heal.rs`.

use std::process::Output;

use crate::common::*;
use crate::virsh::{perf, table_row, FakeVirsh};

/// Software events only are configured; host_probe on under the fake root, so hardware and RDT
/// events cannot open.
const CFG: &str = r#"{"enabled_perf_events": ["task_clock"], "libvirt_version": "9.0.0", "domains": {"exclude": ["skip-*"]}}"#;

/// `Domain: 'name'` blocks with cpu.time and perf.<clock> (ns).
fn domstats(rows: &[(&str, &str, u64, u64)]) -> String {
    rows.iter().map(|(n, clock, cpu, c)| format!("Domain: '{n}'\n  cpu.time={cpu}\n  cpu.user=1\n  perf.{clock}={c}\n\n")).collect()
}

/// The row for `name`: DOMAIN, STATE, CONFIG, LIVE, COUNTERS, AT RISK, DETAIL.
fn cells(out: &Output, name: &str) -> Vec<String> {
    let mut v = vec![name.to_string()];
    v.extend(table_row(out, name, &["STATE", "CONFIG", "LIVE", "COUNTERS", "AT RISK", "DETAIL"]));
    v
}

/// Every kind of guest the status command tells apart.
fn fleet() -> FakeVirsh {
    let f = FakeVirsh::new("fake-status");
    let clock = perf(&[("task_clock", "yes")]);
    for n in ["complete", "partial"] {
        f.domain(n, &clock);
        f.live(n, &clock);
    }
    f.domain("idle", &clock);
    f.live("idle", &perf(&[("cpu_clock", "yes"), ("page_faults", "yes")]));
    f.domain("no-clock", "");
    f.live("no-clock", &perf(&[("page_faults", "yes")]));
    f.domain("none", &clock);
    f.live("none", "");
    f.domain("off", &perf(&[("cmt", "yes"), ("cpu_cycles", "no"), ("task_clock", "yes")]));
    f.domain("skip-me", "");
    f.lists(
        &["complete", "partial", "idle", "no-clock", "none", "off", "skip-me"],
        &["complete", "partial", "idle", "no-clock", "none"],
    );
    // Measured shapes (libvirt 9.0.0, one busy vCPU): restored = complete, enabled live = partial.
    // (guest, clock, cpu.time and clock in the first sample, then in the second)
    let samples: [(&str, &str, [u64; 4]); 4] = [
        ("complete", "task_clock", [329_055_000, 327_294_664, 1_348_047_000, 1_346_659_670]),
        ("partial", "task_clock", [1_315_301_000, 72_728, 2_336_461_000, 1_693_201]),
        ("idle", "cpu_clock", [900_000_000, 899_000_000, 901_000_000, 900_000_000]),
        ("someone-else", "task_clock", [1, 1, 2, 2]),
    ];
    for (i, file) in ["domstats-1", "domstats-2"].into_iter().enumerate() {
        let rows: Vec<(&str, &str, u64, u64)> = samples.iter().map(|(n, c, v)| (*n, *c, v[2 * i], v[2 * i + 1])).collect();
        f.dir.write(file, &domstats(&rows));
    }
    f
}

#[test]
fn status_tells_what_each_guest_has() {
    let f = fleet();
    let out = f.run(CFG, "status", &["--all"]);
    assert_eq!(out.status.code(), Some(1), "partial, unknown and at risk: {}{}", stdout(&out), stderr(&out));
    let row = |n: &str| cells(&out, n);
    let c = row("complete");
    assert_eq!(c[1..6], ["running", "task_clock", "task_clock", "complete", "-"], "{c:?}");
    // The interval is ~1 s, as measured (a loaded machine may stretch it).
    assert!(c[6].starts_with("task_clock counted 100.0% of its CPU time over 1.") && c[6].ends_with(" s"), "{c:?}");
    let p = row("partial");
    assert_eq!(p[4], "partial");
    assert!(p[6].starts_with("task_clock counted 0.2% of its CPU time over 1."), "{p:?}");
    assert!(p[6].contains(" s: the counters were opened on the running guest and miss its vCPU threads"), "{p:?}");
    let i = row("idle");
    assert_eq!(i[3..5], ["cpu_clock,page_faults", "complete"]);
    assert!(i[6].starts_with("cpu_clock counted 99.9% of its CPU time since its start (it was idle"), "{i:?}");
    let n = row("no-clock");
    assert_eq!(n[4], "unknown");
    assert!(n[6].starts_with("no task_clock or cpu_clock live"), "{n:?}");
    let none = row("none");
    assert_eq!(none[3..5], ["-", "none"]);
    assert_eq!(none[6], "no events live; the config's events start at its next start (boot, restore or migration)");
    let off = row("off");
    assert_eq!(off[1..6], ["off", "cmt,task_clock", "-", "none", "cmt"], "{off:?}");
    assert!(off[6].starts_with("not running; the next start fails on cmt (the host cannot open it: no /sys/devices/intel_cqm"), "{off:?}");
    assert!(off[6].ends_with("run 'virt-perf-hook apply'"), "{off:?}");
    let skip = row("skip-me");
    assert_eq!(skip[1], "skipped");
    assert!(stderr(&out).contains("1 partial, 1 unknown, 1 with events at risk"), "{}", stderr(&out));

    // Read-only, and two domstats calls for all guests together.
    let log = f.log();
    assert!(log.iter().all(|l| !l.starts_with("[define]") && !l.starts_with("[perf]")), "{log:?}");
    let stats: Vec<&String> = log.iter().filter(|l| l.starts_with("[domstats]")).collect();
    assert_eq!(stats, ["[domstats][--perf][--cpu-total][--list-active]"; 2]);
    let (partial, off) = (FakeVirsh::uuid("partial"), FakeVirsh::uuid("off"));
    assert!(log.contains(&format!("[dumpxml][--domain][{partial}]")), "live XML read: {log:?}");
    assert!(!log.contains(&format!("[dumpxml][--domain][{off}]")), "no live XML for a guest that is off: {log:?}");
    // Guests by UUID, in a handful of virsh processes whatever their number: the lists, the
    // persistent configs, the live XML, and the two samples.
    let skip = FakeVirsh::uuid("skip-me");
    assert!(log.contains(&format!("[dumpxml][--inactive][--domain][{skip}]")), "its name decides: {log:?}");
    assert!(!log.contains(&format!("[dumpxml][--domain][{skip}]")), "an excluded guest is not examined: {log:?}");
    assert_eq!(f.procs().len(), 5, "{:#?}", f.procs());
}

/// A guest given twice (by name and by UUID) is one row; one that cannot be read fails alone,
/// in the middle of the batch.
#[test]
fn status_one_failure_in_a_batch_is_that_guest_only() {
    let f = fleet();
    std::fs::write(f.path("none", "fail-dumpxml"), "").unwrap();
    let out = f.run(CFG, "status", &["--json", "complete", "none", &FakeVirsh::uuid("complete"), "off"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let guests = v["guests"].as_array().unwrap();
    let names: Vec<&str> = guests.iter().map(|g| g["domain"].as_str().unwrap()).collect();
    assert_eq!(names, ["complete", "none", "off"]);
    assert_eq!(guests[0]["counters"], "complete");
    assert_eq!(guests[1]["counters"], "unknown");
    assert_eq!(guests[1]["reason"], format!("error: internal error: boom reading {}", FakeVirsh::uuid("none")));
    assert_eq!(guests[2]["counters"], "none");
}

#[test]
fn status_json_schema_1() {
    let f = fleet();
    let out = f.run(CFG, "status", &["--json", "--all"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(stdout(&out).starts_with("{\n  \"schema\": 1,\n  \"libvirt\": \"9.0.0\",\n  \"ok\": false,"), "{}", stdout(&out));
    assert_eq!(v["summary"], serde_json::json!({"complete": 2, "partial": 1, "none": 2, "unknown": 1, "at_risk": 1}));
    assert_eq!(v["skipped"], serde_json::json!(["skip-me"]));
    let guests = v["guests"].as_array().unwrap();
    assert_eq!(guests.len(), 6);
    let off = guests.iter().find(|g| g["domain"] == "off").unwrap();
    let mut keys: Vec<&String> = off.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["at_risk", "config_events", "counters", "domain", "live_events", "reason", "running", "uuid"]);
    assert_eq!(off["uuid"], FakeVirsh::uuid("off"));
    assert_eq!(off["running"], false);
    assert_eq!(off["config_events"], serde_json::json!(["cmt", "task_clock"]));
    assert_eq!(off["at_risk"][0]["event"], "cmt");
    assert!(off["at_risk"][0]["reason"].as_str().unwrap().starts_with("the host cannot open it: "));
    let partial = guests.iter().find(|g| g["domain"] == "partial").unwrap();
    assert_eq!((partial["running"].as_bool(), partial["counters"].as_str()), (Some(true), Some("partial")));
}

#[test]
fn status_exits_zero_only_when_all_is_well() {
    let f = fleet();
    // Complete, none and off with nothing at risk: nothing shown is wrong, no start will fail.
    let out = f.run(CFG, "status", &["complete", "none", "skip-me"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 4, "{}", stdout(&out));
    f.domain("off", &perf(&[("cpu_cycles", "no")]));
    let out = f.run(CFG, "status", &["--json", "off"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // Without a live clock event nothing is sampled (and nothing waits).
    let f = fleet();
    let out = f.run(CFG, "status", &["no-clock", "off"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(f.log().iter().all(|l| !l.starts_with("[domstats]")), "{:?}", f.log());
    // With the version unknown to the config and virsh, status still runs on the probe alone.
    let out = f.run(r#"{"enabled_perf_events": []}"#, "status", &["partial"]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", stderr(&out));
}

#[test]
fn status_errors() {
    let f = fleet();
    let out = f.run("{", "status", &["--all"]);
    assert_eq!(out.status.code(), Some(3), "bad config: {}", stderr(&out));
    let out = f.run(CFG, "status", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("status: give --all or domain names"), "{}", stderr(&out));
    // An unknown guest is a row that says why, and exit 1; the others are still judged.
    let out = f.run(CFG, "status", &["ghost", "complete"]);
    assert_eq!(out.status.code(), Some(1));
    let g = cells(&out, "ghost");
    assert_eq!(g[4], "unknown");
    assert!(g[6].contains("failed to get domain 'ghost'"), "{g:?}");
    assert_eq!(cells(&out, "complete")[4], "complete");
}

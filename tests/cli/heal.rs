//! On a real libvirtd (root and VPH_SYSTEM_TESTS=1 only; CI installs libvirt and QEMU): guests
//! that carry an event this host cannot open are healed by the hook (restore) and by `apply`
//! (persistent config), and `status` tells counters enabled on a running guest (partial) from
//! counters opened at launch (complete). Each test starts its own daemon (see `common::Libvirt`).

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use crate::libvirt_or_skip;

/// The reproduction: `virsh restore FILE --xml EDITED` where EDITED enables an event this
/// host cannot open fails without the hook and restores with it, and the hook logs the removal.
#[test]
fn restore_with_an_unopenable_event_is_healed_by_the_hook() {
    let mut host = libvirt_or_skip!();
    // Nothing to add: healing is on anyway.
    let (work, config) = work("heal-restore", &[]);
    let log = work.path().join("hook.err");
    let entry = Path::new(QEMU_D).join("zz-vph-heal");
    host.install_logged_qemu_hook(&entry, &config, &log);
    host.start();

    let guest = "vph-heal-restore";
    let event = unopenable_event();
    host.define(guest, &tcg_guest(guest, ""), &work);
    virsh_ok(&["start", guest]);
    let save = work.path().join("guest.save");
    let save = save.to_str().unwrap();
    virsh_ok(&["save", guest, save]);
    let edited = work.write("edited.xml", &with_event(&virsh_ok(&["save-image-dumpxml", save]), &event));

    // Without the hook: libvirt cannot open the event and the guest stays off (the test bites).
    // libvirt lists qemu.d on every call, so taking the entry away is enough.
    let kept = std::fs::read_to_string(&entry).unwrap();
    std::fs::remove_file(&entry).unwrap();
    let out = virsh(&["restore", save, "--xml", edited.to_str().unwrap()]);
    assert!(!out.status.success(), "restored although {event} cannot open here");
    assert!(stderr(&out).contains(&event), "libvirt's error names the event: {}", stderr(&out));
    assert_eq!(virsh_ok(&["domstate", guest]).trim(), "shut off");

    // With the hook: restored, the event removed, and the removal logged with the reason.
    std::fs::write(&entry, kept).unwrap();
    set_mode(&entry, 0o755);
    virsh_ok(&["restore", save, "--xml", edited.to_str().unwrap()]);
    assert_eq!(virsh_ok(&["domstate", guest]).trim(), "running");
    let live = virsh_ok(&["dumpxml", guest]);
    assert!(!live.contains("<perf"), "the emptied <perf> should be gone:\n{live}");
    let logged = std::fs::read_to_string(&log).unwrap();
    let line = format!("warn: restore begin: domain '{guest}': removed {event} (the host cannot open it: ");
    assert!(logged.contains(&line), "removal not logged:\n{logged}");
}

/// A persistent guest whose config enables an event this host cannot open does not start
/// (a kernel upgrade took `cmt` away, say); `apply` removes it from the config and it starts.
#[test]
fn apply_heals_a_guest_that_cannot_start() {
    let mut host = libvirt_or_skip!();
    host.start();
    let (work, config) = work("heal-apply", &["page_faults"]);
    let guest = "vph-heal-apply";
    let event = unopenable_event();
    host.define(guest, &with_event(&tcg_guest(guest, ""), &event), &work);

    let out = virsh(&["start", guest]);
    assert!(!out.status.success(), "started although {event} cannot open here");
    assert!(stderr(&out).contains(&event), "{}", stderr(&out));

    let out = tool(&config, &["apply", "--connect", URI, guest]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let table = stdout(&out);
    // Not configured: disabled atomically ('virsh perf --disable'), which is what libvirt does
    // without the element; see docs/watch-and-apply.md.
    let want = format!("changed  added page_faults; disabled {event} (the host cannot open it: ");
    assert!(table.contains(&want), "{table}");
    virsh_ok(&["start", guest]);
    let live = virsh_ok(&["dumpxml", guest]);
    assert!(live.contains("<event name='page_faults' enabled='yes'/>") && !live.contains(&format!("<event name='{event}' enabled='yes'/>")), "{live}");
    let out = tool(&config, &["status", "--connect", URI, guest]);
    assert!(stdout(&out).contains(" running "), "{}", stdout(&out));
}

/// `virsh domstats` cpu.time and perf.task_clock of `guest` (ns).
fn sample(guest: &str) -> (u64, u64) {
    let text = virsh_ok(&["domstats", "--perf", "--cpu-total", guest]);
    let field = |k: &str| {
        text.lines().find_map(|l| l.trim().strip_prefix(k)).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {k} in {text}"))
    };
    (field("cpu.time="), field("perf.task_clock="))
}

/// The counters of `guest` by `status --json`: (counters, reason).
fn judged(config: &Path, guest: &str) -> (Option<i32>, String, String) {
    let out = tool(config, &["status", "--json", "--connect", URI, guest]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    let g = &v["guests"][0];
    (out.status.code(), g["counters"].as_str().unwrap().to_string(), g["reason"].as_str().unwrap().to_string())
}

/// A busy guest with task_clock enabled live is partial; saved and restored (counters opened
/// at launch) it is complete, and task_clock then follows its CPU time within 10 %. A daemon
/// restart reopens the counters on the running guest: partial again.
#[test]
fn status_tells_live_enabled_counters_from_complete_ones() {
    let mut host = libvirt_or_skip!();
    host.start();
    let (work, config) = work("heal-status", &["task_clock"]);
    let guest = "vph-heal-busy";
    host.define(guest, &tcg_guest(guest, &busy_disk(&work, guest)), &work);
    virsh_ok(&["start", guest]);
    virsh_ok(&["perf", guest, "--enable", "task_clock", "--live"]);

    let (code, counters, reason) = judged(&config, guest);
    assert_eq!((code, counters.as_str()), (Some(1), "partial"), "{reason}");
    assert!(reason.contains("miss its vCPU threads"), "{reason}");

    let save = work.path().join("busy.save");
    virsh_ok(&["save", guest, save.to_str().unwrap()]);
    virsh_ok(&["restore", save.to_str().unwrap()]);
    let (code, counters, reason) = judged(&config, guest);
    assert_eq!((code, counters.as_str()), (Some(0), "complete"), "{reason}");

    let (cpu0, clock0) = sample(guest);
    std::thread::sleep(Duration::from_secs(3));
    let (cpu1, clock1) = sample(guest);
    let (cpu, clock) = ((cpu1 - cpu0) as f64, (clock1 - clock0) as f64);
    assert!(cpu > 1e9, "the guest should spin: {cpu} ns CPU in 3 s");
    assert!((clock / cpu - 1.0).abs() <= 0.1, "task_clock {clock} ns vs CPU time {cpu} ns");

    host.restart();
    let (_, counters, reason) = judged(&config, guest);
    assert_eq!(counters, "partial", "after a daemon restart: {reason}");
}

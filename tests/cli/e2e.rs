//! End to end on a real libvirtd (root only; CI installs libvirt and QEMU): the shipped qemu.d
//! entry runs the built binary, a TCG guest goes through save/restore and managedsave/start, and
//! the configured software events are live afterwards while the hardware event this host cannot
//! open is dropped (so the guest still restores).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::libvirt_or_skip;

const GUEST: &str = "vph-e2e-t1";

#[test]
fn save_restore_and_managedsave_on_real_libvirtd() {
    let mut host = libvirt_or_skip!();
    let work = TempDir::new("e2e");
    let config = work.path().join("config.json");
    // cpu_cycles is hardware: it cannot be opened on a host without a PMU and must be dropped.
    write_config(&config, &["page_faults", "cpu_clock", "cpu_cycles"]);
    let syslog = host.listen_syslog();

    // A recorder first in the chain: it prints nothing, so libvirt hands our entry the original XML.
    let record = work.path().join("hook.log");
    host.install_exec(
        &Path::new(QEMU_D).join("00-vph-e2e-record"),
        &format!("#!/bin/sh\necho \"$*\" >> {}\ncat >/dev/null\n", record.display()),
    );
    host.install_entry("hooks/qemu.d/virt-perf-hook", &Path::new(QEMU_D).join("zz-vph-e2e"), &config, None);
    host.install_entry("hooks/daemon.d/virt-perf-hook", &Path::new(DAEMON_D).join("zz-vph-e2e"), &config, None);
    // Hooks are found at daemon start only: they are in place before this.
    host.start();

    // The daemon hook refreshed the cache at daemon start.
    let state = Path::new(CACHE_DIR).join("state.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !state.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(state.exists(), "daemon start hook did not write {}", state.display());

    host.define(GUEST, &tcg_guest(GUEST, ""), &work);
    virsh_ok(&["start", GUEST]);
    assert!(!virsh_ok(&["dumpxml", GUEST]).contains("<perf>"), "a plain start is not rewritten");

    // save + restore: libvirt runs 'restore begin' and uses the hook's XML.
    let save = work.path().join("t1.save");
    virsh_ok(&["save", GUEST, save.to_str().unwrap()]);
    virsh_ok(&["restore", save.to_str().unwrap()]);
    assert_eq!(virsh_ok(&["domstate", GUEST]).trim(), "running");
    let live = virsh_ok(&["dumpxml", GUEST]);
    assert!(live.contains("<event name='page_faults' enabled='yes'/>"), "{live}");
    assert!(live.contains("<event name='cpu_clock' enabled='yes'/>"), "{live}");
    assert!(!live.contains("cpu_cycles"), "the unopenable hardware event was added:\n{live}");
    let stats = virsh_ok(&["domstats", "--perf", GUEST]);
    assert!(stats.contains("perf.page_faults=") && stats.contains("perf.cpu_clock="), "{stats}");
    let calls = std::fs::read_to_string(&record).unwrap();
    assert!(calls.contains(&format!("{GUEST} restore begin -")), "{calls}");

    if let Some(lines) = &syslog {
        let all = lines.lock().unwrap().join("\n");
        let line = format!("restore begin: domain '{GUEST}': added cpu_clock,page_faults; dropped cpu_cycles (the host cannot open it: ");
        assert!(all.contains(&line), "rewrite and drop not logged:\n{all}");
    } else {
        skipping(&format!("the syslog check of {}", module_path!()), "/dev/log belongs to a syslog daemon; log lines not checked");
    }

    // managedsave + start also goes through 'restore begin'; a config change is picked up.
    write_config(&config, &["page_faults", "cpu_clock", "task_clock", "cpu_cycles"]);
    virsh_ok(&["managedsave", GUEST]);
    virsh_ok(&["start", GUEST]);
    let live = virsh_ok(&["dumpxml", GUEST]);
    assert!(live.contains("<event name='task_clock' enabled='yes'/>"), "{live}");
    assert_eq!(live.matches("<perf>").count(), 1);
    let stats = virsh_ok(&["domstats", "--perf", GUEST]);
    assert!(stats.contains("perf.task_clock="), "{stats}");

    virsh_ok(&["destroy", GUEST]);
    virsh_ok(&["undefine", GUEST, "--managed-save"]);

    // define/apply against the same daemon.
    crate::virsh::real_libvirtd_checks(URI);
}

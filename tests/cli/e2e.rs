//! End to end on a real libvirtd (root and VPH_SYSTEM_TESTS=1 only; CI installs libvirt and
//! QEMU): the shipped qemu.d and daemon.d entries (symlinks straight to the binary, here the built
//! one, run through a wrapper that gives it the test's cache) run with the real config file, a TCG guest goes through save/restore and managedsave/start, and the configured
//! software events are live afterwards while the hardware event this host cannot open is dropped
//! (so the guest still restores). Entries whose binary is gone (dangling symlinks) are skipped by
//! libvirt: guests start with them in place.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::libvirt_or_skip;
use crate::virsh::NEXT_START;

const GUEST: &str = "vph-e2e-t1";

/// Holds an exclusive flock on `path` from another process (`flock -x`) for at most `limit`;
/// released when the returned child is dropped (killed). `--no-fork`: flock execs the command,
/// so the process killed is the one holding the lock (a forked `sleep` would outlive the test
/// and hold the cache lock for the tests after it).
fn hold_lock_for(path: &Path, limit: Duration) -> KillOnDrop {
    let child = Command::new("flock")
        .arg("--no-fork")
        .arg("-x")
        .arg(path)
        .arg("-c")
        .arg(format!("echo held; exec sleep {}", limit.as_secs()))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    // Wait until it has the lock.
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.0.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "held");
    child
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `apply --dry-run` on the running e2e guest given by ID and by UUID: the row is the guest's
/// name, it is known to run (its change waits for its next start), and a config that excludes
/// it skips it.
fn apply_by_id_and_uuid(work: &TempDir) {
    let id = virsh_ok(&["domid", GUEST]).trim().to_string();
    let uuid = virsh_ok(&["domuuid", GUEST]).trim().to_string();
    for (tag, domains, want) in [("incl", serde_json::json!({}), "would change"), ("excl", serde_json::json!({"exclude": [GUEST]}), "skipped")] {
        let cfg = work.path().join(format!("apply-{tag}.json"));
        let text = serde_json::json!({"enabled_perf_events": ["task_clock"], "libvirt_version": "9.0.0", "host_probe": false, "domains": domains});
        std::fs::write(&cfg, text.to_string()).unwrap();
        set_mode(&cfg, 0o644);
        for target in [&id, &uuid] {
            let out = run_in(work.path(), &["--config", cfg.to_str().unwrap(), "apply", "--connect", URI, "--dry-run", target], "");
            assert_eq!(out.status.code(), Some(0), "{tag} {target}: {}{}", stdout(&out), stderr(&out));
            let table = stdout(&out);
            let row = table.lines().nth(1).unwrap_or_default();
            assert!(row.starts_with(GUEST) && row.contains(want), "{tag} {target}: {table}");
            if want == "would change" {
                assert!(row.ends_with(&format!("added task_clock; {NEXT_START}")), "{tag} {target}: {table}");
            }
        }
    }
}

#[test]
fn save_restore_and_managedsave_on_real_libvirtd() {
    let mut host = libvirt_or_skip!();
    let work = TempDir::new("e2e");
    // cpu_cycles is hardware: it cannot be opened on a host without a PMU and must be dropped.
    host.config(&["page_faults", "cpu_clock", "cpu_cycles"]);
    let syslog = host.listen_syslog();

    // A recorder first in the chain: it prints nothing, so libvirt hands our entry the original XML.
    let record = work.path().join("hook.log");
    host.install_exec(
        &Path::new(QEMU_D).join("00-vph-e2e-record"),
        &format!("#!/bin/sh\necho \"$*\" >> {}\ncat >/dev/null\n", record.display()),
    );
    host.install_entry("hooks/qemu.d/virt-perf-hook", &Path::new(QEMU_D).join("zz-vph-e2e"), Path::new(BIN));
    host.install_entry("hooks/daemon.d/virt-perf-hook", &Path::new(DAEMON_D).join("zz-vph-e2e"), Path::new(BIN));
    // What a removed package's entry would be if it stayed behind: libvirt must skip it.
    for dir in [QEMU_D, DAEMON_D] {
        host.install_entry("hooks/qemu.d/virt-perf-hook", &Path::new(dir).join("zz-vph-e2e-gone"), Path::new("/nonexistent/virt-perf-hook"));
    }
    // Hooks are found at daemon start only: they are in place before this.
    host.start();

    // The daemon hook refreshed the cache at daemon start: the test's own, never the host's.
    let real_cache = Path::new(CACHE_DIR).symlink_metadata().is_ok();
    let state = host.cache_dir().join("state.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !state.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(state.exists(), "daemon start hook did not write {}", state.display());
    assert_eq!(Path::new(CACHE_DIR).symlink_metadata().is_ok(), real_cache, "the hook touched the host's {CACHE_DIR}");

    // Metadata nested to the deepest level libvirt accepts (257, <domain> being 1): the hook
    // must accept what libvirt accepts, or (on_error: fail) the restore is aborted.
    let deep = format!("<metadata>{}{}</metadata>", "<vph:a xmlns:vph='urn:vph'>".repeat(255), "</vph:a>".repeat(255));
    host.define(GUEST, &tcg_guest(GUEST, "").replacen("<os>", &format!("{deep}\n<os>"), 1), &work);
    virsh_ok(&["start", GUEST]);
    assert!(!virsh_ok(&["dumpxml", GUEST]).contains("<perf>"), "a plain start is not rewritten");

    // save + restore: libvirt runs 'restore begin' and uses the hook's XML. Another process
    // holds the cache lock and the cache is gone, so the hook must detect, fail to get the lock
    // within its bound and go on without writing the cache (the issue: restore waited 609 s).
    let save = work.path().join("t1.save");
    virsh_ok(&["save", GUEST, save.to_str().unwrap()]);
    let _ = std::fs::remove_file(&state);
    let held = hold_lock_for(&host.cache_dir().join("lock"), Duration::from_secs(90));
    let start = Instant::now();
    virsh_ok(&["restore", save.to_str().unwrap()]);
    let took = start.elapsed();
    drop(held);
    assert!(took < Duration::from_secs(45), "restore took {took:?} with the cache lock held");
    assert!(!state.exists(), "the cache was written although its lock was held");
    assert_eq!(virsh_ok(&["domstate", GUEST]).trim(), "running");
    assert!(virsh_ok(&["dumpxml", GUEST]).contains("<vph:a"), "the deep metadata went through");

    // apply by domain ID and by UUID: the running guest, by its name (domains rules), and live.
    apply_by_id_and_uuid(&work);
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
    host.config(&["page_faults", "cpu_clock", "task_clock", "cpu_cycles"]);
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
    crate::virsh_real::real_libvirtd_checks(URI);
    // A sweep over ~20 guests, odd names among them, and one undefined mid-run.
    crate::virsh_real::real_libvirtd_sweep(URI);
}

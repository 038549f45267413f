//! `apply` against a fake `$VIRSH` (see `virsh::FakeVirsh`): batches, failures, quoting, healing.
use crate::common::*;
use crate::virsh::*;

#[test]
fn apply_mixed_guests_respect() {
    let f = mixed();
    let out = f.apply(EVENTS_CFG, &["--all"]);
    assert_eq!(out.status.code(), Some(1), "a failed domain makes exit 1:\n{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).starts_with("DOMAIN"), "{}", stdout(&out));
    let added_both = ("changed".to_string(), "added cpu_clock,page_faults".to_string());
    assert_eq!(row(&out, "no-perf"), ("changed".into(), format!("added cpu_clock,page_faults; {NEXT_START}")), "running");
    assert_eq!(row(&out, "partial"), ("changed".into(), "added cpu_clock".into()));
    assert_eq!(
        row(&out, "said-no"),
        ("changed".into(), "added page_faults; kept disabled cpu_clock (existing: respect)".into())
    );
    assert_eq!(row(&out, "all-set"), ("ok".into(), "has cpu_clock,page_faults".into()));
    let (res, detail) = row(&out, "skip-me");
    assert_eq!(res, "skipped");
    assert!(detail.contains("not selected"), "{detail}");
    assert_eq!(row(&out, "broken"), ("failed".into(), "defining the new config failed: error: operation failed: boom".into()));
    for n in WEIRD {
        assert_eq!(row(&out, &shown(n)), added_both, "{n}");
    }
    // The persistent XML was rewritten and defined back: the events added, nothing else changed.
    assert_eq!(f.persistent("partial"), FakeVirsh::xml("partial", &perf(&[("page_faults", "yes"), ("cpu_clock", "yes")])));
    assert_eq!(f.persistent("said-no"), FakeVirsh::xml("said-no", &perf(&[("cpu_clock", "no"), ("page_faults", "yes")])));
    let log = f.log();
    // Guests are listed by UUID and every per-guest call names the UUID: a name never reaches
    // virsh's lookup, whatever it contains.
    for n in WEIRD {
        let u = FakeVirsh::uuid(n);
        assert!(log.contains(&format!("[dumpxml][--inactive][--security-info][--domain][{u}]")), "{n}:\n{}", log.join("\n"));
        assert!(log.iter().all(|l| !l.contains(&format!("[--domain][{n}]"))), "{n} was passed to virsh");
        assert_eq!(f.persistent(n), FakeVirsh::xml(n, &perf(&[("cpu_clock", "yes"), ("page_faults", "yes")])), "{n}");
    }
    // An excluded guest is looked up (its name decides), nothing more.
    let skipped = FakeVirsh::uuid("skip-me");
    assert!(log.iter().all(|l| !l.contains(&skipped) || l.starts_with("[dominfo]") || l.starts_with("[domname]")), "an excluded guest is not touched");
    assert_eq!(f.persistent("skip-me"), FakeVirsh::xml("skip-me", ""));
    assert!(log.iter().all(|l| !l.contains("[--live]")), "nothing live: {log:?}");
    // The atomic `perf --config` is tried first; this fake driver refuses it, so the guarded
    // define follows. Nothing live.
    assert!(log.iter().filter(|l| l.starts_with("[perf]")).all(|l| l.ends_with("[--config]")), "{log:?}");
    // A transient guest has no persistent config: defining it would make it persistent.
    assert_eq!(row(&out, "temp"), ("skipped".into(), "transient: it has no persistent config to change".into()));
    let temp = FakeVirsh::uuid("temp");
    assert!(log.iter().all(|l| !l.contains(&temp) || l.starts_with("[dominfo]") || l.starts_with("[domname]")), "a transient guest is not touched");
    assert_eq!(f.persistent("temp"), FakeVirsh::xml("temp", ""));
    // The pinned version means no `virsh version`; --all means one `list --all --uuid`, and one
    // `list --uuid` and one `list --transient --uuid` tell the running and transient guests.
    assert_eq!(log[..3], ["[list][--all][--uuid]", "[list][--uuid]", "[list][--transient][--uuid]"]);
    // broken, no-perf, partial, said-no and the weird names: the batch went on past the failure.
    // Each new config reaches virsh as a memfd it inherited, never through a file others see.
    let defines = f.define_calls();
    assert_eq!(defines.len(), 4 + WEIRD.len(), "{defines:?}");
    assert!(defines.iter().all(|d| d.starts_with("[define][--file][/proc/self/fd/")), "{defines:?}");
    let sources = f.define_sources();
    assert_eq!(sources.len(), defines.len(), "{sources:?}");
    assert!(sources.iter().all(|s| s.starts_with("/memfd:virt-perf-hook")), "{sources:?}");
    // One virsh per phase, whatever the number of guests: lists, names, configs, perf (refused
    // by this driver), the guarded re-reads, defines.
    assert_procs(&f, 6);
}

/// A guest that fails in the middle of a batch (its config cannot be read, or its define
/// fails) fails alone: the guests before and after it in the same virsh are done.
#[test]
fn apply_one_failure_in_a_batch_is_that_guest_only() {
    let f = FakeVirsh::new("fake-midbatch");
    let names = ["g1", "g2", "unreadable", "g4", "undefinable", "g6"];
    for n in names {
        f.domain(n, "");
    }
    std::fs::write(f.path("unreadable", "fail-dumpxml"), "").unwrap();
    f.fail_define("undefinable");
    f.lists(&names, &[]);
    let out = f.apply(EVENTS_CFG, &["--all"]);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let changed = ("changed".to_string(), "added cpu_clock,page_faults".to_string());
    for n in ["g1", "g2", "g4", "g6"] {
        assert_eq!(row(&out, n), changed, "{n}: {}", stdout(&out));
        assert!(f.persistent(n).contains("page_faults"), "{n}");
    }
    let u = FakeVirsh::uuid("unreadable");
    assert_eq!(row(&out, "unreadable"), ("failed".into(), format!("error: internal error: boom reading {u}")));
    assert_eq!(row(&out, "undefinable"), ("failed".into(), "defining the new config failed: error: operation failed: boom".into()));
    assert_eq!(f.persistent("undefinable"), FakeVirsh::xml("undefinable", ""));
    // The rows keep the order of `list --all`.
    let order: Vec<String> = stdout(&out).lines().skip(1).map(|l| l.split(' ').next().unwrap().to_string()).collect();
    assert_eq!(order, names);
    assert!(stderr(&out).contains("2 of 6 domain(s) failed"), "{}", stderr(&out));
    assert_procs(&f, 6);
}

/// virsh dying in the middle of a batch fails the guest it was on and those it never reached,
/// each with its own row; the guests it had done keep theirs.
#[test]
fn apply_virsh_dying_mid_batch() {
    let f = FakeVirsh::new("fake-dies");
    let names = ["a1", "a2", "killer", "a4"];
    for n in names {
        f.domain(n, "");
    }
    f.lists(&names, &[]);
    // The fake kills its own process while reading this guest's config.
    let script = std::fs::read_to_string(f.dir.path().join("virsh")).unwrap();
    let trap = format!("cmd=$1; shift\n[ \"$*\" = '--inactive --security-info --domain {}' ] && kill -KILL $$\n", FakeVirsh::uuid("killer"));
    f.dir.write_exec("virsh", &script.replacen("cmd=$1; shift\n", &trap, 1));
    let out = f.apply(EVENTS_CFG, &["--all"]);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(row(&out, "a1").0, "changed", "{}", stdout(&out));
    assert_eq!(row(&out, "a2").0, "changed", "{}", stdout(&out));
    assert_eq!(row(&out, "killer"), ("failed".into(), "virsh ended while running it".into()));
    assert_eq!(row(&out, "a4"), ("failed".into(), "virsh was killed by a signal before running it".into()));
    assert!(f.persistent("a1").contains("page_faults") && !f.persistent("a4").contains("page_faults"));
}

/// Named targets travel inside virsh's command string, quoted for its tokenizer: each reaches
/// virsh as the one word it was (the fake splits the string as virsh does; the real virsh is
/// checked in `apply_named_targets_with_odd_names_on_the_test_driver`).
#[test]
fn apply_named_targets_are_quoted_for_virsh() {
    let f = mixed();
    let mut args = vec!["--"];
    args.extend(WEIRD);
    args.push("ghost'; define --file /etc/passwd; echo '");
    let out = f.apply(EVENTS_CFG, &args);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let log = f.log();
    for n in WEIRD {
        assert!(log.contains(&format!("[dominfo][--domain][{n}]")), "{n}: {log:#?}");
        assert_eq!(row(&out, &shown(n)).0, "changed", "{n}: {}", stdout(&out));
    }
    let ghost = "ghost'; define --file /etc/passwd; echo '";
    assert!(log.contains(&format!("[dominfo][--domain][{ghost}]")), "{log:#?}");
    assert!(row(&out, ghost).1.contains("failed to get domain"), "{}", stdout(&out));
    assert!(log.iter().all(|l| !l.contains("/etc/passwd]")), "{log:#?}");
    assert_eq!(f.define_calls().len(), WEIRD.len());
    assert_procs(&f, 6);
}

#[test]
fn apply_override_enables_explicit_no() {
    let f = mixed();
    let cfg = EVENTS_CFG.replace("\"host_probe\"", "\"existing\": \"override\", \"host_probe\"");
    let out = f.apply(&cfg, &["said-no", "partial"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(row(&out, "said-no"), ("changed".into(), "added page_faults; enabled cpu_clock".into()));
    assert_eq!(row(&out, "partial"), ("changed".into(), "added cpu_clock".into()));
    assert_eq!(stdout(&out).lines().count(), 3, "only the named domains:\n{}", stdout(&out));
    assert!(f.persistent("said-no").contains("<event name='cpu_clock' enabled='yes'/>"));
}

#[test]
fn apply_dry_run_changes_nothing() {
    let f = mixed();
    let before = f.persistent("no-perf");
    let out = f.apply(EVENTS_CFG, &["--dry-run", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(f.define_calls().is_empty(), "dry run called define: {:?}", f.define_calls());
    assert_eq!(f.persistent("no-perf"), before);
    assert_eq!(row(&out, "no-perf"), ("would change".into(), format!("added cpu_clock,page_faults; {NEXT_START}")));
    assert_eq!(row(&out, "broken").0, "would change");
    assert_eq!(row(&out, "all-set").0, "ok");
    assert_eq!(row(&out, "-x").0, "would change");
}

/// `--live` is gone: a running guest's counters enabled live would miss its vCPU threads.
#[test]
fn apply_live_is_a_usage_error() {
    let f = mixed();
    let out = f.apply(EVENTS_CFG, &["--live", "--all"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--live is gone: counters enabled on a running guest miss its vCPU threads"), "{err}");
    assert!(err.contains("they start complete at the guest's next start (boot, restore or migration)"), "{err}");
    assert_eq!(err.lines().count(), 1);
    assert!(f.log().is_empty(), "virsh ran: {:?}", f.log());
}

/// Events the guest enables that this host cannot have are removed from its persistent config
/// (here by the guarded define: this fake driver refuses `perf`)
/// (the fake root has no PMU and no intel_cqm); `enabled='no'` choices stay; "keep" leaves them.
#[test]
fn apply_heals_the_persistent_config() {
    let f = FakeVirsh::new("fake-heal");
    let carried = perf(&[("cmt", "yes"), ("cpu_cycles", "no"), ("future_event", "no"), ("page_faults", "yes")]);
    f.domain("vm", &carried);
    f.lists(&["vm"], &["vm"]);
    let cfg = r#"{"enabled_perf_events": [], "libvirt_version": "9.0.0"}"#;
    let dry = f.apply(cfg, &["--dry-run", "vm"]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    let why = "removed cmt (the host cannot open it: no /sys/devices/intel_cqm (Intel CQM perf support was removed in Linux 4.14)), \
               future_event (libvirt 9.0.0 does not know this event)";
    assert_eq!(row(&dry, "vm"), ("would change".into(), format!("{why}; {NEXT_START}")));
    let out = f.apply(cfg, &["vm"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(row(&out, "vm"), ("changed".into(), format!("{why}; {NEXT_START}")));
    assert_eq!(f.persistent("vm"), FakeVirsh::xml("vm", &perf(&[("cpu_cycles", "no"), ("page_faults", "yes")])));
    let again = f.apply(cfg, &["vm"]);
    assert_eq!(row(&again, "vm"), ("ok".into(), "nothing to change".into()));

    f.domain("vm", &carried);
    let keep = f.apply(r#"{"libvirt_version": "9.0.0", "unsupported": "keep"}"#, &["vm"]);
    assert_eq!(row(&keep, "vm"), ("ok".into(), "nothing to change".into()));
    assert_eq!(f.persistent("vm"), FakeVirsh::xml("vm", &carried));
}

/// A guest named twice is done once; a running guest's config changes too, and its row says the
/// counters wait for its next start (nothing is enabled live: it would miss its vCPU threads).
#[test]
fn apply_running_and_stopped_guests() {
    let f = FakeVirsh::new("fake-running");
    f.domain("running", "");
    f.live("running", &perf(&[("page_faults", "yes")]));
    f.domain("stopped", "");
    f.lists(&["running", "stopped"], &["running"]);
    let out = f.apply(EVENTS_CFG, &["running", "stopped", "running"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(row(&out, "running"), ("changed".into(), format!("added cpu_clock,page_faults; {NEXT_START}")));
    assert_eq!(row(&out, "stopped"), ("changed".into(), "added cpu_clock,page_faults".into()));
    assert_eq!(stdout(&out).lines().count(), 3, "a repeated name is done once");
    let both = perf(&[("cpu_clock", "yes"), ("page_faults", "yes")]);
    for n in ["running", "stopped"] {
        assert_eq!(f.persistent(n), FakeVirsh::xml(n, &both), "{n}");
    }
    let log = f.log();
    let dumps: Vec<&String> = log.iter().filter(|l| l.starts_with("[dumpxml]")).collect();
    let (running, stopped) = (FakeVirsh::uuid("running"), FakeVirsh::uuid("stopped"));
    assert_eq!(
        dumps,
        [
            &format!("[dumpxml][--inactive][--security-info][--domain][{running}]"),
            &format!("[dumpxml][--inactive][--security-info][--domain][{stopped}]"),
            &format!("[dumpxml][--inactive][--security-info][--domain][{running}]"),
            &format!("[dumpxml][--inactive][--security-info][--domain][{stopped}]"),
        ],
        "the persistent config, once per guest, and again right before the guarded define"
    );
    assert_eq!(f.define_calls().len(), 2, "{log:?}");
    assert!(log.iter().all(|l| !l.contains("[--live]") && (!l.starts_with("[perf]") || l.ends_with("[--config]"))), "nothing live: {log:?}");
}

/// A UUID or an ID names the guest: `domains` include/exclude apply to its name, and a running
/// guest given by ID or UUID is known to run (the issue: `apply <uuid>` enabled events on an
/// excluded guest).
#[test]
fn apply_by_uuid_or_id_with_a_fake_virsh() {
    let f = FakeVirsh::new("fake-uuid");
    f.domain("skip-me", "");
    f.domain("web", "");
    f.live("web", &perf(&[("page_faults", "yes")]));
    f.id("web", 7);
    f.lists(&["skip-me", "web"], &["web"]);
    let (skip, web) = (FakeVirsh::uuid("skip-me"), FakeVirsh::uuid("web"));
    let out = f.apply(EVENTS_CFG, &[&skip, "7", "web", &web]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(row(&out, "skip-me").0, "skipped", "{}", stdout(&out));
    assert_eq!(
        row(&out, "web"),
        ("changed".into(), format!("added cpu_clock,page_faults; {NEXT_START}")),
        "the same running guest three ways, done once"
    );
    assert_eq!(stdout(&out).lines().count(), 3, "{}", stdout(&out));
    // The excluded guest given by UUID is not changed: looked up, never read or defined.
    assert_eq!(f.persistent("skip-me"), FakeVirsh::xml("skip-me", ""));
    let log = f.log();
    assert!(log.iter().all(|l| !l.contains(&skip) || l.starts_with("[dominfo]") || l.starts_with("[domname]")), "{log:?}");
    assert_eq!(f.define_calls().len(), 1, "{log:?}");
    assert_eq!(f.persistent("web"), FakeVirsh::xml("web", &perf(&[("cpu_clock", "yes"), ("page_faults", "yes")])));
}

/// A guest undefined while the sweep looks it up (an operator's `undefine` racing it, seen in the
/// watch race test) is skipped as gone, not a failure: listed, then gone before `domname`
/// (`--all`); or found by `dominfo` and lost before virsh was done with it (by name, as `watch`
/// looks up the guest of an event; libvirt then names it by UUID). A name that was never there
/// stays a failure (`apply_unknown_domain_fails_but_others_go_on`).
#[test]
fn apply_skips_a_guest_undefined_during_the_lookup() {
    let fleeting = FakeVirsh::uuid("fleeting");
    for (marker, args, label) in [
        ("gone-at-domname", vec!["--all"], fleeting.as_str()),
        ("gone-at-dominfo", vec!["fleeting", "stays"], "fleeting"),
    ] {
        let f = FakeVirsh::new("fake-gone");
        f.domain("stays", "");
        f.domain("fleeting", "");
        f.lists(&["stays", "fleeting"], &[]);
        f.dir.write(&format!("dom/{fleeting}/{marker}"), "");
        let out = f.apply(EVENTS_CFG, &args);
        assert_eq!(out.status.code(), Some(0), "{marker}: {}{}", stdout(&out), stderr(&out));
        assert_eq!(row(&out, label), ("skipped".into(), "no longer defined: left alone".into()), "{marker}: {}", stdout(&out));
        assert_eq!(row(&out, "stays").0, "changed", "{marker}: {}", stdout(&out));
        assert!(!stderr(&out).contains("warn"), "{marker}: {}", stderr(&out));
    }
}

/// A name ending in '\r' (libvirt accepts `<name>x&#13;</name>`) comes through `--all` whole.
#[test]
fn apply_all_with_a_carriage_return_in_a_name() {
    let f = FakeVirsh::new("fake-cr");
    f.domain("cr\r", "");
    f.lists(&["cr\r"], &[]);
    let out = f.apply(EVENTS_CFG, &["--all"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(row(&out, "cr\\r"), ("changed".into(), "added cpu_clock,page_faults".into()));
    // Defined with the '\r' as a character reference: a bare one would be read as a '\n'.
    let want = FakeVirsh::xml("cr\r", &perf(&[("cpu_clock", "yes"), ("page_faults", "yes")])).replace('\r', "&#13;");
    assert_eq!(f.persistent("cr\r"), want);
}

#[test]
fn apply_gets_the_version_from_the_daemon() {
    let f = FakeVirsh::new("fake-version");
    f.domain("vm", &perf(&[("task_clock", "yes")]));
    // The daemon is older than the client library: the daemon decides (page_faults needs 3.2.0).
    f.dir.write("version", "Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\nUsing API: QEMU 9.0.0\nRunning hypervisor: QEMU 2.8.0\nRunning against daemon: 3.0.0\n");
    let cfg = r#"{"enabled_perf_events": ["page_faults", "cpu_cycles"], "host_probe": false}"#;
    let out = f.apply(cfg, &["--connect", "qemu+ssh://h/system", "vm"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("not enabling page_faults: needs libvirt 3.2.0, this host has 3.0.0"), "{}", stderr(&out));
    // task_clock, too new for that daemon, goes; the remote kernel's PMU is not judged from here.
    let want = "added cpu_cycles; removed task_clock (needs libvirt 3.2.0, this host has 3.0.0)";
    assert_eq!(row(&out, "vm"), ("changed".into(), want.into()));
    assert_eq!(f.log()[0], "[-c][qemu+ssh://h/system][version][--daemon]");
    assert!(f.log().iter().all(|l| l.starts_with("[-c][qemu+ssh://h/system]")));
}

#[test]
fn apply_unknown_domain_fails_but_others_go_on() {
    let f = mixed();
    let out = f.apply(EVENTS_CFG, &["ghost", "no-perf"]);
    // The name is looked up as given (virsh's own error comes back); nothing else runs on it.
    let log = f.log();
    assert!(log.contains(&"[dominfo][--domain][ghost]".to_string()), "{log:?}");
    assert_eq!(log.iter().filter(|l| l.contains("ghost")).count(), 1, "{log:?}");
    assert_eq!(out.status.code(), Some(1));
    let (res, detail) = row(&out, "ghost");
    assert_eq!(res, "failed");
    assert!(detail.contains("failed to get domain 'ghost'"), "{detail}");
    assert_eq!(row(&out, "no-perf").0, "changed");
    let no_perf = FakeVirsh::uuid("no-perf");
    assert!(log.contains(&format!("[dumpxml][--inactive][--security-info][--domain][{no_perf}]")), "{log:?}");
}

#[test]
fn missing_virsh_is_one_clear_line() {
    let root = TempDir::with_config("novirsh", EVENTS_CFG);
    for (args, stdin) in [(&["apply", "vm"][..], ""), (&["define", "-"][..], DOMAIN)] {
        let out = run_with(root.path(), args, stdin, &[("PATH", "/nonexistent")]);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&out), "virt-perf-hook: virsh not found; install libvirt-clients or set VIRSH\n");
        let out = run_with(root.path(), args, stdin, &[("VIRSH", "/nonexistent/virsh")]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("'/nonexistent/virsh' (from $VIRSH) not found"), "{}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1);
    }
}

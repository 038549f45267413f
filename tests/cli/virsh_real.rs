//! Checks against a running libvirtd, called by the e2e test (which owns the daemon).
use std::process::{Command, Output};

use crate::common::*;
use crate::virsh::*;

/// Checks `define` and `apply` against a running libvirtd at `uri` (e.g. qemu:///system). The
/// e2e test starts the daemon and calls this; it starts no daemon itself. Guests are named
/// `vph-apply-*`, never started, and undefined afterwards (also on failure).
#[allow(dead_code)]
pub fn real_libvirtd_checks(uri: &str) {
    // host_probe off: the point here is the virsh plumbing, not whether this CI box lets
    // perf_event_open through; guests are not started, so libvirt does not open the events.
    let root = TempDir::with_config(
        "libvirtd",
        r#"{"enabled_perf_events": ["page_faults", "cpu_clock"], "libvirt_version": "9.0.0", "host_probe": false,
            "domains": {"exclude": ["vph-apply-excluded"]}}"#,
    );
    let cfg = root.path().join("etc/virt-perf-hook/config.json");
    let cfg = cfg.to_str().unwrap();
    // No -q: `virsh -q perf` prints nothing at all.
    let virsh = |args: &[&str]| Command::new("virsh").args(["-c", uri]).args(args).output().unwrap();
    let names = ["vph-apply-defined", "vph-apply-none", "vph-apply-partial", "vph-apply-said-no", "vph-apply-excluded", "vph-apply-cr\r"];
    let transient = "vph-apply-transient";
    struct Cleanup<'a>(&'a str, &'a [&'a str]);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            for n in self.1 {
                for cmd in ["destroy", "undefine"] {
                    let _ = Command::new("virsh").args(["-q", "-c", self.0, cmd, "--domain", n]).output();
                }
            }
        }
    }
    let all_names = [&names[..], &[transient]].concat();
    drop(Cleanup(uri, &all_names)); // leftovers of an earlier run
    let _cleanup = Cleanup(uri, &all_names);
    let template = |name: &str, perf: &str| {
        format!("<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>{perf}<devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>")
    };
    let on = |name: &str| -> Vec<String> {
        let out = virsh(&["perf", "--domain", name, "--config"]);
        assert!(out.status.success(), "virsh perf {name}: {}", stderr(&out));
        stdout(&out)
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(_, s)| s.trim() == "enabled")
            .map(|(n, _)| n.trim().to_string())
            .collect()
    };

    // 1. The define wrapper, with a hostile TMPDIR (world-writable, not sticky): the XML goes to
    // virsh on its stdin, nothing is written there.
    let tmp = TempDir::new("libvirtd-tmp");
    set_mode(tmp.path(), 0o777);
    let env = [("TMPDIR", tmp.path().to_str().unwrap())];
    let out = run_with(root.path(), &["--config", cfg, "define", "--connect", uri, "-"], &template(names[0], ""), &env);
    assert_eq!(out.status.code(), Some(0), "define: {}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out).trim_end(), format!("Domain '{}' defined from -", names[0]));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "define wrote into TMPDIR");
    let dumped = stdout(&virsh(&["dumpxml", "--inactive", "--domain", names[0]]));
    for ev in ["page_faults", "cpu_clock"] {
        assert!(dumped.contains(&format!("<event name='{ev}' enabled='yes'/>")), "{ev} missing:\n{dumped}");
    }

    // 2. Guests defined behind the tool's back, one with a name ending in a carriage return.
    let perf = |evs: &[(&str, &str)]| {
        let e: String = evs.iter().map(|(n, s)| format!("<event name='{n}' enabled='{s}'/>")).collect();
        format!("<perf>{e}</perf>")
    };
    for (name, p) in [
        (names[1], String::new()),
        (names[2], perf(&[("page_faults", "yes")])),
        (names[3], perf(&[("cpu_clock", "no")])),
        (names[4], String::new()),
        ("vph-apply-cr&#13;", String::new()),
    ] {
        // A VNC password: apply's define must keep it (dumpxml --security-info).
        let xml = template(name, &p).replace("<devices>", "<devices><graphics type='vnc' autoport='yes' passwd='s3cret'/>");
        let f = root.write(&format!("{}.xml", name.replace('&', "_")), &xml);
        let out = virsh(&["define", "--file", f.to_str().unwrap()]);
        assert!(out.status.success(), "virsh define {name}: {}", stderr(&out));
    }
    let apply = |extra: &[&str]| {
        let mut args = vec!["--config", cfg, "apply", "--connect", uri];
        args.extend_from_slice(extra);
        args.extend_from_slice(&names[..5]);
        run_in(root.path(), &args, "")
    };

    // 3. --dry-run changes nothing.
    let out = apply(&["--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "apply --dry-run: {}{}", stdout(&out), stderr(&out));
    assert_eq!(row(&out, names[1]).0, "would change", "{}", stdout(&out));
    assert!(on(names[1]).is_empty(), "dry run changed {}", names[1]);
    assert_eq!(on(names[2]), vec!["page_faults"]);

    // 4. apply.
    let out = apply(&[]);
    assert_eq!(out.status.code(), Some(0), "apply: {}{}", stdout(&out), stderr(&out));
    let t = stdout(&out);
    assert_eq!(row(&out, names[0]), ("ok".into(), "has cpu_clock,page_faults".into()), "{t}");
    assert_eq!(row(&out, names[1]), ("changed".into(), "added cpu_clock,page_faults".into()), "{t}");
    assert_eq!(row(&out, names[2]), ("changed".into(), "added cpu_clock".into()), "{t}");
    assert!(row(&out, names[3]).1.contains("kept disabled cpu_clock (existing: respect)"), "{t}");
    assert_eq!(row(&out, names[4]).0, "skipped", "{t}");
    let mut both = on(names[1]);
    both.sort();
    assert_eq!(both, vec!["cpu_clock", "page_faults"]);
    assert_eq!(on(names[2]).len(), 2);
    assert_eq!(on(names[3]), vec!["page_faults"], "explicit enabled='no' respected");
    assert!(on(names[4]).is_empty(), "excluded guest untouched");
    let said_no = stdout(&virsh(&["dumpxml", "--inactive", "--security-info", "--domain", names[3]]));
    assert!(said_no.contains("<event name='cpu_clock' enabled='no'/>"), "{said_no}");
    assert!(said_no.contains("passwd='s3cret'"), "the VNC password was lost:\n{said_no}");

    // 5. Again: nothing left to do.
    let out = apply(&[]);
    assert_eq!(out.status.code(), Some(0));
    for n in &names[..4] {
        assert_eq!(row(&out, n).0, "ok", "{}", stdout(&out));
    }

    // 6. By UUID, the excluded guest is still excluded (its name decides).
    let uuid = stdout(&virsh(&["domuuid", "--domain", names[4]])).trim().to_string();
    let out = run_in(root.path(), &["--config", cfg, "apply", "--connect", uri, &uuid], "");
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(row(&out, names[4]).0, "skipped", "{}", stdout(&out));
    assert!(on(names[4]).is_empty(), "excluded guest given by UUID was changed");

    // 7. --all, restricted to this test's guests: the name ending in '\r' works like any other.
    let only_ours = root.write(
        "only-ours.json",
        r#"{"enabled_perf_events": ["page_faults", "cpu_clock"], "libvirt_version": "9.0.0", "host_probe": false,
            "domains": {"include": ["vph-apply-*"], "exclude": ["vph-apply-excluded"]}}"#,
    );
    let out = run_in(root.path(), &["--config", only_ours.to_str().unwrap(), "apply", "--connect", uri, "--all"], "");
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(row(&out, "vph-apply-cr\\r"), ("changed".into(), "added cpu_clock,page_faults".into()), "{}", stdout(&out));
    let mut cr = on(names[5]);
    cr.sort();
    assert_eq!(cr, vec!["cpu_clock", "page_faults"]);
    let cr_xml = stdout(&virsh(&["dumpxml", "--inactive", "--security-info", "--domain", names[5]]));
    assert!(cr_xml.contains("passwd='s3cret'"), "the VNC password was lost:\n{cr_xml}");

    // 8. A transient guest is left alone: defining its XML would make it persistent.
    let f = root.write("transient.xml", &template(transient, ""));
    let out = virsh(&["create", "--file", f.to_str().unwrap()]);
    assert!(out.status.success(), "virsh create: {}", stderr(&out));
    let out = run_in(root.path(), &["--config", cfg, "apply", "--connect", uri, transient], "");
    assert_eq!(row(&out, transient), ("skipped".into(), "transient: it has no persistent config to change".into()));
    let info = stdout(&virsh(&["dominfo", "--domain", transient]));
    assert!(info.lines().any(|l| l.starts_with("Persistent:") && l.ends_with("no")), "{info}");
}

/// A sweep over ~20 guests on a running libvirtd at `uri` (the e2e test owns the daemon): odd
/// names ([`ODD_NAMES`]) and plain ones, `--all` and by name, dry run, apply, a second apply
/// with nothing left to do, `status`; then a guest undefined in the middle of the run fails
/// alone. Guests are defined with fixed UUIDs, never started, and undefined afterwards (also
/// on failure).
#[allow(dead_code)]
pub fn real_libvirtd_sweep(uri: &str) {
    let root = TempDir::with_config(
        "sweep",
        r#"{"enabled_perf_events": ["page_faults", "cpu_clock"], "libvirt_version": "9.0.0", "host_probe": false,
            "domains": {"include": ["*vph*odd*", "vph-sweep-*"]}}"#,
    );
    let cfg = root.path().join("etc/virt-perf-hook/config.json");
    let cfg = cfg.to_str().unwrap();
    let uuid = |i: usize| format!("5eeb0000-0000-4000-8000-0000000000{i:02}");
    let mut guests: Vec<(String, String)> = ODD_NAMES.iter().map(|(x, n)| (x.to_string(), n.to_string())).collect();
    guests.extend((0..8).map(|i| (format!("vph-sweep-{i}"), format!("vph-sweep-{i}"))));
    let uuids: Vec<String> = (0..guests.len()).map(uuid).collect();
    struct Cleanup<'a>(&'a str, Vec<String>);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            for u in &self.1 {
                let _ = Command::new("virsh").args(["-q", "-c", self.0, "undefine", "--domain", u]).output();
            }
        }
    }
    drop(Cleanup(uri, uuids.clone())); // leftovers of an earlier run
    let _cleanup = Cleanup(uri, uuids.clone());
    let virsh = |args: &[&str]| Command::new("virsh").args(["-q", "-c", uri]).args(args).output().unwrap();
    let define = |i: usize, perf: &str| {
        let xml = format!(
            "<domain type='qemu'><name>{}</name><uuid>{}</uuid><memory unit='MiB'>64</memory><vcpu>1</vcpu>\
             <os><type arch='x86_64' machine='pc'>hvm</type></os>{perf}<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>\
             <graphics type='vnc' autoport='yes' passwd='s3cret'/></devices></domain>",
            guests[i].0,
            uuid(i)
        );
        let f = root.write(&format!("sweep-{i}.xml"), &xml);
        let out = virsh(&["define", "--file", f.to_str().unwrap()]);
        assert!(out.status.success(), "virsh define {:?}: {}", guests[i].1, stderr(&out));
    };
    let has = "<perf><event name='cpu_clock' enabled='yes'/><event name='page_faults' enabled='yes'/></perf>";
    for i in 0..guests.len() {
        define(i, if i >= guests.len() - 2 { has } else { "" });
    }
    let persistent = |i: usize| stdout(&virsh(&["dumpxml", "--inactive", "--security-info", "--domain", &uuid(i)]));
    let tool = |args: &[&str], env: &[(&str, &str)]| {
        let mut argv = vec!["--config", cfg, "--connect", uri];
        argv.extend_from_slice(args);
        run_with(root.path(), &argv, "", env)
    };
    let names: Vec<&str> = guests.iter().map(|(_, n)| n.as_str()).collect();
    let fresh = guests.len() - 2;
    let check = |out: &Output, changed: &str, what: &str| {
        assert_eq!(out.status.code(), Some(0), "{what}: {}{}", stdout(out), stderr(out));
        for (i, n) in names.iter().enumerate() {
            let (res, detail) = row(out, &shown(n));
            let want = if i < fresh { (changed, "added cpu_clock,page_faults") } else { ("ok", "has cpu_clock,page_faults") };
            assert_eq!((res.as_str(), detail.as_str()), want, "{what}: {n:?}:\n{}", stdout(out));
        }
    };

    // Dry run (all, then by name): nothing changes.
    check(&tool(&["apply", "--all", "--dry-run"], &[]), "would change", "--all --dry-run");
    let mut by_name = vec!["apply", "--dry-run", "--"];
    by_name.extend(&names);
    check(&tool(&by_name, &[]), "would change", "by name --dry-run");
    assert!(!persistent(0).contains("<perf>"), "the dry run changed a guest");

    // Apply: every guest gets the events, with its name, its password and the rest intact.
    check(&tool(&["apply", "--all"], &[]), "changed", "--all");
    for (i, n) in names.iter().enumerate() {
        let xml = persistent(i);
        assert!(xml.contains("<event name='cpu_clock' enabled='yes'/>") && xml.contains("<event name='page_faults' enabled='yes'/>"), "{n:?}:\n{xml}");
        assert!(xml.contains("passwd='s3cret'"), "{n:?}: the VNC password was lost:\n{xml}");
    }
    // Again, by name: nothing left to do.
    let mut by_name = vec!["apply", "--"];
    by_name.extend(&names);
    let out = tool(&by_name, &[]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    for n in &names {
        assert_eq!(row(&out, &shown(n)), ("ok".into(), "has cpu_clock,page_faults".into()), "{n:?}");
    }

    // status: each guest under its exact name.
    let out = tool(&["status", "--all", "--json"], &[]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    for (i, n) in names.iter().enumerate() {
        let g = v["guests"].as_array().unwrap().iter().find(|g| g["uuid"] == uuid(i).as_str()).unwrap_or_else(|| panic!("{n:?}: {v}"));
        assert_eq!(g["domain"], *n);
        assert_eq!(g["config_events"], serde_json::json!(["cpu_clock", "page_faults"]), "{n:?}");
        assert_eq!(g["counters"], "none");
    }

    // A guest undefined in the middle of the run: after the lists and names, just before its
    // config is read (a $VIRSH that undefines it, then hands the batch to virsh). It is
    // skipped alone; the others are done.
    for i in 0..fresh {
        define(i, "");
    }
    let victim = 3;
    let d = root.path().display();
    let wrapper = root.write_exec(
        "virsh-undefine-midway",
        &format!(
            "#!/bin/sh\nfor a in \"$@\"; do last=$a; done\n\
             case $last in *'dumpxml --inactive'*) [ -e '{d}/undefined' ] || {{ virsh -q -c '{uri}' undefine --domain {u} >/dev/null && : > '{d}/undefined'; }};; esac\n\
             exec virsh \"$@\"\n",
            u = uuid(victim)
        ),
    );
    let env = [("VIRSH", wrapper.to_str().unwrap())];
    let out = tool(&["apply", "--all"], &env);
    // Gone meanwhile is not a failure: it is left alone (and not defined again).
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert!(root.path().join("undefined").exists(), "the wrapper did not undefine the guest");
    let (res, detail) = row(&out, &shown(names[victim]));
    assert_eq!((res.as_str(), detail.as_str()), ("skipped", "no longer defined: left alone"), "{}", stdout(&out));
    for (i, n) in names.iter().enumerate().filter(|(i, _)| *i != victim) {
        let want = if i < fresh { "changed" } else { "ok" };
        assert_eq!(row(&out, &shown(n)).0, want, "{n:?}:\n{}", stdout(&out));
        assert!(persistent(i).contains("<event name='page_faults' enabled='yes'/>"), "{n:?}");
    }
    assert!(!stderr(&out).contains("domain(s) failed"), "{}", stderr(&out));

    // status too: the guest undefined before its config is read is a row saying so.
    std::fs::remove_file(root.path().join("undefined")).unwrap();
    define(victim, "");
    let out = tool(&["status", "--all", "--json"], &env);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let gone = v["guests"].as_array().unwrap().iter().find(|g| g["domain"] == uuid(victim).as_str()).unwrap_or_else(|| panic!("{v}"));
    assert_eq!(gone["counters"], "unknown");
    assert!(gone["reason"].as_str().unwrap().contains("failed to get domain"), "{gone}");
    assert_eq!(v["guests"].as_array().unwrap().len(), guests.len(), "{v}");
}

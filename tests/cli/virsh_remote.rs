//! Local or remote: the URI virsh will use decides whether this host's probe and cache apply;
//! version output and `-c` mistaken for a URI.
use crate::common::*;
use crate::virsh::*;

/// A host part in the URI means another host: nothing probed or cached here applies to it.
#[test]
fn apply_remote_uses_no_local_probe_or_cache() {
    let f = FakeVirsh::new("fake-remote");
    f.domain("vm", &perf(&[("instructions", "yes")]));
    let root = TempDir::with_config("remote", r#"{"enabled_perf_events": ["cpu_cycles", "page_faults"]}"#);
    // This host's libvirt (2.0.0) would drop both events: it must not be consulted.
    root.write("/usr/lib/x86_64-linux-gnu/libvirt.so.0.2000.0", "");
    let out = run_with(root.path(), &["apply", "--connect", "qemu+tcp://h/system", "vm"], "", &[("VIRSH", &f.bin())]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let want = "not enabling cpu_cycles: cannot probe the remote host; set \"host_probe\": false to trust it";
    assert!(stderr(&out).contains(want), "{}", stderr(&out));
    // Not knowing whether the remote host opens `instructions` is no reason to take it away.
    assert_eq!(row(&out, "vm"), ("changed".into(), "added page_faults".into()));
    assert!(!root.path().join("var/cache/libvirt/virt-perf-hook").exists(), "the local cache was used");
}

#[test]
fn remote_version_failure_is_an_error_local_falls_back() {
    let f = FakeVirsh::new("fake-nover");
    f.domain("vm", "");
    std::fs::remove_file(f.dir.path().join("version")).unwrap();
    let root = TempDir::with_config("nover", r#"{"enabled_perf_events": ["page_faults"], "host_probe": false}"#);
    root.write("/usr/lib/x86_64-linux-gnu/libvirt.so.0.9000.0", "");
    let out = run_with(root.path(), &["apply", "--connect", "qemu+ssh://host2/system", "vm"], "", &[("VIRSH", &f.bin())]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot tell the remote libvirt version"), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert_eq!(f.log().len(), 1, "only 'version' ran: {:?}", f.log());
    let out = run_with(root.path(), &["apply", "--connect", "test:///default", "vm"], "", &[("VIRSH", &f.bin())]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("detecting it locally"), "{}", stderr(&out));
    assert_eq!(row(&out, "vm"), ("changed".into(), "added page_faults".into()));
}

#[test]
fn define_remote_keeps_only_software_events() {
    let root = TempDir::with_config("define-remote", r#"{"enabled_perf_events": ["cpu_cycles", "page_faults"]}"#);
    let d = root.path().display();
    let fake = root.write_exec(
        "virsh",
        &format!("#!/bin/sh\nshift 2\ncase $1 in\n  version) echo 'Running against daemon: 9.0.0';;\n  define) for a in \"$@\"; do :; done; cp \"$a\" '{d}/received.xml';;\nesac\n"),
    );
    let out = run_with(root.path(), &["define", "--connect", "qemu+ssh://host2/system", "-"], DOMAIN, &[("VIRSH", fake.to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = std::fs::read_to_string(root.path().join("received.xml")).unwrap();
    assert!(got.contains("<event name='page_faults' enabled='yes'/>"), "{got}");
    assert!(!got.contains("cpu_cycles"), "{got}");
    assert!(stderr(&out).contains("dropped cpu_cycles (cannot probe the remote host"), "{}", stderr(&out));
    assert!(!root.path().join("var/cache/libvirt/virt-perf-hook").exists(), "the local cache was used");
}

/// Local or remote is decided from the URI virsh will really use: --connect, else
/// $VIRSH_DEFAULT_CONNECT_URI, else $LIBVIRT_DEFAULT_URI, else uri_default in libvirt.conf (an
/// alias is resolved with `virsh uri`). A remote default used to be planned with this host's
/// probe and cache.
#[test]
fn default_uri_decides_local_or_remote() {
    // What the case is, apply's flags, the environment, libvirt.conf's `uri_default`, and
    // whether the connection counts as remote.
    type UriCase<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)], Option<&'a str>, bool);
    let f = FakeVirsh::new("fake-defuri");
    f.dir.write("uri", "qemu:///system\n\n");
    let cfg = r#"{"enabled_perf_events": ["cpu_cycles", "page_faults"]}"#;
    let remote = "qemu+ssh://host2/system";
    let cases: &[UriCase] = &[
        ("LIBVIRT_DEFAULT_URI", &[], &[("LIBVIRT_DEFAULT_URI", remote)], None, true),
        ("VIRSH_DEFAULT_CONNECT_URI wins", &[], &[("VIRSH_DEFAULT_CONNECT_URI", remote), ("LIBVIRT_DEFAULT_URI", "qemu:///system")], None, true),
        ("VIRSH_DEFAULT_CONNECT_URI local", &[], &[("VIRSH_DEFAULT_CONNECT_URI", "qemu:///system"), ("LIBVIRT_DEFAULT_URI", remote)], None, false),
        ("empty VIRSH_DEFAULT_CONNECT_URI", &[], &[("VIRSH_DEFAULT_CONNECT_URI", ""), ("LIBVIRT_DEFAULT_URI", remote)], None, true),
        ("libvirt.conf", &[], &[], Some(remote), true),
        ("env over libvirt.conf", &[], &[("LIBVIRT_DEFAULT_URI", "qemu:///system")], Some(remote), false),
        ("--connect wins", &["--connect", "qemu:///system"], &[("LIBVIRT_DEFAULT_URI", remote)], None, false),
        ("alias resolved by virsh uri", &["--connect", "myalias"], &[], None, false),
        ("nothing: libvirt probes local drivers", &[], &[], None, false),
    ];
    for (what, flags, env, conf, is_remote) in cases {
        // A fresh guest each time: apply defines the new config.
        f.domain("vm", "");
        let root = TempDir::with_config("defuri", cfg);
        root.write("/usr/lib/x86_64-linux-gnu/libvirt.so.0.9000.0", "");
        root.write("/proc/sys/kernel/random/boot_id", "6f1c1d1e-0000-4000-8000-000000000001\n");
        if let Some(uri) = conf {
            // Root reads /etc/libvirt/libvirt.conf, others $XDG_CONFIG_HOME/libvirt/libvirt.conf.
            let text = format!("# uri_default = \"test:///default\"\nuri_default = \"{uri}\"\n");
            root.write("/etc/libvirt/libvirt.conf", &text);
            root.write("/xdg/libvirt/libvirt.conf", &text);
        }
        let xdg = root.path().join("xdg");
        let bin = f.bin();
        let mut all_env: Vec<(&str, &str)> = vec![("VIRSH", &bin), ("XDG_CONFIG_HOME", xdg.to_str().unwrap())];
        all_env.extend_from_slice(env);
        let mut args = vec!["apply"];
        args.extend_from_slice(flags);
        args.push("vm");
        let out = run_with(root.path(), &args, "", &all_env);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr(&out));
        let err = stderr(&out);
        if *is_remote {
            assert!(err.contains("not enabling cpu_cycles: cannot probe the remote host"), "{what}: {err}");
            assert!(!root.path().join("var/cache/libvirt/virt-perf-hook").exists(), "{what}: the local cache was used");
        } else {
            assert!(err.contains("not enabling cpu_cycles: the host cannot open it"), "{what}: {err}");
        }
        assert_eq!(row(&out, "vm").0, "changed", "{what}");
    }
    // define too.
    let root = TempDir::with_config("defuri-define", cfg);
    let out = run_with(root.path(), &["define", "-"], DOMAIN, &[("VIRSH", &f.bin()), ("LIBVIRT_DEFAULT_URI", remote)]);
    assert!(stderr(&out).contains("dropped cpu_cycles (cannot probe the remote host"), "{}", stderr(&out));
    assert!(!root.path().join("var/cache/libvirt/virt-perf-hook").exists(), "the local cache was used");
}

/// A virsh that succeeds but prints no version is not "virsh exited with status 0".
#[test]
fn unparsable_version_output_is_named() {
    let f = FakeVirsh::new("fake-badver");
    f.domain("vm", "");
    f.dir.write("version", "something else entirely\n");
    let root = TempDir::with_config("badver", r#"{"enabled_perf_events": ["page_faults"], "host_probe": false}"#);
    let out = run_with(root.path(), &["apply", "--connect", "qemu+ssh://h/system", "vm"], "", &[("VIRSH", &f.bin())]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains("status 0"), "{err}");
    assert!(err.contains("printed no libvirt version"), "{err}");
}

/// `-c` is --config (as everywhere in this tool): `apply -c qemu:///system` reads a config file
/// named `qemu:///system`. The error says so; `-C` is the short form of --connect.
#[test]
fn dash_c_with_a_uri_is_explained() {
    let root = TempDir::with_config("dash-c", EVENTS_CFG);
    let out = run_in(root.path(), &["apply", "-c", "qemu:///system", "--all"], "");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("config qemu:///system: not found"), "{err}");
    assert!(err.contains("looks like a libvirt URI: -c is --config, use --connect URI (or -C URI)"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // A plain missing file says nothing about URIs.
    let out = run_in(root.path(), &["-c", "/nonexistent.json", "apply", "--all"], "");
    assert!(!stderr(&out).contains("URI"), "{}", stderr(&out));

    let f = FakeVirsh::new("fake-dash-cap-c");
    f.domain("vm", "");
    f.lists(&["vm"], &[]);
    let out = run_with(root.path(), &["apply", "-C", "test:///default", "--all"], "", &[("VIRSH", &f.bin())]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(f.log().iter().all(|l| l.starts_with("[-c][test:///default]")), "{:?}", f.log());
    let help = stdout(&run_in(root.path(), &["--help"], ""));
    assert!(help.contains("define [-C|--connect URI]") && help.contains("apply [-C|--connect URI]"), "{help}");
}

//! The libvirt hook protocol, driven the way libvirt drives it: argv, XML on stdin, stdout
//! read only for `migrate begin` / `restore begin`, exit status deciding whether the op goes on.

use std::os::unix::net::UnixDatagram;
use std::path::Path;

use crate::common::*;

const CFG: &str = r#"{"enabled_perf_events": ["page_faults", "cpu_clock"], "libvirt_version": "9.0.0", "host_probe": false}"#;

fn hook(root: &TempDir, args: &[&str], stdin: &str) -> std::process::Output {
    let mut all = vec!["qemu"];
    all.extend_from_slice(args);
    run_in(root.path(), &all, stdin)
}

fn expected() -> String {
    DOMAIN.replace(
        "  <devices>\n",
        "  <perf>\n    <event name='cpu_clock' enabled='yes'/>\n    <event name='page_faults' enabled='yes'/>\n  </perf>\n  <devices>\n",
    )
}

#[test]
fn restore_and_migrate_begin_print_the_new_xml() {
    let root = TempDir::with_config("hook-rw", CFG);
    for op in ["restore", "migrate"] {
        let out = hook(&root, &["instance-00000001", op, "begin", "-"], DOMAIN);
        assert_eq!(out.status.code(), Some(0), "{op}: {}", stderr(&out));
        assert_eq!(stdout(&out), expected(), "{op}");
    }
    // Already carrying the events: empty output means "unchanged" to libvirt.
    let out = hook(&root, &["instance-00000001", "restore", "begin", "-"], &expected());
    assert!(out.status.success());
    assert!(out.stdout.is_empty(), "unchanged XML must produce no output");
}

#[test]
fn other_ops_exit_at_once_without_reading_anything() {
    // A broken config and garbage on stdin: the pass-through path must not even look.
    let root = TempDir::with_config("hook-pass", "{ not json");
    for (op, sub) in [
        ("prepare", "begin"),
        ("start", "begin"),
        ("started", "begin"),
        ("stopped", "end"),
        ("release", "end"),
        ("reconnect", "begin"),
        ("attach", "begin"),
        ("restore", "end"),
        ("migrate", "end"),
        ("some-future-op", "begin"),
    ] {
        let out = hook(&root, &["vm", op, sub, "-"], "garbage");
        assert_eq!(out.status.code(), Some(0), "{op} {sub}");
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{op} {sub}: {}", stderr(&out));
    }
    // Missing arguments are not an error either: libvirt always passes four.
    let out = hook(&root, &[], "");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn excluded_domain_is_left_alone() {
    let cfg = r#"{"enabled_perf_events": ["page_faults"], "libvirt_version": "9.0.0", "host_probe": false,
                  "domains": {"exclude": ["instance-*"]}}"#;
    let root = TempDir::with_config("hook-excl", cfg);
    // The hook's domain argument decides, not the XML's <name>.
    let out = hook(&root, &["instance-00000001", "restore", "begin", "-"], DOMAIN);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    let out = hook(&root, &["other", "restore", "begin", "-"], DOMAIN);
    assert!(stdout(&out).contains("<event name='page_faults' enabled='yes'/>"));
}

#[test]
fn fails_open_by_default() {
    // Bad config: the guest proceeds unchanged, the reason is logged.
    let root = TempDir::with_config("hook-open", r#"{"enabled_perf_events": ["cpu_cycle"]}"#);
    let out = hook(&root, &["vm", "restore", "begin", "-"], DOMAIN);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(err.contains("did you mean 'cpu_cycles'") && err.contains("leaving the guest unchanged"), "{err}");

    // Missing config and unparsable XML: same.
    let empty = TempDir::new("hook-open2");
    let out = hook(&empty, &["vm", "restore", "begin", "-"], DOMAIN);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let root = TempDir::with_config("hook-open3", CFG);
    for bad in ["<domain><name>x</name>", "", "<vm/>", "\u{0}"] {
        let out = hook(&root, &["vm", "restore", "begin", "-"], bad);
        assert_eq!(out.status.code(), Some(0), "{bad:?}");
        assert!(out.stdout.is_empty(), "{bad:?}");
        assert!(stderr(&out).contains("domain XML rejected"), "{bad:?}: {}", stderr(&out));
    }
}

#[test]
fn fails_closed_when_configured() {
    let cfg = r#"{"enabled_perf_events": ["page_faults"], "libvirt_version": "9.0.0", "host_probe": false, "on_error": "fail"}"#;
    let (root, sock) = syslog_root("hook-closed", cfg);
    let out = hook(&root, &["vm", "restore", "begin", "-"], "<domain><name>x</name>");
    assert_eq!(out.status.code(), Some(1));
    // The reason reaches syslog as well (libvirt may not keep the hook's stderr).
    let logged = received(&sock).into_iter().next().expect("an error logged to syslog");
    assert!(logged.starts_with("<27>virt-perf-hook[") && logged.contains("vm restore begin: domain XML rejected: truncated"), "{logged}");
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("virt-perf-hook: vm restore begin: domain XML rejected: truncated"), "{err}");
    // Good input still works in fail mode.
    let out = hook(&root, &["vm", "restore", "begin", "-"], DOMAIN);
    assert!(out.status.success());
    assert!(stdout(&out).contains("page_faults"));
}

/// A panic is an internal error too: with `on_error: pass` the hook exits 0 with nothing on
/// stdout (the restore goes on unchanged) instead of dying of SIGABRT; with `fail` it exits 1
/// with one line. Either way there is no multi-line Rust panic report.
#[test]
fn a_panic_fails_open_or_closed_as_configured() {
    if !cfg!(debug_assertions) {
        crate::skip!("VIRT_PERF_HOOK_TEST_PANIC works in debug builds only");
    }
    let panic = [("VIRT_PERF_HOOK_TEST_PANIC", "1")];
    let root = TempDir::with_config("hook-panic", CFG);
    let out = run_with(root.path(), &["qemu", "vm", "restore", "begin", "-"], DOMAIN, &panic);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "output after a panic: {}", stdout(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("vm restore begin: internal error (panic at src/cmd/hook.rs:") && err.contains("leaving the guest unchanged"), "{err}");

    let cfg = CFG.replace('}', r#", "on_error": "fail"}"#);
    let root = TempDir::with_config("hook-panic-fail", &cfg);
    let out = run_with(root.path(), &["qemu", "vm", "restore", "begin", "-"], DOMAIN, &panic);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("virt-perf-hook: vm restore begin: internal error (panic at "), "{err}");
    // Without the switch the same call rewrites.
    let out = run_in(root.path(), &["qemu", "vm", "restore", "begin", "-"], DOMAIN);
    assert!(stdout(&out).contains("page_faults"), "{}", stderr(&out));
}

/// libvirt runs the file by its path: `hooks/qemu` or anything in `hooks/qemu.d/`.
#[test]
fn invoked_through_hook_file_names() {
    let root = TempDir::with_config("hook-argv0", CFG);
    let hooks = root.path().join("etc/libvirt/hooks");
    std::fs::create_dir_all(hooks.join("qemu.d")).unwrap();
    let as_qemu = hooks.join("qemu");
    let in_dir = hooks.join("qemu.d/50-virt-perf-hook");
    std::os::unix::fs::symlink(BIN, &as_qemu).unwrap();
    std::os::unix::fs::symlink(BIN, &in_dir).unwrap();
    for path in [&as_qemu, &in_dir] {
        let mut cmd = clean_command(path, root.path(), &[]);
        cmd.args(["instance-00000001", "restore", "begin", "-"]);
        let out = feed(cmd, DOMAIN);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), expected(), "{}", path.display());
        let mut cmd = clean_command(path, root.path(), &[]);
        cmd.args(["vm", "prepare", "begin", "-"]);
        let out = feed(cmd, DOMAIN);
        assert!(out.status.success() && out.stdout.is_empty());
    }
}

/// In a qemu.d chain our stdin is the previous script's output, possibly with its own `<perf>`.
#[test]
fn works_as_a_link_in_a_chain() {
    let root = TempDir::with_config("hook-chain", CFG);
    let previous = DOMAIN.replace("</domain>", "  <perf>\n    <event name='page_faults' enabled='yes'/>\n  </perf>\n</domain>");
    let out = hook(&root, &["instance-00000001", "restore", "begin", "-"], &previous);
    assert!(out.status.success());
    let xml = stdout(&out);
    assert_eq!(xml.matches("<perf>").count(), 1);
    assert_eq!(xml.matches("page_faults").count(), 1);
    assert!(xml.contains("<event name='cpu_clock' enabled='yes'/>"));
}

/// Hook runs log to syslog (/dev/log, under the fake root here), since libvirt drops stderr.
#[test]
fn logs_to_syslog() {
    let (root, sock) = syslog_root("hook-syslog", r#"{"enabled_perf_events": ["page_faults", "cpu_cycles"], "libvirt_version": "2.5.0", "host_probe": false}"#);
    let out = hook(&root, &["instance-00000001", "restore", "begin", "-"], DOMAIN);
    assert!(out.status.success());
    let got = received(&sock);
    let all = got.join("\n");
    // One line per rewrite; <28> = daemon.warning because an event was dropped.
    assert_eq!(got.len(), 1, "{all}");
    assert!(all.starts_with("<28>virt-perf-hook["), "{all}");
    assert!(all.ends_with("]: restore begin: domain 'instance-00000001': added cpu_cycles; dropped page_faults (needs libvirt 3.2.0, this host has 2.5.0)"), "{all}");
}

/// A fake root with a syslog socket at its /dev/log.
fn syslog_root(tag: &str, config: &str) -> (TempDir, UnixDatagram) {
    let root = TempDir::with_config(tag, config);
    std::fs::create_dir_all(root.path().join("dev")).unwrap();
    let sock = UnixDatagram::bind(root.path().join("dev/log")).unwrap();
    (root, sock)
}

/// What was logged to `sock` so far (the hook has exited: all of it is queued).
fn received(sock: &UnixDatagram) -> Vec<String> {
    sock.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    got
}

/// Incoming XML that names an event this libvirt does not know: removed (in any state), and
/// logged with the guest, the event and why. Nothing configured: healing is on by default.
#[test]
fn version_gate_removes_events_this_libvirt_does_not_know() {
    let (root, sock) = syslog_root("hook-gate", r#"{"enabled_perf_events": [], "libvirt_version": "3.0.0", "host_probe": false}"#);
    let perf = "  <perf>\n    <event name='page_faults' enabled='yes'/>\n    <event name='cpu_clock' enabled='no'/>\n  </perf>\n";
    let incoming = DOMAIN.replace("  <devices>\n", &format!("{perf}  <devices>\n"));
    for op in ["restore", "migrate"] {
        let out = hook(&root, &["instance-00000001", op, "begin", "-"], &incoming);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), DOMAIN, "{op}: the emptied <perf> goes as a whole");
        let got = received(&sock);
        assert_eq!(got.len(), 1, "{got:?}");
        let want = format!(
            "]: {op} begin: domain 'instance-00000001': removed page_faults (needs libvirt 3.2.0, this host has 3.0.0), \
             cpu_clock (needs libvirt 3.2.0, this host has 3.0.0)"
        );
        assert!(got[0].starts_with("<28>virt-perf-hook[") && got[0].ends_with(&want), "{}", got[0]);
    }
}

/// The host probe under a fake root (no PMU, no intel_cqm) decides what cannot open; enabled='no'
/// entries stay; "unsupported": "keep" and excluded guests leave the XML alone.
#[test]
fn unopenable_events_are_removed_unless_kept() {
    let perf = "  <perf>\n    <event name='cpu_cycles' enabled='yes'/>\n    <event name='cmt' enabled='no'/>\n  </perf>\n";
    let incoming = DOMAIN.replace("  <devices>\n", &format!("{perf}  <devices>\n"));
    let cfg = r#"{"enabled_perf_events": [], "libvirt_version": "9.0.0", "domains": {"exclude": ["skip-*"]}}"#;
    let (root, sock) = syslog_root("hook-heal", cfg);
    let out = hook(&root, &["instance-00000001", "restore", "begin", "-"], &incoming);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), DOMAIN.replace("  <devices>\n", "  <perf>\n    <event name='cmt' enabled='no'/>\n  </perf>\n  <devices>\n"));
    let got = received(&sock).join("\n");
    assert!(got.contains("removed cpu_cycles (the host cannot open it: no CPU PMU"), "{got}");
    let out = hook(&root, &["skip-me", "restore", "begin", "-"], &incoming);
    assert!(out.status.success() && out.stdout.is_empty(), "an excluded guest is untouched");

    let keep = TempDir::with_config("hook-keep", r#"{"libvirt_version": "9.0.0", "unsupported": "keep"}"#);
    let out = hook(&keep, &["instance-00000001", "restore", "begin", "-"], &incoming);
    assert!(out.status.success() && out.stdout.is_empty(), "{}", stdout(&out));
}

#[test]
fn daemon_hook_always_exits_zero() {
    let root = TempDir::with_config("hook-daemon", CFG);
    for args in [["-", "start", "-", "start"], ["-", "reload", "begin", "SIGHUP"], ["-", "shutdown", "-", "shutdown"]] {
        let mut all = vec!["daemon"];
        all.extend_from_slice(&args);
        let out = run_in(root.path(), &all, "");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
    // Even with a broken config.
    let bad = TempDir::with_config("hook-daemon2", "nope");
    let out = run_in(bad.path(), &["daemon", "-", "start", "-", "start"], "");
    assert_eq!(out.status.code(), Some(0));
}

/// The shipped entries are symlinks straight to the binary (no shell wrapper: AppArmor and SELinux
/// judge the file a link resolves to). Recreated under the fake root and pointed at the built
/// binary, they work as libvirt runs them.
#[test]
fn shipped_entries_run_the_binary_directly() {
    let root = TempDir::with_config("hook-entry", CFG);
    let hooks = root.path().join("etc/libvirt/hooks");
    let qemu = shipped_entry("hooks/qemu.d/virt-perf-hook", &hooks.join("qemu.d/virt-perf-hook"), Path::new(BIN));
    let daemon = shipped_entry("hooks/daemon.d/virt-perf-hook", &hooks.join("daemon.d/virt-perf-hook"), Path::new(BIN));
    let run = |entry: &Path, args: &[&str], stdin: &str| {
        let mut cmd = clean_command(entry, root.path(), &[]);
        cmd.args(args);
        feed(cmd, stdin)
    };
    let out = run(&qemu, &["instance-00000001", "restore", "begin", "-"], DOMAIN);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), expected());
    let out = run(&qemu, &["vm", "prepare", "begin", "-"], "garbage");
    assert!(out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(), "{}", stderr(&out));

    // The daemon entry refreshes the cache on start and reload, and prints nothing on stdout.
    for args in [["-", "start", "-", "start"], ["-", "reload", "begin", "SIGHUP"]] {
        let out = run(&daemon, &args, "");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert!(root.path().join("var/cache/libvirt/virt-perf-hook/state.json").is_file());
}

/// libvirt ignores the daemon hook's exit status and output, as the old shell entry did with
/// the binary's; still, the daemon entry exits 0 whatever is broken, and writes nothing to stdout.
#[test]
fn daemon_entry_never_fails() {
    let root = TempDir::with_config("hook-daemon-entry", "not json");
    // A file where the cache directory belongs: nothing can be cached.
    root.write("/var/cache/libvirt/virt-perf-hook", "");
    let hooks = root.path().join("etc/libvirt/hooks");
    let daemon = shipped_entry("hooks/daemon.d/virt-perf-hook", &hooks.join("daemon.d/virt-perf-hook"), Path::new(BIN));
    for args in [&["-", "start", "-", "start"][..], &["-", "reload", "begin", "SIGHUP"], &["-", "shutdown", "-", "shutdown"], &[], &["--bogus"]]
    {
        let mut cmd = clean_command(&daemon, root.path(), &[]);
        cmd.args(args);
        let out = feed(cmd, "garbage");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}: {}", stdout(&out));
    }
}

/// Where the cache cannot be written (a MAC policy, a read-only /var) the hook still rewrites,
/// and says so once.
#[test]
fn hook_without_a_writable_cache_says_so_once() {
    let cfg = r#"{"enabled_perf_events": ["page_faults"], "host_probe": false}"#;
    let root = TempDir::with_config("hook-nocache", cfg);
    // No pin: the version is detected from the library file, which the hook would cache.
    root.write("/usr/lib/x86_64-linux-gnu/libvirt.so.0.9000.0", "");
    root.write("/var/cache/libvirt/virt-perf-hook", "");
    let out = hook(&root, &["instance-00000001", "restore", "begin", "-"], DOMAIN);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("<event name='page_faults' enabled='yes'/>"), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.matches("not caching host state").count(), 1, "{err}");
    assert_eq!(err.lines().filter(|l| l.contains("cache")).count(), 1, "one line about the cache: {err}");
}

/// A syslog socket whose queue is full must not block the hook: the log line is dropped.
#[test]
fn full_syslog_socket_does_not_block() {
    let root = TempDir::with_config("hook-fullsyslog", CFG);
    std::fs::create_dir_all(root.path().join("dev")).unwrap();
    let sock = UnixDatagram::bind(root.path().join("dev/log")).unwrap();
    // Fill the receiver's queue from another socket, never reading.
    let filler = UnixDatagram::unbound().unwrap();
    filler.connect(root.path().join("dev/log")).unwrap();
    filler.set_nonblocking(true).unwrap();
    let mut sent = 0;
    while filler.send(&[b'x'; 1024]).is_ok() {
        sent += 1;
        assert!(sent < 1_000_000, "the socket never filled up");
    }
    let r = run_limited(root.path(), &["qemu", "vm", "restore", "begin", "-"], &[], Input::Bytes(DOMAIN.as_bytes().to_vec()), std::time::Duration::from_secs(20));
    assert_eq!(r.out.status.code(), Some(0), "{}", stderr(&r.out));
    assert_eq!(stdout(&r.out), expected());
    assert!(r.elapsed < std::time::Duration::from_secs(2), "the hook waited {:?} on syslog", r.elapsed);
    drop(sock);
}

/// Domain names are quoted and their control characters escaped in log lines, so a name cannot
/// forge or garble syslog entries (or drive a terminal that shows them).
#[test]
fn log_lines_escape_domain_names() {
    let root = TempDir::with_config("hook-logname", CFG);
    std::fs::create_dir_all(root.path().join("dev")).unwrap();
    let sock = UnixDatagram::bind(root.path().join("dev/log")).unwrap();
    let name = "evil\nvirt-perf-hook: fake\u{1b}[2J";
    let out = hook(&root, &[name, "restore", "begin", "-"], DOMAIN);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("domain 'evil\\nvirt-perf-hook: fake\\u{1b}[2J': added"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a log line");
    let logged = String::from_utf8_lossy(&buf[..n]);
    assert!(logged.contains("domain 'evil\\nvirt-perf-hook: fake\\u{1b}[2J': added"), "{logged}");
    // An error names the domain the same way.
    let out = hook(&root, &[name, "restore", "begin", "-"], "<vm/>");
    assert!(stderr(&out).contains("evil\\nvirt-perf-hook: fake\\u{1b}[2J restore begin: domain XML rejected"), "{}", stderr(&out));
}

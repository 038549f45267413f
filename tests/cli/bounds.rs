//! Time bounds and the one-watcher rule, on any machine: a virsh that never answers (a frozen
//! daemon, as virsh sees it) costs every command at most `--timeout` and one line; `status
//! --json` still prints one JSON document; a second `watch` on a connection is refused at once.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::skip;

/// A virsh that hangs, with a child of its own holding its output open (only killing the whole
/// process group ends it), and records that it started.
fn frozen_virsh(dir: &TempDir) -> String {
    let started = dir.path().join("started");
    let script = format!("#!/bin/sh\necho x >> '{}'\nsleep 60 &\nsleep 60\n", started.display());
    dir.write_exec("virsh-frozen", &script).to_str().unwrap().to_string()
}

const CFG: &str = r#"{"enabled_perf_events": ["page_faults"], "host_probe": false}"#;

#[test]
fn a_frozen_virsh_costs_every_command_the_bound_and_one_line() {
    let root = TempDir::with_config("frozen", CFG);
    let virsh = frozen_virsh(&root);
    let env = [("VIRSH", virsh.as_str())];
    let xml = root.write("g.xml", DOMAIN);
    let cases: Vec<Vec<&str>> = vec![
        vec!["--timeout", "1", "status", "--all", "-C", "qemu:///system"],
        vec!["--timeout", "1", "apply", "--all", "-C", "qemu:///system"],
        vec!["--timeout", "1", "apply", "vm1", "-C", "qemu:///system"],
        vec!["--timeout", "1", "define", "-C", "qemu:///system", xml.to_str().unwrap()],
        vec!["--timeout", "1", "create", "-C", "qemu:///system", xml.to_str().unwrap()],
        // An alias is resolved with `virsh uri`: bounded too.
        vec!["--timeout", "1", "status", "--all", "-C", "myalias"],
    ];
    for args in cases {
        let started = Instant::now();
        let out = run_with(root.path(), &args, "", &env);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(4), "{args:?} took {took:?}");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}{}", stdout(&out), stderr(&out));
        let err = stderr(&out);
        let last = err.lines().last().unwrap_or_default();
        assert!(last.starts_with("virt-perf-hook: virsh "), "{args:?}: {err}");
        assert!(last.contains(": no answer within 1s, killed (is libvirtd frozen or unreachable? the limit is --timeout SECONDS)"), "{args:?}: {err}");
    }
}

#[test]
fn status_json_is_one_document_whatever_happens() {
    let root = TempDir::with_config("frozen-json", CFG);
    let virsh = frozen_virsh(&root);
    let out = run_with(root.path(), &["--timeout", "1", "status", "--json", "--all", "-C", "qemu:///system"], "", &[("VIRSH", virsh.as_str())]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["schema"], 1);
    assert!(doc["error"].as_str().unwrap().contains("no answer within 1s"), "{doc}");
    assert_eq!(doc["guests"], serde_json::json!([]));
    if !have("virsh") {
        skip!("virsh not installed (apt-get install libvirt-clients)");
    }
    for uri in ["bogus:///x", "qemu+tcp://vph-no-such-host.invalid/system"] {
        let cfg = r#"{"enabled_perf_events": ["page_faults"], "host_probe": false, "libvirt_version": "9.0.0"}"#;
        let root = TempDir::with_config("unreachable-json", cfg);
        let out = run_in(root.path(), &["--timeout", "10", "status", "--json", "--all", "-C", uri], "");
        assert_eq!(out.status.code(), Some(1), "{uri}: {}", stderr(&out));
        let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{uri}: {e}: {}", stdout(&out)));
        assert!(doc["error"].as_str().is_some_and(|e| !e.is_empty()), "{uri}: {doc}");
        assert_eq!(stderr(&out).lines().count(), 1, "{uri}: {}", stderr(&out));
    }
}

/// A second `watch` on the same connection exits at once with status 5 and says why; the first
/// one, stopped in the middle of a (hanging) sweep, ends at once with status 0 and leaves no
/// virsh behind.
#[test]
fn a_second_watch_is_refused_and_a_stop_ends_a_hanging_sweep() {
    let root = TempDir::with_config("two-watch", CFG);
    let virsh = frozen_virsh(&root);
    let uri = format!("test:///vph-two-watch-{}", std::process::id());
    let env = [("VIRSH", virsh.as_str())];
    let mut first = clean_command(BIN, root.path(), &env);
    first.args(["--timeout", "60", "watch", "-C", &uri]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut first = first.spawn().unwrap();
    let started = root.path().join("started");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the first watch never ran virsh");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    let second = run_with(root.path(), &["watch", "-C", &uri], "", &env);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(second.status.code(), Some(5), "{}", stderr(&second));
    assert_eq!(
        stderr(&second),
        format!("virt-perf-hook: another 'virt-perf-hook watch' already watches {uri} (virt-perf-hook.service?); only one may run per connection\n")
    );
    // Another connection is another watcher's business.
    let mut other = clean_command(BIN, root.path(), &env);
    other.args(["watch", "-C", &format!("{uri}-b")]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut other = other.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(other.try_wait().unwrap(), None, "a watch on another connection runs");
    for child in [&mut first, &mut other] {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
        let t = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(t.elapsed() < Duration::from_secs(5), "SIGTERM did not end the watch");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(t.elapsed() < Duration::from_secs(1), "SIGTERM took {:?}", t.elapsed());
        assert_eq!(status.code(), Some(0));
    }
    // Its hanging virsh (and the child holding its output) are gone with it.
    std::thread::sleep(Duration::from_millis(200));
    let left = std::process::Command::new("pgrep").args(["-f", &virsh]).output().unwrap();
    assert!(stdout(&left).trim().is_empty(), "virsh left behind: {}", stdout(&left));
    let _ = Path::new(&virsh);
}

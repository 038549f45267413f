//! `create`, define's twin for transient guests: the rewritten XML goes to `virsh create` on its
//! stdin, `--paused` and `--validate` pass through, virsh's message names the user's file, and
//! its exit status passes through. A recording `$VIRSH` here and libvirt's test driver; the busy
//! guest on a real libvirtd, whose counters are then complete, is in `watch.rs`.

use crate::common::*;
use crate::skip;

const CFG: &str = r#"{"enabled_perf_events": ["page_faults", "cpu_clock"], "libvirt_version": "9.0.0", "host_probe": false}"#;

/// A `$VIRSH` that records its argv (`[a][b]…`) and what it read from the file it was given,
/// and answers as `virsh create` does.
fn recorder(root: &TempDir) -> String {
    let d = root.path().display();
    let script = format!(
        r#"#!/bin/sh
printf '[%s]' "$@" > '{d}/argv'
for f in "$@"; do :; done
cat "$f" > '{d}/received.xml'
echo "Domain 'guest' created from $f"
echo
"#
    );
    root.write_exec("virsh", &script).to_str().unwrap().to_string()
}

#[test]
fn create_hands_the_rewritten_xml_to_virsh_create_on_stdin() {
    let root = TempDir::with_config("create", CFG);
    let virsh = recorder(&root);
    let input = root.write("guest.xml", DOMAIN);
    let out = run_with(root.path(), &["create", input.to_str().unwrap()], "", &[("VIRSH", &virsh)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("Domain 'guest' created from {}\n\n", input.display()), "the user's file, not /dev/stdin");
    assert_eq!(std::fs::read_to_string(root.path().join("argv")).unwrap(), "[create][--file][/dev/stdin]");
    let got = std::fs::read_to_string(root.path().join("received.xml")).unwrap();
    assert!(got.contains("<event name='page_faults' enabled='yes'/>") && got.contains("<event name='cpu_clock' enabled='yes'/>"), "{got}");

    // From stdin, with every option: --paused and --validate reach virsh, the URI as its -c.
    let args = ["create", "-C", "test:///default", "--paused", "--validate", "-"];
    let out = run_with(root.path(), &args, DOMAIN, &[("VIRSH", &virsh)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Domain 'guest' created from -\n\n");
    let argv = std::fs::read_to_string(root.path().join("argv")).unwrap();
    assert_eq!(argv, "[-c][test:///default][create][--validate][--paused][--file][/dev/stdin]");
    assert!(std::fs::read_to_string(root.path().join("received.xml")).unwrap().contains("page_faults"));
}

#[test]
fn create_passes_virsh_failures_through() {
    let root = TempDir::with_config("create-fail", CFG);
    let fake = root.write_exec("virsh", "#!/bin/sh\ncat >/dev/null\necho 'error: Failed to create domain from /dev/stdin' >&2\nexit 1\n");
    let input = root.write("guest.xml", DOMAIN);
    let out = run_with(root.path(), &["create", input.to_str().unwrap()], "", &[("VIRSH", fake.to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with(&format!("error: Failed to create domain from {}\n", input.display())), "{err}");
    assert!(err.contains("virsh create exited with status 1; the domain was not created"), "{err}");
}

#[test]
fn create_usage_errors() {
    let root = TempDir::with_config("create-usage", CFG);
    for (args, want) in [
        (&["create"][..], "create: give a FILE, or - for stdin"),
        (&["create", "a.xml", "b.xml"][..], "create: only one FILE may be given, got 2"),
        (&["create", "--all", "-"][..], "create: unknown option '--all'"),
        // --paused is virsh create's; a defined guest is not started at all.
        (&["define", "--paused", "-"][..], "define: unknown option '--paused'"),
    ] {
        let out = run_with(root.path(), args, DOMAIN, &[("VIRSH", "/nonexistent/virsh")]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
}

/// On libvirt's test driver (no daemon): the guest runs with the events live. Its state lives
/// in one connection, so a `$VIRSH` wrapper runs the create and the checks in one virsh session,
/// on the XML it was handed on stdin. (The test driver refuses `--paused`; the real daemon's
/// `create --paused` is in `watch.rs`.)
#[test]
fn create_on_the_test_driver() {
    if !have("virsh") {
        skip!("virsh not installed (apt-get install libvirt-clients)");
    }
    let root = TempDir::with_config("create-test", CFG);
    let d = root.path().display();
    let name = "vph-create-1";
    let wrapper = root.write_exec(
        "virsh-wrapper",
        &format!(
            r#"#!/bin/sh
[ "$1" = -c ] || {{ echo "wrapper: expected -c URI first" >&2; exit 99; }}
uri=$2; shift 2
cat > '{d}/received.xml'
exec virsh -c "$uri" "$*; domstate {name}; dumpxml {name}" < '{d}/received.xml'
"#
        ),
    );
    let xml = format!("<domain type='test'>\n  <name>{name}</name>\n  <memory unit='MiB'>64</memory>\n  <os>\n    <type>hvm</type>\n  </os>\n</domain>\n");
    let input = root.write("in.xml", &xml);
    let args = ["create", "--connect", "test:///default", input.to_str().unwrap()];
    let out = run_with(root.path(), &args, "", &[("VIRSH", wrapper.to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with(&format!("Domain '{name}' created from {}\n", input.display())), "{text}");
    assert!(text.contains("\nrunning\n"), "{text}");
    assert!(text.contains("<event name='page_faults' enabled='yes'/>") && text.contains("<event name='cpu_clock' enabled='yes'/>"), "{text}");
}

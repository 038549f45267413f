//! `define` on libvirt's test driver and with fake virshes: stdin hand-over, exclusions, errors.
use crate::common::*;
use crate::skip;
use crate::virsh::*;

#[test]
fn define_adds_events_on_the_test_driver() {
    if !have("virsh") {
        skip!("virsh not installed (apt-get install libvirt-clients)");
    }
    let root = TempDir::with_config("define", EVENTS_CFG);
    let tmp = TempDir::new("define-tmp");
    let wrapper = define_wrapper(&root, "vph-define-1");
    let xml = guest_xml("vph-define-1", "  <perf>\n    <event name='cpu_clock' enabled='no'/>\n  </perf>\n");
    let f = root.write("in.xml", &xml);
    let env = [("VIRSH", wrapper.as_str()), ("TMPDIR", tmp.path().to_str().unwrap())];
    let out = run_with(root.path(), &["-v", "define", "--connect", "test:///default", "--validate", f.to_str().unwrap()], "", &env);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let dumped = stdout(&out);
    // virsh read /dev/stdin; the message names the user's file, not a (deleted) temp file.
    assert!(dumped.contains(&format!("Domain 'vph-define-1' defined from {}\n", f.display())), "virsh's stdout passes through: {dumped}");
    assert!(dumped.contains("<event name='page_faults' enabled='yes'/>"), "{dumped}");
    assert!(dumped.contains("<event name='cpu_clock' enabled='no'/>"), "existing: respect: {dumped}");
    assert!(stderr(&out).contains("added page_faults"), "logged: {}", stderr(&out));
    let argv = std::fs::read_to_string(root.path().join("argv")).unwrap();
    assert_eq!(argv, "[define][--validate][--file][/dev/stdin]");
    assert!(std::fs::read_to_string(root.path().join("received.xml")).unwrap().contains("page_faults"));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "a file was left in TMPDIR");
}

/// The XML reaches virsh through nothing another user can replace. With a world-writable,
/// non-sticky TMPDIR, a file there could be renamed over between the write and `virsh define`
/// (root would then define the attacker's domain). This fake virsh tries exactly that on
/// whatever file it is given, before reading it.
#[test]
fn define_hands_the_xml_to_virsh_on_stdin() {
    let root = TempDir::with_config("define-swap", EVENTS_CFG);
    let tmp = TempDir::new("define-swap-tmp");
    set_mode(tmp.path(), 0o777);
    let d = root.path().display();
    let t = tmp.path().display();
    let fake = root.write_exec(
        "virsh",
        &format!(
            r#"#!/bin/sh
for f in "$@"; do :; done
if [ "$f" != /dev/stdin ] && [ -e "$f" ]; then
  printf '<domain><name>evil</name></domain>' > '{t}/evil.xml' && mv -f '{t}/evil.xml' "$f"
fi
cat "$f" > '{d}/received.xml'
echo "Domain 'guest' defined from $f"
"#
        ),
    );
    let input = root.write("guest.xml", DOMAIN);
    let fake = fake.to_str().unwrap();
    for tmpdir in [tmp.path().to_str().unwrap(), "/nonexistent", ""] {
        let env = [("VIRSH", fake), ("TMPDIR", tmpdir)];
        let out = run_with(root.path(), &["define", input.to_str().unwrap()], "", &env);
        assert_eq!(out.status.code(), Some(0), "TMPDIR={tmpdir:?}: {}", stderr(&out));
        let got = std::fs::read_to_string(root.path().join("received.xml")).unwrap();
        assert!(got.contains("<event name='page_faults' enabled='yes'/>") && !got.contains("evil"), "TMPDIR={tmpdir:?}: {got}");
        assert_eq!(stdout(&out), format!("Domain 'guest' defined from {}\n", input.display()), "TMPDIR={tmpdir:?}");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "a file was created in TMPDIR");
    }
    // From stdin, the message says '-'.
    let out = run_with(root.path(), &["define", "-"], DOMAIN, &[("VIRSH", fake)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Domain 'guest' defined from -\n");
}

#[test]
fn define_excluded_domain_is_defined_unchanged() {
    if !have("virsh") {
        skip!("virsh not installed (apt-get install libvirt-clients)");
    }
    let root = TempDir::with_config("define-excl", EVENTS_CFG);
    let wrapper = define_wrapper(&root, "skip-define");
    let xml = guest_xml("skip-define", "");
    let out = run_with(root.path(), &["define", "--connect", "test:///default", "-"], &xml, &[("VIRSH", &wrapper)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(root.path().join("received.xml")).unwrap(), xml);
    assert!(!stdout(&out).contains("<perf>"), "{}", stdout(&out));
}

#[test]
fn define_from_stdin_with_real_virsh() {
    if !have("virsh") {
        skip!("virsh not installed (apt-get install libvirt-clients)");
    }
    let root = TempDir::with_config("define-stdin", EVENTS_CFG);
    let out = run_in(root.path(), &["define", "--connect", "test:///default", "-"], &guest_xml("vph-stdin", ""));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("Domain 'vph-stdin' defined"), "{}", stdout(&out));
}

#[test]
fn define_passes_virsh_errors_through() {
    let root = TempDir::with_config("define-err", EVENTS_CFG);
    if have("virsh") {
        // No <name>: our rewrite accepts it, libvirt does not.
        let xml = "<domain type='test'><memory>65536</memory><os><type>hvm</type></os></domain>";
        let out = run_in(root.path(), &["define", "--connect", "test:///default", "-"], xml);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("error: missing name information"), "virsh's message: {}", stderr(&out));
    } else {
        skipping(&format!("part of {}", module_path!()), "virsh not installed (apt-get install libvirt-clients)");
    }
    // Any exit status passes through, not just 1.
    let fake = root.write_exec("exit3", "#!/bin/sh\necho 'error: pretend failure' >&2\nexit 3\n");
    let out = run_with(root.path(), &["define", "-"], DOMAIN, &[("VIRSH", fake.to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).starts_with("error: pretend failure\n"), "{}", stderr(&out));
    // A virsh that exits without reading a large document: an EPIPE, not death by SIGPIPE.
    let big = DOMAIN.replace("</domain>", &format!("<!--{}--></domain>", "x".repeat(4 << 20)));
    let out = run_with(root.path(), &["define", "-"], &big, &[("VIRSH", fake.to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(3), "{:?} {}", out.status, stderr(&out));
    // Our own errors come before virsh runs: bad XML is exit 4 and virsh is never called.
    let out = run_with(root.path(), &["define", "-"], "<vm/>", &[("VIRSH", fake.to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(4));
    assert!(!stderr(&out).contains("pretend"));
}

//! `apply` on the real virsh with libvirt's test driver: UUIDs, IDs and odd names.
use crate::common::*;
use crate::skip;
use crate::virsh::*;

/// A target given as a UUID or a domain ID is the guest it names: the include/exclude rules
/// apply to its real name, and it is known to be running.
#[test]
fn apply_by_uuid_or_id_is_the_named_guest() {
    if !have("virsh") {
        skip!("virsh not installed (apt-get install libvirt-clients)");
    }
    let excluded = TempDir::with_config("apply-id-excl", &EVENTS_CFG.replace("skip-*", "test"));
    let included = TempDir::with_config("apply-id", EVENTS_CFG);
    for target in ["1", TEST_UUID, "test"] {
        let args = ["apply", "--connect", "test:///default", "--dry-run", target];
        let out = run_in(excluded.path(), &args, "");
        assert_eq!(out.status.code(), Some(0), "{target}: {}", stderr(&out));
        let (res, detail) = row(&out, "test");
        assert_eq!(res, "skipped", "{target}: an excluded guest was not skipped: {detail}");

        let out = run_in(included.path(), &args, "");
        assert_eq!(out.status.code(), Some(0), "{target}: {}", stderr(&out));
        assert_eq!(row(&out, "test"), ("would change".into(), format!("added cpu_clock,page_faults; {NEXT_START}")), "{target}");
    }
    // The same guest three ways is one row.
    let out = run_in(included.path(), &["apply", "--connect", "test:///default", "--dry-run", "1", TEST_UUID, "test"], "");
    assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));
}

/// Odd names on the real virsh (test driver): `--all` (by UUID) and every name given as a
/// DOMAIN (quoted into the command string) find their guest, and the new configs reach
/// libvirt with the events and the name intact.
#[test]
fn apply_named_targets_with_odd_names_on_the_test_driver() {
    if !have("virsh") {
        skip!("virsh not installed (apt-get install libvirt-clients)");
    }
    let root = TempDir::with_config("apply-odd", EVENTS_CFG);
    let uuid = |i: usize| format!("11111111-2222-4333-8444-5555555556{i:02}");
    // Shut off (test:runstate 5): a running guest's persistent config is a reformatted copy
    // in which libvirt turns the '\r' into a '\n'.
    let doms: String = ODD_NAMES
        .iter()
        .enumerate()
        .map(|(i, (xml, _))| {
            format!(
                "  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'><name>{xml}</name>\
                 <uuid>{}</uuid><memory unit='MiB'>64</memory><os><type>hvm</type></os><test:runstate>5</test:runstate></domain>\n",
                uuid(i)
            )
        })
        .collect();
    let node = root.write("node.xml", &format!("<node>\n{doms}</node>\n"));
    let uri = format!("test://{}", node.display());
    let uuids: Vec<String> = (0..ODD_NAMES.len()).map(uuid).collect();
    let wrapper = dump_after_define(&root, &uuids);
    let env = [("VIRSH", wrapper.as_str())];
    let names: Vec<&str> = ODD_NAMES.iter().map(|(_, n)| *n).collect();
    let changed = ("changed".to_string(), "added cpu_clock,page_faults".to_string());
    for by_name in [false, true] {
        let _ = std::fs::remove_file(root.path().join("after-define"));
        let mut args = vec!["apply", "--connect", &uri];
        if by_name {
            args.push("--");
            args.extend(&names);
            args.push(GHOST);
        } else {
            args.push("--all");
        }
        let out = run_with(root.path(), &args, "", &env);
        assert_eq!(out.status.code(), Some(i32::from(by_name)), "by name: {by_name}: {}{}", stdout(&out), stderr(&out));
        assert_eq!(stdout(&out).lines().count(), 1 + names.len() + usize::from(by_name), "{}", stdout(&out));
        if by_name {
            // One word: virsh looked up the whole of it (its message shows the newline as a space).
            let ghost = "error: failed to get domain 'vph-ghost undefine --domain vph odd space; echo ''";
            assert_eq!(row(&out, &shown(GHOST)), ("failed".into(), ghost.into()), "{}", stdout(&out));
        }
        for n in &names {
            assert_eq!(row(&out, &shown(n)), changed, "by name: {by_name}: {n:?}: {}", stdout(&out));
        }
        let after = std::fs::read_to_string(root.path().join("after-define")).unwrap();
        // By UUID: a define under another name would have been refused (the UUID is taken).
        for (u, n) in uuids.iter().zip(&names) {
            let dumped = after.split("vph-after").find(|d| d.contains(&format!("<uuid>{u}</uuid>")));
            let dumped = dumped.unwrap_or_else(|| panic!("{n:?} not dumped:\n{after}"));
            assert!(dumped.contains("<event name='page_faults' enabled='yes'/>"), "{n:?}: {dumped}");
        }
    }
}

/// Any name libvirt lists works, including one ending in a carriage return (libvirt accepts
/// `<name>x&#13;</name>`), and a name that reads as another guest's ID.
#[test]
fn apply_all_handles_any_name_libvirt_lists() {
    if !have("virsh") {
        skip!("virsh not installed (apt-get install libvirt-clients)");
    }
    let root = TempDir::with_config("apply-cr", EVENTS_CFG);
    // A test-driver host of its own: 'a' runs with ID 1, '1' with ID 2, and 'cr\r' is shut off
    // (test:runstate 5). It must be: libvirt keeps a running guest's persistent config as a copy
    // made by formatting and re-parsing its XML, which turns the '\r' into a '\n' before any
    // tool sees it.
    let dom = |name: &str, n: u32, extra: &str| {
        format!(
            "  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'><name>{name}</name>\
             <uuid>11111111-2222-4333-8444-55555555550{n}</uuid><memory unit='MiB'>64</memory><os><type>hvm</type></os>{extra}</domain>\n"
        )
    };
    let node = root.write(
        "node.xml",
        &format!("<node>\n{}{}{}</node>\n", dom("a", 0, ""), dom("cr&#13;", 1, "<test:runstate>5</test:runstate>"), dom("1", 2, "")),
    );
    let uri = format!("test://{}", node.display());
    let out = run_in(root.path(), &["apply", "--connect", &uri, "--all"], "");
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(row(&out, "cr\\r"), ("changed".into(), "added cpu_clock,page_faults".into()), "{}", stdout(&out));
    // '1' is not the guest with ID 1: each has its own row (running: the change waits for its
    // next start).
    let running = ("changed".to_string(), format!("added cpu_clock,page_faults; {NEXT_START}"));
    assert_eq!(row(&out, "1"), running, "{}", stdout(&out));
    assert_eq!(row(&out, "a"), running, "{}", stdout(&out));
    assert_eq!(stdout(&out).lines().count(), 4, "{}", stdout(&out));
}

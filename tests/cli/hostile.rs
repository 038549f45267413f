//! Hostile input, run through the built binary in `filter` mode and in hook mode
//! (`qemu vm restore begin -`). Every case: no panic, no partial output, and either a clear
//! one-line error (filter; hook with `"on_error": "fail"`) or fail-open (hook, default
//! `on_error: pass`: exit 0 and empty stdout, so libvirt keeps the guest's XML).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::*;
use crate::skip;

const EVENTS_PINNED: &str = r#"{"enabled_perf_events": ["page_faults", "cpu_clock"], "libvirt_version": "9.0.0", "host_probe": false}"#;
const EVENTS_PINNED_FAIL: &str =
    r#"{"enabled_perf_events": ["page_faults", "cpu_clock"], "libvirt_version": "9.0.0", "host_probe": false, "on_error": "fail"}"#;
const HOOK: &[&str] = &["qemu", "vm", "restore", "begin", "-"];
const FILTER: &[&str] = &["filter", "-"];

/// `stdin` through the binary under `root`; a run longer than 60 s is a hang and fails.
fn run_bytes(root: &Path, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Run {
    run_limited(root, args, env, Input::Bytes(stdin.to_vec()), Duration::from_secs(60))
}

fn no_panic(what: &str, o: &Output) {
    let err = stderr(o);
    assert!(!err.contains("panicked"), "{what}: panicked: {err}");
    assert!(o.status.code().is_some(), "{what}: killed by a signal: {:?}", o.status);
}

/// Refused with exit `code`, nothing on stdout, one line on stderr containing `want`.
fn refused(what: &str, o: &Output, code: i32, want: &str) {
    no_panic(what, o);
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{what}: exit status; stderr: {err}");
    assert!(o.stdout.is_empty(), "{what}: partial output on error ({} bytes)", o.stdout.len());
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: not one line: {err:?}");
    assert!(err.starts_with("virt-perf-hook: "), "{what}: {err:?}");
    assert!(err.contains(want), "{what}: expected {want:?} in {err:?}");
}

/// Hook fail-open: exit 0, empty stdout (libvirt keeps the XML it has).
fn fails_open(what: &str, o: &Output) {
    no_panic(what, o);
    assert_eq!(o.status.code(), Some(0), "{what}: hook must fail open; stderr: {}", stderr(o));
    assert!(o.stdout.is_empty(), "{what}: hook printed {} bytes on error", o.stdout.len());
}

/// A hostile domain XML: refused by `filter` (exit 4) and by the hook with `on_error: fail`
/// (exit 1), fail-open in the hook by default. `want` is part of the one-line message.
fn rejected_everywhere(what: &str, xml: &[u8], want: &str) {
    let pass = TempDir::with_config("hostile", EVENTS_PINNED);
    let fail = TempDir::with_config("hostile-fail", EVENTS_PINNED_FAIL);
    let r = run_bytes(pass.path(), FILTER, &[], xml);
    refused(&format!("{what} (filter)"), &r.out, 4, want);
    let r = run_bytes(pass.path(), HOOK, &[], xml);
    fails_open(&format!("{what} (hook, on_error pass)"), &r.out);
    let r = run_bytes(fail.path(), HOOK, &[], xml);
    refused(&format!("{what} (hook, on_error fail)"), &r.out, 1, want);
    assert!(stderr(&r.out).contains("vm restore begin"), "{what}: hook error names the call: {}", stderr(&r.out));
}

#[test]
fn billion_laughs_is_refused() {
    let mut xml = String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE domain [\n  <!ENTITY lol \"lol\">\n");
    for i in 1..=9 {
        let prev = if i == 1 { "lol".to_string() } else { format!("lol{}", i - 1) };
        xml.push_str(&format!("  <!ENTITY lol{i} \"{}\">\n", format!("&{prev};").repeat(10)));
    }
    xml.push_str("]>\n<domain type='kvm'><name>&lol9;</name><devices/></domain>\n");
    rejected_everywhere("billion laughs", xml.as_bytes(), "DOCTYPE is not allowed");
}

#[test]
fn external_entity_is_refused_and_never_read() {
    let xml = "<?xml version=\"1.0\"?>\n<!DOCTYPE domain [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n<domain type='kvm'><name>&xxe;</name><devices/></domain>\n";
    rejected_everywhere("external entity", xml.as_bytes(), "DOCTYPE is not allowed");
    // Without a DOCTYPE the reference is just an unknown entity, in text and in attributes.
    rejected_everywhere("undeclared entity", b"<domain type='kvm'><name>&xxe;</name><devices/></domain>", "unknown entity '&xxe;'");
    rejected_everywhere("entity in attribute", b"<domain type='&xxe;'><name>x</name><devices/></domain>", "domain XML rejected");
    let root = TempDir::with_config("xxe", EVENTS_PINNED);
    let r = run_bytes(root.path(), FILTER, &[], xml.as_bytes());
    assert!(!stdout(&r.out).contains("root:") && !stderr(&r.out).contains("root:"), "leaked /etc/passwd");
}

#[test]
fn input_of_100_mb_is_refused_without_reading_it_all() {
    const TOTAL: u64 = 100 << 20;
    let stream = || -> Input {
        Input::Stream(Box::new(|w: &mut dyn Write| {
            let head = b"<domain type='kvm'>\n  <name>big</name>\n  <devices>\n";
            let disk = "    <disk type='file' device='disk'><source file='/var/lib/x.img'/></disk>\n".repeat(800);
            let mut n = 0u64;
            if w.write_all(head).is_err() {
                return n;
            }
            n += head.len() as u64;
            while n < TOTAL {
                if w.write_all(disk.as_bytes()).is_err() {
                    break;
                }
                n += disk.len() as u64;
            }
            n
        }))
    };
    let pass = TempDir::with_config("huge", EVENTS_PINNED);
    let fail = TempDir::with_config("huge-fail", EVENTS_PINNED_FAIL);
    let limit = Duration::from_secs(30);
    for (what, root, args, check) in [
        ("filter", pass.path(), FILTER, 4),
        ("hook pass", pass.path(), HOOK, 0),
        ("hook fail", fail.path(), HOOK, 1),
    ] {
        let r = run_limited(root, args, &[], stream(), limit);
        match check {
            0 => fails_open(what, &r.out),
            code => refused(what, &r.out, code, "larger than the 16 MiB limit"),
        }
        // The reader stops after the cap (+ a pipe buffer); it never swallows all 100 MB.
        assert!(r.written < 20 << 20, "{what}: {} bytes were read before refusing", r.written);
        assert!(r.elapsed < Duration::from_secs(10), "{what}: took {:?} to refuse", r.elapsed);
    }
    // Every other lifecycle event exits at once without reading stdin at all.
    let r = run_limited(pass.path(), &["qemu", "vm", "prepare", "begin", "-"], &[], stream(), limit);
    fails_open("prepare begin", &r.out);
    assert!(r.written < 1 << 20, "prepare begin read {} bytes of stdin", r.written);
}

/// A test-driver domain `levels` elements deep, `<domain>` being level 1.
fn nested_domain(levels: usize) -> String {
    // <domain> 1, <metadata> 2, then the <a> elements down to level `levels`.
    let a = levels - 2;
    format!(
        "<domain type='test'><name>deep{levels}</name><memory unit='MiB'>64</memory><os><type>hvm</type></os><metadata>{}{}</metadata></domain>",
        "<a>".repeat(a),
        "</a>".repeat(a)
    )
}

/// The depth limit is libvirt's: what `virsh define` accepts (257 levels) is rewritten, what it
/// refuses (258) is refused. A hook that refused 257 would abort the restore of a guest libvirt
/// itself accepts (with `"on_error": "fail"`).
#[test]
fn depth_limit_is_libvirts() {
    let fail = TempDir::with_config("deep-fail", EVENTS_PINNED_FAIL);
    let ok = nested_domain(257);
    let r = run_bytes(fail.path(), HOOK, &[], ok.as_bytes());
    assert_eq!(r.out.status.code(), Some(0), "257 levels: {}", stderr(&r.out));
    assert!(stdout(&r.out).contains("<event name='page_faults' enabled='yes'/>"), "{}", stderr(&r.out));
    rejected_everywhere("258 levels", nested_domain(258).as_bytes(), "nested deeper than 257 levels");
    if !have("virsh") {
        skip!("virsh not installed (apt-get install libvirt-clients): libvirt's own limit not re-measured");
    }
    for (levels, accepted) in [(257, true), (258, false)] {
        let f = fail.write(&format!("deep{levels}.xml"), &nested_domain(levels));
        let out = Command::new("virsh").args(["-c", "test:///default", "define", f.to_str().unwrap()]).output().unwrap();
        assert_eq!(out.status.success(), accepted, "virsh define of {levels} levels: {}", stderr(&out));
    }
}

#[test]
fn deep_nesting_is_refused() {
    let n = 100_000;
    let xml = format!("<domain type='kvm'><name>deep</name>{}{}</domain>", "<a>".repeat(n), "</a>".repeat(n));
    rejected_everywhere("100k levels", xml.as_bytes(), "nested deeper than 257 levels");
    // Unclosed, too: the limit is hit on the way down, not after a matching end.
    let xml = format!("<domain type='kvm'>{}", "<a>".repeat(n));
    rejected_everywhere("100k unclosed levels", xml.as_bytes(), "nested deeper than 257 levels");
}

#[test]
fn invalid_utf8_is_refused() {
    rejected_everywhere("invalid UTF-8", b"<domain type='kvm'><name>\xff\xfe</name><devices/></domain>", "not UTF-8");
    rejected_everywhere("overlong UTF-8", b"<domain type='kvm'><name>\xc0\xaf</name><devices/></domain>", "not UTF-8");
    rejected_everywhere("UTF-16 document", &utf16(DOMAIN), "not UTF-8");
}

fn utf16(s: &str) -> Vec<u8> {
    let mut v = vec![0xff, 0xfe];
    v.extend(s.encode_utf16().flat_map(|u| u.to_le_bytes()));
    v
}

#[test]
fn nul_and_control_bytes_are_refused() {
    rejected_everywhere("NUL in text", b"<domain type='kvm'><name>a\0b</name><devices/></domain>", "control character U+0000");
    rejected_everywhere("NUL after the document", format!("{DOMAIN}\0").as_bytes(), "control character U+0000");
    rejected_everywhere("ESC in attribute", b"<domain type='kvm\x1b'><name>x</name><devices/></domain>", "control character U+001B");
}

#[test]
fn other_roots_are_refused() {
    rejected_everywhere("network", b"<network><name>default</name></network>", "not <domain>");
    rejected_everywhere("namespaced domain", b"<x:domain xmlns:x='urn:x'><name>a</name></x:domain>", "not <domain>");
    rejected_everywhere("two roots", format!("{DOMAIN}{DOMAIN}").as_bytes(), "more than one root element");
    rejected_everywhere("text only", b"just text", "domain XML rejected");
}

#[test]
fn truncated_xml_is_refused() {
    for cut in [1, 10, DOMAIN.len() / 3, DOMAIN.len() / 2, DOMAIN.len() - 12] {
        let mut end = cut;
        while !DOMAIN.is_char_boundary(end) {
            end -= 1;
        }
        rejected_everywhere(&format!("truncated at {end}"), &DOMAIN.as_bytes()[..end], "domain XML rejected");
    }
}

#[test]
fn empty_stdin_is_refused() {
    rejected_everywhere("empty", b"", "input is empty");
    rejected_everywhere("whitespace", b" \n\t\n", "input is empty");
}

#[test]
fn huge_attribute_within_the_cap_is_handled() {
    // A 10 MB attribute value (e.g. a blob in foreign metadata), inside the 16 MiB cap.
    let blob = "A".repeat(10 << 20);
    let xml = DOMAIN.replacen(
        "<devices>",
        &format!("<metadata><x:blob xmlns:x='urn:x' v='{blob}'/></metadata>\n  <devices>"),
        1,
    );
    assert!(xml.contains("<devices>"), "fixture: DOMAIN has no <devices>");
    for (what, args) in [("filter", FILTER), ("hook", HOOK)] {
        let root = TempDir::with_config("bigattr", EVENTS_PINNED);
        let r = run_limited(root.path(), args, &[], Input::Bytes(xml.clone().into_bytes()), Duration::from_secs(60));
        no_panic(what, &r.out);
        assert_eq!(r.out.status.code(), Some(0), "{what}: {}", stderr(&r.out));
        let out = stdout(&r.out);
        assert!(out.contains("<event name='page_faults' enabled='yes'/>"), "{what}: no event added");
        assert!(out.contains(&blob), "{what}: the attribute was not kept byte for byte");
        assert!(out.ends_with("</domain>\n"), "{what}: partial output");
        assert!(r.elapsed < Duration::from_secs(20), "{what}: {:?} for a 10 MB attribute", r.elapsed);
    }
}

/// Large but well-formed documents of a hostile shape are rewritten correctly. Their speed
/// (linear: milliseconds, where quadratic work took seconds and would block libvirt's restore)
/// is measured in benches/run.sh, not timed here.
fn handles_many(what: &str, xml: String, perf_events: usize) {
    let root = TempDir::with_config("many", EVENTS_PINNED);
    let r = run_limited(root.path(), FILTER, &[], Input::Bytes(xml.into_bytes()), Duration::from_secs(120));
    no_panic(what, &r.out);
    assert!(r.out.status.success(), "{what}: {}", stderr(&r.out));
    let out = stdout(&r.out);
    assert_eq!(out.matches("<perf>").count(), 1, "{what}");
    assert_eq!(out.matches("<event ").count(), perf_events, "{what}");
    assert!(out.contains("<event name='cpu_clock' enabled='yes'/><event name='page_faults' enabled='yes'/>"), "{what}");
}

#[test]
fn many_attributes_on_one_element() {
    let attrs: String = (0..20_000).map(|i| format!(" a{i}=''")).collect();
    handles_many("20k attributes", format!("<domain type='kvm'><name>x</name><devices{attrs}/></domain>\n"), 2);
}

#[test]
fn many_perf_events() {
    // Names libvirt does not know: all 30 000 are removed (each would make libvirt reject the XML).
    let events: String = (0..30_000).map(|i| format!("<event name='e{i}' enabled='yes'/>")).collect();
    handles_many("30k events", format!("<domain type='kvm'><name>x</name><perf>{events}</perf><devices/></domain>\n"), 2);
}

// ---- config files the tool must refuse (exit 3, one line), hook fails open ----

/// `filter` with the config at `path` (via `VIRT_PERF_HOOK_CONFIG`) is refused with exit 3 and
/// a one-line message containing `want`; the hook (which cannot trust the config's on_error)
/// fails open.
fn config_refused(root: &Path, path: &Path, want: &str) {
    let env = [("VIRT_PERF_HOOK_CONFIG", path.to_str().unwrap())];
    let r = run_bytes(root, FILTER, &env, DOMAIN.as_bytes());
    refused(&format!("config {want}"), &r.out, 3, want);
    let err = stderr(&r.out);
    assert!(err.contains(path.to_str().unwrap()), "the message names the file: {err}");
    let r = run_bytes(root, HOOK, &env, DOMAIN.as_bytes());
    fails_open(&format!("hook with config {want}"), &r.out);
}

#[test]
fn config_directory_is_refused() {
    let root = TempDir::new("cfgdir");
    let dir = root.path().join("config.json");
    std::fs::create_dir(&dir).unwrap();
    config_refused(root.path(), &dir, "is a directory");
}

#[test]
fn config_symlink_is_refused() {
    let root = TempDir::new("cfglink");
    let real = root.write("real.json", EVENTS_PINNED);
    let link = root.path().join("config.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    config_refused(root.path(), &link, "is a symlink");
}

#[test]
fn config_world_or_group_writable_is_refused() {
    let root = TempDir::new("cfgmode");
    let p = root.write("config.json", EVENTS_PINNED);
    set_mode(&p, 0o666);
    config_refused(root.path(), &p, "writable by group or others");
    set_mode(&p, 0o620);
    config_refused(root.path(), &p, "writable by group or others");
}

#[test]
fn config_special_files_are_refused() {
    let root = TempDir::new("cfgfifo");
    let fifo = root.path().join("config.json");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success(), "mkfifo {}", fifo.display());
    set_mode(&fifo, 0o644);
    // Must not block opening or reading a FIFO nobody writes to.
    config_refused(root.path(), &fifo, "not a regular file");
    config_refused(root.path(), Path::new("/dev/null"), "not a regular file");
}

#[test]
fn config_not_owned_by_root_is_refused() {
    if !is_root() {
        skip!("needs root to chown the config to nobody");
    }
    let root = TempDir::new("cfgowner");
    let p = root.write("config.json", EVENTS_PINNED);
    let ok = Command::new("chown").arg("nobody").arg(&p).status().map(|s| s.success()).unwrap_or(false);
    if !ok {
        skip!("chown nobody failed");
    }
    config_refused(root.path(), &p, "not root");
}

// ---- the cache's state file replaced by a symlink ----

/// `<root>/var/cache/libvirt/virt-perf-hook/state.json` is a symlink (to a file with content, and
/// dangling). No command may write through it, create its target, or block on it: the cache
/// is written by root for every guest, so following a planted link would let anyone who can
/// write there clobber any file.
#[test]
fn cache_state_symlink_is_never_followed() {
    let root = TempDir::new("cachelink");
    // No pin and probing on: the version comes from detection, and the cache is used.
    let cfg = root.write("/etc/virt-perf-hook/config.json", r#"{"enabled_perf_events": ["page_faults", "cpu_clock"]}"#);
    let cache_dir = root.path().join("var/cache/libvirt/virt-perf-hook");
    std::fs::create_dir_all(&cache_dir).unwrap();
    let state = cache_dir.join("state.json");
    let victim = root.write("victim.json", "precious\n");
    let planted: PathBuf = root.path().join("planted.json");
    let fifo = root.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success(), "mkfifo {}", fifo.display());
    // Opening the FIFO through the link would block: caught by the time limit below.
    let targets = [victim.clone(), planted.clone(), fifo.clone()];
    let calls: &[(&[&str], &str)] = &[
        (&["refresh"], ""),
        (&["check"], ""),
        (&["daemon", "-", "start", "-", "-"], ""),
        (&["daemon", "-", "reload", "begin", "-"], ""),
        (HOOK, DOMAIN),
        (FILTER, DOMAIN),
    ];
    let cfg_env = [("VIRT_PERF_HOOK_CONFIG", cfg.to_str().unwrap())];
    for target in &targets {
        for (args, stdin) in calls {
            let _ = std::fs::remove_file(&state);
            std::os::unix::fs::symlink(target, &state).unwrap();
            let what = format!("{args:?} with state.json -> {}", target.display());
            let r = run_limited(root.path(), args, &cfg_env, Input::Bytes(stdin.as_bytes().to_vec()), Duration::from_secs(20));
            no_panic(&what, &r.out);
            assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n", "{what}: wrote through the symlink");
            assert!(!planted.exists(), "{what}: created the symlink's target");
            if !args.is_empty() && (args[0] == "filter" || args[0] == "qemu") {
                let out = stdout(&r.out);
                assert!(out.is_empty() || out.ends_with("</domain>\n"), "{what}: partial output");
                if args[0] == "qemu" {
                    assert_eq!(r.out.status.code(), Some(0), "{what}: hook must not fail: {}", stderr(&r.out));
                }
            }
            // Whatever the tool did to state.json itself, the target stayed as it was.
            if let Ok(meta) = std::fs::symlink_metadata(&state) {
                if meta.file_type().is_symlink() {
                    assert_eq!(std::fs::read_link(&state).unwrap(), *target);
                }
            }
        }
    }
}

//! `filter`: golden cases, schema validation, a libvirt round trip, and the rewrite invariants
//! checked against an independent parser (xmltree).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use crate::skip;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(golden_dir()).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    v.sort();
    assert!(v.len() >= 10, "golden cases missing");
    v
}

/// Golden outputs; `VIRT_PERF_HOOK_BLESS=1` rewrites them (review the diff before committing).
/// The other tests here read `out.xml`, which this test proves is what `filter` prints.
#[test]
fn golden_cases() {
    for case in cases() {
        let root = TempDir::new("golden");
        let cfg = case.join("config.json");
        let cfg = cfg.to_str().unwrap();
        let input = case.join("in.xml");
        let out = run_in(root.path(), &["filter", "--config", cfg, input.to_str().unwrap()], "");
        assert!(out.status.success(), "{}: {}", case.display(), stderr(&out));
        let want_path = case.join("out.xml");
        if std::env::var_os("VIRT_PERF_HOOK_BLESS").is_some() {
            std::fs::write(&want_path, &out.stdout).unwrap();
        }
        let want = std::fs::read_to_string(&want_path).unwrap();
        assert_eq!(stdout(&out), want, "golden mismatch in {}", case.display());
        let input = std::fs::read_to_string(case.join("in.xml")).unwrap();
        check_invariants(&input, &want, &configured(&case));
        assert_eq!(strip_perf(&input), strip_perf(&want), "bytes outside <perf> changed in {}", case.display());
        // Running the output through again changes nothing.
        let again = run_in(root.path(), &["filter", "--config", cfg], &want);
        assert_eq!(stdout(&again), want, "not idempotent: {}", case.display());
    }
}

/// Events the case's config asks for that it also supports (golden configs pin the version).
fn configured(case: &Path) -> Vec<String> {
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(case.join("config.json")).unwrap()).unwrap();
    let name = case.file_name().unwrap().to_str().unwrap();
    if name == "excluded-domain" {
        return Vec::new();
    }
    let old = cfg["libvirt_version"] == "3.0.0";
    cfg["enabled_perf_events"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).filter(|e| !(old && e == "page_faults")).collect())
        .unwrap_or_default()
}

#[test]
fn outputs_validate_against_libvirt_schema() {
    if !have("virt-xml-validate") {
        skip!("virt-xml-validate not installed (apt-get install libvirt-clients libxml2-utils)");
    }
    for case in cases() {
        // golden_cases checks that this is what `filter` prints.
        let f = case.join("out.xml");
        let v = Command::new("virt-xml-validate").arg(&f).arg("domain").output().unwrap();
        assert!(v.status.success(), "{}: {}{}", case.display(), stdout(&v), stderr(&v));
    }
}

#[test]
fn outputs_round_trip_through_libvirt() {
    if !have("virsh") {
        skip!("virsh not installed (apt-get install libvirt-clients)");
    }
    for case in cases() {
        // golden_cases checks that this is what `filter` prints.
        let f = case.join("out.xml");
        let xml = std::fs::read_to_string(&f).unwrap();
        let name = xmltree::Element::parse(xml.as_bytes()).unwrap().get_child("name").unwrap().get_text().unwrap().to_string();
        // The test driver keeps state per connection: define and dump in one virsh session.
        let script = format!("define {}; dumpxml {name}", f.display());
        let v = Command::new("virsh").args(["-q", "-c", "test:///default", &script]).output().unwrap();
        assert!(v.status.success(), "{}: {}", case.display(), stderr(&v));
        let dumped = stdout(&v);
        for ev in configured(&case) {
            assert!(dumped.contains(&format!("<event name='{ev}' enabled=")), "{}: {ev} missing after libvirt round trip:\n{dumped}", case.display());
        }
    }
}

/// The invariants of the core issue, checked with xmltree: the output parses, has exactly one
/// `<perf>` holding each configured event exactly once, and equals the input outside `<perf>`.
pub fn check_invariants(input: &str, output: &str, configured: &[String]) {
    let a = xmltree::Element::parse(input.as_bytes()).expect("input parses");
    let b = xmltree::Element::parse(output.as_bytes()).expect("output parses");
    let perf_blocks: Vec<&xmltree::Element> =
        b.children.iter().filter_map(|c| c.as_element()).filter(|e| e.name == "perf").collect();
    let in_blocks: Vec<&xmltree::Element> =
        a.children.iter().filter_map(|c| c.as_element()).filter(|e| e.name == "perf").collect();
    let in_names = event_names(&in_blocks);
    let in_dups = in_names.iter().enumerate().any(|(i, n)| in_names[..i].contains(n));
    if configured.is_empty() && in_blocks.len() <= 1 && !in_dups {
        assert_eq!(input, output, "nothing configured or to clean, yet the XML changed");
    }
    assert!(perf_blocks.len() <= 1, "more than one <perf> in output");
    let names = event_names(&perf_blocks);
    for n in &names {
        assert_eq!(names.iter().filter(|m| *m == n).count(), 1, "event {n} duplicated:\n{output}");
    }
    for ev in configured {
        assert!(names.contains(ev), "configured event {ev} missing:\n{output}");
    }
    assert_eq!(without_perf(a), without_perf(b), "output differs outside <perf>");
}

/// The text with every `<perf>` element and the lines it leaves blank removed: what must be
/// byte-identical between input and output.
fn strip_perf(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("<perf") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = match (tail.find("/>"), tail.find('>')) {
            (Some(a), Some(b)) if a < b => a + 2,
            _ => tail.find("</perf>").map_or(tail.len(), |e| e + "</perf>".len()),
        };
        rest = &tail[end..];
    }
    out.push_str(rest);
    out.split_inclusive('\n').filter(|l| !l.trim().is_empty()).collect()
}

fn event_names(blocks: &[&xmltree::Element]) -> Vec<String> {
    blocks
        .iter()
        .flat_map(|p| p.children.iter().filter_map(|c| c.as_element()))
        .filter(|e| e.name == "event")
        .map(|e| e.attributes.get("name").cloned().unwrap_or_default())
        .collect()
}

/// The element with `<perf>` children and whitespace-only text removed.
fn without_perf(mut e: xmltree::Element) -> xmltree::Element {
    e.children.retain(|c| match c {
        xmltree::XMLNode::Element(el) => el.name != "perf",
        xmltree::XMLNode::Text(t) => !t.trim().is_empty(),
        _ => true,
    });
    e
}

#[test]
fn dry_run_and_diff() {
    let case = golden_dir().join("basic");
    let root = TempDir::new("modes");
    let cfg = case.join("config.json");
    let input = case.join("in.xml");
    let (cfg, input) = (cfg.to_str().unwrap(), input.to_str().unwrap());
    let dry = run_in(root.path(), &["filter", "--dry-run", "-c", cfg, input], "");
    assert!(dry.status.success());
    assert_eq!(stdout(&dry), "domain 'instance-00000001': added cpu_cycles,instructions,cpu_clock,page_faults\n");
    let diff = run_in(root.path(), &["filter", "--diff", "-c", cfg, input], "");
    let d = stdout(&diff);
    assert!(d.starts_with(&format!("--- {input}\n+++ {input} (virt-perf-hook)\n@@ -19,6 +19,12 @@\n")), "{d}");
    assert!(d.contains("\n+  <perf>\n+    <event name='cpu_cycles' enabled='yes'/>\n"));
    // stdin works the same as a file.
    let piped = run_in(root.path(), &["filter", "-c", cfg, "-"], &std::fs::read_to_string(input).unwrap());
    assert_eq!(stdout(&piped), std::fs::read_to_string(case.join("out.xml")).unwrap());
}

/// `--diff` shows only what the rewrite changed (hunks as `diff -u` makes them), and `patch`
/// turns the input into `out.xml` with it, for every golden case.
#[test]
fn diff_is_minimal_and_patch_applies_it() {
    let two = golden_dir().join("two-perf-blocks");
    let root = TempDir::new("diff");
    let diff_of = |case: &Path| {
        let cfg = case.join("config.json");
        let input = std::fs::read_to_string(case.join("in.xml")).unwrap();
        let out = run_in(root.path(), &["filter", "--diff", "-c", cfg.to_str().unwrap(), "-"], &input);
        assert!(out.status.success(), "{}: {}", case.display(), stderr(&out));
        stdout(&out)
    };
    // Two <perf> blocks 22 lines apart: two hunks, not the 29 lines between them removed and re-added.
    let d = diff_of(&two);
    let hunks: Vec<&str> = d.lines().filter(|l| l.starts_with("@@")).collect();
    assert_eq!(hunks, ["@@ -17,7 +17,9 @@", "@@ -41,8 +43,4 @@"], "{d}");
    assert!(!d.contains("-  <devices>") && !d.contains("+  <devices>"), "{d}");
    if !have("patch") {
        skip!("patch not installed (apt-get install patch)");
    }
    for case in cases() {
        let d = diff_of(&case);
        let want = std::fs::read_to_string(case.join("out.xml")).unwrap();
        let target = root.write("target.xml", &std::fs::read_to_string(case.join("in.xml")).unwrap());
        if d.is_empty() {
            assert_eq!(std::fs::read_to_string(&target).unwrap(), want, "{}: no diff, yet a change", case.display());
            continue;
        }
        let mut cmd = Command::new("patch");
        cmd.args(["--quiet", "--batch", "--no-backup-if-mismatch"]).arg(&target);
        let out = feed(cmd, &d);
        assert!(out.status.success(), "{}: patch failed: {}{}\n{d}", case.display(), stdout(&out), stderr(&out));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), want, "{}: patched input is not out.xml", case.display());
        // The same hunks as diff -u would make.
        let mut du = Command::new("diff");
        du.arg("-u").arg(case.join("in.xml")).arg(case.join("out.xml"));
        let du = stdout(&feed(du, ""));
        assert_eq!(d.lines().skip(2).collect::<Vec<_>>(), du.lines().skip(2).collect::<Vec<_>>(), "{}", case.display());
    }
}

#[test]
fn config_errors_are_one_line_and_exit_3() {
    let root = TempDir::new("cfgerr");
    let cases = [
        (r#"{"enabled_perf_events": ["cpu_cycle"]}"#, "unknown event 'cpu_cycle'; did you mean 'cpu_cycles'?"),
        (r#"{"enabled_perf_events": ["page_faults", "page_faults"]}"#, "'page_faults' is listed twice"),
        (r#"{"enabeld_perf_events": []}"#, "did you mean 'enabled_perf_events'?"),
        (r#"{"host_probe": 1}"#, "host_probe: expected true or false, got a number"),
        ("{", "invalid JSON"),
        (r#"{"enabled_perf_events":["page_faults"],"enabled_perf_events":[]}"#, "duplicate key 'enabled_perf_events'"),
        (r#"{"domains": {"exclude": ["a"], "exclude": []}}"#, "duplicate key 'domains.exclude'"),
        (r#"{"domains": {"include": ["[a-"]}}"#, "domains.include: invalid glob '[a-': "),
    ];
    for (text, want) in cases {
        let cfg = root.write("c.json", text);
        let out = run_in(root.path(), &["filter", "-c", cfg.to_str().unwrap()], DOMAIN);
        assert_eq!(out.status.code(), Some(3), "{text}");
        let err = stderr(&out);
        assert!(err.contains(want), "{text}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(out.stdout.is_empty(), "no partial output on error");
    }
    // `check` refuses what filter refuses (a duplicate key used to pass it, adding nothing).
    let cfg = root.write("c.json", r#"{"enabled_perf_events":["page_faults"],"enabled_perf_events":[]}"#);
    let out = run_in(root.path(), &["check", "-c", cfg.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(3), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("problem  config ") && stdout(&out).contains("duplicate key 'enabled_perf_events'"), "{}", stdout(&out));
    // Missing config: an error in filter, naming the path.
    let out = run_in(root.path(), &["filter", "-c", "/nonexistent/c.json"], DOMAIN);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("/nonexistent/c.json: not found"), "{}", stderr(&out));
    // The default path is under the root; VIRT_PERF_HOOK_CONFIG overrides it.
    let out = run_in(root.path(), &["filter"], DOMAIN);
    assert!(stderr(&out).contains("etc/virt-perf-hook/config.json: not found"), "{}", stderr(&out));
    let cfg = root.write("env.json", r#"{"enabled_perf_events": [], "libvirt_version": "9.0.0"}"#);
    let out = run_with(root.path(), &["filter"], DOMAIN, &[("VIRT_PERF_HOOK_CONFIG", cfg.to_str().unwrap())]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), DOMAIN);
}

#[test]
fn bad_xml_exits_4_with_one_line() {
    let root = TempDir::with_config("badxml", r#"{"enabled_perf_events": ["page_faults"], "libvirt_version": "9.0.0"}"#);
    for (xml, want) in [
        ("<vm/>", "the root element is <vm>, not <domain>"),
        ("<domain><name>x</name>", "truncated"),
        ("<!DOCTYPE d [<!ENTITY a 'b'>]><domain>&a;</domain>", "DOCTYPE is not allowed"),
        ("", "input is empty"),
    ] {
        let out = run_in(root.path(), &["filter"], xml);
        assert_eq!(out.status.code(), Some(4), "{xml}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{xml}: {}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn usage_help_and_version() {
    let root = TempDir::new("usage");
    let help = run_in(root.path(), &["--help"], "");
    assert!(help.status.success());
    assert!(stdout(&help).contains("EXIT STATUS"));
    let v = run_in(root.path(), &["--version"], "");
    assert_eq!(stdout(&v), format!("virt-perf-hook {}\n", env!("CARGO_PKG_VERSION")));
    let bad = run_in(root.path(), &["frobnicate"], "");
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(stderr(&bad), "virt-perf-hook: unknown command 'frobnicate' (see 'virt-perf-hook --help')\n");
    // The usual short-option forms: clusters and attached values.
    let cfg = root.write("c.json", r#"{"libvirt_version": "9.0.0", "domains": {"exclude": ["*"]}}"#);
    let out = run_in(root.path(), &["-vvv", &format!("-c{}", cfg.display()), "filter", "--dry-run"], DOMAIN);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("not selected"), "{}", stdout(&out));
    assert!(stderr(&out).contains("info: domain "), "-vvv logs more: {}", stderr(&out));
    let bad = run_in(root.path(), &["filter", "-x"], "");
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(stderr(&bad), "virt-perf-hook: filter: unknown option '-x' (see 'virt-perf-hook --help')\n");
}

/// Property: random domain documents (perf blocks, duplicates, states, layouts, comments)
/// keep the invariants. A fixed seed keeps failures reproducible.
#[test]
fn property_random_documents() {
    let root = TempDir::new("prop");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let names = ["cpu_clock", "task_clock", "page_faults", "context_switches", "cpu_migrations", "cmt", "cpu_cycles", "future_event"];
    let mut batch = Vec::new();
    for i in 0..150 {
        let configured: Vec<&str> = names[..7].iter().copied().filter(|_| rng.next() % 3 == 0).collect();
        let xml = random_domain(&mut rng, i, &names);
        batch.push((xml, configured));
    }
    for (i, (xml, configured)) in batch.iter().enumerate() {
        let cfg = serde_json::json!({"enabled_perf_events": configured, "libvirt_version": "9.0.0", "host_probe": false, "existing": if i % 2 == 0 { "respect" } else { "override" }});
        let cfg_path = root.write("c.json", &cfg.to_string());
        let out = run_in(root.path(), &["filter", "-c", cfg_path.to_str().unwrap()], xml);
        assert!(out.status.success(), "case {i}: {}\n{xml}", stderr(&out));
        let configured: Vec<String> = configured.iter().map(|s| s.to_string()).collect();
        check_invariants(xml, &stdout(&out), &configured);
        assert_eq!(strip_perf(xml), strip_perf(&stdout(&out)), "case {i}: bytes outside <perf> changed");
        let again = run_in(root.path(), &["filter", "-c", cfg_path.to_str().unwrap()], &stdout(&out));
        assert_eq!(stdout(&again), stdout(&out), "case {i} not idempotent");
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[(self.next() % v.len() as u64) as usize]
    }
}

fn random_domain(rng: &mut Rng, i: usize, events: &[&str]) -> String {
    let (nl, ind) = match rng.next() % 4 {
        0 => ("", ""),
        1 => ("\n", "\t"),
        2 => ("\r\n", "  "),
        _ => ("\n", "    "),
    };
    let q = if rng.next() % 2 == 0 { '\'' } else { '"' };
    let mut parts = vec![format!("<name>vm-{i}</name>"), format!("<memory unit={q}KiB{q}>65536</memory>")];
    let extras = [
        "<!-- a comment -->".to_string(),
        "<description><![CDATA[<x> & y]]></description>".to_string(),
        format!("<metadata><app:x xmlns:app={q}urn:x{q} app:a={q}1{q}>t &amp; u</app:x></metadata>"),
        format!("<pm><suspend-to-mem enabled={q}no{q}/></pm>"),
        "<on_crash>destroy</on_crash>".to_string(),
        "<devices><emulator>/usr/bin/qemu</emulator></devices>".to_string(),
        "<seclabel type='none'/>".to_string(),
    ];
    for e in &extras {
        if rng.next() % 2 == 0 {
            parts.push(e.clone());
        }
    }
    for _ in 0..(rng.next() % 3) {
        let mut block = String::from("<perf>");
        for _ in 0..(rng.next() % 4) {
            let state = rng.pick(&["yes", "no"]);
            block.push_str(&format!("{nl}{ind}{ind}<event name={q}{}{q} enabled={q}{state}{q}/>", rng.pick(events)));
        }
        if block == "<perf>" && rng.next() % 2 == 0 {
            block = "<perf/>".into();
        } else {
            block.push_str(&format!("{nl}{ind}</perf>"));
        }
        let at = (rng.next() % (parts.len() as u64 + 1)) as usize;
        parts.insert(at.max(1), block);
    }
    let body: String = parts.iter().map(|p| format!("{nl}{ind}{p}")).collect();
    format!("<domain type={q}qemu{q}>{body}{nl}</domain>{nl}")
}

/// A reader that goes away (`| head`): the commands end quietly, as Unix filters do, and never
/// panic. The child's stdout is a pipe whose read end is already closed, so its first write fails.
#[test]
fn closed_stdout_is_not_a_panic() {
    let root = TempDir::with_config("pipe", r#"{"enabled_perf_events": ["page_faults"], "libvirt_version": "9.0.0", "host_probe": false}"#);
    let input = root.write("in.xml", DOMAIN);
    for args in [vec!["events"], vec!["events", "--json"], vec!["filter", input.to_str().unwrap()], vec!["check"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = clean_command(BIN, root.path(), &[])
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(13), "{args:?} should end by SIGPIPE: {:?} {}", out.status, stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{args:?}: {}", stderr(&out));
    }
}

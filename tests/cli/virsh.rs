//! `define` and `apply`: define against libvirt's test driver, apply against a fake `$VIRSH`
//! that answers from fixture files and logs every argv, and `real_libvirtd_checks` for the e2e
//! test (which owns the daemon).

use std::process::{Command, Output};

use crate::common::*;
use crate::skip;

const EVENTS_CFG: &str = r#"{"enabled_perf_events": ["page_faults", "cpu_clock"], "libvirt_version": "9.0.0", "host_probe": false, "domains": {"exclude": ["skip-*"]}}"#;

/// Every event `virsh perf` lists on libvirt 9, in its order.
const ALL_EVENTS: [&str; 22] = [
    "cmt", "mbmt", "mbml", "cpu_cycles", "instructions", "cache_references", "cache_misses", "branch_instructions",
    "branch_misses", "bus_cycles", "stalled_cycles_frontend", "stalled_cycles_backend", "ref_cpu_cycles", "cpu_clock",
    "task_clock", "page_faults", "context_switches", "cpu_migrations", "page_faults_min", "page_faults_maj",
    "alignment_faults", "emulation_faults",
];

/// `virsh perf` output with `on` enabled, formatted like virsh does (`%-15s: %s`).
fn perf_output(on: &[&str]) -> String {
    let mut s = String::new();
    for e in ALL_EVENTS {
        s.push_str(&format!("{e:<15}: {}\n", if on.contains(&e) { "enabled" } else { "disabled" }));
    }
    s.push('\n');
    s
}

/// A fake virsh: `list`, `version`, `dominfo`, `domname`, `dumpxml`, `perf` answered from files
/// under its directory (domains keyed by a UUID made from their name, looked up by ID, UUID or
/// name as virsh does), every argv logged as `[a][b]…`.
struct FakeVirsh {
    dir: TempDir,
}

impl FakeVirsh {
    fn new(tag: &str) -> FakeVirsh {
        let dir = TempDir::new(tag);
        let script = format!(
            r#"#!/bin/sh
F='{}'
{{ for a in "$@"; do printf '[%s]' "$a"; done; echo; }} >> "$F/log"
if [ "$1" = -c ]; then shift 2; fi
cmd=$1; shift
dom=; enable=; mode=current; all=; uuid=
while [ $# -gt 0 ]; do
  case $1 in
    --domain) dom=$2; shift;;
    --enable) enable=$2; shift;;
    --config) mode=config;;
    --live) mode=live;;
    --all) all=1;;
    --uuid) uuid=1;;
  esac
  shift
done
# Look the domain up as virsh does: by ID, then UUID, then name.
d=
for x in "$F"/dom/*; do [ -n "$dom" ] && [ "$(cat "$x/id" 2>/dev/null)" = "$dom" ] && d=$x; done
[ -z "$d" ] && [ -n "$dom" ] && [ -d "$F/dom/$dom" ] && d="$F/dom/$dom"
if [ -z "$d" ]; then for x in "$F"/dom/*; do [ -n "$dom" ] && [ "$(cat "$x/name" 2>/dev/null)" = "$dom" ] && d=$x; done; fi
case $cmd in
  version) cat "$F/version";;
  uri) cat "$F/uri";;
  list)
    if [ -n "$all" ]; then l="$F/list-all"; else l="$F/list-active"; fi
    while read -r u; do
      if [ -z "$u" ]; then continue; elif [ -n "$uuid" ]; then echo "$u"; else cat "$F/dom/$u/name"; echo; fi
    done < "$l"
    echo;;
  dominfo|domname|dumpxml|perf)
    if [ -z "$d" ]; then echo "error: failed to get domain '$dom'" >&2; exit 1; fi
    if [ "$cmd" = dominfo ]; then printf 'Id:             -\nName:           %s\nUUID:           %s\n\n' "$(cat "$d/name")" "$(basename "$d")"; exit 0; fi
    if [ "$cmd" = domname ]; then cat "$d/name"; printf '\n\n'; exit 0; fi
    if [ "$cmd" = dumpxml ]; then cat "$d/xml"; exit 0; fi
    if [ -n "$enable" ]; then
      if [ -e "$d/fail-enable" ]; then echo "error: Unable to enable/disable perf events" >&2; echo "error: boom" >&2; exit 1; fi
      echo; exit 0
    fi
    cat "$d/perf-$mode";;
  *) echo "error: unknown command: '$cmd'" >&2; exit 1;;
esac
"#,
            dir.path().display()
        );
        dir.write_exec("virsh", &script);
        dir.write("version", "Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\nUsing API: QEMU 9.0.0\nRunning hypervisor: QEMU 7.2.0\nRunning against daemon: 9.0.0\n");
        dir.write("list-all", "\n");
        dir.write("list-active", "\n");
        dir.write("log", "");
        FakeVirsh { dir }
    }

    fn bin(&self) -> String {
        self.dir.path().join("virsh").to_str().unwrap().to_string()
    }

    /// The UUID of the domain `name`: an FNV-1a hash of the name, so any name works.
    fn uuid(&self, name: &str) -> String {
        let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        format!("00000000-0000-4000-8000-{:012x}", h & 0xffff_ffff_ffff)
    }

    /// A domain with `perf` inside its persistent XML and the given enabled events.
    fn domain(&self, name: &str, perf: &str, config_on: &[&str], live_on: &[&str]) {
        let d = format!("dom/{}", self.uuid(name));
        self.dir.write(&format!("{d}/name"), name);
        self.dir.write(&format!("{d}/xml"), &format!("<domain type='kvm'>\n  <name>{name}</name>\n{perf}  <devices/>\n</domain>\n"));
        self.dir.write(&format!("{d}/perf-config"), &perf_output(config_on));
        self.dir.write(&format!("{d}/perf-live"), &perf_output(live_on));
        self.dir.write(&format!("{d}/perf-current"), &perf_output(live_on));
    }

    fn fail_enable(&self, name: &str) {
        self.dir.write(&format!("dom/{}/fail-enable", self.uuid(name)), "");
    }

    /// Makes `name` running with domain ID `id`.
    fn id(&self, name: &str, id: u32) {
        self.dir.write(&format!("dom/{}/id", self.uuid(name)), &id.to_string());
    }

    /// Which domains `list --all` and `list` show (by UUID, or by name with `--name`).
    fn lists(&self, all: &[&str], active: &[&str]) {
        let lines = |v: &[&str]| v.iter().map(|n| format!("{}\n", self.uuid(n))).collect::<String>();
        self.dir.write("list-all", &lines(all));
        self.dir.write("list-active", &lines(active));
    }

    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap().lines().map(str::to_string).collect()
    }

    fn enable_calls(&self) -> Vec<String> {
        self.log().into_iter().filter(|l| l.contains("[--enable]")).collect()
    }

    fn apply(&self, config: &str, args: &[&str]) -> Output {
        let root = TempDir::with_config("apply", config);
        let mut argv = vec!["apply"];
        argv.extend_from_slice(args);
        run_with(root.path(), &argv, "", &[("VIRSH", &self.bin())])
    }
}

/// The table row for `name`: (RESULT, DETAIL). Cells are separated by two or more spaces.
fn row(out: &Output, name: &str) -> (String, String) {
    let text = stdout(out);
    let header = text.lines().next().unwrap_or_default();
    let (r, d) = (header.find("RESULT").expect("table header"), header.find("DETAIL").expect("table header"));
    for line in text.lines().skip(1) {
        // Names may hold spaces, so cut at the header's column offsets (names are ASCII here).
        if line.len() >= r && line[..r].trim_end() == name {
            let result = line[r..d.min(line.len())].trim().to_string();
            let detail = line.get(d..).unwrap_or("").to_string();
            return (result, detail);
        }
    }
    panic!("no row for '{name}' in:\n{text}");
}

const WEIRD: [&str; 4] = ["-x", "a;rm -rf /", "with space", "--config"];

/// The fake host of the core scenario: every kind of guest, in `--all` order.
fn mixed() -> FakeVirsh {
    let f = FakeVirsh::new("fake-mixed");
    let yes = "  <perf>\n    <event name='page_faults' enabled='yes'/>\n  </perf>\n";
    let said_no = "  <perf>\n    <event name='cpu_clock' enabled='no'/>\n  </perf>\n";
    let both = "  <perf>\n    <event name='cpu_clock' enabled='yes'/>\n    <event name='page_faults' enabled='yes'/>\n  </perf>\n";
    f.domain("broken", "", &[], &[]);
    f.fail_enable("broken");
    f.domain("no-perf", "", &[], &[]);
    f.domain("partial", yes, &["page_faults"], &["page_faults"]);
    f.domain("said-no", said_no, &[], &[]);
    f.domain("all-set", both, &["cpu_clock", "page_faults"], &["cpu_clock", "page_faults"]);
    f.domain("skip-me", "", &[], &[]);
    for n in WEIRD {
        f.domain(n, "", &[], &[]);
    }
    let mut all = vec!["broken", "no-perf", "partial", "said-no", "all-set", "skip-me"];
    all.extend(WEIRD);
    f.lists(&all, &["no-perf"]);
    f
}

#[test]
fn apply_mixed_guests_respect() {
    let f = mixed();
    let out = f.apply(EVENTS_CFG, &["--all"]);
    assert_eq!(out.status.code(), Some(1), "a failed domain makes exit 1:\n{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).starts_with("DOMAIN"), "{}", stdout(&out));
    let enabled_both = ("changed".to_string(), "enabled cpu_clock,page_faults (config)".to_string());
    assert_eq!(row(&out, "no-perf"), enabled_both);
    assert_eq!(row(&out, "partial"), ("changed".into(), "enabled cpu_clock (config)".into()));
    assert_eq!(
        row(&out, "said-no"),
        ("changed".into(), "enabled page_faults (config); kept disabled cpu_clock (existing: respect)".into())
    );
    assert_eq!(row(&out, "all-set"), ("ok".into(), "has cpu_clock,page_faults".into()));
    let (res, detail) = row(&out, "skip-me");
    assert_eq!(res, "skipped");
    assert!(detail.contains("not selected"), "{detail}");
    let (res, detail) = row(&out, "broken");
    assert_eq!(res, "failed");
    assert!(detail.contains("Unable to enable/disable perf events error: boom"), "virsh's message, one line: {detail}");
    for n in WEIRD {
        assert_eq!(row(&out, n), enabled_both, "{n}");
    }
    let log = f.log();
    // Guests are listed by UUID and every per-guest call names the UUID: a name never reaches
    // virsh's lookup, whatever it contains.
    for n in WEIRD {
        let u = f.uuid(n);
        let want = format!("[perf][--domain][{u}][--enable][cpu_clock,page_faults][--config]");
        assert!(log.contains(&want), "{want} not in log:\n{}", log.join("\n"));
        assert!(log.contains(&format!("[dumpxml][--inactive][--domain][{u}]")), "{n}");
        assert!(log.iter().all(|l| !l.contains(&format!("[--domain][{n}]"))), "{n} was passed to virsh");
    }
    let skipped = f.uuid("skip-me");
    assert!(log.iter().all(|l| !l.contains(&skipped) || l.starts_with("[dominfo]") || l.starts_with("[domname]")), "an excluded guest is not touched");
    assert!(log.iter().all(|l| !l.contains("[--live]")), "no --live without --live");
    // The pinned version means no `virsh version`; --all means one `list --all --uuid`.
    assert_eq!(log[0], "[list][--all][--uuid]");
    // broken, no-perf, partial, said-no and the weird names: the loop went on past the failure.
    assert_eq!(f.enable_calls().len(), 4 + WEIRD.len());
}

#[test]
fn apply_override_enables_explicit_no() {
    let f = mixed();
    let cfg = EVENTS_CFG.replace("\"host_probe\"", "\"existing\": \"override\", \"host_probe\"");
    let out = f.apply(&cfg, &["said-no", "partial"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(row(&out, "said-no"), ("changed".into(), "enabled cpu_clock,page_faults (config)".into()));
    assert_eq!(row(&out, "partial"), ("changed".into(), "enabled cpu_clock (config)".into()));
    assert_eq!(stdout(&out).lines().count(), 3, "only the named domains:\n{}", stdout(&out));
}

#[test]
fn apply_dry_run_changes_nothing() {
    let f = mixed();
    let out = f.apply(EVENTS_CFG, &["--dry-run", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(f.enable_calls().is_empty(), "dry run called --enable: {:?}", f.enable_calls());
    assert_eq!(row(&out, "no-perf"), ("would change".into(), "would enable cpu_clock,page_faults (config)".into()));
    assert_eq!(row(&out, "broken").0, "would change");
    assert_eq!(row(&out, "all-set").0, "ok");
    assert_eq!(row(&out, "-x").0, "would change");
}

#[test]
fn apply_live_touches_only_running_guests() {
    let f = FakeVirsh::new("fake-live");
    f.domain("running", "", &[], &["page_faults"]);
    f.domain("stopped", "", &[], &[]);
    f.lists(&["running", "stopped"], &["running"]);
    let out = f.apply(EVENTS_CFG, &["--live", "running", "stopped", "running"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        row(&out, "running"),
        ("changed".into(), "enabled cpu_clock,page_faults (config); enabled cpu_clock (live)".into())
    );
    assert_eq!(
        row(&out, "stopped"),
        ("changed".into(), "enabled cpu_clock,page_faults (config); not running (config only)".into())
    );
    assert_eq!(stdout(&out).lines().count(), 3, "a repeated name is done once");
    let calls = f.enable_calls();
    let (running, stopped) = (f.uuid("running"), f.uuid("stopped"));
    assert_eq!(
        calls,
        vec![
            format!("[perf][--domain][{running}][--enable][cpu_clock,page_faults][--config]"),
            format!("[perf][--domain][{running}][--enable][cpu_clock][--live]"),
            format!("[perf][--domain][{stopped}][--enable][cpu_clock,page_faults][--config]"),
        ]
    );
    assert!(f.log().iter().all(|l| !(l.contains(&stopped) && l.contains("[--live]"))));
}

/// A UUID or an ID names the guest: `domains` include/exclude apply to its name, and `--live`
/// sees that it runs (the issue: `apply <uuid>` enabled events on an excluded guest).
#[test]
fn apply_by_uuid_or_id_with_a_fake_virsh() {
    let f = FakeVirsh::new("fake-uuid");
    f.domain("skip-me", "", &[], &[]);
    f.domain("web", "", &[], &["page_faults"]);
    f.id("web", 7);
    f.lists(&["skip-me", "web"], &["web"]);
    let out = f.apply(EVENTS_CFG, &["--live", &f.uuid("skip-me"), "7", "web", &f.uuid("web")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(row(&out, "skip-me").0, "skipped", "{}", stdout(&out));
    assert_eq!(
        row(&out, "web"),
        ("changed".into(), "enabled cpu_clock,page_faults (config); enabled cpu_clock (live)".into()),
        "the same running guest three ways, done once"
    );
    assert_eq!(stdout(&out).lines().count(), 3, "{}", stdout(&out));
    assert!(f.enable_calls().iter().all(|l| !l.contains(&f.uuid("skip-me"))), "{:?}", f.enable_calls());
}

/// A name ending in '\r' (libvirt accepts `<name>x&#13;</name>`) comes through `--all` whole.
#[test]
fn apply_all_with_a_carriage_return_in_a_name() {
    let f = FakeVirsh::new("fake-cr");
    f.domain("cr\r", "", &[], &[]);
    f.lists(&["cr\r"], &[]);
    let out = f.apply(EVENTS_CFG, &["--all"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(row(&out, "cr\\r"), ("changed".into(), "enabled cpu_clock,page_faults (config)".into()));
}

#[test]
fn apply_gets_the_version_from_the_daemon() {
    let f = FakeVirsh::new("fake-version");
    f.domain("vm", "", &[], &[]);
    // The daemon is older than the client library: the daemon decides (page_faults needs 3.2.0).
    f.dir.write("version", "Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\nUsing API: QEMU 9.0.0\nRunning hypervisor: QEMU 2.8.0\nRunning against daemon: 3.0.0\n");
    let cfg = r#"{"enabled_perf_events": ["page_faults", "cpu_cycles"], "host_probe": false}"#;
    let out = f.apply(cfg, &["--connect", "qemu+ssh://h/system", "vm"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("not enabling page_faults: needs libvirt 3.2.0, this host has 3.0.0"), "{}", stderr(&out));
    assert_eq!(row(&out, "vm"), ("changed".into(), "enabled cpu_cycles (config)".into()));
    assert_eq!(f.log()[0], "[-c][qemu+ssh://h/system][version][--daemon]");
    assert!(f.log().iter().all(|l| l.starts_with("[-c][qemu+ssh://h/system]")));
}

#[test]
fn apply_unknown_domain_fails_but_others_go_on() {
    let f = mixed();
    let out = f.apply(EVENTS_CFG, &["ghost", "no-perf"]);
    assert_eq!(out.status.code(), Some(1));
    let (res, detail) = row(&out, "ghost");
    assert_eq!(res, "failed");
    assert!(detail.contains("failed to get domain 'ghost'"), "{detail}");
    assert_eq!(row(&out, "no-perf").0, "changed");
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

/// A `$VIRSH` that runs the real virsh on the test driver in one session (its state lives per
/// connection): the define it was asked for, then `dumpxml NAME`. It keeps a copy of the file it
/// got and that file's mode.
fn define_wrapper(dir: &TempDir, name: &str) -> String {
    let d = dir.path().display();
    let script = format!(
        r#"#!/bin/sh
[ "$1" = -c ] || {{ echo "wrapper: expected -c URI first" >&2; exit 99; }}
uri=$2; shift 2
for f in "$@"; do :; done
cat "$f" > '{d}/received.xml'
printf '[%s]' "$@" > '{d}/argv'
exec virsh -c "$uri" "$*; dumpxml {name}" < '{d}/received.xml'
"#
    );
    dir.write_exec("virsh-wrapper", &script).to_str().unwrap().to_string()
}

fn guest_xml(name: &str, perf: &str) -> String {
    format!("<domain type='test'>\n  <name>{name}</name>\n  <memory unit='MiB'>64</memory>\n  <os>\n    <type>hvm</type>\n  </os>\n{perf}</domain>\n")
}

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
    struct Cleanup<'a>(&'a str, &'a [&'a str]);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            for n in self.1 {
                let _ = Command::new("virsh").args(["-q", "-c", self.0, "undefine", "--domain", n]).output();
            }
        }
    }
    drop(Cleanup(uri, &names)); // leftovers of an earlier run
    let _cleanup = Cleanup(uri, &names);
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
        let f = root.write(&format!("{}.xml", name.replace('&', "_")), &template(name, &p));
        let out = virsh(&["define", "--file", f.to_str().unwrap()]);
        assert!(out.status.success(), "virsh define {name}: {}", stderr(&out));
    }
    let apply = |extra: &[&str]| {
        let mut args = vec!["--config", cfg, "apply", "--connect", uri, "--live"];
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
    assert_eq!(row(&out, names[0]), ("ok".into(), "has cpu_clock,page_faults; not running (config only)".into()), "{t}");
    assert_eq!(row(&out, names[1]).0, "changed", "{t}");
    assert!(row(&out, names[1]).1.starts_with("enabled cpu_clock,page_faults (config)"), "{t}");
    assert!(row(&out, names[2]).1.starts_with("enabled cpu_clock (config)"), "{t}");
    assert!(row(&out, names[3]).1.contains("kept disabled cpu_clock (existing: respect)"), "{t}");
    assert_eq!(row(&out, names[4]).0, "skipped", "{t}");
    let mut both = on(names[1]);
    both.sort();
    assert_eq!(both, vec!["cpu_clock", "page_faults"]);
    assert_eq!(on(names[2]).len(), 2);
    assert_eq!(on(names[3]), vec!["page_faults"], "explicit enabled='no' respected");
    assert!(on(names[4]).is_empty(), "excluded guest untouched");
    let said_no = stdout(&virsh(&["dumpxml", "--inactive", "--domain", names[3]]));
    assert!(said_no.contains("<event name='cpu_clock' enabled='no'/>"), "{said_no}");

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
    assert_eq!(row(&out, "vph-apply-cr\\r"), ("changed".into(), "enabled cpu_clock,page_faults (config)".into()), "{}", stdout(&out));
    let mut cr = on(names[5]);
    cr.sort();
    assert_eq!(cr, vec!["cpu_clock", "page_faults"]);
}

/// A host part in the URI means another host: nothing probed or cached here applies to it.
#[test]
fn apply_remote_uses_no_local_probe_or_cache() {
    let f = FakeVirsh::new("fake-remote");
    f.domain("vm", "", &[], &[]);
    let root = TempDir::with_config("remote", r#"{"enabled_perf_events": ["cpu_cycles", "page_faults"]}"#);
    // This host's libvirt (2.0.0) would drop both events: it must not be consulted.
    root.write("/usr/lib/x86_64-linux-gnu/libvirt.so.0.2000.0", "");
    let out = run_with(root.path(), &["apply", "--connect", "qemu+tcp://h/system", "vm"], "", &[("VIRSH", &f.bin())]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let want = "not enabling cpu_cycles: cannot probe the remote host; set \"host_probe\": false to trust it";
    assert!(stderr(&out).contains(want), "{}", stderr(&out));
    assert_eq!(row(&out, "vm"), ("changed".into(), "enabled page_faults (config)".into()));
    assert!(!root.path().join("var/cache/libvirt/virt-perf-hook").exists(), "the local cache was used");
}

#[test]
fn remote_version_failure_is_an_error_local_falls_back() {
    let f = FakeVirsh::new("fake-nover");
    f.domain("vm", "", &[], &[]);
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
    assert_eq!(row(&out, "vm"), ("changed".into(), "enabled page_faults (config)".into()));
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

/// UUID of the running guest 'test' (ID 1) of `test:///default`.
const TEST_UUID: &str = "6695eb01-f6a4-8304-79aa-97f2502e193f";

/// A target given as a UUID or a domain ID is the guest it names: the include/exclude rules
/// apply to its real name, and `--live` knows it is running.
#[test]
fn apply_by_uuid_or_id_is_the_named_guest() {
    if !have("virsh") {
        skip!("virsh not installed (apt-get install libvirt-clients)");
    }
    let excluded = TempDir::with_config("apply-id-excl", &EVENTS_CFG.replace("skip-*", "test"));
    let included = TempDir::with_config("apply-id", EVENTS_CFG);
    for target in ["1", TEST_UUID, "test"] {
        let args = ["apply", "--connect", "test:///default", "--live", "--dry-run", target];
        let out = run_in(excluded.path(), &args, "");
        assert_eq!(out.status.code(), Some(0), "{target}: {}", stderr(&out));
        let (res, detail) = row(&out, "test");
        assert_eq!(res, "skipped", "{target}: an excluded guest was not skipped: {detail}");

        let out = run_in(included.path(), &args, "");
        assert_eq!(out.status.code(), Some(0), "{target}: {}", stderr(&out));
        assert_eq!(row(&out, "test"), ("would change".into(), "would enable cpu_clock,page_faults (config+live)".into()), "{target}");
    }
    // The same guest three ways is one row.
    let out = run_in(included.path(), &["apply", "--connect", "test:///default", "--dry-run", "1", TEST_UUID, "test"], "");
    assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));
}

/// Any name libvirt lists works, including one ending in a carriage return (libvirt accepts
/// `<name>x&#13;</name>`), and a name that reads as another guest's ID.
#[test]
fn apply_all_handles_any_name_libvirt_lists() {
    if !have("virsh") {
        skip!("virsh not installed (apt-get install libvirt-clients)");
    }
    let root = TempDir::with_config("apply-cr", EVENTS_CFG);
    // A test-driver host of its own: both guests run, 'cr\r' with ID 1 and '1' with ID 2.
    let node = root.write(
        "node.xml",
        "<node>\n  <domain type='test'><name>cr&#13;</name><uuid>11111111-2222-4333-8444-555555555501</uuid>\
         <memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>\n  \
         <domain type='test'><name>1</name><uuid>11111111-2222-4333-8444-555555555502</uuid>\
         <memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>\n</node>\n",
    );
    let uri = format!("test://{}", node.display());
    let out = run_in(root.path(), &["apply", "--connect", &uri, "--all"], "");
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(row(&out, "cr\\r"), ("changed".into(), "enabled cpu_clock,page_faults (config)".into()), "{}", stdout(&out));
    assert_eq!(row(&out, "1").0, "changed", "{}", stdout(&out));
}

/// Local or remote is decided from the URI virsh will really use: --connect, else
/// $VIRSH_DEFAULT_CONNECT_URI, else $LIBVIRT_DEFAULT_URI, else uri_default in libvirt.conf (an
/// alias is resolved with `virsh uri`). A remote default used to be planned with this host's
/// probe and cache.
#[test]
fn default_uri_decides_local_or_remote() {
    let f = FakeVirsh::new("fake-defuri");
    f.domain("vm", "", &[], &[]);
    f.dir.write("uri", "qemu:///system\n\n");
    let cfg = r#"{"enabled_perf_events": ["cpu_cycles", "page_faults"]}"#;
    let remote = "qemu+ssh://host2/system";
    let cases: &[(&str, &[&str], &[(&str, &str)], Option<&str>, bool)] = &[
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
    f.domain("vm", "", &[], &[]);
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
    f.domain("vm", "", &[], &[]);
    f.lists(&["vm"], &[]);
    let out = run_with(root.path(), &["apply", "-C", "test:///default", "--all"], "", &[("VIRSH", &f.bin())]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(f.log().iter().all(|l| l.starts_with("[-c][test:///default]")), "{:?}", f.log());
    let help = stdout(&run_in(root.path(), &["--help"], ""));
    assert!(help.contains("define [-C|--connect URI]") && help.contains("apply [-C|--connect URI]"), "{help}");
}

//! `define` and `apply`: define against libvirt's test driver, apply against a fake `$VIRSH`
//! that answers from fixture files and logs every argv, and `real_libvirtd_checks` for the e2e
//! test (which owns the daemon).

use std::process::{Command, Output};

use crate::common::*;
use crate::skip;

const EVENTS_CFG: &str = r#"{"enabled_perf_events": ["page_faults", "cpu_clock"], "libvirt_version": "9.0.0", "host_probe": false, "domains": {"exclude": ["skip-*"]}}"#;

/// What apply says about a running guest whose config it changed.
pub const NEXT_START: &str = "counters start at the next start (boot, restore or migration)";

/// A fake virsh answering from files under its directory. Like virsh it takes its command as
/// words (`virsh -c URI dumpxml --domain X`) or as one command string of `;`-separated
/// commands (`virsh -q -c URI 'echo M; dumpxml --domain X; …'`), split with virsh's quoting
/// rules (tools/vsh.c: words at blanks, commands at `;` or a newline, `'…'` literal, `"…"` and
/// `\` escaping, `#` a comment); the commands of a string run in turn whatever fails, and the
/// exit status is the last one's. Every process's argv is logged in `procs`; every command
/// (but `echo`) in `log` as `[a][b]…`, after the process's `-c URI`.
/// Domains live in `dom/UUID/` (`name`, `xml` the persistent config, `live` the live one, `id`
/// when running) and are looked up by ID, UUID or name as virsh does; the lists hold UUIDs and
/// print names or (`--uuid`) UUIDs. `define` reads the file it is given (`/dev/stdin`, or a
/// `/proc/self/fd/N` it inherited, whose link target it records in `define-sources`) and
/// stores it as the persistent XML of the domain its `<uuid>` names. Also `dominfo`,
/// `domname`, `dumpxml`, `version`, `uri`, `echo` and `domstats`; `perf` answers as a driver
/// without the perf API does (so apply takes its guarded define); anything else is an unknown
/// command. A `fail-define` or `fail-dumpxml` file in a domain's directory makes that
/// command fail for it.
pub struct FakeVirsh {
    pub dir: TempDir,
}

impl FakeVirsh {
    pub fn new(tag: &str) -> FakeVirsh {
        let dir = TempDir::new(tag);
        let script = format!(
            r#"#!/bin/sh
F='{}'
nl='
'
tab='	'
{{ for a in "$@"; do printf '[%s]' "$a"; done; echo; }} >> "$F/procs"
opts=; quiet=
while :; do
  case $1 in
    -c) opts="$opts[-c][$2]"; shift 2;;
    -q) quiet=1; shift;;
    *) break;;
  esac
done

# One command, in a subshell of its own: its 'exit' ends only it.
one() (
words=
{{ printf '%s' "$opts"; for a in "$@"; do printf '[%s]' "$a"; done; echo; }} > "$F/entry"
cmd=$1; shift
[ "$cmd" = echo ] || cat "$F/entry" >> "$F/log"
dom=; file=; inactive=; all=; transient=; uuid=; err=
while [ $# -gt 0 ]; do
  case $1 in
    --domain) dom=$2; shift;;
    --file) file=$2; shift;;
    --inactive) inactive=1;;
    --all) all=1;;
    --transient) transient=1;;
    --uuid) uuid=1;;
    --err) err=1;;
    *) [ "$cmd" = echo ] && words="${{words:+$words }}$1";;
  esac
  shift
done
# Look the domain up as virsh does: by ID, then UUID, then name.
d=
for x in "$F"/dom/*; do [ -n "$dom" ] && [ "$(cat "$x/id" 2>/dev/null)" = "$dom" ] && d=$x; done
[ -z "$d" ] && [ -n "$dom" ] && [ -f "$F/dom/$dom/name" ] && d="$F/dom/$dom"
if [ -z "$d" ]; then for x in "$F"/dom/*; do [ -n "$dom" ] && [ "$(cat "$x/name" 2>/dev/null)" = "$dom" ] && d=$x; done; fi
case $cmd in
  echo) if [ -n "$err" ]; then echo "error: $words" >&2; else printf '%s' "$words"; [ -n "$quiet" ] || echo; fi;;
  version) cat "$F/version";;
  uri) cat "$F/uri";;
  list)
    if [ -n "$transient" ]; then l="$F/list-transient"; elif [ -n "$all" ]; then l="$F/list-all"; else l="$F/list-active"; fi
    while read -r u; do
      if [ -z "$u" ]; then continue; elif [ -n "$uuid" ]; then echo "$u"; else cat "$F/dom/$u/name"; echo; fi
    done < "$l"
    [ -n "$quiet" ] || echo;;
  dominfo|domname|dumpxml)
    if [ -z "$d" ]; then echo "error: failed to get domain '$dom'" >&2; exit 1; fi
    case $cmd in
      dominfo) p=yes; grep -qx "$(basename "$d")" "$F/list-transient" 2>/dev/null && p=no
        printf 'Id:             %s\nName:           %s\nUUID:           %s\nPersistent:     %s\n\n' "$(cat "$d/id" 2>/dev/null || echo -)" "$(cat "$d/name")" "$(basename "$d")" "$p";;
      domname) cat "$d/name"; echo; [ -n "$quiet" ] || echo;;
      *) if [ -e "$d/fail-dumpxml" ]; then echo "error: internal error: boom reading $(basename "$d")" >&2; exit 1; fi
         if [ -z "$inactive" ] && [ -e "$d/live" ]; then cat "$d/live"; else cat "$d/xml"; fi;;
    esac;;
  define)
    case $file in /proc/self/fd/*) readlink "$file" >> "$F/define-sources";; esac
    cat "$file" > "$F/defined.xml"
    u=$(sed -n 's:.*<uuid>\(.*\)</uuid>.*:\1:p' "$F/defined.xml" | head -n 1)
    name=$(sed -n 's:.*<name>\(.*\)</name>.*:\1:p' "$F/defined.xml" | head -n 1)
    if [ -z "$u" ]; then echo "error: fake virsh: no <uuid> in $file" >&2; exit 1; fi
    d="$F/dom/$u"
    if [ -e "$d/fail-define" ]; then echo "error: operation failed: boom" >&2; exit 1; fi
    mkdir -p "$d"; cp "$F/defined.xml" "$d/xml"; [ -e "$d/name" ] || printf %s "$name" > "$d/name"
    echo "Domain '$name' defined from $file";;
  domstats)
    n=$(( $(cat "$F/domstats-n" 2>/dev/null || echo 0) + 1 )); echo $n > "$F/domstats-n"
    cat "$F/domstats-$n";;
  perf) echo "error: this function is not supported by the connection driver: virDomainSetPerfEvents" >&2; exit 1;;
  *) echo "error: unknown command: '$cmd'" >&2; exit 1;;
esac
)

# A command string, split as virsh splits it; each command runs once its end is reached.
run_string() {{
  s=$1; tok=; have=; q=; st=0
  set --
  while :; do
    if [ -z "$s" ]; then c=; else r=${{s#?}}; c=${{s%"$r"}}; s=$r; fi
    if [ -n "$q" ] && [ -n "$c" ]; then
      case $q$c in
        "s'"|'d"') q=;;
        'd\') r=${{s#?}}; tok=$tok${{s%"$r"}}; s=$r;;
        *) tok=$tok$c;;
      esac
      continue
    fi
    if [ "$c" = '#' ] && [ -z "$have" ]; then
      case $s in *"$nl"*) s=${{s#*"$nl"}};; *) s=;; esac
      c=';'
    fi
    case $c in
      "'") q=s; have=1;;
      '"') q=d; have=1;;
      '\') r=${{s#?}}; tok=$tok${{s%"$r"}}; s=$r; have=1;;
      ' '|"$tab") if [ -n "$have" ]; then set -- "$@" "$tok"; tok=; have=; fi;;
      ';'|"$nl"|'')
        if [ -n "$have" ]; then set -- "$@" "$tok"; tok=; have=; fi
        if [ $# -gt 0 ]; then one "$@"; st=$?; fi
        set --
        [ -z "$c" ] && return $st;;
      *) tok=$tok$c; have=1;;
    esac
  done
}}

if [ $# -eq 1 ]; then run_string "$1"; else one "$@"; fi
"#,
            dir.path().display()
        );
        dir.write_exec("virsh", &script);
        dir.write("version", "Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\nUsing API: QEMU 9.0.0\nRunning hypervisor: QEMU 7.2.0\nRunning against daemon: 9.0.0\n");
        dir.write("list-all", "\n");
        dir.write("list-active", "\n");
        dir.write("list-transient", "\n");
        dir.write("log", "");
        dir.write("procs", "");
        FakeVirsh { dir }
    }

    pub fn bin(&self) -> String {
        self.dir.path().join("virsh").to_str().unwrap().to_string()
    }

    /// The UUID of the domain `name`: an FNV-1a hash of the name, so any name works.
    pub fn uuid(name: &str) -> String {
        let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        format!("00000000-0000-4000-8000-{:012x}", h & 0xffff_ffff_ffff)
    }

    /// A domain XML named `name` with `perf` (whole lines) before `<devices/>`. As libvirt does,
    /// the name is written as is, a '\r' too.
    pub fn xml(name: &str, perf: &str) -> String {
        format!("<domain type='kvm'>\n  <name>{name}</name>\n  <uuid>{}</uuid>\n{perf}  <devices/>\n</domain>\n", FakeVirsh::uuid(name))
    }

    pub fn path(&self, name: &str, file: &str) -> std::path::PathBuf {
        self.dir.path().join(format!("dom/{}/{file}", FakeVirsh::uuid(name)))
    }

    /// A domain whose persistent XML has `perf`.
    pub fn domain(&self, name: &str, perf: &str) {
        let d = format!("dom/{}", FakeVirsh::uuid(name));
        self.dir.write(&format!("{d}/name"), name);
        self.dir.write(&format!("{d}/xml"), &FakeVirsh::xml(name, perf));
    }

    /// The live XML of a running domain, with `perf`.
    pub fn live(&self, name: &str, perf: &str) {
        std::fs::write(self.path(name, "live"), FakeVirsh::xml(name, perf)).unwrap();
    }

    /// The persistent XML as it is now (after any define).
    pub fn persistent(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name, "xml")).unwrap()
    }

    fn fail_define(&self, name: &str) {
        std::fs::write(self.path(name, "fail-define"), "").unwrap();
    }

    /// Gives the running domain `name` the domain ID `id`.
    fn id(&self, name: &str, id: u32) {
        std::fs::write(self.path(name, "id"), id.to_string()).unwrap();
    }

    /// Which domains `list --all` and `list` show.
    pub fn lists(&self, all: &[&str], active: &[&str]) {
        self.dir.write("list-all", &FakeVirsh::uuids(all));
        self.dir.write("list-active", &FakeVirsh::uuids(active));
    }

    /// Which domains `list --transient` shows.
    fn transient(&self, names: &[&str]) {
        self.dir.write("list-transient", &FakeVirsh::uuids(names));
    }

    fn uuids(names: &[&str]) -> String {
        names.iter().map(|n| format!("{}\n", FakeVirsh::uuid(n))).collect()
    }

    pub fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap().lines().map(str::to_string).collect()
    }

    /// The argv of every virsh process started, one line each.
    pub fn procs(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("procs")).unwrap().lines().map(str::to_string).collect()
    }

    /// What each `define --file /proc/self/fd/N` read: the target of that link.
    fn define_sources(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("define-sources")).unwrap_or_default().lines().map(str::to_string).collect()
    }

    fn define_calls(&self) -> Vec<String> {
        self.log().into_iter().filter(|l| l.starts_with("[define]")).collect()
    }

    /// Runs `cmd args…` with this virsh and a fake root holding `config`.
    pub fn run(&self, config: &str, cmd: &str, args: &[&str]) -> Output {
        let root = TempDir::with_config(cmd, config);
        let mut argv = vec![cmd];
        argv.extend_from_slice(args);
        run_with(root.path(), &argv, "", &[("VIRSH", &self.bin())])
    }

    fn apply(&self, config: &str, args: &[&str]) -> Output {
        self.run(config, "apply", args)
    }
}

/// `<perf>` lines with these (name, enabled) events.
pub fn perf(events: &[(&str, &str)]) -> String {
    let lines: String = events.iter().map(|(n, e)| format!("    <event name='{n}' enabled='{e}'/>\n")).collect();
    format!("  <perf>\n{lines}  </perf>\n")
}

/// The table row for `name`: (RESULT, DETAIL).
fn row(out: &Output, name: &str) -> (String, String) {
    let cells = table_row(out, name, &["RESULT", "DETAIL"]);
    (cells[0].clone(), cells[1].clone())
}

/// The cells under `columns` in the table row for `name` (the first column). Names may hold
/// spaces, so cells are cut at the header's column offsets (names are ASCII here).
pub fn table_row(out: &Output, name: &str, columns: &[&str]) -> Vec<String> {
    let text = stdout(out);
    let header = text.lines().next().unwrap_or_default();
    let at: Vec<usize> = columns.iter().map(|c| header.find(c).unwrap_or_else(|| panic!("no {c} in {header}"))).collect();
    for line in text.lines().skip(1) {
        if line.len() < at[0] || line[..at[0]].trim_end() != name {
            continue;
        }
        let cell = |i: usize| {
            let end = at.get(i + 1).copied().unwrap_or(usize::MAX).min(line.len());
            line.get(at[i]..end).unwrap_or("").trim().to_string()
        };
        return (0..at.len()).map(cell).collect();
    }
    panic!("no row for '{name}' in:\n{text}");
}

/// Names that mean something to a shell or to virsh's command-string syntax.
const WEIRD: [&str; 9] = ["-x", "a;rm -rf /", "with space", "--config", "it's", "#hash", "back\\slash", "dq\"x; echo", "tab\tx"];

/// A name as the table shows it (control characters escaped).
fn shown(name: &str) -> String {
    name.replace('\t', "\\t").replace('\r', "\\r").replace('\n', "\\n")
}

/// The fake host of the core scenario: every kind of guest, in `--all` order.
fn mixed() -> FakeVirsh {
    let f = FakeVirsh::new("fake-mixed");
    f.domain("broken", "");
    f.fail_define("broken");
    f.domain("no-perf", "");
    f.domain("partial", &perf(&[("page_faults", "yes")]));
    f.domain("said-no", &perf(&[("cpu_clock", "no")]));
    f.domain("all-set", &perf(&[("cpu_clock", "yes"), ("page_faults", "yes")]));
    f.domain("skip-me", "");
    f.domain("temp", "");
    for n in WEIRD {
        f.domain(n, "");
    }
    let mut all = vec!["broken", "no-perf", "partial", "said-no", "all-set", "skip-me", "temp"];
    all.extend(WEIRD);
    f.lists(&all, &["no-perf", "temp"]);
    f.transient(&["temp"]);
    f
}

#[test]
fn apply_mixed_guests_respect() {
    let f = mixed();
    let out = f.apply(EVENTS_CFG, &["--all"]);
    assert_eq!(out.status.code(), Some(1), "a failed domain makes exit 1:\n{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).starts_with("DOMAIN"), "{}", stdout(&out));
    let added_both = ("changed".to_string(), "added cpu_clock,page_faults".to_string());
    assert_eq!(row(&out, "no-perf"), ("changed".into(), format!("added cpu_clock,page_faults; {NEXT_START}")), "running");
    assert_eq!(row(&out, "partial"), ("changed".into(), "added cpu_clock".into()));
    assert_eq!(
        row(&out, "said-no"),
        ("changed".into(), "added page_faults; kept disabled cpu_clock (existing: respect)".into())
    );
    assert_eq!(row(&out, "all-set"), ("ok".into(), "has cpu_clock,page_faults".into()));
    let (res, detail) = row(&out, "skip-me");
    assert_eq!(res, "skipped");
    assert!(detail.contains("not selected"), "{detail}");
    assert_eq!(row(&out, "broken"), ("failed".into(), "defining the new config failed: error: operation failed: boom".into()));
    for n in WEIRD {
        assert_eq!(row(&out, &shown(n)), added_both, "{n}");
    }
    // The persistent XML was rewritten and defined back: the events added, nothing else changed.
    assert_eq!(f.persistent("partial"), FakeVirsh::xml("partial", &perf(&[("page_faults", "yes"), ("cpu_clock", "yes")])));
    assert_eq!(f.persistent("said-no"), FakeVirsh::xml("said-no", &perf(&[("cpu_clock", "no"), ("page_faults", "yes")])));
    let log = f.log();
    // Guests are listed by UUID and every per-guest call names the UUID: a name never reaches
    // virsh's lookup, whatever it contains.
    for n in WEIRD {
        let u = FakeVirsh::uuid(n);
        assert!(log.contains(&format!("[dumpxml][--inactive][--security-info][--domain][{u}]")), "{n}:\n{}", log.join("\n"));
        assert!(log.iter().all(|l| !l.contains(&format!("[--domain][{n}]"))), "{n} was passed to virsh");
        assert_eq!(f.persistent(n), FakeVirsh::xml(n, &perf(&[("cpu_clock", "yes"), ("page_faults", "yes")])), "{n}");
    }
    // An excluded guest is looked up (its name decides), nothing more.
    let skipped = FakeVirsh::uuid("skip-me");
    assert!(log.iter().all(|l| !l.contains(&skipped) || l.starts_with("[dominfo]") || l.starts_with("[domname]")), "an excluded guest is not touched");
    assert_eq!(f.persistent("skip-me"), FakeVirsh::xml("skip-me", ""));
    assert!(log.iter().all(|l| !l.contains("[--live]")), "nothing live: {log:?}");
    // The atomic `perf --config` is tried first; this fake driver refuses it, so the guarded
    // define follows. Nothing live.
    assert!(log.iter().filter(|l| l.starts_with("[perf]")).all(|l| l.ends_with("[--config]")), "{log:?}");
    // A transient guest has no persistent config: defining it would make it persistent.
    assert_eq!(row(&out, "temp"), ("skipped".into(), "transient: it has no persistent config to change".into()));
    let temp = FakeVirsh::uuid("temp");
    assert!(log.iter().all(|l| !l.contains(&temp) || l.starts_with("[dominfo]") || l.starts_with("[domname]")), "a transient guest is not touched");
    assert_eq!(f.persistent("temp"), FakeVirsh::xml("temp", ""));
    // The pinned version means no `virsh version`; --all means one `list --all --uuid`, and one
    // `list --uuid` and one `list --transient --uuid` tell the running and transient guests.
    assert_eq!(log[..3], ["[list][--all][--uuid]", "[list][--uuid]", "[list][--transient][--uuid]"]);
    // broken, no-perf, partial, said-no and the weird names: the batch went on past the failure.
    // Each new config reaches virsh as a memfd it inherited, never through a file others see.
    let defines = f.define_calls();
    assert_eq!(defines.len(), 4 + WEIRD.len(), "{defines:?}");
    assert!(defines.iter().all(|d| d.starts_with("[define][--file][/proc/self/fd/")), "{defines:?}");
    let sources = f.define_sources();
    assert_eq!(sources.len(), defines.len(), "{sources:?}");
    assert!(sources.iter().all(|s| s.starts_with("/memfd:virt-perf-hook")), "{sources:?}");
    // One virsh per phase, whatever the number of guests: lists, names, configs, perf (refused
    // by this driver), the guarded re-reads, defines.
    assert_procs(&f, 6);
}

/// `f` ran `n` virsh processes, each with one command string (`-q` and the string).
fn assert_procs(f: &FakeVirsh, n: usize) {
    let procs = f.procs();
    assert_eq!(procs.len(), n, "{procs:#?}");
    assert!(procs.iter().all(|p| p.starts_with("[-q][echo --err vph")), "{procs:#?}");
}

/// A guest that fails in the middle of a batch (its config cannot be read, or its define
/// fails) fails alone: the guests before and after it in the same virsh are done.
#[test]
fn apply_one_failure_in_a_batch_is_that_guest_only() {
    let f = FakeVirsh::new("fake-midbatch");
    let names = ["g1", "g2", "unreadable", "g4", "undefinable", "g6"];
    for n in names {
        f.domain(n, "");
    }
    std::fs::write(f.path("unreadable", "fail-dumpxml"), "").unwrap();
    f.fail_define("undefinable");
    f.lists(&names, &[]);
    let out = f.apply(EVENTS_CFG, &["--all"]);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let changed = ("changed".to_string(), "added cpu_clock,page_faults".to_string());
    for n in ["g1", "g2", "g4", "g6"] {
        assert_eq!(row(&out, n), changed, "{n}: {}", stdout(&out));
        assert!(f.persistent(n).contains("page_faults"), "{n}");
    }
    let u = FakeVirsh::uuid("unreadable");
    assert_eq!(row(&out, "unreadable"), ("failed".into(), format!("error: internal error: boom reading {u}")));
    assert_eq!(row(&out, "undefinable"), ("failed".into(), "defining the new config failed: error: operation failed: boom".into()));
    assert_eq!(f.persistent("undefinable"), FakeVirsh::xml("undefinable", ""));
    // The rows keep the order of `list --all`.
    let order: Vec<String> = stdout(&out).lines().skip(1).map(|l| l.split(' ').next().unwrap().to_string()).collect();
    assert_eq!(order, names);
    assert!(stderr(&out).contains("2 of 6 domain(s) failed"), "{}", stderr(&out));
    assert_procs(&f, 6);
}

/// virsh dying in the middle of a batch fails the guest it was on and those it never reached,
/// each with its own row; the guests it had done keep theirs.
#[test]
fn apply_virsh_dying_mid_batch() {
    let f = FakeVirsh::new("fake-dies");
    let names = ["a1", "a2", "killer", "a4"];
    for n in names {
        f.domain(n, "");
    }
    f.lists(&names, &[]);
    // The fake kills its own process while reading this guest's config.
    let script = std::fs::read_to_string(f.dir.path().join("virsh")).unwrap();
    let trap = format!("cmd=$1; shift\n[ \"$*\" = '--inactive --security-info --domain {}' ] && kill -KILL $$\n", FakeVirsh::uuid("killer"));
    f.dir.write_exec("virsh", &script.replacen("cmd=$1; shift\n", &trap, 1));
    let out = f.apply(EVENTS_CFG, &["--all"]);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(row(&out, "a1").0, "changed", "{}", stdout(&out));
    assert_eq!(row(&out, "a2").0, "changed", "{}", stdout(&out));
    assert_eq!(row(&out, "killer"), ("failed".into(), "virsh ended while running it".into()));
    assert_eq!(row(&out, "a4"), ("failed".into(), "virsh was killed by a signal before running it".into()));
    assert!(f.persistent("a1").contains("page_faults") && !f.persistent("a4").contains("page_faults"));
}

/// Named targets travel inside virsh's command string, quoted for its tokenizer: each reaches
/// virsh as the one word it was (the fake splits the string as virsh does; the real virsh is
/// checked in `apply_named_targets_with_odd_names_on_the_test_driver`).
#[test]
fn apply_named_targets_are_quoted_for_virsh() {
    let f = mixed();
    let mut args = vec!["--"];
    args.extend(WEIRD);
    args.push("ghost'; define --file /etc/passwd; echo '");
    let out = f.apply(EVENTS_CFG, &args);
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let log = f.log();
    for n in WEIRD {
        assert!(log.contains(&format!("[dominfo][--domain][{n}]")), "{n}: {log:#?}");
        assert_eq!(row(&out, &shown(n)).0, "changed", "{n}: {}", stdout(&out));
    }
    let ghost = "ghost'; define --file /etc/passwd; echo '";
    assert!(log.contains(&format!("[dominfo][--domain][{ghost}]")), "{log:#?}");
    assert!(row(&out, ghost).1.contains("failed to get domain"), "{}", stdout(&out));
    assert!(log.iter().all(|l| !l.contains("/etc/passwd]")), "{log:#?}");
    assert_eq!(f.define_calls().len(), WEIRD.len());
    assert_procs(&f, 6);
}

#[test]
fn apply_override_enables_explicit_no() {
    let f = mixed();
    let cfg = EVENTS_CFG.replace("\"host_probe\"", "\"existing\": \"override\", \"host_probe\"");
    let out = f.apply(&cfg, &["said-no", "partial"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(row(&out, "said-no"), ("changed".into(), "added page_faults; enabled cpu_clock".into()));
    assert_eq!(row(&out, "partial"), ("changed".into(), "added cpu_clock".into()));
    assert_eq!(stdout(&out).lines().count(), 3, "only the named domains:\n{}", stdout(&out));
    assert!(f.persistent("said-no").contains("<event name='cpu_clock' enabled='yes'/>"));
}

#[test]
fn apply_dry_run_changes_nothing() {
    let f = mixed();
    let before = f.persistent("no-perf");
    let out = f.apply(EVENTS_CFG, &["--dry-run", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(f.define_calls().is_empty(), "dry run called define: {:?}", f.define_calls());
    assert_eq!(f.persistent("no-perf"), before);
    assert_eq!(row(&out, "no-perf"), ("would change".into(), format!("added cpu_clock,page_faults; {NEXT_START}")));
    assert_eq!(row(&out, "broken").0, "would change");
    assert_eq!(row(&out, "all-set").0, "ok");
    assert_eq!(row(&out, "-x").0, "would change");
}

/// `--live` is gone: a running guest's counters enabled live would miss its vCPU threads.
#[test]
fn apply_live_is_a_usage_error() {
    let f = mixed();
    let out = f.apply(EVENTS_CFG, &["--live", "--all"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--live is gone: counters enabled on a running guest miss its vCPU threads"), "{err}");
    assert!(err.contains("they start complete at the guest's next start (boot, restore or migration)"), "{err}");
    assert_eq!(err.lines().count(), 1);
    assert!(f.log().is_empty(), "virsh ran: {:?}", f.log());
}

/// Events the guest enables that this host cannot have are removed from its persistent config
/// (here by the guarded define: this fake driver refuses `perf`)
/// (the fake root has no PMU and no intel_cqm); `enabled='no'` choices stay; "keep" leaves them.
#[test]
fn apply_heals_the_persistent_config() {
    let f = FakeVirsh::new("fake-heal");
    let carried = perf(&[("cmt", "yes"), ("cpu_cycles", "no"), ("future_event", "no"), ("page_faults", "yes")]);
    f.domain("vm", &carried);
    f.lists(&["vm"], &["vm"]);
    let cfg = r#"{"enabled_perf_events": [], "libvirt_version": "9.0.0"}"#;
    let dry = f.apply(cfg, &["--dry-run", "vm"]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    let why = "removed cmt (the host cannot open it: no /sys/devices/intel_cqm (Intel CQM perf support was removed in Linux 4.14)), \
               future_event (libvirt 9.0.0 does not know this event)";
    assert_eq!(row(&dry, "vm"), ("would change".into(), format!("{why}; {NEXT_START}")));
    let out = f.apply(cfg, &["vm"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(row(&out, "vm"), ("changed".into(), format!("{why}; {NEXT_START}")));
    assert_eq!(f.persistent("vm"), FakeVirsh::xml("vm", &perf(&[("cpu_cycles", "no"), ("page_faults", "yes")])));
    let again = f.apply(cfg, &["vm"]);
    assert_eq!(row(&again, "vm"), ("ok".into(), "nothing to change".into()));

    f.domain("vm", &carried);
    let keep = f.apply(r#"{"libvirt_version": "9.0.0", "unsupported": "keep"}"#, &["vm"]);
    assert_eq!(row(&keep, "vm"), ("ok".into(), "nothing to change".into()));
    assert_eq!(f.persistent("vm"), FakeVirsh::xml("vm", &carried));
}

/// A guest named twice is done once; a running guest's config changes too, and its row says the
/// counters wait for its next start (nothing is enabled live: it would miss its vCPU threads).
#[test]
fn apply_running_and_stopped_guests() {
    let f = FakeVirsh::new("fake-running");
    f.domain("running", "");
    f.live("running", &perf(&[("page_faults", "yes")]));
    f.domain("stopped", "");
    f.lists(&["running", "stopped"], &["running"]);
    let out = f.apply(EVENTS_CFG, &["running", "stopped", "running"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(row(&out, "running"), ("changed".into(), format!("added cpu_clock,page_faults; {NEXT_START}")));
    assert_eq!(row(&out, "stopped"), ("changed".into(), "added cpu_clock,page_faults".into()));
    assert_eq!(stdout(&out).lines().count(), 3, "a repeated name is done once");
    let both = perf(&[("cpu_clock", "yes"), ("page_faults", "yes")]);
    for n in ["running", "stopped"] {
        assert_eq!(f.persistent(n), FakeVirsh::xml(n, &both), "{n}");
    }
    let log = f.log();
    let dumps: Vec<&String> = log.iter().filter(|l| l.starts_with("[dumpxml]")).collect();
    let (running, stopped) = (FakeVirsh::uuid("running"), FakeVirsh::uuid("stopped"));
    assert_eq!(
        dumps,
        [
            &format!("[dumpxml][--inactive][--security-info][--domain][{running}]"),
            &format!("[dumpxml][--inactive][--security-info][--domain][{stopped}]"),
            &format!("[dumpxml][--inactive][--security-info][--domain][{running}]"),
            &format!("[dumpxml][--inactive][--security-info][--domain][{stopped}]"),
        ],
        "the persistent config, once per guest, and again right before the guarded define"
    );
    assert_eq!(f.define_calls().len(), 2, "{log:?}");
    assert!(log.iter().all(|l| !l.contains("[--live]") && (!l.starts_with("[perf]") || l.ends_with("[--config]"))), "nothing live: {log:?}");
}

/// A UUID or an ID names the guest: `domains` include/exclude apply to its name, and a running
/// guest given by ID or UUID is known to run (the issue: `apply <uuid>` enabled events on an
/// excluded guest).
#[test]
fn apply_by_uuid_or_id_with_a_fake_virsh() {
    let f = FakeVirsh::new("fake-uuid");
    f.domain("skip-me", "");
    f.domain("web", "");
    f.live("web", &perf(&[("page_faults", "yes")]));
    f.id("web", 7);
    f.lists(&["skip-me", "web"], &["web"]);
    let (skip, web) = (FakeVirsh::uuid("skip-me"), FakeVirsh::uuid("web"));
    let out = f.apply(EVENTS_CFG, &[&skip, "7", "web", &web]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(row(&out, "skip-me").0, "skipped", "{}", stdout(&out));
    assert_eq!(
        row(&out, "web"),
        ("changed".into(), format!("added cpu_clock,page_faults; {NEXT_START}")),
        "the same running guest three ways, done once"
    );
    assert_eq!(stdout(&out).lines().count(), 3, "{}", stdout(&out));
    // The excluded guest given by UUID is not changed: looked up, never read or defined.
    assert_eq!(f.persistent("skip-me"), FakeVirsh::xml("skip-me", ""));
    let log = f.log();
    assert!(log.iter().all(|l| !l.contains(&skip) || l.starts_with("[dominfo]") || l.starts_with("[domname]")), "{log:?}");
    assert_eq!(f.define_calls().len(), 1, "{log:?}");
    assert_eq!(f.persistent("web"), FakeVirsh::xml("web", &perf(&[("cpu_clock", "yes"), ("page_faults", "yes")])));
}

/// A name ending in '\r' (libvirt accepts `<name>x&#13;</name>`) comes through `--all` whole.
#[test]
fn apply_all_with_a_carriage_return_in_a_name() {
    let f = FakeVirsh::new("fake-cr");
    f.domain("cr\r", "");
    f.lists(&["cr\r"], &[]);
    let out = f.apply(EVENTS_CFG, &["--all"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(row(&out, "cr\\r"), ("changed".into(), "added cpu_clock,page_faults".into()));
    // Defined with the '\r' as a character reference: a bare one would be read as a '\n'.
    let want = FakeVirsh::xml("cr\r", &perf(&[("cpu_clock", "yes"), ("page_faults", "yes")])).replace('\r', "&#13;");
    assert_eq!(f.persistent("cr\r"), want);
}

#[test]
fn apply_gets_the_version_from_the_daemon() {
    let f = FakeVirsh::new("fake-version");
    f.domain("vm", &perf(&[("task_clock", "yes")]));
    // The daemon is older than the client library: the daemon decides (page_faults needs 3.2.0).
    f.dir.write("version", "Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\nUsing API: QEMU 9.0.0\nRunning hypervisor: QEMU 2.8.0\nRunning against daemon: 3.0.0\n");
    let cfg = r#"{"enabled_perf_events": ["page_faults", "cpu_cycles"], "host_probe": false}"#;
    let out = f.apply(cfg, &["--connect", "qemu+ssh://h/system", "vm"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("not enabling page_faults: needs libvirt 3.2.0, this host has 3.0.0"), "{}", stderr(&out));
    // task_clock, too new for that daemon, goes; the remote kernel's PMU is not judged from here.
    let want = "added cpu_cycles; removed task_clock (needs libvirt 3.2.0, this host has 3.0.0)";
    assert_eq!(row(&out, "vm"), ("changed".into(), want.into()));
    assert_eq!(f.log()[0], "[-c][qemu+ssh://h/system][version][--daemon]");
    assert!(f.log().iter().all(|l| l.starts_with("[-c][qemu+ssh://h/system]")));
}

#[test]
fn apply_unknown_domain_fails_but_others_go_on() {
    let f = mixed();
    let out = f.apply(EVENTS_CFG, &["ghost", "no-perf"]);
    // The name is looked up as given (virsh's own error comes back); nothing else runs on it.
    let log = f.log();
    assert!(log.contains(&"[dominfo][--domain][ghost]".to_string()), "{log:?}");
    assert_eq!(log.iter().filter(|l| l.contains("ghost")).count(), 1, "{log:?}");
    assert_eq!(out.status.code(), Some(1));
    let (res, detail) = row(&out, "ghost");
    assert_eq!(res, "failed");
    assert!(detail.contains("failed to get domain 'ghost'"), "{detail}");
    assert_eq!(row(&out, "no-perf").0, "changed");
    let no_perf = FakeVirsh::uuid("no-perf");
    assert!(log.contains(&format!("[dumpxml][--inactive][--security-info][--domain][{no_perf}]")), "{log:?}");
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
/// connection): the define it was asked for, then `dumpxml NAME`. It keeps a copy of what it
/// read and its argv.
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

/// UUID of the running guest 'test' (ID 1) of `test:///default`.
const TEST_UUID: &str = "6695eb01-f6a4-8304-79aa-97f2502e193f";

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

/// Names that mean something to virsh's command-string syntax or a shell, as XML text (a test
/// node file) and as given on a command line.
pub const ODD_NAMES: [(&str, &str); 12] = [
    ("vph odd space", "vph odd space"),
    ("vph-odd-it&apos;s", "vph-odd-it's"),
    ("vph-odd-dq&quot;x", "vph-odd-dq\"x"),
    ("vph-odd-semi;undefine x", "vph-odd-semi;undefine x"),
    ("#vph-odd-hash", "#vph-odd-hash"),
    ("vph-odd-back\\slash\\", "vph-odd-back\\slash\\"),
    ("vph-odd-cr&#13;", "vph-odd-cr\r"),
    ("vph-odd-tab&#9;x", "vph-odd-tab\tx"),
    ("-vph-odd-dash", "-vph-odd-dash"),
    ("--vph-odd-option", "--vph-odd-option"),
    ("vph-odd-$(id)`id`", "vph-odd-$(id)`id`"),
    ("vph-odd-&amp;&lt;&gt;", "vph-odd-&<>"),
];

/// A DOMAIN that is no guest and would be two commands if its newline or `;` got through.
const GHOST: &str = "vph-ghost\nundefine --domain vph odd space; echo '";

/// A `$VIRSH` that runs the real virsh and, when the command string it is given defines
/// guests, appends `dumpxml --inactive` of `uuids` to it (the test driver keeps what a define
/// did only within its process) and keeps what that printed in `DIR/after-define`.
fn dump_after_define(dir: &TempDir, uuids: &[String]) -> String {
    let d = dir.path().display();
    let extra: String = uuids.iter().map(|u| format!("; echo --err vph-after; dumpxml --inactive --domain {u}")).collect();
    let script = format!(
        r#"#!/bin/sh
n=$#; i=0; add=
for a in "$@"; do
  i=$((i + 1))
  case $i:$a in "$n:"*' --config'*) a="$a{extra}"; add=1;; esac
  set -- "$@" "$a"
done
shift $n
virsh "$@" > '{d}/out'; st=$?
cat '{d}/out'
[ -z "$add" ] || cat '{d}/out' >> '{d}/after-define'
exit $st
"#
    );
    dir.write_exec("virsh-dump-after-define", &script).to_str().unwrap().to_string()
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

/// Local or remote is decided from the URI virsh will really use: --connect, else
/// $VIRSH_DEFAULT_CONNECT_URI, else $LIBVIRT_DEFAULT_URI, else uri_default in libvirt.conf (an
/// alias is resolved with `virsh uri`). A remote default used to be planned with this host's
/// probe and cache.
#[test]
fn default_uri_decides_local_or_remote() {
    let f = FakeVirsh::new("fake-defuri");
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
    for i in 0..guests.len() {
        let xml = persistent(i);
        assert!(xml.contains("<event name='cpu_clock' enabled='yes'/>") && xml.contains("<event name='page_faults' enabled='yes'/>"), "{:?}:\n{xml}", names[i]);
        assert!(xml.contains("passwd='s3cret'"), "{:?}: the VNC password was lost:\n{xml}", names[i]);
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

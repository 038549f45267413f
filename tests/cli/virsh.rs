//! `define` and `apply`: define against libvirt's test driver, apply against a fake `$VIRSH`
//! that answers from fixture files and logs every argv, and `real_libvirtd_checks` for the e2e
//! test (which owns the daemon).

use std::process::Output;

use crate::common::*;

pub const EVENTS_CFG: &str = r#"{"enabled_perf_events": ["page_faults", "cpu_clock"], "libvirt_version": "9.0.0", "host_probe": false, "domains": {"exclude": ["skip-*"]}}"#;

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
/// command fail for it; a `gone-at-domname` or `gone-at-dominfo` file makes that command answer as
/// for a guest undefined while virsh ran it.
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
      dominfo) if [ -e "$d/gone-at-dominfo" ]; then printf 'Id:             -\nName:           %s\n' "$(cat "$d/name")"; echo "error: Domain not found: no domain with matching uuid '$(basename "$d")' ($(cat "$d/name"))" >&2; exit 1; fi
        p=yes; grep -qx "$(basename "$d")" "$F/list-transient" 2>/dev/null && p=no
        printf 'Id:             %s\nName:           %s\nUUID:           %s\nPersistent:     %s\n\n' "$(cat "$d/id" 2>/dev/null || echo -)" "$(cat "$d/name")" "$(basename "$d")" "$p";;
      domname) if [ -e "$d/gone-at-domname" ]; then echo "error: Domain not found: no domain with matching uuid '$dom' ($(cat "$d/name"))" >&2; exit 1; fi
        cat "$d/name"; echo; [ -n "$quiet" ] || echo;;
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

    pub fn fail_define(&self, name: &str) {
        std::fs::write(self.path(name, "fail-define"), "").unwrap();
    }

    /// Gives the running domain `name` the domain ID `id`.
    pub fn id(&self, name: &str, id: u32) {
        std::fs::write(self.path(name, "id"), id.to_string()).unwrap();
    }

    /// Which domains `list --all` and `list` show.
    pub fn lists(&self, all: &[&str], active: &[&str]) {
        self.dir.write("list-all", &FakeVirsh::uuids(all));
        self.dir.write("list-active", &FakeVirsh::uuids(active));
    }

    /// Which domains `list --transient` shows.
    pub fn transient(&self, names: &[&str]) {
        self.dir.write("list-transient", &FakeVirsh::uuids(names));
    }

    pub fn uuids(names: &[&str]) -> String {
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
    pub fn define_sources(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("define-sources")).unwrap_or_default().lines().map(str::to_string).collect()
    }

    pub fn define_calls(&self) -> Vec<String> {
        self.log().into_iter().filter(|l| l.starts_with("[define]")).collect()
    }

    /// Runs `cmd args…` with this virsh and a fake root holding `config`.
    pub fn run(&self, config: &str, cmd: &str, args: &[&str]) -> Output {
        let root = TempDir::with_config(cmd, config);
        let mut argv = vec![cmd];
        argv.extend_from_slice(args);
        run_with(root.path(), &argv, "", &[("VIRSH", &self.bin())])
    }

    pub fn apply(&self, config: &str, args: &[&str]) -> Output {
        self.run(config, "apply", args)
    }
}

/// `<perf>` lines with these (name, enabled) events.
pub fn perf(events: &[(&str, &str)]) -> String {
    let lines: String = events.iter().map(|(n, e)| format!("    <event name='{n}' enabled='{e}'/>\n")).collect();
    format!("  <perf>\n{lines}  </perf>\n")
}

/// The table row for `name`: (RESULT, DETAIL).
pub fn row(out: &Output, name: &str) -> (String, String) {
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
pub const WEIRD: [&str; 9] = ["-x", "a;rm -rf /", "with space", "--config", "it's", "#hash", "back\\slash", "dq\"x; echo", "tab\tx"];

/// A name as the table shows it (control characters escaped).
pub fn shown(name: &str) -> String {
    name.replace('\t', "\\t").replace('\r', "\\r").replace('\n', "\\n")
}

/// The fake host of the core scenario: every kind of guest, in `--all` order.
pub fn mixed() -> FakeVirsh {
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

/// `f` ran `n` virsh processes, each with one command string (`-q` and the string).
pub fn assert_procs(f: &FakeVirsh, n: usize) {
    let procs = f.procs();
    assert_eq!(procs.len(), n, "{procs:#?}");
    assert!(procs.iter().all(|p| p.starts_with("[-q][echo --err vph")), "{procs:#?}");
}

/// A `$VIRSH` that runs the real virsh on the test driver in one session (its state lives per
/// connection): the define it was asked for, then `dumpxml NAME`. It keeps a copy of what it
/// read and its argv.
pub fn define_wrapper(dir: &TempDir, name: &str) -> String {
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

pub fn guest_xml(name: &str, perf: &str) -> String {
    format!("<domain type='test'>\n  <name>{name}</name>\n  <memory unit='MiB'>64</memory>\n  <os>\n    <type>hvm</type>\n  </os>\n{perf}</domain>\n")
}

/// UUID of the running guest 'test' (ID 1) of `test:///default`.
pub const TEST_UUID: &str = "6695eb01-f6a4-8304-79aa-97f2502e193f";

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
pub const GHOST: &str = "vph-ghost\nundefine --domain vph odd space; echo '";

/// A `$VIRSH` that runs the real virsh and, when the command string it is given defines
/// guests, appends `dumpxml --inactive` of `uuids` to it (the test driver keeps what a define
/// did only within its process) and keeps what that printed in `DIR/after-define`.
pub fn dump_after_define(dir: &TempDir, uuids: &[String]) -> String {
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

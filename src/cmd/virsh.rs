//! The `define` and `apply` commands, which talk to libvirt through virsh.
//!
//! libvirt ignores hook output on a plain define/start, so new guests get their events from the
//! `define` wrapper and existing guests from `apply`, which rewrites the persistent config the
//! way `virsh edit` does (dumpxml, rewrite, define). Neither changes a running guest's live
//! counters: enabled there, they would miss its vCPU threads. Domain names are untrusted: a
//! sweep addresses guests by UUID, and a DOMAIN as given reaches virsh only as one word quoted
//! for virsh's own command-string parser ([`batch::quote`](crate::cmd::batch::quote)), never
//! through a shell.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::cmd::batch::{call, Call, MemFile, Reply};
use crate::cmd::{filter, read_input, write_stdout, Ctx};
use crate::core::config::{Config};
use crate::support::text::{printable, table};
use crate::core::rewrite::Document;
use crate::core::version::Version;
use crate::host::plan::{self, Dropped, Plan, Reported, Target};
use crate::support::error::{exit, one_line, Error, Result};
use crate::support::paths::Paths;

/// Overrides the virsh binary (tests, unusual installs).
pub const VIRSH_ENV: &str = "VIRSH";

/// What `define` hands virsh as the file to read: its own standard input.
const STDIN: &str = "/dev/stdin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefineOpts {
    pub verb: Verb,
    pub connect: Option<String>,
    pub validate: bool,
    /// `create --paused`.
    pub paused: bool,
    /// A file path, or `-` for stdin.
    pub input: String,
}

/// What virsh does with the rewritten XML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `virsh define`: a persistent guest.
    Define,
    /// `virsh create`: a transient guest, started at once, so its counters are complete from
    /// launch.
    Create,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Define => "define",
            Verb::Create => "create",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOpts {
    pub connect: Option<String>,
    pub all: bool,
    pub dry_run: bool,
    pub domains: Vec<String>,
}

/// `virt-perf-hook define` and `create`: rewrite the XML, then `virsh define` or `virsh create`
/// it; virsh's output and exit status pass through.
pub fn define(ctx: &Ctx, o: &DefineOpts) -> Result<i32> {
    let cfg = ctx.load_config()?;
    let xml = read_input(Some(&o.input))?;
    let virsh = Virsh::from_env(o.connect.clone(), &ctx.paths);
    let target = virsh.target(&cfg)?;
    let result = filter::filter_for(&ctx.paths, &cfg, &xml, None, &target)?;
    let verb = o.verb.as_str();
    result.log(&format!("{verb}: "));
    let text = result.xml().unwrap_or(&xml);
    // On virsh's stdin, not in a file: a file in a shared TMPDIR could be replaced by another
    // user between our write and virsh's read, and root would define their domain.
    let mut args = vec![verb];
    if o.validate {
        args.push("--validate");
    }
    if o.paused {
        args.push("--paused");
    }
    args.extend(["--file", STDIN]);
    let out = virsh.feed(&args, text.as_bytes())?;
    // virsh names the file it read ("Domain 'x' defined from /dev/stdin"): name the user's.
    let label = if o.input == "-" { "-" } else { o.input.as_str() };
    let shown = |b: &[u8]| String::from_utf8_lossy(b).replace(STDIN, label);
    // Like virsh itself: whatever cannot be printed is lost, nothing else to do about it.
    let _ = std::io::stdout().lock().write_all(shown(&out.stdout).as_bytes());
    let _ = std::io::stderr().lock().write_all(shown(&out.stderr).as_bytes());
    match out.status.code() {
        Some(0) => Ok(exit::OK),
        Some(code) => {
            log::warn!("virsh {verb} exited with status {code}; the domain was not {}", past(o.verb));
            Ok(code)
        }
        None => Err(Error::Command {
            what: format!("virsh {verb}"),
            code: exit::FAILURE,
            msg: format!("virsh was killed by a signal; check with 'virsh dominfo' whether the domain was {}", past(o.verb)),
        }),
    }
}

fn past(verb: Verb) -> &'static str {
    match verb {
        Verb::Define => "defined",
        Verb::Create => "created",
    }
}

/// `virt-perf-hook apply`: make the persistent config of existing guests match the config and
/// this host (`virsh dumpxml --inactive`, rewrite, `virsh define`). A running guest keeps its
/// live counters; the new ones start complete at its next start.
pub fn apply(ctx: &Ctx, o: &ApplyOpts) -> Result<i32> {
    let cfg = ctx.load_config()?;
    let virsh = Virsh::from_env(o.connect.clone(), &ctx.paths);
    let targets = if o.all { Targets::All } else { Targets::Named(dedup(&o.domains)) };
    let rows = apply_rows(ctx, &cfg, &virsh, &targets, o.dry_run)?;
    if rows.is_empty() {
        log::warn!("no domains defined{}", virsh.on());
        return Ok(exit::OK);
    }
    for row in &rows {
        row.log(log::Level::Info);
    }
    write_stdout(&render_table(&rows))?;
    let failed = rows.iter().filter(|r| r.result == Verdict::Failed).count();
    if failed > 0 {
        log::warn!("{failed} of {} domain(s) failed; see the table", rows.len());
        return Ok(exit::FAILURE);
    }
    Ok(exit::OK)
}

/// Which guests a sweep covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// Every defined guest.
    All,
    /// Names, UUIDs or IDs, as virsh looks them up.
    Named(Vec<String>),
}

/// The work of `apply` (and of `watch`): one row per guest, each logged. `Err` only when virsh
/// cannot run or libvirt cannot be reached at all; a guest's own failure is its row.
///
/// Batched (see [`batch`](crate::cmd::batch)): one virsh process lists the guests (all, active,
/// transient) and looks up named targets, one asks every guest's name, then in rounds of
/// [`ROUND`] guests one reads their persistent configs and one defines those that change (a
/// phase takes more than one virsh when its command string would pass
/// [`MAX_STRING`](crate::cmd::batch::MAX_STRING)). A sweep over 1000 guests is about twenty
/// virsh processes, where one per call was 2000-4000.
pub(crate) fn apply_rows(ctx: &Ctx, cfg: &Config, virsh: &Virsh, targets: &Targets, dry_run: bool) -> Result<Vec<Row>> {
    let plan = plan::plan(&ctx.paths, cfg, &virsh.target(cfg)?);
    for Dropped { event, reason } in &plan.dropped {
        crate::support::logging::log_once(log::Level::Warn, format!("not enabling {event}: {reason}"));
    }
    let found = find_guests(virsh, targets)?;
    let Some(found) = found else { return Ok(Vec::new()) };
    let mut slots: Vec<Slot> = Vec::with_capacity(found.guests.len());
    for (label, looked_up) in found.guests {
        slots.push(match looked_up {
            Err(msg) => Slot::Done(Row { domain: label, result: Verdict::Failed, detail: msg }),
            Ok(g) if found.transient.contains(&g.uuid) => {
                let detail = "transient: it has no persistent config to change".to_string();
                Slot::Done(Row { domain: g.name, result: Verdict::Skipped, detail })
            }
            Ok(g) if !cfg.domains.selects(&g.name) => Slot::Done(Row { domain: g.name, result: Verdict::Skipped, detail: NOT_SELECTED.into() }),
            Ok(g) => Slot::Pending(g),
        });
    }
    let pending: Vec<usize> = (0..slots.len()).filter(|&i| matches!(slots[i], Slot::Pending(_))).collect();
    for round in pending.chunks(ROUND) {
        apply_round(virsh, cfg, &plan, &mut slots, round, dry_run, &found.active)?;
    }
    let rows: Vec<Row> = slots
        .into_iter()
        .map(|s| match s {
            Slot::Done(row) => row,
            // Every pending guest got its row in its round.
            Slot::Pending(g) => Row { domain: g.name, result: Verdict::Failed, detail: "not handled".into() },
        })
        .collect();
    Ok(rows)
}

/// Guests per round of a sweep: one virsh reads their configs, one defines the changed ones.
/// Each new config waits in a memfd (an open descriptor) for its define: this keeps well under
/// the usual limit of 1024 descriptors, and memory to one round's changed configs.
pub const ROUND: usize = 256;

/// Why a guest outside `domains` is left alone.
const NOT_SELECTED: &str = "not selected by the config's domains include/exclude";

/// What the sweep knows of the guests it covers.
struct Found {
    /// Each target, in order and once per guest: its label (as given, or its UUID for `--all`)
    /// and the guest, or why it could not be looked up.
    guests: Vec<(String, std::result::Result<Guest, String>)>,
    /// UUIDs of the running guests: their change waits for their next start.
    active: HashSet<String>,
    /// UUIDs of the transient guests: no persistent config; defining one makes it persistent.
    transient: HashSet<String>,
}

/// A guest's place in the table: its row, or the guest still to be read.
enum Slot {
    Done(Row),
    Pending(Guest),
}

/// Lists and looks up the targets: one virsh for `list --all --uuid` (or a `dominfo` per named
/// target, which finds a domain by ID, UUID or name as virsh does), `list --uuid` and
/// `list --transient --uuid`; then one for every guest's name (`domname` by UUID, exactly as
/// libvirt has it: one ending in '\r', one that reads as an ID). `None` when there are none.
fn find_guests(virsh: &Virsh, targets: &Targets) -> Result<Option<Found>> {
    let named: &[String] = match targets {
        Targets::All => &[],
        Targets::Named(n) if n.is_empty() => return Ok(None),
        Targets::Named(n) => n,
    };
    let all = matches!(targets, Targets::All);
    let mut calls: Vec<Call> = Vec::with_capacity(3 + named.len());
    if all {
        calls.push(call(&["list", "--all", "--uuid"]));
    }
    calls.push(call(&["list", "--uuid"]));
    calls.push(call(&["list", "--transient", "--uuid"]));
    calls.extend(named.iter().map(|t| call(&["dominfo", "--domain", t])));
    let mut replies = virsh.batch_collect(&calls)?.into_iter();
    let mut list = || virsh.listed(&replies.next().unwrap_or_default());
    let listed = if all { Some(list()?) } else { None };
    let active: HashSet<String> = list()?.into_iter().collect();
    let transient: HashSet<String> = list()?.into_iter().collect();
    let looked_up: Vec<(String, std::result::Result<String, String>)> = match listed {
        Some(uuids) => uuids.into_iter().map(|u| (u.clone(), Ok(u))).collect(),
        None => named.iter().cloned().zip(replies.map(|r| dominfo_uuid(&r))).collect(),
    };
    if looked_up.is_empty() {
        return Ok(None);
    }
    // Each guest once, however often and however it was named.
    let mut seen: HashSet<&str> = HashSet::new();
    let uuids: Vec<&str> = looked_up.iter().filter_map(|(_, u)| u.as_deref().ok()).filter(|u| seen.insert(u)).collect();
    let calls: Vec<Call> = uuids.iter().map(|u| call(&["domname", "--domain", u])).collect();
    let mut names: HashMap<String, std::result::Result<String, String>> = HashMap::with_capacity(uuids.len());
    virsh.batch(&calls, &[], &mut |i, r| {
        // virsh prints the name and a newline; a name never holds a '\n', any other byte is its.
        let name = r.stdout.strip_suffix('\n').unwrap_or(&r.stdout);
        let got = if r.failed() || name.is_empty() { Err(r.message()) } else { Ok(name.to_string()) };
        names.insert(uuids[i].to_string(), got);
        Ok(())
    })?;
    let mut done: HashSet<String> = HashSet::new();
    let mut guests = Vec::with_capacity(looked_up.len());
    for (label, uuid) in looked_up {
        let got = match uuid {
            Err(msg) => Err(msg),
            Ok(uuid) if !done.insert(uuid.clone()) => continue,
            Ok(uuid) => match names.remove(&uuid) {
                Some(Ok(name)) => Ok(Guest { uuid, name }),
                Some(Err(msg)) => Err(msg),
                None => Err("virsh did not say its name".into()),
            },
        };
        guests.push((label, got));
    }
    Ok(Some(Found { guests, active, transient }))
}

/// The UUID in `virsh dominfo` output, or virsh's error.
fn dominfo_uuid(r: &Reply) -> std::result::Result<String, String> {
    let uuid = r.stdout.lines().find_map(|l| l.strip_prefix("UUID:")).map(str::trim).unwrap_or_default();
    if r.failed() || uuid.is_empty() {
        return Err(r.message());
    }
    Ok(uuid.to_string())
}

/// A define to do: the guest's slot, its row's detail, its new config in a memfd.
struct Define {
    slot: usize,
    detail: String,
    new: MemFile,
}

/// One round: reads the configs of the guests in `slots[round]` (one virsh), rewrites each, and
/// defines those that change (one virsh), each new config handed over in a memfd. Fills in their
/// rows.
fn apply_round(
    virsh: &Virsh,
    cfg: &Config,
    plan: &Plan,
    slots: &mut [Slot],
    round: &[usize],
    dry_run: bool,
    active: &HashSet<String>,
) -> Result<()> {
    let guest = |slots: &[Slot], i: usize| match &slots[i] {
        Slot::Pending(g) => g.clone(),
        Slot::Done(_) => unreachable!("only pending guests go into a round"),
    };
    // The persistent config with its secrets (VNC/SPICE passwords), which defining it back
    // must keep: what `virsh edit` does.
    let calls: Vec<Call> =
        round.iter().map(|&i| call(&["dumpxml", "--inactive", "--security-info", "--domain", &guest(slots, i).uuid])).collect();
    let mut defines: Vec<Define> = Vec::new();
    virsh.batch(&calls, &[], &mut |k, reply| {
        let slot = round[k];
        let g = guest(slots, slot);
        let row = |result, detail: String| Slot::Done(Row { domain: g.name.clone(), result, detail });
        slots[slot] = match rewrite_config(cfg, plan, &g, &reply, active.contains(&g.uuid)) {
            Err(done) => Slot::Done(done),
            Ok(Change::None(detail)) => row(Verdict::Ok, detail),
            Ok(Change::New(detail, _)) if dry_run => row(Verdict::WouldChange, detail),
            Ok(Change::New(detail, xml)) => match MemFile::new("virt-perf-hook-domain.xml", xml.as_bytes()) {
                Ok(new) => {
                    defines.push(Define { slot, detail, new });
                    Slot::Pending(g)
                }
                Err(e) => row(Verdict::Failed, format!("cannot hold its new config in memory (memfd_create): {e}")),
            },
        };
        Ok(())
    })?;
    // What each define gave: virsh's error, if any.
    let mut results: Vec<std::result::Result<(), String>> = vec![Ok(()); defines.len()];
    let calls: Vec<Call> = defines.iter().map(|d| call(&["define", "--file", &d.new.path()])).collect();
    let fds: Vec<std::os::fd::RawFd> = defines.iter().map(|d| d.new.fd()).collect();
    virsh.batch(&calls, &fds, &mut |i, reply| {
        if reply.failed() {
            // virsh names the file it read: say what it was.
            results[i] = Err(reply.message().replace(&defines[i].new.path(), "the new config"));
        }
        Ok(())
    })?;
    for (d, res) in defines.into_iter().zip(results) {
        let g = guest(slots, d.slot);
        slots[d.slot] = Slot::Done(match res {
            Ok(()) => Row { domain: g.name, result: Verdict::Changed, detail: d.detail },
            Err(msg) => Row { domain: g.name, result: Verdict::Failed, detail: format!("defining the new config failed: {msg}") },
        });
    }
    Ok(())
}

/// What a guest's config needs.
enum Change {
    /// Nothing; the row's detail.
    None(String),
    /// A new config (ready for `virsh define`) and the row's detail.
    New(String, String),
}

/// The rewrite of one guest's persistent config as `virsh dumpxml` gave it. `Err` is its
/// (failed or skipped) row.
fn rewrite_config(cfg: &Config, plan: &Plan, guest: &Guest, xml: &Reply, running: bool) -> std::result::Result<Change, Row> {
    let row = |result, detail: String| Row { domain: guest.name.clone(), result, detail };
    if xml.failed() || xml.stdout.trim().is_empty() {
        return Err(row(Verdict::Failed, xml.message()));
    }
    let filtered =
        Document::parse(&xml.stdout).and_then(|doc| filter::rewrite_planned(cfg, plan.clone(), &doc, guest.name.clone()));
    let (filtered, outcome) = match filtered {
        Ok(f) => match f.outcome.clone() {
            Some(o) => (f, o),
            None => return Err(row(Verdict::Skipped, NOT_SELECTED.into())),
        },
        Err(e) => return Err(row(Verdict::Failed, format!("cannot read its XML: {e}"))),
    };
    let Some(new) = outcome.xml.as_deref() else {
        let has: Vec<&str> = plan.add.iter().copied().filter(|e| !outcome.kept_disabled.contains(e)).collect();
        let mut parts = vec![if has.is_empty() { "nothing to change".to_string() } else { format!("has {}", has.join(",")) }];
        if !outcome.kept_disabled.is_empty() {
            parts.push(format!("kept disabled {} (existing: respect)", outcome.kept_disabled.join(",")));
        }
        return Ok(Change::None(parts.join("; ")));
    };
    let mut detail = outcome.summary_with(|e| filtered.why_removed(e));
    if running {
        detail.push_str("; ");
        detail.push_str(NEXT_START);
    }
    // libvirt writes a '\r' in a value (a name may end in one) as is, and the XML parser reads a
    // bare '\r' as a newline (a name with one is refused): as a character reference it stays.
    Ok(Change::New(detail, new.replace('\r', "&#13;")))
}

/// Whether `uri` names another host: it has a host part (`qemu+ssh://host2/system`). Local
/// URIs have none (`qemu:///system`, `test:///default`). Anything else, such as a libvirt.conf
/// alias, may point anywhere, so it counts as remote (that only drops hardware events).
pub fn is_remote_uri(uri: &str) -> bool {
    match uri.split_once("://") {
        Some((scheme, rest)) if !scheme.is_empty() => !(rest.is_empty() || rest.starts_with(['/', '?'])),
        _ => true,
    }
}

/// What `apply` did to one guest: the RESULT column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Changed,
    WouldChange,
    Skipped,
    Failed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Changed => "changed",
            Verdict::WouldChange => "would change",
            Verdict::Skipped => "skipped",
            Verdict::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub domain: String,
    pub result: Verdict,
    pub detail: String,
}

impl Row {
    /// One log line: a warning when the guest failed, else at `level`.
    pub fn log(&self, level: log::Level) {
        let name = printable(&self.domain);
        match self.result {
            Verdict::Failed => log::warn!("domain '{name}': {}", self.detail),
            _ => log::log!(level, "domain '{name}': {} ({})", self.result.as_str(), self.detail),
        }
    }
}

/// A guest as libvirt knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    /// What every per-guest virsh call is given: unlike a name, it cannot read as another
    /// guest's ID or UUID.
    pub uuid: String,
    /// What the include/exclude rules and the table see.
    pub name: String,
}

/// Why a running guest's row says its change is not live yet.
pub const NEXT_START: &str = "counters start at the next start (boot, restore or migration)";

/// The libvirt version from `virsh version --daemon`: the daemon's (what actually runs the
/// guests), else the driver API's, else the client library's.
pub fn parse_version(text: &str) -> Option<Version> {
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().last())
            .and_then(|v| v.parse::<Version>().ok())
    };
    field("Running against daemon:").or_else(|| field("Using API:")).or_else(|| field("Using library:"))
}

/// The entries of `virsh list --uuid` (or `--name`), one per line. Split at '\n' only: libvirt
/// refuses a newline in a name but accepts a '\r', which a line reader would drop. Blank lines
/// end lists.
pub fn parse_list(text: &str) -> Vec<String> {
    let names: Vec<String> = text.split('\n').filter(|l| !l.is_empty()).map(str::to_string).collect();
    dedup(&names)
}

pub(crate) fn dedup(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    out
}

/// The DOMAIN / RESULT / DETAIL table.
pub fn render_table(rows: &[Row]) -> String {
    let cells: Vec<[String; 3]> =
        rows.iter().map(|r| [r.domain.clone(), r.result.as_str().to_string(), r.detail.clone()]).collect();
    table(["DOMAIN", "RESULT", "DETAIL"], &cells)
}

/// Why `virsh version --daemon` gave no version: its error, or (when it succeeded) that its
/// output had none.
fn version_failure(out: &Output) -> String {
    if out.success() {
        "it printed no libvirt version".to_string()
    } else {
        out.message()
    }
}

/// A captured virsh run.
pub(crate) struct Output {
    /// `None` when virsh was killed by a signal.
    code: Option<i32>,
    pub stdout: String,
    stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// virsh's error as one line, for the table and messages.
    pub fn message(&self) -> String {
        let err = one_line(&self.stderr);
        let err = err.trim();
        match (err.is_empty(), self.code) {
            (false, _) => err.to_string(),
            (true, Some(c)) => format!("virsh exited with status {c}"),
            (true, None) => "virsh was killed by a signal".to_string(),
        }
    }
}

/// The URI virsh connects to when given no `-c`, by libvirt's rules (virsh(1), libvirt's
/// uri.html): `$VIRSH_DEFAULT_CONNECT_URI`, else `$LIBVIRT_DEFAULT_URI`, else `uri_default` in the
/// client config (`/etc/libvirt/libvirt.conf` for root, else `$XDG_CONFIG_HOME` or
/// `~/.config` + `/libvirt/libvirt.conf`); empty variables count as unset. Returns the URI and
/// where it came from; `None` when libvirt would probe its local drivers.
pub fn default_uri(paths: &Paths) -> Option<(String, String)> {
    for var in ["VIRSH_DEFAULT_CONNECT_URI", "LIBVIRT_DEFAULT_URI"] {
        if let Some(uri) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
            return Some((uri, format!("${var}")));
        }
    }
    let conf = if nix::unistd::geteuid().is_root() {
        paths.host("/etc/libvirt/libvirt.conf")
    } else {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config")))?;
        base.join("libvirt/libvirt.conf")
    };
    let uri = uri_default(&std::fs::read_to_string(&conf).ok()?)?;
    Some((uri, format!("uri_default in {}", conf.display())))
}

/// `uri_default = "…"` (or '…') in a libvirt client config; the first one counts, comments don't.
pub fn uri_default(conf: &str) -> Option<String> {
    conf.lines().find_map(|l| {
        let rest = l.trim_start().strip_prefix("uri_default")?.trim_start().strip_prefix('=')?.trim_start();
        let quote = rest.chars().next().filter(|c| matches!(c, '"' | '\''))?;
        let body = &rest[1..];
        body.find(quote).map(|end| body[..end].to_string())
    })
}

pub(crate) struct Virsh {
    bin: OsString,
    /// Whether the binary came from `$VIRSH` (for the not-found message).
    from_env: bool,
    connect: Option<String>,
    /// The URI virsh will use and where it came from (`--connect`, an environment variable,
    /// libvirt.conf); `None` when libvirt picks a local driver itself.
    uri: Option<(String, String)>,
}

impl Virsh {
    pub fn from_env(connect: Option<String>, paths: &Paths) -> Self {
        let uri = match &connect {
            Some(c) => Some((c.clone(), "--connect".to_string())),
            None => default_uri(paths),
        };
        let (bin, from_env) = match std::env::var_os(VIRSH_ENV).filter(|v| !v.is_empty()) {
            Some(bin) => (bin, true),
            None => ("virsh".into(), false),
        };
        Virsh { bin, from_env, connect, uri }
    }

    /// Whether the URI virsh will use names another host. An alias (no `://`, from
    /// `uri_aliases` in libvirt.conf) is resolved with `virsh uri`; one that cannot be counts
    /// as remote (that only drops hardware events).
    fn is_remote(&self) -> Result<bool> {
        let Some((uri, from)) = &self.uri else { return Ok(false) };
        let remote = if uri.contains("://") {
            is_remote_uri(uri)
        } else {
            // A fixed command word, so virsh's command-string form is harmless here.
            let out = self.run(&["uri"])?;
            let real = out.stdout.trim();
            !out.success() || real.is_empty() || is_remote_uri(real)
        };
        if remote && from != "--connect" {
            log::info!("{from} is {uri}, another host: nothing on this host is probed or cached for it");
        }
        Ok(remote)
    }

    pub(crate) fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(&self.bin);
        if let Some(uri) = &self.connect {
            cmd.arg("-c").arg(uri);
        }
        // A lone argument after the options is a command string (`;` separated, see
        // `batch`): only fixed words and quoted ones go there, never a name as given.
        cmd.args(args);
        cmd
    }

    /// Runs virsh with its output captured, in the C locale so it parses the same everywhere.
    /// `Err` only when virsh cannot be started.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        self.capture(self.command(args))
    }

    /// Runs `cmd` (from [`Virsh::command`]) as [`Virsh::run`] does.
    fn capture(&self, mut cmd: Command) -> Result<Output> {
        log::debug!("running {cmd:?}");
        let out = cmd
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.spawn_error(e))?;
        Ok(Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs virsh with `input` on its stdin and its output captured (for `define`).
    fn feed(&self, args: &[&str], input: &[u8]) -> Result<std::process::Output> {
        log::debug!("running virsh {args:?} with {} bytes on stdin", input.len());
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let mut stdin = child.stdin.take();
        // A virsh that exits without reading everything costs an EPIPE, not a SIGPIPE: Rust's
        // runtime ignores SIGPIPE and the CLI keeps it so.
        let out = std::thread::scope(|s| {
            s.spawn(move || {
                if let Some(w) = stdin.as_mut() {
                    let _ = w.write_all(input);
                }
                drop(stdin);
            });
            child.wait_with_output()
        });
        out.map_err(|e| Error::Other(format!("cannot read virsh's output: {e}")))
    }

    pub(crate) fn spawn_error(&self, e: std::io::Error) -> Error {
        let bin = Path::new(&self.bin).display();
        match (e.kind(), self.from_env) {
            (std::io::ErrorKind::NotFound, false) => {
                Error::Other("virsh not found; install libvirt-clients or set VIRSH".into())
            }
            (std::io::ErrorKind::NotFound, true) => {
                Error::Other(format!("virsh '{bin}' (from $VIRSH) not found; fix VIRSH or unset it"))
            }
            _ => Error::Other(format!("cannot run virsh '{bin}': {e}")),
        }
    }

    /// " on URI" for messages.
    pub fn on(&self) -> String {
        self.uri.as_ref().map(|(u, _)| format!(" on {u}")).unwrap_or_default()
    }

    /// The UUIDs (or names) a `list` command of a batch printed; its failure is an error for the
    /// whole run (libvirt cannot be reached).
    pub fn listed(&self, r: &Reply) -> Result<Vec<String>> {
        if r.failed() {
            return Err(Error::Command { what: format!("virsh list{}", self.on()), code: exit::FAILURE, msg: r.message() });
        }
        Ok(parse_list(&r.stdout))
    }

    /// Whose libvirt the plan is for, with the version from the pin or from the daemon virsh
    /// talks to (outside a hook asking libvirt is safe). For a remote host nothing local
    /// (probe, cache, library files) applies, so its version must come from virsh.
    pub fn target(&self, cfg: &Config) -> Result<Target> {
        let remote = self.is_remote()?;
        let reported = match cfg.libvirt_version {
            Some(version) => Some(Reported { version, source: "config pin".into() }),
            None => self.daemon_version(remote)?,
        };
        Ok(match (remote, reported) {
            (true, Some(r)) => Target::Remote(r),
            (false, Some(r)) if cfg.libvirt_version.is_none() => Target::LocalReported(r),
            _ => Target::Local,
        })
    }

    /// `virsh version --daemon`. A local daemon that does not answer leaves local detection;
    /// a remote one is an error (this host's libvirt says nothing about it).
    fn daemon_version(&self, remote: bool) -> Result<Option<Reported>> {
        let out = self.run(&["version", "--daemon"])?;
        match parse_version(&out.stdout) {
            Some(version) if out.success() => {
                let source = format!("virsh{} version --daemon", self.connect.as_ref().map(|u| format!(" -c {u}")).unwrap_or_default());
                log::debug!("libvirt {version} (from {source})");
                Ok(Some(Reported { version, source }))
            }
            _ if remote => Err(Error::Command {
                what: format!("virsh version{}", self.on()),
                code: exit::FAILURE,
                msg: format!(
                    "{}; cannot tell the remote libvirt version (fix the connection, or set \"libvirt_version\" in the config)",
                    version_failure(&out)
                ),
            }),
            _ => {
                crate::support::logging::log_once(log::Level::Warn, format!(
                    "cannot get the libvirt version from 'virsh version'{} ({}); detecting it locally",
                    self.on(),
                    version_failure(&out)
                ));
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_version() {
        let daemon = "Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\nUsing API: QEMU 9.0.0\nRunning hypervisor: QEMU 7.2.0\nRunning against daemon: 8.0.0\n";
        assert_eq!(parse_version(daemon), Some(Version::new(8, 0, 0)));
        let local = "Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.1.0\nUsing API: TEST 9.0.0\nRunning hypervisor: TEST 0.0.2\n";
        assert_eq!(parse_version(local), Some(Version::new(9, 0, 0)));
        assert_eq!(parse_version("Using library: libvirt 10.10.0\n"), Some(Version::new(10, 10, 0)));
        assert_eq!(parse_version("Running hypervisor: QEMU 7.2.0\n"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn remote_uris() {
        for local in ["qemu:///system", "qemu:///session", "test:///default", "test:///tmp/x.xml", "qemu+unix:///system?socket=/s", "qemu://"] {
            assert!(!is_remote_uri(local), "{local}");
        }
        for remote in ["qemu+ssh://host2/system", "qemu+tcp://h/system", "qemu://h/system", "qemu+ssh://root@h:22/system", "myalias", ""] {
            assert!(is_remote_uri(remote), "{remote}");
        }
    }

    #[test]
    fn uri_default_in_libvirt_conf() {
        let conf = "#uri_default = \"qemu:///session\"\n  uri_default='qemu+ssh://h/system' # remote\nuri_default = \"second\"\n";
        assert_eq!(uri_default(conf), Some("qemu+ssh://h/system".to_string()));
        assert_eq!(uri_default("uri_aliases = [\"a=qemu:///system\"]\n"), None);
        assert_eq!(uri_default("uri_default = qemu:///system\n"), None, "not a string");
    }

    #[test]
    fn names_and_table() {
        assert_eq!(parse_list("a b\n-x\n\na b\ncr\r\n\n"), vec!["a b".to_string(), "-x".to_string(), "cr\r".to_string()]);
        let rows = vec![
            Row { domain: "vm1".into(), result: Verdict::Changed, detail: "enabled page_faults (config)".into() },
            Row { domain: "a\nb".into(), result: Verdict::Skipped, detail: String::new() },
        ];
        assert_eq!(
            render_table(&rows),
            "DOMAIN  RESULT   DETAIL\nvm1     changed  enabled page_faults (config)\na\\nb    skipped\n"
        );
    }

    /// Columns line up on screen: East Asian wide characters take two columns.
    #[test]
    fn table_aligns_wide_names() {
        let rows = vec![
            Row { domain: "虚拟机".into(), result: Verdict::Ok, detail: "has page_faults".into() },
            Row { domain: "vm".into(), result: Verdict::Ok, detail: "has page_faults".into() },
        ];
        assert_eq!(
            render_table(&rows),
            "DOMAIN  RESULT  DETAIL\n虚拟机  ok      has page_faults\nvm      ok      has page_faults\n"
        );
    }
}

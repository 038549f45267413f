//! The `define` and `apply` commands, which talk to libvirt through virsh.
//!
//! libvirt ignores hook output on a plain define/start, so new guests get their events from the
//! `define` wrapper and existing guests from `apply`, which rewrites the persistent config the
//! way `virsh edit` does (dumpxml, rewrite, define). Neither changes a running guest's live
//! counters: enabled there, they would miss its vCPU threads. Domain names are untrusted: they
//! always travel as their own argv entry after `--domain`, never through a shell and never as
//! virsh's single-string command form (which splits on `;`).

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::cmd::{filter, read_input, Ctx};
use crate::core::config::{printable, Config};
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
    let failed = rows.iter().filter(|r| r.result == Outcome::Failed).count();
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
pub(crate) fn apply_rows(ctx: &Ctx, cfg: &Config, virsh: &Virsh, targets: &Targets, dry_run: bool) -> Result<Vec<Row>> {
    let plan = plan::plan(&ctx.paths, cfg, &virsh.target(cfg)?);
    for Dropped { event, reason } in &plan.dropped {
        crate::support::logging::log_once(log::Level::Warn, format!("not enabling {event}: {reason}"));
    }
    // Every target becomes a guest (UUID and name) first: a UUID or an ID must meet the
    // include/exclude rules under the guest's real name, and names are listed by UUID so that
    // any name libvirt accepts (one ending in '\r', one that reads as an ID) comes through.
    let targets: Vec<String> = match targets {
        Targets::All => virsh.list(&["--all", "--uuid"])?,
        Targets::Named(names) => names.clone(),
    };
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    // One call each for all domains: which are active (their change waits for their next
    // start), and which are transient (no persistent config; defining one would make it
    // persistent).
    let active = virsh.list(&["--uuid"])?;
    let transient = virsh.list(&["--transient", "--uuid"])?;
    let mut rows: Vec<Row> = Vec::with_capacity(targets.len());
    let mut seen: Vec<String> = Vec::with_capacity(targets.len());
    for target in &targets {
        let row = match virsh.guest(target)? {
            Ok(g) if seen.contains(&g.uuid) => continue,
            Ok(g) if transient.contains(&g.uuid) => {
                seen.push(g.uuid.clone());
                let detail = "transient: it has no persistent config to change".to_string();
                Row { domain: g.name, result: Outcome::Skipped, detail }
            }
            Ok(g) => {
                seen.push(g.uuid.clone());
                apply_one(virsh, cfg, &plan, &g, dry_run, &active)?
            }
            Err(msg) => Row { domain: target.clone(), result: Outcome::Failed, detail: msg },
        };
        rows.push(row);
    }
    Ok(rows)
}

/// Writes a report to stdout; a reader that went away (`| head`) is not an error.
pub(crate) fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("stdout", "write to", e)),
    }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Changed,
    WouldChange,
    Skipped,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Changed => "changed",
            Outcome::WouldChange => "would change",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub domain: String,
    pub result: Outcome,
    pub detail: String,
}

impl Row {
    /// One log line: a warning when the guest failed, else at `level`.
    pub fn log(&self, level: log::Level) {
        let name = printable(&self.domain);
        match self.result {
            Outcome::Failed => log::warn!("domain '{name}': {}", self.detail),
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

/// What one domain needs. Returns `Err` only when virsh itself cannot run (stop everything);
/// a virsh call that fails makes a `failed` row and the loop goes on.
fn apply_one(virsh: &Virsh, cfg: &Config, plan: &Plan, guest: &Guest, dry_run: bool, active: &[String]) -> Result<Row> {
    let Guest { uuid, name } = guest;
    let row = |result, detail: String| Ok(Row { domain: name.to_string(), result, detail });
    if !cfg.domains.selects(name) {
        return row(Outcome::Skipped, "not selected by the config's domains include/exclude".into());
    }
    // The persistent config with its secrets (VNC/SPICE passwords), which defining it back
    // must keep: what `virsh edit` does.
    let xml = virsh.run(&["dumpxml", "--inactive", "--security-info", "--domain", uuid])?;
    if !xml.success() {
        return row(Outcome::Failed, xml.message());
    }
    let filtered = Document::parse(&xml.stdout).and_then(|doc| filter::rewrite_planned(cfg, plan.clone(), &doc, name.to_string()));
    let (filtered, outcome) = match filtered {
        Ok(f) => match f.outcome.clone() {
            Some(o) => (f, o),
            None => return row(Outcome::Skipped, "not selected by the config's domains include/exclude".into()),
        },
        Err(e) => return row(Outcome::Failed, format!("cannot read its XML: {e}")),
    };
    let Some(new) = outcome.xml.as_deref() else {
        let has: Vec<&str> = plan.add.iter().copied().filter(|e| !outcome.kept_disabled.contains(e)).collect();
        let mut parts = vec![if has.is_empty() { "nothing to change".to_string() } else { format!("has {}", has.join(",")) }];
        if !outcome.kept_disabled.is_empty() {
            parts.push(format!("kept disabled {} (existing: respect)", outcome.kept_disabled.join(",")));
        }
        return row(Outcome::Ok, parts.join("; "));
    };
    let mut detail = outcome.summary_with(|e| filtered.why_removed(e));
    if active.contains(uuid) {
        detail.push_str("; ");
        detail.push_str(NEXT_START);
    }
    if dry_run {
        return row(Outcome::WouldChange, detail);
    }
    // libvirt writes a '\r' in a value (a name may end in one) as is, and the XML parser reads a
    // bare '\r' as a newline (a name with one is refused): as a character reference it stays.
    let new = new.replace('\r', "&#13;");
    // On virsh's stdin, like `define`: nothing another user could swap on the way.
    let out = virsh.feed(&["define", "--file", STDIN], new.as_bytes())?;
    if !out.status.success() {
        let msg = one_line(&String::from_utf8_lossy(&out.stderr));
        return row(Outcome::Failed, format!("defining the new config failed: {}", if msg.is_empty() { format!("virsh exited with {}", out.status) } else { msg }));
    }
    row(Outcome::Changed, detail)
}

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
    render_columns(["DOMAIN", "RESULT", "DETAIL"], &cells)
}

/// A table: columns padded to the widest cell as shown on screen (a CJK character takes two
/// columns), the last one not padded, control characters in cells escaped (names come from
/// guests).
pub fn render_columns<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    use unicode_width::UnicodeWidthStr;
    let cells: Vec<[String; N]> = std::iter::once(header.map(String::from))
        .chain(rows.iter().map(|r| r.clone().map(|c| printable(&c))))
        .collect();
    let widths: Vec<usize> = (0..N).map(|i| cells.iter().map(|c| c[i].width()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < N {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[i].saturating_sub(cell.width()) + 2));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
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
        // Always more than one argv entry after the options: a lone argument would be parsed
        // by virsh as a command string (`;` separated).
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
        use nix::sys::signal::{signal, SigHandler, Signal};
        log::debug!("running virsh {args:?} with {} bytes on stdin", input.len());
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let mut stdin = child.stdin.take();
        // A virsh that exits without reading everything must cost an EPIPE, not a SIGPIPE
        // (the CLI restores SIGPIPE's default so that `events | head` ends quietly).
        // SAFETY: SIG_IGN and SIG_DFL install no handler; nothing else changes SIGPIPE meanwhile.
        let previous = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
        let out = std::thread::scope(|s| {
            s.spawn(move || {
                if let Some(w) = stdin.as_mut() {
                    let _ = w.write_all(input);
                }
                drop(stdin);
            });
            child.wait_with_output()
        });
        if let Ok(handler) = previous {
            // SAFETY: as above; the writer thread has ended.
            let _ = unsafe { signal(Signal::SIGPIPE, handler) };
        }
        out.map_err(|e| Error::Other(format!("cannot read virsh's output: {e}")))
    }

    fn spawn_error(&self, e: std::io::Error) -> Error {
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

    pub fn list(&self, flags: &[&str]) -> Result<Vec<String>> {
        let mut args = vec!["list"];
        args.extend_from_slice(flags);
        let out = self.run(&args)?;
        if !out.success() {
            return Err(Error::Command {
                what: format!("virsh list{}", self.on()),
                code: exit::FAILURE,
                msg: out.message(),
            });
        }
        Ok(parse_list(&out.stdout))
    }

    /// The guest `target` (a name, UUID or ID, looked up the way virsh does) names, or virsh's
    /// error. `Err` only when virsh cannot run.
    fn guest(&self, target: &str) -> Result<std::result::Result<Guest, String>> {
        // dominfo looks a domain up by ID, UUID or name, as perf does (domuuid and domname
        // each skip one of the three).
        let out = self.run(&["dominfo", "--domain", target])?;
        let uuid = out.stdout.lines().find_map(|l| l.strip_prefix("UUID:")).map(str::trim).unwrap_or_default();
        if !out.success() || uuid.is_empty() {
            return Ok(Err(out.message()));
        }
        let uuid = uuid.to_string();
        let out = self.run(&["domname", "--domain", &uuid])?;
        // virsh prints the name and a blank line; a name never holds a '\n', any other byte is its.
        let name = out.stdout.trim_end_matches('\n');
        if !out.success() || name.is_empty() {
            return Ok(Err(out.message()));
        }
        Ok(Ok(Guest { uuid, name: name.to_string() }))
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
                crate::warn_once!(
                    "cannot get the libvirt version from 'virsh version'{} ({}); detecting it locally",
                    self.on(),
                    version_failure(&out)
                );
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
            Row { domain: "vm1".into(), result: Outcome::Changed, detail: "enabled page_faults (config)".into() },
            Row { domain: "a\nb".into(), result: Outcome::Skipped, detail: String::new() },
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
            Row { domain: "虚拟机".into(), result: Outcome::Ok, detail: "has page_faults".into() },
            Row { domain: "vm".into(), result: Outcome::Ok, detail: "has page_faults".into() },
        ];
        assert_eq!(
            render_table(&rows),
            "DOMAIN  RESULT  DETAIL\n虚拟机  ok      has page_faults\nvm      ok      has page_faults\n"
        );
    }
}

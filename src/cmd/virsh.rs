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
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cmd::{filter, read_input, Ctx};
use crate::core::config::{printable, Config};
use crate::core::rewrite::Document;
use crate::core::version::Version;
use crate::host::plan::{self, Dropped, Plan, Reported, Target};
use crate::support::error::{exit, one_line, Error, Result};

/// Overrides the virsh binary (tests, unusual installs).
pub const VIRSH_ENV: &str = "VIRSH";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefineOpts {
    pub connect: Option<String>,
    pub validate: bool,
    /// A file path, or `-` for stdin.
    pub input: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOpts {
    pub connect: Option<String>,
    pub all: bool,
    pub dry_run: bool,
    pub domains: Vec<String>,
}

/// `virt-perf-hook define`: rewrite the XML, then `virsh define` it; virsh's output and exit
/// status pass through.
pub fn define(ctx: &Ctx, o: &DefineOpts) -> Result<i32> {
    let cfg = ctx.load_config()?;
    let xml = read_input(Some(&o.input))?;
    let virsh = Virsh::from_env(o.connect.clone());
    let target = virsh.target(&cfg)?;
    let result = filter::filter_for(&ctx.paths, &cfg, &xml, None, &target)?;
    result.log("define: ");
    let text = result.xml().unwrap_or(&xml);
    let (mut cmd, xml_file) = virsh.define_command(text, o.validate)?;
    let status = cmd.status().map_err(|e| virsh.spawn_error(e))?;
    drop(xml_file);
    match status.code() {
        Some(0) => Ok(exit::OK),
        Some(code) => {
            log::warn!("virsh define exited with status {code}; the domain was not defined");
            Ok(code)
        }
        None => Err(Error::Command {
            what: "virsh define".into(),
            code: exit::FAILURE,
            msg: "virsh was killed by a signal; check with 'virsh dominfo' whether the domain was defined".into(),
        }),
    }
}

/// `virt-perf-hook apply`: make the persistent config of existing guests match the config and
/// this host (`virsh dumpxml --inactive`, rewrite, `virsh define`). A running guest keeps its
/// live counters; the new ones start complete at its next start.
pub fn apply(ctx: &Ctx, o: &ApplyOpts) -> Result<i32> {
    let cfg = ctx.load_config()?;
    let virsh = Virsh::from_env(o.connect.clone());
    let plan = plan::plan_for(&ctx.paths, &cfg, &virsh.target(&cfg)?);
    for Dropped { event, reason } in &plan.dropped {
        log::warn!("not enabling {event}: {reason}");
    }
    let names = if o.all { virsh.list(&["--all", "--name"])? } else { dedup(&o.domains) };
    if names.is_empty() {
        log::warn!("no domains defined{}", virsh.on());
        return Ok(exit::OK);
    }
    // One call each for all domains: which are active (their change waits for their next
    // start), and which are transient (no persistent config; defining one would make it
    // persistent).
    let active = virsh.list(&["--name"])?;
    let transient = virsh.list(&["--transient", "--name"])?;
    let mut rows = Vec::with_capacity(names.len());
    for name in &names {
        let row = if transient.contains(name) {
            let detail = "transient: it has no persistent config to change".to_string();
            Row { domain: name.clone(), result: Outcome::Skipped, detail }
        } else {
            apply_one(&virsh, &cfg, &plan, name, o.dry_run, &active)?
        };
        match row.result {
            Outcome::Failed => log::warn!("domain '{name}': {}", row.detail),
            _ => log::info!("domain '{name}': {} ({})", row.result.as_str(), row.detail),
        }
        rows.push(row);
    }
    write_stdout(&render_table(&rows))?;
    let failed = rows.iter().filter(|r| r.result == Outcome::Failed).count();
    if failed > 0 {
        log::warn!("{failed} of {} domain(s) failed; see the table", rows.len());
        return Ok(exit::FAILURE);
    }
    Ok(exit::OK)
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

/// Why a running guest's row says its change is not live yet.
pub const NEXT_START: &str = "counters start at the next start (boot, restore or migration)";

/// What one domain needs. Returns `Err` only when virsh itself cannot run (stop everything);
/// a virsh call that fails makes a `failed` row and the loop goes on.
fn apply_one(virsh: &Virsh, cfg: &Config, plan: &Plan, name: &str, dry_run: bool, active: &[String]) -> Result<Row> {
    let row = |result, detail: String| Ok(Row { domain: name.to_string(), result, detail });
    if !cfg.domains.selects(name) {
        return row(Outcome::Skipped, "not selected by the config's domains include/exclude".into());
    }
    // The persistent config with its secrets (VNC/SPICE passwords), which defining it back
    // must keep: what `virsh edit` does.
    let xml = virsh.run(&["dumpxml", "--inactive", "--security-info", "--domain", name])?;
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
    if active.iter().any(|n| n == name) {
        detail.push_str("; ");
        detail.push_str(NEXT_START);
    }
    if dry_run {
        return row(Outcome::WouldChange, detail);
    }
    let (cmd, xml_file) = virsh.define_command(new, false)?;
    let out = virsh.capture(cmd)?;
    drop(xml_file);
    if !out.success() {
        return row(Outcome::Failed, format!("defining the new config failed: {}", out.message()));
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

/// Names from `virsh list --name`, one per line (names may hold spaces; blank lines end lists).
pub fn parse_names(text: &str) -> Vec<String> {
    let names: Vec<String> = text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect();
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

/// A table: columns padded to the widest cell, the last one not padded, control characters in
/// cells escaped (names come from guests).
pub fn render_columns<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let cells: Vec<[String; N]> = std::iter::once(header.map(String::from))
        .chain(rows.iter().map(|r| r.clone().map(|c| printable(&c))))
        .collect();
    let widths: Vec<usize> = (0..N).map(|i| cells.iter().map(|c| c[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < N {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
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

pub(crate) struct Virsh {
    bin: OsString,
    /// Whether the binary came from `$VIRSH` (for the not-found message).
    from_env: bool,
    connect: Option<String>,
}

impl Virsh {
    pub fn from_env(connect: Option<String>) -> Self {
        match std::env::var_os(VIRSH_ENV).filter(|v| !v.is_empty()) {
            Some(bin) => Virsh { bin, from_env: true, connect },
            None => Virsh { bin: "virsh".into(), from_env: false, connect },
        }
    }

    fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
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

    /// `virsh define` of `xml`, and the file it reads (keep it until the command has run). The
    /// one place that hands XML to virsh: a private file rather than /dev/stdin works for every
    /// virsh and leaves stdin alone.
    fn define_command(&self, xml: &str, validate: bool) -> Result<(Command, TempFile)> {
        let file = TempFile::create(xml)?;
        let mut args: Vec<OsString> = vec!["define".into()];
        if validate {
            args.push("--validate".into());
        }
        args.push("--file".into());
        args.push(file.path().into());
        Ok((self.command(&args), file))
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
        self.connect.as_ref().map(|u| format!(" on {u}")).unwrap_or_default()
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
        Ok(parse_names(&out.stdout))
    }

    /// Whose libvirt the plan is for, with the version from the pin or from the daemon virsh
    /// talks to (outside a hook asking libvirt is safe). For a remote host nothing local
    /// (probe, cache, library files) applies, so its version must come from virsh.
    pub fn target(&self, cfg: &Config) -> Result<Target> {
        let remote = self.connect.as_deref().is_some_and(is_remote_uri);
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
                log::info!("libvirt {version} (from {source})");
                Ok(Some(Reported { version, source }))
            }
            _ if remote => Err(Error::Command {
                what: format!("virsh version{}", self.on()),
                code: exit::FAILURE,
                msg: format!(
                    "{}; cannot tell the remote libvirt version (fix the connection, or set \"libvirt_version\" in the config)",
                    out.message()
                ),
            }),
            _ => {
                log::warn!(
                    "cannot get the libvirt version from 'virsh version'{} ({}); detecting it locally",
                    self.on(),
                    out.message()
                );
                Ok(None)
            }
        }
    }
}

/// A 0600 file in `$TMPDIR`, created exclusively (no symlink games) and removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn create(text: &str) -> Result<TempFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::env::temp_dir();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let mut last = None;
        for attempt in 0..100u32 {
            let path = dir.join(format!("virt-perf-hook-{}-{nanos:09}-{attempt}.xml", std::process::id()));
            match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
                Ok(mut f) => {
                    let tmp = TempFile(path);
                    f.write_all(text.as_bytes()).map_err(|e| Error::io(&tmp.0, "write", e))?;
                    return Ok(tmp);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(Error::io(&path, "create (set TMPDIR to a writable directory)", e)),
            }
        }
        let e = last.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::AlreadyExists));
        Err(Error::io(dir, "create a temporary file in", e))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
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
    fn names_and_table() {
        assert_eq!(parse_names("a b\n-x\n\na b\n"), vec!["a b".to_string(), "-x".to_string()]);
        let rows = vec![
            Row { domain: "vm1".into(), result: Outcome::Changed, detail: "enabled page_faults (config)".into() },
            Row { domain: "a\nb".into(), result: Outcome::Skipped, detail: String::new() },
        ];
        assert_eq!(
            render_table(&rows),
            "DOMAIN  RESULT   DETAIL\nvm1     changed  enabled page_faults (config)\na\\nb    skipped\n"
        );
    }

    #[test]
    fn temp_file_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let t = TempFile::create("<domain/>").unwrap();
        let p = t.path().to_path_buf();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "<domain/>");
        drop(t);
        assert!(!p.exists());
    }
}

//! The virsh process: where it is, which URI it uses, and how long it may take.
//!
//! Every virsh runs in a process group of its own under a watchdog. A virsh that prints nothing
//! for [`timeout`] (a frozen daemon, a dead network) is killed with its whole group (an ssh
//! transport included) and the call fails with one line naming it and the limit. A batch
//! counts each reply as progress, so a long sweep is bounded per answer, not in total.
//! Every live group is registered, so [`stop_all`] ends them from outside the signal handler
//! (`watch`'s shutdown).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use crate::core::version::Version;
use crate::support::error::{exit, one_line, Error, Result};
use crate::support::paths::Paths;

/// Overrides the virsh binary (tests, unusual installs).
pub const VIRSH_ENV: &str = "VIRSH";

/// How long a virsh may go without answering, unless `--timeout` says otherwise. Generous: a
/// healthy daemon answers in milliseconds, a loaded one with a thousand guests in a few seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

static TIMEOUT_MS: AtomicU64 = AtomicU64::new(DEFAULT_TIMEOUT.as_millis() as u64);
/// Set by [`stop_all`]: no new virsh is started.
static STOPPING: AtomicBool = AtomicBool::new(false);
/// Process groups of the running virsh processes.
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Sets the bound on every virsh call of this process (`--timeout`).
pub fn set_timeout(limit: Duration) {
    TIMEOUT_MS.store(limit.as_millis().max(1) as u64, Ordering::Relaxed);
}

/// The bound on every virsh call: how long one may go without answering.
pub fn timeout() -> Duration {
    Duration::from_millis(TIMEOUT_MS.load(Ordering::Relaxed))
}

/// Ends every virsh this process runs (SIGTERM to each group) and refuses to start more.
pub fn stop_all() {
    STOPPING.store(true, Ordering::SeqCst);
    for &pgid in GROUPS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGTERM);
    }
}

/// Forgets a group started with [`Virsh::spawn_unbounded`] once it has been reaped.
pub fn forget_group(pgid: i32) {
    GROUPS.lock().unwrap_or_else(|e| e.into_inner()).retain(|&g| g != pgid);
}

/// Where the URI virsh uses came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriSource {
    /// `-C/--connect` (or `watch`'s own default).
    Connect,
    /// An environment variable (its name).
    Env(&'static str),
    /// `uri_default` in a libvirt client config (its path).
    ClientConfig(String),
}

impl std::fmt::Display for UriSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UriSource::Connect => f.write_str("--connect"),
            UriSource::Env(var) => write!(f, "${var}"),
            UriSource::ClientConfig(path) => write!(f, "uri_default in {path}"),
        }
    }
}

/// The URI virsh will use and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    pub uri: String,
    pub source: UriSource,
}

/// The URI virsh connects to when given no `-c`, by libvirt's rules (virsh(1), libvirt's
/// uri.html): `$VIRSH_DEFAULT_CONNECT_URI`, else `$LIBVIRT_DEFAULT_URI`, else `uri_default` in the
/// client config (`/etc/libvirt/libvirt.conf` for root, else `$XDG_CONFIG_HOME` or
/// `~/.config` + `/libvirt/libvirt.conf`); empty variables count as unset. `None` when libvirt
/// would probe its local drivers.
pub fn default_uri(paths: &Paths) -> Option<Uri> {
    for var in ["VIRSH_DEFAULT_CONNECT_URI", "LIBVIRT_DEFAULT_URI"] {
        if let Some(uri) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
            return Some(Uri { uri, source: UriSource::Env(var) });
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
    Some(Uri { uri, source: UriSource::ClientConfig(conf.display().to_string()) })
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

/// Whether `uri` names another host: it has a host part (`qemu+ssh://host2/system`). Local
/// URIs have none (`qemu:///system`, `test:///default`). Anything else, such as a libvirt.conf
/// alias, may point anywhere, so it counts as remote (that only drops hardware events).
pub fn is_remote_uri(uri: &str) -> bool {
    match uri.split_once("://") {
        Some((scheme, rest)) if !scheme.is_empty() => !(rest.is_empty() || rest.starts_with(['/', '?'])),
        _ => true,
    }
}

/// A captured virsh run.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// `None` when virsh was killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
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

/// The daemon's libvirt version, and how it was asked (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonVersion {
    pub version: Version,
    pub source: String,
}

/// A way to run virsh against one connection.
#[derive(Debug, Clone)]
pub struct Virsh {
    bin: OsString,
    /// Whether the binary came from `$VIRSH` (for the not-found message).
    from_env: bool,
    connect: Option<String>,
    /// `None` when libvirt picks a local driver itself.
    uri: Option<Uri>,
}

/// A spawned virsh under its watchdog; [`Running::finish`] reaps it.
pub(crate) struct Running {
    pub child: Child,
    dog: Watchdog,
    what: String,
}

impl Virsh {
    pub fn from_env(connect: Option<String>, paths: &Paths) -> Self {
        let uri = match &connect {
            Some(c) => Some(Uri { uri: c.clone(), source: UriSource::Connect }),
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
    pub fn is_remote(&self) -> Result<bool> {
        let Some(Uri { uri, source }) = &self.uri else { return Ok(false) };
        let remote = if uri.contains("://") {
            is_remote_uri(uri)
        } else {
            let out = self.run(&["uri"])?;
            let real = out.stdout.trim();
            !out.success() || real.is_empty() || is_remote_uri(real)
        };
        if remote && *source != UriSource::Connect {
            log::info!("{source} is {uri}, another host: nothing on this host is probed or cached for it");
        }
        Ok(remote)
    }

    /// `virsh [-c URI] ARGS` in the C locale (so its output parses the same everywhere). A lone
    /// argument after the options is a command string (`;` separated, see `batch`): only fixed
    /// words and quoted ones go there, never a name as given.
    pub(crate) fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(&self.bin);
        if let Some(uri) = &self.connect {
            cmd.arg("-c").arg(uri);
        }
        cmd.args(args).env("LC_ALL", "C");
        cmd
    }

    /// Starts `cmd` in a process group of its own, under the watchdog. `what` names the call in
    /// a timeout's message.
    pub(crate) fn spawn(&self, mut cmd: Command, what: &str) -> Result<Running> {
        use std::os::unix::process::CommandExt;
        if STOPPING.load(Ordering::SeqCst) {
            return Err(Error::Other("stopping: no new virsh is started".into()));
        }
        cmd.process_group(0);
        let child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        let pgid = child.id() as i32;
        GROUPS.lock().unwrap_or_else(|e| e.into_inner()).push(pgid);
        Ok(Running { child, dog: Watchdog::start(pgid, timeout()), what: format!("virsh {what}{}", self.on()) })
    }

    /// Starts a virsh that runs until it is stopped (`event --loop`): registered for
    /// [`stop_all`], but not bounded.
    pub(crate) fn spawn_unbounded(&self, args: &[&str]) -> Result<Child> {
        use std::os::unix::process::CommandExt;
        if STOPPING.load(Ordering::SeqCst) {
            return Err(Error::Other("stopping: no new virsh is started".into()));
        }
        let mut cmd = self.command(args);
        cmd.process_group(0).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        GROUPS.lock().unwrap_or_else(|e| e.into_inner()).push(child.id() as i32);
        Ok(child)
    }

    /// Runs virsh with its output captured. `Err` when virsh cannot be started or does not
    /// answer within the bound.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        self.exchange(args, None)
    }

    /// Runs virsh with `input` on its stdin and its output captured (for `define`).
    pub fn feed(&self, args: &[&str], input: &[u8]) -> Result<Output> {
        self.exchange(args, Some(input))
    }

    fn exchange(&self, args: &[&str], input: Option<&[u8]>) -> Result<Output> {
        log::debug!("running virsh {args:?}");
        let mut cmd = self.command(args);
        cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
        let what = args.first().copied().unwrap_or("");
        let mut run = self.spawn(cmd, what)?;
        let stdin = run.child.stdin.take();
        let mut stdout = run.child.stdout.take();
        let mut stderr = run.child.stderr.take();
        // A virsh that exits without reading everything costs an EPIPE, not a SIGPIPE: Rust's
        // runtime ignores SIGPIPE and the CLI keeps it so.
        let (out, err) = std::thread::scope(|s| {
            if let (Some(mut w), Some(bytes)) = (stdin, input) {
                // Closed when written: virsh reads to the end of its stdin.
                s.spawn(move || {
                    let _ = w.write_all(bytes);
                });
            }
            let err = s.spawn(|| read_all(stderr.as_mut()));
            let out = read_all(stdout.as_mut());
            (out, err.join().unwrap_or_default())
        });
        let code = run.finish()?;
        Ok(Output { code, stdout: out, stderr: err })
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
        self.uri.as_ref().map(|u| format!(" on {}", u.uri)).unwrap_or_default()
    }

    /// `virsh version --daemon`: the version, or why there is none.
    pub fn daemon_version(&self) -> Result<std::result::Result<DaemonVersion, String>> {
        let out = self.run(&["version", "--daemon"])?;
        Ok(match crate::libvirt::parse::version(&out.stdout) {
            Some(version) if out.success() => {
                let source = format!("virsh{} version --daemon", self.connect.as_ref().map(|u| format!(" -c {u}")).unwrap_or_default());
                Ok(DaemonVersion { version, source })
            }
            _ if out.success() => Err("it printed no libvirt version".to_string()),
            _ => Err(out.message()),
        })
    }
}

fn read_all(r: Option<&mut impl Read>) -> String {
    let mut buf = Vec::new();
    if let Some(r) = r {
        let _ = r.read_to_end(&mut buf);
    }
    String::from_utf8(buf).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl Running {
    /// Tells the watchdog the process answered: its clock starts again.
    pub fn progress(&self) {
        self.dog.kick();
    }

    /// Kills the group now (the caller gave up on it).
    pub fn kill(&mut self) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGKILL);
    }

    /// Reaps the process: its exit code (`None`: a signal), or the timeout error.
    pub fn finish(mut self) -> Result<Option<i32>> {
        let status = self.child.wait();
        let fired = self.dog.stop();
        let pgid = self.child.id() as i32;
        GROUPS.lock().unwrap_or_else(|e| e.into_inner()).retain(|&g| g != pgid);
        if fired {
            return Err(timeout_error(&self.what));
        }
        let status = status.map_err(|e| Error::Other(format!("cannot wait for virsh: {e}")))?;
        Ok(status.code())
    }
}

/// The one line for a virsh that did not answer in time.
pub fn timeout_error(what: &str) -> Error {
    let limit = timeout();
    let secs = if limit.subsec_millis() == 0 { format!("{}s", limit.as_secs()) } else { format!("{:.1}s", limit.as_secs_f64()) };
    Error::Command {
        what: what.to_string(),
        code: exit::FAILURE,
        msg: format!("no answer within {secs}, killed (is libvirtd frozen or unreachable? the limit is --timeout SECONDS)"),
    }
}

/// Kills a process group that goes `limit` without progress.
struct Watchdog {
    tx: Option<mpsc::Sender<()>>,
    fired: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(pgid: i32, limit: Duration) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let fired = Arc::new(AtomicBool::new(false));
        let flag = fired.clone();
        let thread = std::thread::spawn(move || loop {
            match rx.recv_timeout(limit) {
                Ok(()) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    flag.store(true, Ordering::SeqCst);
                    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
                    return;
                }
            }
        });
        Watchdog { tx: Some(tx), fired, thread: Some(thread) }
    }

    fn kick(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(());
        }
    }

    /// Disarms it; whether it had fired.
    fn stop(&mut self) -> bool {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_silent_process_group_is_killed_at_the_bound() {
        let mut cmd = Command::new("sh");
        // A grandchild holding the pipe open: only killing the group ends the read.
        cmd.args(["-c", "sleep 30 & sleep 30"]).stdin(Stdio::null()).stdout(Stdio::piped());
        let v = Virsh { bin: "sh".into(), from_env: false, connect: None, uri: None };
        let started = std::time::Instant::now();
        let mut run = {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
            let child = cmd.spawn().unwrap();
            let pgid = child.id() as i32;
            Running { child, dog: Watchdog::start(pgid, Duration::from_millis(300)), what: "virsh uri".into() }
        };
        let _ = read_all(run.child.stdout.as_mut());
        let err = run.finish().unwrap_err().to_string();
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(err.starts_with("virsh uri: no answer within"), "{err}");
        let _ = v;
    }
}

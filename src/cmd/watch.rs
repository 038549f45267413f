//! `watch`: keep every persistent guest's config matching the config file, whoever defines it
//! (virt-install, virt-manager, cockpit, Terraform, a plain `virsh define`).
//!
//! Events come from `virsh event --loop --event lifecycle` (see [`libvirt`](crate::libvirt) for
//! why virsh), parsed by [`libvirt::event`](crate::libvirt::event). virsh exits when the daemon
//! goes away and never reconnects, so this loop restarts it with a capped backoff and sweeps
//! everything again after each reconnect (events during the outage are lost).
//!
//! Changes go through the shared [`sweep`](crate::cmd::sweep): `virsh perf … --config`, which
//! emits no lifecycle event, so a fix does not echo back. A burst (a script defining hundreds of
//! guests) is coalesced: lines are gathered until the stream is quiet for [`QUIET`] (at most
//! [`GATHER`]) and every guest they name is fixed in one batched sweep.
//!
//! One watcher per connection: each binds the abstract Unix socket named after its URI; a
//! second one finds the name taken and exits with [`ALREADY_WATCHING`]. Abstract names need no
//! file (none to plant or leave stale) and vanish with the process.
//!
//! Signals are not handled inside a handler: the handler writes the signal's number to a pipe,
//! a thread turns it into a message for the main loop, and on SIGTERM/SIGINT first ends every
//! virsh (so a sweep in progress returns at once).

use std::collections::HashSet;
use std::io::{BufReader, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Child;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::cmd::sweep::{self, Targets, Verdict};
use crate::cmd::Ctx;
use crate::core::config::Config;
use crate::core::rewrite::Document;
use crate::libvirt::event::{self, Event, Line};
use crate::libvirt::{self as lv, Virsh, Xml};
use crate::support::error::{one_line, Error, Result};
use crate::support::text::printable;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchOpts {
    /// `None`: [`DEFAULT_URI`].
    pub connect: Option<String>,
}

/// What `watch` connects to without `--connect`: the system QEMU driver, whatever
/// `$LIBVIRT_DEFAULT_URI` or libvirt.conf's `uri_default` say (a service should not follow them).
pub const DEFAULT_URI: &str = "qemu:///system";

/// Exit status of a second `watch` on a connection that already has one.
pub const ALREADY_WATCHING: i32 = 5;

/// The longest wait between reconnect attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A burst has ended when no line came for this long...
pub const QUIET: Duration = Duration::from_millis(50);
/// ...or when it has been gathered for this long (a steady stream still gets fixed).
pub const GATHER: Duration = Duration::from_millis(300);

/// `virt-perf-hook watch`: runs until SIGTERM or SIGINT (exit 0). An invalid config at start is
/// a config error (exit 3); one found on SIGHUP keeps the last good config.
pub fn watch(ctx: &Ctx, o: &WatchOpts) -> Result<i32> {
    let cfg = ctx.load_config()?;
    let uri = o.connect.clone().unwrap_or_else(|| DEFAULT_URI.to_string());
    let _lock = match lock(&uri) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("virt-perf-hook: {e}");
            return Ok(ALREADY_WATCHING);
        }
    };
    let (tx, rx) = mpsc::channel::<Input>();
    install_signals(tx.clone())?;
    let virsh = Virsh::from_env(Some(uri), &ctx.paths);
    let mut stream = VirshStream { virsh: virsh.clone() };
    let mut guests = Sweeper { ctx, cfg, virsh };
    run_loop(&mut stream, &mut guests, BACKOFF_CAP, (tx, rx), None);
    Ok(crate::support::error::exit::OK)
}

/// Takes the connection's name in the abstract socket namespace; `Err` when another watcher has it.
fn lock(uri: &str) -> Result<std::os::unix::net::UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    // Names are at most 107 bytes: a long URI is shortened to a hash.
    let key = if uri.len() <= 64 { uri.to_string() } else { format!("{:016x}", fnv(uri.as_bytes())) };
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(format!("virt-perf-hook/watch/{key}"))
        .map_err(|e| Error::Other(format!("cannot name the watch lock: {e}")))?;
    std::os::unix::net::UnixListener::bind_addr(&addr).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => Error::Other(format!(
            "another 'virt-perf-hook watch' already watches {uri} (virt-perf-hook.service?); only one may run per connection"
        )),
        _ => Error::Other(format!("cannot take the watch lock for {uri}: {e}")),
    })
}

/// FNV-1a: a stable short key for a long URI.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3))
}

/// What the main loop waits for.
#[derive(Debug)]
pub enum Input {
    /// A line of the event stream `generation`.
    Line(usize, Line),
    /// The event stream `generation` ended.
    End(usize),
    Reload,
    Stop,
}

/// The write end of the self-pipe, for the handler.
static PIPE: AtomicI32 = AtomicI32::new(-1);

/// SIGTERM, SIGINT and SIGHUP write their number to a pipe; a thread reads it and tells the
/// main loop (after ending every virsh, for a stop).
fn install_signals(tx: mpsc::Sender<Input>) -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe().map_err(|e| Error::Other(format!("cannot create a pipe: {e}")))?;
    PIPE.store(w.as_raw_fd(), Ordering::SeqCst);
    std::mem::forget(w); // the handler writes to it for the life of the process
    extern "C" fn on_signal(sig: nix::libc::c_int) {
        let byte = sig as u8;
        // SAFETY: write(2) is async-signal-safe; the fd stays open for the process's life.
        unsafe {
            nix::libc::write(PIPE.load(Ordering::SeqCst), (&byte as *const u8).cast(), 1);
        }
    }
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: the handler only calls write(2).
        unsafe { sigaction(sig, &action) }.map_err(|e| Error::Other(format!("cannot handle {sig}: {e}")))?;
    }
    std::thread::spawn(move || {
        let mut pipe = std::fs::File::from(r);
        let mut b = [0u8; 1];
        while pipe.read_exact(&mut b).is_ok() {
            if i32::from(b[0]) == Signal::SIGHUP as i32 {
                let _ = tx.send(Input::Reload);
            } else {
                lv::stop_all();
                let _ = tx.send(Input::Stop);
            }
        }
    });
    Ok(())
}

/// The real [`Guests`]: the shared sweep, logged one line per change.
struct Sweeper<'a> {
    ctx: &'a Ctx,
    cfg: Config,
    virsh: Virsh,
}

impl Sweeper<'_> {
    fn apply(&mut self, targets: &Targets) -> Result<()> {
        let plan = sweep::plan_for(&self.ctx.paths, &self.cfg, &self.virsh)?;
        let rows = sweep::sweep(&self.cfg, &plan, &self.virsh, targets, false)?;
        for row in &rows {
            match row.result {
                Verdict::Changed => row.log(log::Level::Info),
                // A guest undefined or renamed between its event and the fix: nothing to say.
                Verdict::Failed if row.detail.contains("failed to get domain") => {
                    log::debug!("domain '{}': gone before its fix ({})", printable(&row.domain), row.detail)
                }
                Verdict::Failed => row.log(log::Level::Warn),
                _ => row.log(log::Level::Debug),
            }
        }
        Ok(())
    }
}

/// A name that virsh could read as an ID or a UUID of another guest: such a guest is found by
/// a sweep (which goes by UUID), never looked up by name.
fn ambiguous(name: &str) -> bool {
    let uuidish = name.len() == 36 && name.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    let idish = !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit());
    uuidish || idish
}

impl Guests for Sweeper<'_> {
    fn sweep(&mut self) -> Result<()> {
        // Is libvirt there at all? Asked first so that an outage is one line (the loop's), not
        // also the version lookup's fallback warning.
        let out = self.virsh.run(&["uri"])?;
        if !out.success() {
            return Err(Error::Command { what: format!("virsh{}", self.virsh.on()), code: 1, msg: out.message() });
        }
        self.apply(&Targets::All)
    }

    fn fix(&mut self, domains: &[String]) -> Result<()> {
        if domains.iter().any(|d| ambiguous(d)) {
            return self.sweep();
        }
        self.apply(&Targets::Named(domains.to_vec()))
    }

    fn started(&mut self, domain: &str) {
        if ambiguous(domain) || !self.cfg.domains.selects(domain) {
            return;
        }
        let Ok(target) = sweep::target(&self.virsh, &self.cfg) else { return };
        let want = crate::host::plan::plan(&self.ctx.paths, &self.cfg, &target).add;
        let Ok(replies) = self.virsh.batch_collect(&[lv::dumpxml(domain, Xml::Live)]) else { return };
        let Some(reply) = replies.first().filter(|r| !r.failed()) else { return };
        let Ok(doc) = Document::parse(&reply.stdout) else { return };
        let live = doc.perf_events();
        let missing: Vec<&str> =
            want.iter().copied().filter(|e| !live.iter().any(|(n, en)| n == e && *en == Some("yes"))).collect();
        if !missing.is_empty() {
            log::info!(
                "domain '{}' started without {}: its counters start at its next start (boot, restore or migration)",
                printable(domain),
                missing.join(",")
            );
        }
    }

    fn reload(&mut self) {
        match self.ctx.load_config() {
            Ok(cfg) => {
                log::info!("config {} read again", self.ctx.config_path.display());
                // What the new config drops (and the cache's state) is said again, once.
                crate::support::logging::forget_logged_once();
                self.cfg = cfg;
            }
            Err(e) => log::error!("{e}; keeping the last good config"),
        }
    }
}

/// What a line asks of the watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A persistent config was added, changed or renamed: make it match.
    Fix(String),
    /// A guest started: its counters are complete only if it launched with the events.
    Started(String),
    /// Nothing to do (stopped, undefined, suspended, …).
    Ignore,
    /// A line that does not parse (a name with a newline, a format change): never guess.
    Sweep,
}

/// The action for one line.
pub fn action(line: &Line) -> Action {
    match line {
        Line::Noise => Action::Ignore,
        Line::Unparsable(_) => Action::Sweep,
        // Any detail, known or not (snapshot reverts redefine too): when unsure, fix.
        Line::Lifecycle(l) if l.event == Event::Defined => Action::Fix(l.domain.clone()),
        Line::Lifecycle(l) if l.event == Event::Started => Action::Started(l.domain.clone()),
        Line::Lifecycle(_) => Action::Ignore,
    }
}

/// The work the loop drives; the real one is the shared sweep, tests use a recorder.
pub trait Guests {
    /// Every persistent guest (start-up and every reconnect). `Err` when libvirt cannot be
    /// reached at all; a single guest's failure is logged inside and is not an error.
    fn sweep(&mut self) -> Result<()>;
    /// These guests' persistent configs, by name, in one batch. `Err` as for `sweep`.
    fn fix(&mut self, domains: &[String]) -> Result<()>;
    /// A guest started; says once if it launched without the configured events.
    fn started(&mut self, domain: &str);
    /// SIGHUP: read the config again (a sweep follows).
    fn reload(&mut self);
}

/// Reconnect delays: 1 s doubling to a cap, reset once connected.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    pub fn new(cap: Duration) -> Self {
        Backoff { next: Duration::from_secs(1).min(cap), cap }
    }

    /// The delay before the next try; the one after it doubles, up to the cap.
    pub fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.cap);
        d
    }

    pub fn reset(&mut self) {
        self.next = Duration::from_secs(1).min(self.cap);
    }
}

/// How the event stream is started; a fake in tests.
pub trait Stream {
    fn spawn(&mut self) -> Result<Child>;
}

/// `virsh [-c URI] event --loop --event lifecycle`.
pub struct VirshStream {
    pub virsh: Virsh,
}

impl Stream for VirshStream {
    fn spawn(&mut self) -> Result<Child> {
        self.virsh.spawn_unbounded(&["event", "--loop", "--event", "lifecycle"])
    }
}

/// Why the loop stopped: a stop request, or (tests) `max_streams` reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    pub streams: usize,
}

/// Runs the watch loop on `inbox` (signals arrive there too). `max_streams` bounds how many event
/// streams it starts (tests); `None` runs until stopped.
pub fn run_loop(
    stream: &mut dyn Stream,
    guests: &mut dyn Guests,
    cap: Duration,
    inbox: (mpsc::Sender<Input>, mpsc::Receiver<Input>),
    max_streams: Option<usize>,
) -> Stopped {
    let (tx, rx) = inbox;
    let mut backoff = Backoff::new(cap);
    // An outage is logged when it starts and when it ends, not at every try.
    let mut outage: Option<(Instant, String)> = None;
    let mut streams = 0;
    let mut warned_started: HashSet<String> = HashSet::new();
    let mut state = Loop { guests, rx: &rx, warned_started: &mut warned_started };
    loop {
        if max_streams.is_some_and(|m| streams >= m) {
            return Stopped { streams };
        }
        streams += 1;
        let generation = streams;
        let mut child = match stream.spawn() {
            Ok(c) => c,
            Err(e) => {
                down(&mut outage, e.to_string());
                if state.pause(backoff.delay()) {
                    return Stopped { streams };
                }
                continue;
            }
        };
        // Lines are read on a thread so the sweep below runs while events queue up: nothing
        // defined during the sweep is missed.
        let stdout = child.stdout.take();
        let lines_tx = tx.clone();
        let reader = std::thread::spawn(move || {
            if let Some(out) = stdout {
                for line in event::lines(BufReader::new(out)) {
                    if lines_tx.send(Input::Line(generation, line)).is_err() {
                        return;
                    }
                }
            }
            let _ = lines_tx.send(Input::End(generation));
        });
        let why = match state.guests.sweep() {
            Ok(()) => {
                if let Some((since, _)) = outage.take() {
                    log::warn!("libvirt reachable again after {}s; swept all guests", since.elapsed().as_secs());
                } else {
                    log::info!("watching lifecycle events; swept all guests");
                }
                backoff.reset();
                match state.follow(generation) {
                    Follow::Stop => None,
                    Follow::Ended => Some(finish(&mut child)),
                    Follow::Failed(e) => Some(e),
                }
            }
            Err(e) => Some(e.to_string()),
        };
        stop(&mut child);
        let _ = reader.join();
        let Some(why) = why else { return Stopped { streams } };
        down(&mut outage, why);
        if state.pause(backoff.delay()) {
            return Stopped { streams };
        }
    }
}

/// How following a stream ended.
enum Follow {
    Stop,
    /// virsh ended (the daemon went away).
    Ended,
    /// A fix could not reach libvirt (frozen, gone): reconnect.
    Failed(String),
}

struct Loop<'a> {
    guests: &'a mut dyn Guests,
    rx: &'a mpsc::Receiver<Input>,
    warned_started: &'a mut HashSet<String>,
}

impl Loop<'_> {
    /// Handles the stream `generation` until it ends, a fix fails or a stop arrives.
    fn follow(&mut self, generation: usize) -> Follow {
        loop {
            let first = match self.rx.recv() {
                Ok(i) => i,
                Err(_) => return Follow::Stop,
            };
            let mut lines = Vec::new();
            let mut ended = false;
            match first {
                Input::Stop => return Follow::Stop,
                Input::Reload => {
                    if let Err(e) = self.reload() {
                        return Follow::Failed(e.to_string());
                    }
                    continue;
                }
                Input::End(g) if g == generation => return Follow::Ended,
                Input::Line(g, l) if g == generation => lines.push(l),
                _ => continue, // an older stream's leftovers
            }
            // Gather the burst.
            let start = Instant::now();
            let mut reload = false;
            while start.elapsed() < GATHER {
                match self.rx.recv_timeout(QUIET.min(GATHER.saturating_sub(start.elapsed()))) {
                    Ok(Input::Line(g, l)) if g == generation => lines.push(l),
                    Ok(Input::End(g)) if g == generation => {
                        ended = true;
                        break;
                    }
                    Ok(Input::Stop) => return Follow::Stop,
                    Ok(Input::Reload) => reload = true,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            if let Err(e) = self.handle(&lines) {
                return Follow::Failed(e.to_string());
            }
            if reload {
                if let Err(e) = self.reload() {
                    return Follow::Failed(e.to_string());
                }
            }
            if ended {
                return Follow::Ended;
            }
        }
    }

    /// SIGHUP: the config again, then a sweep; `Err` when libvirt cannot be reached.
    fn reload(&mut self) -> Result<()> {
        self.guests.reload();
        self.guests.sweep()
    }

    /// Acts on a burst: one sweep if any line needs it, else one fix for every named guest.
    fn handle(&mut self, lines: &[Line]) -> Result<()> {
        let actions: Vec<Action> = lines.iter().map(action).collect();
        if let Some(i) = actions.iter().position(|a| *a == Action::Sweep) {
            if let Line::Unparsable(text) = &lines[i] {
                log::info!("unparsable event line {}; sweeping all guests", printable(text));
            }
            return self.guests.sweep();
        }
        let mut seen: HashSet<&str> = HashSet::new();
        let fix: Vec<String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Fix(n) if seen.insert(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        if !fix.is_empty() {
            self.guests.fix(&fix)?;
        }
        for a in &actions {
            if let Action::Started(name) = a {
                if self.warned_started.insert(name.clone()) {
                    self.guests.started(name);
                }
            }
        }
        Ok(())
    }

    /// Waits `d` (the backoff) while still answering signals; `true` when told to stop.
    fn pause(&mut self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.rx.recv_timeout(left) {
                Ok(Input::Stop) => return true,
                Ok(Input::Reload) => self.guests.reload(),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => return false,
                Err(mpsc::RecvTimeoutError::Disconnected) => return true,
            }
        }
    }
}

/// Records that libvirt is out of reach; logs only at the start of an outage.
fn down(outage: &mut Option<(Instant, String)>, why: String) {
    if outage.is_none() {
        log::warn!("libvirt not reachable ({why}); retrying with backoff");
        *outage = Some((Instant::now(), why));
    }
}

fn stop(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL);
        let _ = child.kill();
    }
    let _ = child.wait();
    lv::process::forget_group(child.id() as i32);
}

/// Waits for an ended stream and says why it ended, from its stderr.
fn finish(child: &mut Child) -> String {
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.by_ref().take(4096).read_to_string(&mut err);
    }
    let status = child.wait();
    let err = one_line(&err);
    match (err.is_empty(), status) {
        (false, _) => err,
        (true, Ok(s)) => format!("virsh event ended ({s})"),
        (true, Err(e)) => format!("virsh event ended: {e}"),
    }
}

#[cfg(test)]
mod tests;

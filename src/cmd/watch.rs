//! `watch`: keep every persistent guest's config matching the config file, whoever defines it
//! (virt-install, virt-manager, cockpit, Terraform, a plain `virsh define`).
//!
//! The events come from `virsh event --loop --event lifecycle` rather than the libvirt C API:
//! the shipped binary stays static and free of libvirt.so (the hook path must start like
//! `/bin/true`), and virsh already handles every transport and auth method a URI can name. Its
//! lines are `event 'lifecycle' for domain 'NAME': Defined Updated`, flushed one by one; it exits
//! when the daemon goes away and never reconnects, so this loop restarts it with a capped backoff
//! and sweeps everything again after each reconnect (events during the outage are lost).
//!
//! Convergence: a fix writes the config with `virsh define`, which emits `Defined Updated` for
//! that guest; the fix that follows finds nothing to change and writes nothing, so the loop
//! settles after one extra read per write.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::cmd::virsh::{apply_rows, Targets, Verdict, Virsh};
use crate::cmd::Ctx;
use crate::core::config::{Config};
use crate::support::text::printable;
use crate::core::rewrite::Document;
use crate::host::plan;
use crate::support::error::{exit, one_line, Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchOpts {
    /// `None`: [`DEFAULT_URI`].
    pub connect: Option<String>,
}

/// What `watch` connects to without `--connect`: the system QEMU driver, whatever
/// `$LIBVIRT_DEFAULT_URI` or libvirt.conf's `uri_default` say (a service should not follow them).
pub const DEFAULT_URI: &str = "qemu:///system";

/// The longest wait between reconnect attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Set by SIGHUP: read the config again and sweep.
static RELOAD: AtomicBool = AtomicBool::new(false);

/// `virt-perf-hook watch`: runs until SIGTERM or SIGINT (exit 0). An invalid config at start is
/// a config error (exit 3); one found on SIGHUP keeps the last good config.
pub fn watch(ctx: &Ctx, o: &WatchOpts) -> Result<i32> {
    let cfg = ctx.load_config()?;
    install_signal_handlers();
    let virsh = Virsh::from_env(Some(o.connect.clone().unwrap_or_else(|| DEFAULT_URI.to_string())), &ctx.paths);
    let mut stream = VirshStream { command: virsh.command(&["event", "--loop", "--event", "lifecycle"]) };
    stream.command.env("LC_ALL", "C");
    let mut guests = Sweeper { ctx, cfg, virsh };
    run_loop(&mut stream, &mut guests, BACKOFF_CAP, &RELOAD, None);
    Ok(exit::OK)
}

/// SIGTERM and SIGINT end the watcher and every virsh it started, at once and with status 0;
/// SIGHUP asks for a reload. The process leads its own process group, so the handler reaches
/// its children (a sweep's virsh, the event stream) with one `kill(0, …)`.
fn install_signal_handlers() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    // Fails harmlessly when already a group (or session) leader, as under systemd.
    let _ = nix::unistd::setpgid(nix::unistd::Pid::from_raw(0), nix::unistd::Pid::from_raw(0));
    extern "C" fn stop(_: nix::libc::c_int) {
        use nix::libc;
        // Only async-signal-safe calls: ignore the signal here, pass it on to the group, reap
        // the children (virsh ends on SIGTERM at once; the wait is bounded so the watcher is gone
        // within a second whatever they do), leave.
        // SAFETY: signal, kill, waitpid, nanosleep and _exit are async-signal-safe.
        unsafe {
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
            libc::kill(0, libc::SIGTERM);
            let tick = libc::timespec { tv_sec: 0, tv_nsec: 20_000_000 };
            for _ in 0..40 {
                while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
                if libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) < 0 {
                    break; // ECHILD: all reaped
                }
                libc::nanosleep(&tick, std::ptr::null_mut());
            }
            libc::_exit(0);
        }
    }
    extern "C" fn hup(_: nix::libc::c_int) {
        RELOAD.store(true, Ordering::SeqCst);
    }
    let on = |h: extern "C" fn(nix::libc::c_int)| SigAction::new(SigHandler::Handler(h), SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handlers above only call async-signal-safe functions or store an atomic.
    unsafe {
        let _ = sigaction(Signal::SIGTERM, &on(stop));
        let _ = sigaction(Signal::SIGINT, &on(stop));
        let _ = sigaction(Signal::SIGHUP, &on(hup));
    }
}

/// The real [`Guests`]: `apply`'s work, logged one line per change.
struct Sweeper<'a> {
    ctx: &'a Ctx,
    cfg: Config,
    virsh: Virsh,
}

impl Sweeper<'_> {
    fn apply(&mut self, targets: &Targets) -> Result<()> {
        let rows = apply_rows(self.ctx, &self.cfg, &self.virsh, targets, false)?;
        // Only what changed, or failed: a sweep of a thousand settled guests logs nothing.
        for row in rows.iter().filter(|r| matches!(r.result, Verdict::Changed | Verdict::Failed)) {
            row.log(log::Level::Info);
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
        // also the version lookup's fallback warning. (`uri` is a fixed word: virsh's
        // command-string form is harmless, as in `Virsh::is_remote`.)
        let out = self.virsh.run(&["uri"])?;
        if !out.success() {
            return Err(Error::Command { what: format!("virsh{}", self.virsh.on()), code: exit::FAILURE, msg: out.message() });
        }
        self.apply(&Targets::All)
    }

    fn fix(&mut self, domain: &str) -> Result<()> {
        if ambiguous(domain) {
            return self.sweep();
        }
        self.apply(&Targets::Named(vec![domain.to_string()]))
    }

    fn started(&mut self, domain: &str) {
        if ambiguous(domain) || !self.cfg.domains.selects(domain) {
            return;
        }
        let Ok(target) = self.virsh.target(&self.cfg) else { return };
        let want = plan::plan(&self.ctx.paths, &self.cfg, &target).add;
        let Ok(out) = self.virsh.run(&["dumpxml", "--domain", domain]) else { return };
        let Ok(doc) = Document::parse(&out.stdout) else { return };
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

/// One parsed lifecycle line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    pub domain: String,
    pub event: String,
    pub detail: String,
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

const PREFIX: &str = "event 'lifecycle' for domain '";

/// Parses a line of `virsh event --loop --event lifecycle [--timestamp]` (LC_ALL=C). Names are
/// printed unescaped and may hold `'` or `: `, but the tail is always `': EVENT DETAIL`, where
/// DETAIL is one or more words without `'` (`Finished after host request`, `I/O Error`), so the
/// name is what lies between the prefix and the last `': `.
pub fn parse_line(line: &str) -> Option<Lifecycle> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let start = line.find(PREFIX)?;
    // `--timestamp` puts `2026-11-25 13:00:00.000+0000: ` before the prefix; nothing else may.
    if start > 0 && !line[..start].ends_with(": ") {
        return None;
    }
    let rest = &line[start + PREFIX.len()..];
    let (domain, tail) = rest.rsplit_once("': ")?;
    let (event, detail) = tail.split_once(' ')?;
    let event_word = !event.is_empty() && event.bytes().all(|b| b.is_ascii_alphabetic());
    let detail_word = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'-');
    if !event_word || !detail.split(' ').all(detail_word) {
        return None;
    }
    Some(Lifecycle { domain: domain.to_string(), event: event.to_string(), detail: detail.to_string() })
}

/// What `virsh event --loop` prints last when its connection ends (`events received: 0`, then a
/// blank line): not an event.
const RECEIVED: &str = "events received: ";

/// The action for one line.
pub fn action(line: &str) -> Action {
    if line.is_empty() || line.strip_prefix(RECEIVED).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
        return Action::Ignore;
    }
    match parse_line(line) {
        None => Action::Sweep,
        Some(l) => match (l.event.as_str(), l.detail.as_str()) {
            ("Defined", "Added" | "Updated" | "Renamed") => Action::Fix(l.domain),
            // Snapshot/checkpoint reverts and other new details redefine too: when unsure, fix.
            ("Defined", _) => Action::Fix(l.domain),
            ("Started", _) => Action::Started(l.domain),
            _ => Action::Ignore,
        },
    }
}

/// The work the loop drives; the real one is `apply`'s machinery, tests use a recorder.
pub trait Guests {
    /// Every persistent guest (start-up and every reconnect). `Err` when libvirt cannot be
    /// reached at all; a single guest's failure is logged inside and is not an error.
    fn sweep(&mut self) -> Result<()>;
    /// One guest's persistent config, by name.
    fn fix(&mut self, domain: &str) -> Result<()>;
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

/// How the event stream is started; a fake virsh in tests.
pub trait Stream {
    fn spawn(&mut self) -> std::io::Result<Child>;
}

/// `virsh [-c URI] event --loop --event lifecycle` in the C locale.
pub struct VirshStream {
    pub command: Command,
}

impl Stream for VirshStream {
    fn spawn(&mut self) -> std::io::Result<Child> {
        self.command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()
    }
}

/// How often the loop looks at the reload flag while no event arrives.
const POLL: Duration = Duration::from_millis(200);

/// Why the loop stopped (only tests stop it: `max_streams`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    pub streams: usize,
}

/// Runs the watch loop. `reload` is polled (SIGHUP sets it); `max_streams` bounds how many event
/// streams it starts (tests); `None` runs until killed.
pub fn run_loop(
    stream: &mut dyn Stream,
    guests: &mut dyn Guests,
    cap: Duration,
    reload: &AtomicBool,
    max_streams: Option<usize>,
) -> Stopped {
    let mut backoff = Backoff::new(cap);
    // An outage is logged when it starts and when it ends, not at every try.
    let mut outage: Option<(Instant, String)> = None;
    let mut streams = 0;
    let mut warned_started: HashSet<String> = HashSet::new();
    loop {
        if max_streams.is_some_and(|m| streams >= m) {
            return Stopped { streams };
        }
        streams += 1;
        let mut child = match stream.spawn() {
            Ok(c) => c,
            Err(e) => {
                down(&mut outage, format!("cannot run virsh: {e}"));
                std::thread::sleep(backoff.delay());
                continue;
            }
        };
        // Lines are read on a thread so the sweep below runs while events queue up: nothing
        // defined during the sweep is missed.
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            if let Some(out) = stdout {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        });
        match guests.sweep() {
            Ok(()) => {
                if let Some((since, _)) = outage.take() {
                    log::warn!("libvirt reachable again after {}s; swept all guests", since.elapsed().as_secs());
                } else {
                    log::info!("watching lifecycle events; swept all guests");
                }
                backoff.reset();
            }
            Err(e) => {
                stop(&mut child);
                let _ = reader.join();
                down(&mut outage, e.to_string());
                std::thread::sleep(backoff.delay());
                continue;
            }
        }
        loop {
            match rx.recv_timeout(POLL) {
                Ok(first) => {
                    // A burst (a thousand guests defined by a script) is handled once per guest.
                    let mut batch = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    handle(&batch, guests, &mut warned_started);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            // Also between batches: a steady stream of events must not hold a reload off.
            if reload.swap(false, Ordering::SeqCst) {
                guests.reload();
                if let Err(e) = guests.sweep() {
                    log::warn!("sweep failed: {e}");
                }
            }
        }
        let why = finish(&mut child);
        let _ = reader.join();
        down(&mut outage, why);
        std::thread::sleep(backoff.delay());
    }
}

/// Acts on a batch of lines: one sweep if any line needs it, else one fix per named guest.
fn handle(lines: &[String], guests: &mut dyn Guests, warned_started: &mut HashSet<String>) {
    let actions: Vec<Action> = lines.iter().map(|l| action(l)).collect();
    if let Some(i) = actions.iter().position(|a| *a == Action::Sweep) {
        log::info!("unparsable event line {}; sweeping all guests", printable(&lines[i]));
        if let Err(e) = guests.sweep() {
            log::warn!("sweep failed: {e}");
        }
        return;
    }
    let mut fixed: HashSet<&str> = HashSet::new();
    for a in &actions {
        match a {
            Action::Fix(name) if fixed.insert(name) => {
                if let Err(e) = guests.fix(name) {
                    log::warn!("domain '{}': {e}", printable(name));
                }
            }
            Action::Started(name) if warned_started.insert(name.clone()) => guests.started(name),
            _ => {}
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
    let _ = child.kill();
    let _ = child.wait();
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
mod tests {
    use super::*;

    #[test]
    fn parses_lines() {
        let l = parse_line("event 'lifecycle' for domain 'web1': Defined Added").unwrap();
        assert_eq!(l, Lifecycle { domain: "web1".into(), event: "Defined".into(), detail: "Added".into() });
        let ts = parse_line("2026-11-25 13:00:00.123+0000: event 'lifecycle' for domain 'a b': Started Booted\n").unwrap();
        assert_eq!((ts.domain.as_str(), ts.event.as_str()), ("a b", "Started"));
        // Quotes and ': ' inside the name: the tail is fixed, so the last `': ` splits.
        let odd = parse_line("event 'lifecycle' for domain 'it's: x': Defined Updated").unwrap();
        assert_eq!(odd.domain, "it's: x");
        let tricky = parse_line("event 'lifecycle' for domain 'a': Defined Added': Defined Renamed").unwrap();
        assert_eq!((tricky.domain.as_str(), tricky.detail.as_str()), ("a': Defined Added", "Renamed"));
        for bad in [
            "",
            "event 'lifecycle' for domain 'half",
            "event 'lifecycle' for domain 'x': Defined",
            "event 'lifecycle' for domain 'x': Defined Added  extra",
            "event 'lifecycle' for domain 'x': Defined ",
            "junk event 'lifecycle' for domain 'x': Defined Added",
            "event 'reboot' for domain 'x'",
        ] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn parses_details_of_any_length() {
        for (tail, event, detail) in [
            ("Shutdown Finished after host request", "Shutdown", "Finished after host request"),
            ("Shutdown Finished after guest request", "Shutdown", "Finished after guest request"),
            ("Suspended I/O Error", "Suspended", "I/O Error"),
            ("Resumed Post-copy Error", "Resumed", "Post-copy Error"),
            ("Started Event wakeup", "Started", "Event wakeup"),
            ("Stopped Destroyed", "Stopped", "Destroyed"),
        ] {
            let l = parse_line(&format!("event 'lifecycle' for domain 'vph1': {tail}")).unwrap();
            assert_eq!((l.domain.as_str(), l.event.as_str(), l.detail.as_str()), ("vph1", event, detail));
        }
        assert_eq!(action("event 'lifecycle' for domain 'a': Shutdown Finished after host request"), Action::Ignore);
    }

    #[test]
    fn actions() {
        assert_eq!(action("event 'lifecycle' for domain 'a': Defined Updated"), Action::Fix("a".into()));
        assert_eq!(action("event 'lifecycle' for domain 'a': Defined FromSnapshot"), Action::Fix("a".into()));
        assert_eq!(action("event 'lifecycle' for domain 'a': Started Restored"), Action::Started("a".into()));
        assert_eq!(action("event 'lifecycle' for domain 'a': Undefined Removed"), Action::Ignore);
        assert_eq!(action("event 'lifecycle' for domain 'a': Stopped Destroyed"), Action::Ignore);
        // The second half of a name with a newline.
        assert_eq!(action("b': Defined Added"), Action::Sweep);
        // virsh's last line when the daemon goes away: the outage is logged, not a sweep.
        assert_eq!(action("events received: 12"), Action::Ignore);
        assert_eq!(action(""), Action::Ignore);
        assert_eq!(action("events received: many"), Action::Sweep);
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(10));
        let d: Vec<u64> = (0..6).map(|_| b.delay().as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4, 8, 10, 10]);
        b.reset();
        assert_eq!(b.delay().as_secs(), 1);
    }

    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
        sweep_fails: usize,
    }

    impl Guests for Recorder {
        fn sweep(&mut self) -> Result<()> {
            self.calls.push("sweep".into());
            if self.sweep_fails > 0 {
                self.sweep_fails -= 1;
                return Err(crate::support::error::Error::Other("no daemon".into()));
            }
            Ok(())
        }
        fn fix(&mut self, domain: &str) -> Result<()> {
            self.calls.push(format!("fix {domain}"));
            Ok(())
        }
        fn started(&mut self, domain: &str) {
            self.calls.push(format!("started {domain}"));
        }
        fn reload(&mut self) {
            self.calls.push("reload".into());
        }
    }

    struct Script(Vec<&'static str>);

    impl Stream for Script {
        fn spawn(&mut self) -> std::io::Result<Child> {
            let text = if self.0.is_empty() { String::new() } else { self.0.remove(0).to_string() };
            Command::new("sh")
                .args(["-c", "printf '%s' \"$1\"; exit 1", "sh", &text])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        }
    }

    #[test]
    fn sweeps_on_every_connect_and_fixes_each_guest_once_per_burst() {
        let mut rec = Recorder::default();
        let mut stream = Script(vec![
            "event 'lifecycle' for domain 'a': Defined Added\nevent 'lifecycle' for domain 'a': Defined Updated\n\
             event 'lifecycle' for domain 'b': Started Booted\nevent 'lifecycle' for domain 'b': Started Restored\n",
            "event 'lifecycle' for domain 'b': Started Booted\n",
        ]);
        let stopped = run_loop(&mut stream, &mut rec, Duration::from_millis(1), &AtomicBool::new(false), Some(2));
        assert_eq!(stopped.streams, 2);
        // Lines may arrive in one batch or several: "a" is fixed at least once, "b" is reported
        // once in all, and every connect starts with a sweep.
        assert_eq!(rec.calls.first().map(String::as_str), Some("sweep"));
        assert_eq!(rec.calls.iter().filter(|c| *c == "sweep").count(), 2, "{:?}", rec.calls);
        assert!(rec.calls.contains(&"fix a".to_string()));
        assert_eq!(rec.calls.iter().filter(|c| *c == "started b").count(), 1, "{:?}", rec.calls);
    }

    #[test]
    fn sighup_reloads_and_sweeps_while_the_stream_is_quiet() {
        struct Quiet;
        impl Stream for Quiet {
            fn spawn(&mut self) -> std::io::Result<Child> {
                Command::new("sh").args(["-c", "sleep 0.6"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()
            }
        }
        let mut rec = Recorder::default();
        let reload = AtomicBool::new(true);
        run_loop(&mut Quiet, &mut rec, Duration::from_millis(1), &reload, Some(1));
        assert_eq!(rec.calls, vec!["sweep", "reload", "sweep"]);
        assert!(!reload.load(Ordering::SeqCst));
    }

    #[test]
    fn ambiguous_names_are_swept_not_looked_up() {
        assert!(ambiguous("42"));
        assert!(ambiguous("6695eb01-f6a4-8304-79aa-97f2502e193f"));
        assert!(!ambiguous("web-1"));
        assert!(!ambiguous("-x"));
    }

    #[test]
    fn a_failed_sweep_retries_without_handling_events() {
        let mut rec = Recorder { sweep_fails: 1, ..Recorder::default() };
        let mut stream = Script(vec!["event 'lifecycle' for domain 'lost': Defined Added\n", ""]);
        run_loop(&mut stream, &mut rec, Duration::from_millis(1), &AtomicBool::new(false), Some(2));
        assert_eq!(rec.calls, vec!["sweep", "sweep"]);
    }
}

//! `watch`: its usage and config errors (any machine), and the service on a real libvirtd (root
//! and VPH_SYSTEM_TESTS=1 only; each test starts its own daemon, see `common::Libvirt`): guests
//! defined by plain `virsh define` get the configured events and are healed, the start-up sweep
//! fixes those defined before, a fix converges, a guest started without the events is reported
//! once, SIGHUP reloads (and keeps the last good config), SIGTERM ends it at once with its virsh
//! children, and a daemon restart is one logged outage followed by a reconnect. Also `create`
//! of a busy transient guest, whose counters are then complete.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::common::*;
use crate::libvirt_or_skip;

/// The issue's target is p99 ≤ 1 s from the define to the events being in the config
/// (`benches/watch-latency.sh` measures it); a test allows twice that on a loaded machine.
pub(crate) const FIX_WITHIN: Duration = Duration::from_secs(2);

/// What the watcher logs once its start-up sweep (or a reconnect's) is done.
pub(crate) const SWEPT: &str = "swept all guests";

/// A running `virt-perf-hook --config CONFIG watch` with its stderr in a file. Dropped (a test
/// failed), it and its process group are killed.
pub(crate) struct Watcher {
    child: Child,
    log: PathBuf,
}

impl Watcher {
    /// Starts the watcher on the real host root and waits (bounded) for its start-up sweep.
    pub(crate) fn start(config: &Path, work: &TempDir) -> Watcher {
        Watcher::start_with(config, work, &[])
    }

    /// [`Watcher::start`] with global options (`--timeout 2`).
    pub(crate) fn start_with(config: &Path, work: &TempDir, options: &[&str]) -> Watcher {
        let log = work.path().join("watch.log");
        let mut cmd = clean_command(BIN, Path::new("/"), &[]);
        cmd.arg("--config").arg(config).args(options).arg("watch");
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(File::create(&log).unwrap());
        let w = Watcher { child: cmd.spawn().unwrap(), log };
        w.wait_for(SWEPT, Duration::from_secs(60));
        w
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many log lines contain `what`.
    pub(crate) fn count(&self, what: &str) -> usize {
        self.log().lines().filter(|l| l.contains(what)).count()
    }

    /// Waits until `what` has been logged; panics with the log after `limit` or when the watcher
    /// has exited.
    pub(crate) fn wait_for(&self, what: &str, limit: Duration) {
        let start = Instant::now();
        while self.count(what) == 0 {
            assert!(Path::new(&format!("/proc/{}", self.pid())).exists(), "the watcher is gone; its log:\n{}", self.log());
            assert!(start.elapsed() < limit, "{what:?} not logged within {limit:?}; the log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig).unwrap();
    }

    /// Waits (bounded) for the watcher to exit; returns its status and how long it took.
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return (s, start.elapsed());
            }
            assert!(start.elapsed() < limit, "the watcher still runs {limit:?} after the signal; its log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // Not reaped yet, so the group (the watcher leads its own) is still the watcher's.
            let _ = kill(Pid::from_raw(-self.pid()), Signal::SIGKILL);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every process as (pid, parent, process group, state), from /proc.
fn processes() -> Vec<(i32, i32, i32, char)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // "pid (comm) S ppid pgrp …": comm may hold anything, so split after its last ')'.
        let Some((_, rest)) = stat.rsplit_once(") ") else { continue };
        let f: Vec<&str> = rest.split(' ').collect();
        if let (Some(state), Some(Ok(ppid)), Some(Ok(pgrp))) = (f[0].chars().next(), f.get(1).map(|p| p.parse()), f.get(2).map(|p| p.parse())) {
            all.push((pid, ppid, pgrp, state));
        }
    }
    all
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

/// How long until `ready` holds (polled every 10 ms), or `None` after `limit`.
pub(crate) fn within(limit: Duration, mut ready: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if ready() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub(crate) fn inactive(guest: &str) -> String {
    virsh_ok(&["dumpxml", "--inactive", guest])
}

pub(crate) fn has_events(xml: &str, events: &[&str]) -> bool {
    events.iter().all(|e| xml.contains(&format!("<event name='{e}' enabled='yes'/>")))
}

/// The log line of a change to `guest`'s config.
fn changed(guest: &str) -> String {
    format!("domain '{guest}': changed (")
}

#[test]
fn watch_usage_errors() {
    let root = TempDir::with_config("watch-usage", r#"{"enabled_perf_events": []}"#);
    for (args, want) in [
        (&["watch", "vm1"][..], "watch: unexpected argument 'vm1'"),
        (&["watch", "--all"][..], "watch: unknown option '--all'"),
        (&["watch", "--dry-run"][..], "watch: unknown option '--dry-run'"),
        (&["watch", "--paused"][..], "watch: unknown option '--paused'"),
        (&["watch", "-x"][..], "watch: unknown option '-x'"),
        (&["watch", "-C"][..], "-C needs a connection URI"),
        (&["watch", "--connect="][..], "--connect needs a connection URI"),
    ] {
        let out = run_with(root.path(), args, "", &[("VIRSH", "/nonexistent/virsh")]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{args:?}: one line: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
}

/// A config the watcher cannot use at start is exit 3 with one line naming the file and the
/// problem, before any virsh runs.
#[test]
fn watch_refuses_an_invalid_config_at_start() {
    let root = TempDir::with_config("watch-badcfg", r#"{"enabled_perf_events": ["cpu_cycle"]}"#);
    let missing = root.path().join("nonexistent.json");
    for (config, want) in [
        (root.path().join("etc/virt-perf-hook/config.json"), "unknown event 'cpu_cycle'; did you mean 'cpu_cycles'?"),
        (missing.clone(), missing.to_str().unwrap()),
    ] {
        let args = ["--config", config.to_str().unwrap(), "watch"];
        let run = run_limited(root.path(), &args, &[("VIRSH", "/nonexistent/virsh")], Input::Bytes(Vec::new()), Duration::from_secs(10));
        assert_eq!(run.out.status.code(), Some(3), "{}", stderr(&run.out));
        let err = stderr(&run.out);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("virt-perf-hook: ") && err.contains(want), "{err}");
    }
}

/// The whole life of the service on one daemon: start-up sweep, fixes and heals within
/// [`FIX_WITHIN`], convergence, the one "started without" line, `create`, SIGHUP with a broken and
/// then an empty config, and SIGTERM.
#[test]
fn watch_fixes_every_guest_whoever_defines_it() {
    let mut host = libvirt_or_skip!();
    host.start();
    let events = ["page_faults", "task_clock"];
    // Also one this host cannot open: dropped, and said once, not with every guest fixed.
    let unopenable = unopenable_event();
    let (work, config) = work("watch", &[events[0], events[1], &unopenable]);

    // Defined before the watcher runs: the start-up sweep fixes it.
    let before = "vph-watch-before";
    host.define(before, &tcg_guest(before, ""), &work);
    let mut w = Watcher::start(&config, &work);
    assert!(has_events(&inactive(before), &events), "not fixed by the start-up sweep:\n{}", w.log());

    // A plain `virsh define`: the events are in the persistent config within FIX_WITHIN.
    let plain = "vph-watch-plain";
    host.define(plain, &tcg_guest(plain, ""), &work);
    let took = within(FIX_WITHIN, || has_events(&inactive(plain), &events));
    assert!(took.is_some(), "not fixed within {FIX_WITHIN:?}:\n{}\nlog:\n{}", inactive(plain), w.log());

    // XML carrying an event this host cannot open: healed, and the configured ones added.
    let heal = "vph-watch-heal";
    host.define(heal, &with_event(&tcg_guest(heal, ""), &unopenable), &work);
    let healed = within(FIX_WITHIN, || {
        let xml = inactive(heal);
        has_events(&xml, &events) && !xml.contains(&format!("'{unopenable}'"))
    });
    assert!(healed.is_some(), "not healed within {FIX_WITHIN:?}:\n{}\nlog:\n{}", inactive(heal), w.log());
    w.wait_for(&format!("removed {unopenable} (the host cannot open it: "), Duration::from_secs(5));

    // Converged: its own define (Defined Updated) finds nothing more to change. One line per
    // change, none per event received.
    std::thread::sleep(Duration::from_secs(3));
    for guest in [before, plain, heal] {
        assert_eq!(w.count(&format!("domain '{guest}'")), 1, "{guest}: one change, then nothing:\n{}", w.log());
        assert_eq!(w.count(&changed(guest)), 1, "{guest}:\n{}", w.log());
    }
    assert_eq!(w.count(" changed (added task_clock,page_faults"), 3, "{}", w.log());
    assert_eq!(w.count(&format!("not enabling {unopenable}: the host cannot open it")), 1, "{}", w.log());

    // A guest that launches without the events (transient, from plain `virsh create`): said
    // once, and nothing is written (it has no persistent config).
    let bare = "vph-watch-bare";
    host.forget_at_end(bare);
    let f = work.write("bare.xml", &tcg_guest(bare, ""));
    virsh_ok(&["create", f.to_str().unwrap()]);
    let started = format!("domain '{bare}' started without task_clock,page_faults: its counters start at its next start");
    w.wait_for(&started, Duration::from_secs(5));

    // `create` of a busy transient guest: it launches with the events, so its counters are
    // complete, and the watcher has nothing to say about it.
    let busy = "vph-watch-busy";
    host.forget_at_end(busy);
    let f = work.write("busy.xml", &tcg_guest(busy, &busy_disk(&work, busy)));
    let out = tool(&config, &["create", "--connect", URI, f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), format!("Domain '{busy}' created from {}\n\n", f.display()), "virsh's message names the user's file");
    assert!(has_events(&virsh_ok(&["dumpxml", busy]), &events), "live XML lacks the events");
    assert!(virsh_ok(&["list", "--transient", "--name"]).lines().any(|l| l == busy), "not transient");
    let out = tool(&config, &["status", "--connect", URI, busy]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).lines().nth(1).is_some_and(|l| l.contains(" complete ")), "{}", stdout(&out));
    // `create --paused`: launched with the events, not running yet.
    let paused = "vph-watch-paused";
    host.forget_at_end(paused);
    let f = work.write("paused.xml", &tcg_guest(paused, ""));
    let out = tool(&config, &["create", "--connect", URI, "--paused", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(virsh_ok(&["domstate", paused]).trim(), "paused");
    assert!(has_events(&virsh_ok(&["dumpxml", paused]), &events), "live XML lacks the events");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(w.count(&started), 1, "said once:\n{}", w.log());
    assert_eq!(w.count(busy) + w.count(paused), 0, "{}", w.log());

    // SIGHUP with a broken config: one error line, and the last good config stays in force.
    std::fs::write(&config, r#"{"enabled_perf_events": ["page_faults""#).unwrap();
    w.signal(Signal::SIGHUP);
    w.wait_for("; keeping the last good config", Duration::from_secs(5));
    let line = w.log().lines().find(|l| l.contains("keeping the last good config")).unwrap().to_string();
    assert!(line.starts_with("virt-perf-hook: error: ") && line.contains(config.to_str().unwrap()), "{line}");
    let kept = "vph-watch-kept";
    host.define(kept, &tcg_guest(kept, ""), &work);
    assert!(within(FIX_WITHIN, || has_events(&inactive(kept), &events)).is_some(), "old config not kept:\n{}", w.log());

    // SIGHUP with `"enabled_perf_events": []`: read again; then a new plain guest is left as
    // defined, and one bringing an event this host cannot open is still healed.
    write_config(&config, &[]);
    w.signal(Signal::SIGHUP);
    w.wait_for(&format!("config {} read again", config.display()), Duration::from_secs(5));
    let untouched = "vph-watch-untouched";
    host.define(untouched, &tcg_guest(untouched, ""), &work);
    let heal2 = "vph-watch-heal2";
    host.define(heal2, &with_event(&tcg_guest(heal2, ""), &unopenable), &work);
    // Not configured: healed with 'virsh perf --disable', which leaves enabled='no' (what
    // libvirt does without the element) and touches nothing else.
    let off = format!("<event name='{unopenable}' enabled='no'/>");
    assert!(within(FIX_WITHIN, || inactive(heal2).contains(&off)).is_some(), "not healed:\n{}", w.log());
    let as_defined = inactive(untouched);
    std::thread::sleep(Duration::from_secs(2));
    assert!(!as_defined.contains("<perf"), "{as_defined}");
    assert_eq!(inactive(untouched), as_defined);
    assert_eq!(w.count(untouched), 0, "nothing to say about it:\n{}", w.log());
    assert_eq!(w.count(&changed(heal2)), 1, "{}", w.log());
    // The guests fixed before keep their events: an empty list adds nothing and removes nothing.
    assert!(has_events(&inactive(plain), &events));

    // SIGTERM: exit 0 within a second, and nothing of its process group left behind.
    let pid = w.pid();
    let kids: Vec<(i32, String)> = processes().iter().filter(|p| p.1 == pid).map(|p| (p.0, comm(p.0))).collect();
    assert!(kids.iter().any(|c| c.1 == "virsh"), "the event stream (virsh) should run: {kids:?}");
    w.signal(Signal::SIGTERM);
    let (status, took) = w.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", w.log());
    assert!(took < Duration::from_secs(1), "SIGTERM took {took:?}");
    // Each virsh runs in a process group of its own (so a timeout kills all of it): none is left.
    let left: Vec<_> = processes().into_iter().filter(|p| p.2 == pid || kids.iter().any(|k| k.0 == p.0 || k.0 == p.2)).collect();
    assert!(left.is_empty(), "processes of the watcher left: {left:?}");
}

/// libvirtd goes away and comes back: the outage is one line, the watcher reconnects (and
/// sweeps), and a guest defined afterwards is fixed.
#[test]
fn watch_reconnects_after_the_daemon_restarts() {
    let mut host = libvirt_or_skip!();
    host.start();
    let (work, config) = work("watch-reconnect", &["page_faults"]);
    let w = Watcher::start(&config, &work);
    host.restart();
    w.wait_for("libvirt reachable again after ", Duration::from_secs(60));
    let log = w.log();
    assert_eq!(w.count("libvirt not reachable ("), 1, "one line per outage:\n{log}");
    assert_eq!(w.count(SWEPT), 2, "swept at start and after the reconnect:\n{log}");
    assert_eq!(w.count("libvirt reachable again"), 1, "{log}");
    // Nothing else about the outage: no sweep of virsh's closing line, no failure per retry.
    for noise in ["unparsable", "sweep failed", "cannot get the libvirt version"] {
        assert_eq!(w.count(noise), 0, "{noise}:\n{log}");
    }

    let after = "vph-watch-after";
    host.define(after, &tcg_guest(after, ""), &work);
    assert!(within(FIX_WITHIN, || has_events(&inactive(after), &["page_faults"])).is_some(), "not fixed:\n{}", w.log());
}

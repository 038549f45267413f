//! What this host's libvirt and kernel support, turned into a plan: which configured events get
//! added and which are dropped, and which events (of all 22, configured or not) a guest must not
//! carry here, and why.

use crate::core::config::Config;
use crate::core::events::{self, Event};
use crate::core::version::Version;
use crate::host::cache::{self, CachedProbe, CachedVersion, Identity, Loaded, State};
use crate::host::detect::{self, Detected};
use crate::host::probe;
use crate::host::resctrl::{self, MonitorState};
use crate::core::monitor::Monitor;
use crate::support::paths::Paths;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dropped {
    pub event: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    /// The libvirt version the plan was made for, if known.
    pub version: Option<Version>,
    /// Where the version came from, for messages (`config pin`, `library file …`, …).
    pub version_source: String,
    /// Configured events to add, in catalog order.
    pub add: Vec<&'static str>,
    /// Configured events left out, with the reason.
    pub dropped: Vec<Dropped>,
    /// Every catalog event a guest must not have enabled here, with the reason: libvirt too old
    /// for it (version known) or the host cannot open it (probe on). Judged for all 22 events,
    /// configured or not: a guest carrying one fails to start or restore.
    pub unusable: Vec<Unusable>,
    /// Configured events the host cannot open as perf events but monitors through resctrl.
    pub replaced: Vec<&'static str>,
    /// The resctrl monitors a guest gets for [`Plan::replaced`].
    pub monitors: Vec<Monitor>,
    /// `cmt`, `mbmt`, `mbml` on this host through resctrl (empty: not judged).
    pub resctrl: Vec<MonitorState>,
    /// Made for another host ([`Target::Remote`]): its resctrl was not looked at.
    #[serde(skip)]
    pub remote: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unusable {
    pub event: String,
    pub reason: String,
    /// libvirt rejects the name itself (it does not know the event), so the XML fails to parse
    /// whatever `enabled` says; otherwise only `enabled='yes'` fails (libvirt opens it).
    pub rejected: bool,
}

impl Plan {
    /// Why a guest here must not carry the event `name` (any name, from any XML), or `None`.
    /// A name outside the catalog is unknown to every libvirt release (none has added an event
    /// since 3.2.0), so libvirt rejects it once the version is known; with the version unknown
    /// nothing is judged by version.
    /// The monitor that stands in for the event `name` here, if resctrl can give it.
    pub fn monitor_for(&self, name: &str) -> Option<Monitor> {
        self.resctrl.iter().find(|s| s.event == name && s.available).map(|s| s.monitor)
    }

    /// The monitor kinds this host certainly cannot have, with why (one reason per distinct
    /// cause): a guest carrying a monitor-only tune of such a kind does not start here. Empty
    /// for another host, when resctrl was not judged, and when only the libvirt version is
    /// unknown.
    pub fn monitors_unavailable(&self) -> Vec<(Monitor, String)> {
        if self.remote {
            return Vec::new();
        }
        let mut out = Vec::new();
        for m in [Monitor::Cache, Monitor::MemoryBandwidth] {
            let states: Vec<&MonitorState> = self.resctrl.iter().filter(|s| s.monitor == m).collect();
            if states.is_empty() || states.iter().any(|s| s.available) {
                continue;
            }
            let mut why: Vec<&str> = Vec::new();
            for r in states.iter().filter_map(|s| s.reason.as_deref()) {
                if !why.contains(&r) {
                    why.push(r);
                }
            }
            if why.is_empty() || why.contains(&resctrl::VERSION_UNKNOWN) {
                continue;
            }
            out.push((m, why.join("; ")));
        }
        out
    }

    pub fn unusable(&self, name: &str) -> Option<Unusable> {
        if let Some(u) = self.unusable.iter().find(|u| u.event == name) {
            return Some(u.clone());
        }
        let v = self.version.filter(|_| events::lookup(name).is_none())?;
        Some(Unusable { event: name.to_string(), reason: format!("libvirt {v} does not know this event"), rejected: true })
    }
}

/// The catalog events unusable with libvirt `version` (unknown: none by version) and `probe`
/// (`None`: the host is trusted).
pub fn unusable_events(version: Option<Version>, probe: Option<&dyn Fn(&Event) -> ProbeResult>) -> Vec<Unusable> {
    let mut out = Vec::new();
    for ev in events::CATALOG.iter() {
        let by_version = version.and_then(|v| ev.unsupported_by(v));
        let (reason, rejected) = match by_version {
            Some(r) => (r, true),
            None => match probe.and_then(|p| p(ev).err()) {
                Some(r) => (r, false),
                None => continue,
            },
        };
        out.push(Unusable { event: ev.name.to_string(), reason, rejected });
    }
    out
}

/// Result of probing one event on this host: `Ok` when it opens, else why not.
pub type ProbeResult = Result<(), String>;

/// The pure core of every plan: judge the configured events (and all 22, for healing) by libvirt
/// version and host support.
/// `probe` gives why an event cannot be used on the host (the whole reason), `None` when
/// probing is disabled (`host_probe: false`).
pub fn judge(
    cfg: &Config,
    version: Option<Version>,
    version_source: &str,
    probe: Option<&dyn Fn(&Event) -> ProbeResult>,
) -> Plan {
    let mut configured: Vec<&'static Event> =
        cfg.enabled_perf_events.iter().filter_map(|n| events::lookup(n)).collect();
    configured.sort_by_key(|e| events::index_of(e.name));
    let mut plan = Plan {
        version,
        version_source: version_source.to_string(),
        add: Vec::new(),
        dropped: Vec::new(),
        unusable: unusable_events(version, probe),
        ..Plan::default()
    };
    for ev in configured {
        let reason = match version {
            None => Some("libvirt version unknown (set \"libvirt_version\" in the config or install libvirt)".to_string()),
            Some(v) => ev.unsupported_by(v).or_else(|| probe.and_then(|p| p(ev).err())),
        };
        match reason {
            None => plan.add.push(ev.name),
            Some(reason) => plan.dropped.push(Dropped { event: ev.name, reason }),
        }
    }
    plan
}

/// Puts the resctrl judgement into `plan`: a configured event the host cannot open as a perf
/// event but can monitor through resctrl is replaced (not dropped); one it cannot monitor
/// either stays dropped, the reason saying why resctrl does not help.
pub fn apply_resctrl(plan: &mut Plan, states: Vec<MonitorState>) {
    let mut dropped = Vec::new();
    for mut d in std::mem::take(&mut plan.dropped) {
        match states.iter().find(|s| s.event == d.event) {
            Some(s) if s.available => {
                log::info!("{} is replaced by a resctrl {} monitor", d.event, s.monitor);
                plan.replaced.push(s.event);
                if !plan.monitors.contains(&s.monitor) {
                    plan.monitors.push(s.monitor);
                }
            }
            Some(s) => {
                d.reason = format!("{}; {}", d.reason, s.describe());
                dropped.push(d);
            }
            None => dropped.push(d),
        }
    }
    plan.dropped = dropped;
    plan.monitors.sort();
    plan.resctrl = states;
}

/// How much [`assess`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// For a rewrite: probe only when the config says `host_probe`; use the cache.
    Plan,
    /// For `events`/`check`: always probe (to show it); use the cache.
    Report,
    /// For `refresh` and the daemon hook: ignore the cache's contents, detect and probe anew.
    Refresh,
}

/// Whether a command may write the cache. The reports (`status`, `events`, `check`,
/// `filter --dry-run`) only read it: a fresh, trusted cache is used, anything else is computed
/// in memory and left as it was. The rewriting commands, `refresh` and the hooks write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    ReadWrite,
    ReadOnly,
}

/// What the cache was found as, or what was done to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheState {
    /// Used as it was: nothing had to be detected or probed again.
    Fresh,
    /// Out of date (a package upgrade, a reboot): detected or probed again.
    Stale,
    Missing,
    /// Corrupt, foreign or a symlink: ignored, and replaced.
    Ignored,
    /// Open to others: neither used nor written.
    Untrusted,
    /// Another process held the lock too long: not written this time.
    Busy,
    Unwritable,
    /// Rebuilt by a refresh.
    Rebuilt,
    /// Version pinned and probe off: nothing to cache.
    Unused,
}

impl std::fmt::Display for CacheState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::support::text::fmt_serde_name(self, f)
    }
}

/// What the cache was found as, and what was done to it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CacheReport {
    pub state: CacheState,
    /// One line for humans: why stale/ignored/unwritable, and whether it was rewritten.
    pub detail: String,
}

/// The plan plus everything behind it, for the reports.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub plan: Plan,
    pub detected: Detected,
    /// All 22 probe results, when the probe ran or came from the cache.
    pub probe: Option<probe::Results>,
    pub cache: CacheReport,
    /// What `/sys/fs/resctrl` says (monitoring features, RMIDs).
    pub resctrl: resctrl::Probe,
}

/// A libvirt version reported by the daemon (through virsh), with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    pub version: Version,
    /// For messages, e.g. `virsh -c URI version --daemon`.
    pub source: String,
}

/// Whose libvirt and kernel a plan is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// This host: the version from the pin, the cache or detection.
    Local,
    /// This host, with the version its daemon reported; probed (and cached) here.
    LocalReported(Reported),
    /// Another host: its kernel cannot be probed from here, and this host's cache says
    /// nothing about it.
    Remote(Reported),
}

/// Why hardware and RDT events are dropped for a remote host.
pub const REMOTE_NO_PROBE: &str = "cannot probe the remote host; set \"host_probe\": false to trust it";

/// The plan for `target`, for a rewrite. Warm cost on this host with a fresh cache: read
/// `state.json`, read `boot_id` (only with `host_probe`), `stat` the library file the version
/// came from; no exec, no directory scan, no syscall probe.
pub fn plan(paths: &Paths, cfg: &Config, target: &Target) -> Plan {
    plan_with(paths, cfg, target, CacheUse::ReadWrite)
}

/// [`plan`], writing the cache only with [`CacheUse::ReadWrite`].
pub fn plan_with(paths: &Paths, cfg: &Config, target: &Target, use_: CacheUse) -> Plan {
    match target {
        Target::Local => assess(paths, cfg, Mode::Plan, None, use_).plan,
        Target::LocalReported(r) => assess(paths, cfg, Mode::Plan, Some(r), use_).plan,
        Target::Remote(r) => {
            // Software events are kernel counters every Linux host with perf has.
            let remote = |ev: &Event| match ev.kind {
                events::Kind::Software => Ok(()),
                _ => Err(REMOTE_NO_PROBE.to_string()),
            };
            let probe: Option<&dyn Fn(&Event) -> ProbeResult> = if cfg.host_probe { Some(&remote) } else { None };
            let mut plan = judge(cfg, Some(r.version), &r.source, probe);
            // Not knowing whether the remote kernel opens an event is no reason to take it out
            // of a guest: there only the version judges.
            plan.unusable = unusable_events(Some(r.version), None);
            apply_resctrl(&mut plan, resctrl::judge(&resctrl::Probe::unknown(REMOTE_NO_PROBE), Some(r.version)));
            plan.remote = true;
            plan
        }
    }
}

/// Re-detect the version (unless pinned) and re-probe the host, rewriting the cache (daemon
/// hook). Nothing else in a config matters here, and nothing fails: an unwritable cache is
/// logged, and the tool works without it.
pub fn refresh(paths: &Paths, pin: Option<Version>) {
    let cfg = Config { libvirt_version: pin, ..Config::default() };
    assess(paths, &cfg, Mode::Refresh, None, CacheUse::ReadWrite);
}

/// The plan and everything behind it (version source, all probe results, the cache), for the
/// reports and `refresh`. `reported`: the version the daemon gave through virsh, which then
/// replaces the pin and detection. With [`CacheUse::ReadOnly`] nothing is written (a refresh
/// always writes).
pub fn assess(paths: &Paths, cfg: &Config, mode: Mode, reported: Option<&Reported>, use_: CacheUse) -> Assessment {
    let want_probe = cfg.host_probe || mode != Mode::Plan;
    let given = match reported {
        Some(r) => Some((Detected::reported(r.version), r.source.clone())),
        None => cfg.libvirt_version.map(|v| (Detected::pin(v), "config pin".to_string())),
    };
    if let (Some((detected, source)), false) = (&given, want_probe) {
        // Nothing to detect, nothing to probe: leave the cache alone entirely.
        let detected = detected.clone();
        let mut plan = judge(cfg, detected.version, source, None);
        let found = resctrl::probe(paths);
        apply_resctrl(&mut plan, resctrl::judge(&found, detected.version));
        let cache = CacheReport { state: CacheState::Unused, detail: "version pinned and host_probe off".into() };
        return Assessment { plan, detected, probe: None, cache, resctrl: found };
    }
    let loaded = cache::load(paths);
    let old = loaded.state();
    let mut state = old.clone();
    let force = mode == Mode::Refresh;
    let mut stale: Vec<String> = Vec::new();

    let source = given.as_ref().map(|(_, s)| s.clone());
    let detected = match given {
        Some((d, _)) => d,
        None => {
            let cached = state.version.as_ref().filter(|_| !force).map(|c| (c, c.stale_reason()));
            match cached {
                Some((c, None)) => Detected { version: Some(c.version), source: c.source, path: Some(c.path.clone()) },
                other => {
                    stale.push(other.and_then(|(_, why)| why).unwrap_or_else(|| "no version cached".to_string()));
                    let d = detect::detect(paths);
                    state.version = cache_entry(&d);
                    d
                }
            }
        }
    };
    if detected.version.is_none() {
        crate::support::logging::log_once(
            log::Level::Warn,
            "libvirt version unknown (no libvirt.so.0.* in the library dirs, no working virtqemud/libvirtd --version); \
             adding no events (set \"libvirt_version\" in the config)"
                .to_string(),
        );
    }

    let probe = want_probe.then(|| {
        let boot = cache::boot_id(paths);
        let cached = state.probe.as_ref().filter(|_| !force).map(|c| (c, c.stale_reason(boot.as_deref())));
        match cached {
            Some((c, None)) => c.results.clone(),
            other => {
                stale.push(other.and_then(|(_, why)| why).unwrap_or_else(|| "no probe cached".to_string()));
                let results = probe::probe_all(paths);
                // Without a boot id the probe cannot be keyed, so it is not kept.
                state.probe = boot.map(|boot_id| CachedProbe { boot_id, results: results.clone() });
                results
            }
        }
    });

    let write = force || use_ == CacheUse::ReadWrite;
    let cache = cache_report(paths, &loaded, (&old, &state), &stale, force, write);
    let lookup = |ev: &Event| probe_result(probe.as_ref(), ev.name).map_err(|why| format!("the host cannot open it: {why}"));
    let use_probe: Option<&dyn Fn(&Event) -> ProbeResult> = if cfg.host_probe { Some(&lookup) } else { None };
    let source = source.unwrap_or_else(|| detected.describe());
    let mut plan = judge(cfg, detected.version, &source, use_probe);
    let found = resctrl::probe(paths);
    apply_resctrl(&mut plan, resctrl::judge(&found, detected.version));
    Assessment { plan, detected, probe, cache, resctrl: found }
}

/// One event's probe result; an event missing from the results counts as not openable.
pub fn probe_result(results: Option<&probe::Results>, name: &str) -> ProbeResult {
    match results.and_then(|r| r.get(name)) {
        Some(None) => Ok(()),
        Some(Some(why)) => Err(why.clone()),
        None => Err("not probed".to_string()),
    }
}

/// A detected (not pinned, not unknown) version with its source's identity.
fn cache_entry(d: &Detected) -> Option<CachedVersion> {
    let path = d.path.clone()?;
    let identity = Identity::of(&path)?;
    Some(CachedVersion { version: d.version?, source: d.source, path, identity })
}

/// Writes the state when it changed (or was unreadable) and `write` allows, and says what the
/// cache was and is.
fn cache_report(paths: &Paths, loaded: &Loaded, (old, new): (&State, &State), stale: &[String], force: bool, write: bool) -> CacheReport {
    // "fresh" only when nothing had to be detected or probed again.
    let (state, why) = match loaded {
        Loaded::Missing => (CacheState::Missing, String::new()),
        Loaded::Ignored(why) => (CacheState::Ignored, why.clone()),
        Loaded::Untrusted(why) => (CacheState::Untrusted, why.clone()),
        Loaded::Found(_) if force => (CacheState::Stale, "refresh requested".to_string()),
        Loaded::Found(_) if !stale.is_empty() => (CacheState::Stale, stale.join("; ")),
        Loaded::Found(_) => (CacheState::Fresh, String::new()),
    };
    let must_write = (new != old || !matches!(loaded, Loaded::Found(_)) || force) && state != CacheState::Untrusted;
    let worth = must_write && (new.version.is_some() || new.probe.is_some() || force);
    let written = (worth && write).then(|| cache::store(paths, new));
    let mut detail = why;
    let mut push = |s: &str| {
        if !detail.is_empty() {
            detail.push_str("; ");
        }
        detail.push_str(s);
    };
    match written {
        // A refresh says what it replaced: "rebuilt (refresh requested)", "rebuilt (was missing)".
        Some(Ok(())) if force => {
            let was = match loaded {
                Loaded::Found(_) => "refresh requested".to_string(),
                _ if detail.is_empty() => format!("was {state}"),
                _ => format!("was {state}: {detail}"),
            };
            log::info!("cache {}: rebuilt ({was})", paths.state_file().display());
            return CacheReport { state: CacheState::Rebuilt, detail: was };
        }
        Some(Ok(())) => push(if state == CacheState::Missing { "written" } else { "rewritten" }),
        Some(Err(e)) => {
            push(&e.to_string());
            let state = match e {
                cache::NotStored::Busy(_) => CacheState::Busy,
                cache::NotStored::Untrusted(_) => CacheState::Untrusted,
                cache::NotStored::Unwritable(_) => CacheState::Unwritable,
            };
            return CacheReport { state, detail };
        }
        None if state == CacheState::Untrusted => {}
        None if worth => push("not written: this command only reads the cache (refresh writes it)"),
        None if state != CacheState::Fresh && new.version.is_none() && new.probe.is_none() => push("nothing to cache yet"),
        None if state != CacheState::Fresh => push("unchanged"),
        None => {}
    }
    if state != CacheState::Fresh {
        crate::support::logging::log_once(log::Level::Info, format!("cache {}: {state} ({detail})", paths.state_file().display()));
    }
    CacheReport { state, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(events: &[&'static str]) -> Config {
        Config { enabled_perf_events: events.to_vec(), ..Config::default() }
    }

    #[test]
    fn version_gates_events() {
        let c = cfg(&["page_faults", "cpu_cycles", "cmt"]);
        let p = judge(&c, Some(Version::new(3, 0, 0)), "pin", None);
        assert_eq!(p.add, vec!["cmt", "cpu_cycles"], "catalog order");
        assert_eq!(p.dropped.len(), 1);
        assert_eq!(p.dropped[0].event, "page_faults");
        assert_eq!(p.dropped[0].reason, "needs libvirt 3.2.0, this host has 3.0.0");

        let old = judge(&c, Some(Version::new(1, 3, 5)), "pin", None);
        assert!(old.add.is_empty());
        assert!(old.dropped.iter().all(|d| d.reason.contains("no <perf> support")));

        let unknown = judge(&c, None, "unknown", None);
        assert!(unknown.add.is_empty());
        assert_eq!(unknown.dropped.len(), 3);
    }

    #[test]
    fn probe_drops_unopenable() {
        let c = cfg(&["page_faults", "cpu_cycles"]);
        let probe = |e: &Event| if e.kind == events::Kind::Hardware { Err("ENOENT".to_string()) } else { Ok(()) };
        let p = judge(&c, Some(Version::new(9, 0, 0)), "pin", Some(&probe));
        assert_eq!(p.add, vec!["page_faults"]);
        assert_eq!(p.dropped[0].reason, "ENOENT");
    }

    #[test]
    fn unusable_covers_all_events_not_only_configured() {
        let probe = |e: &Event| if e.kind == events::Kind::Software { Ok(()) } else { Err("the host cannot open it: ENOENT".to_string()) };
        let p = judge(&cfg(&["page_faults"]), Some(Version::new(3, 0, 0)), "pin", Some(&probe));
        // 3 RDT + 10 hardware unopenable, 9 software too new for 3.0.0.
        assert_eq!(p.unusable.len(), 22);
        let pf = p.unusable("page_faults").unwrap();
        assert_eq!((pf.reason.as_str(), pf.rejected), ("needs libvirt 3.2.0, this host has 3.0.0", true));
        let cmt = p.unusable("cmt").unwrap();
        assert_eq!((cmt.reason.as_str(), cmt.rejected), ("the host cannot open it: ENOENT", false));
        let other = p.unusable("future_event").unwrap();
        assert_eq!((other.reason.as_str(), other.rejected), ("libvirt 3.0.0 does not know this event", true));

        // Trusting the host: only the version judges.
        let p = judge(&cfg(&[]), Some(Version::new(9, 0, 0)), "pin", None);
        assert!(p.unusable.is_empty());
        assert!(p.unusable("cmt").is_none());
        assert!(p.unusable("future_event").is_some());

        // Version unknown: only the probe judges, and names outside the catalog stay.
        let p = judge(&cfg(&[]), None, "unknown", Some(&probe));
        assert_eq!(p.unusable.len(), 13);
        assert!(p.unusable("page_faults").is_none());
        assert!(p.unusable("future_event").is_none());
    }

    /// The reports read the cache but never create or write it (issue 20).
    #[test]
    fn read_only_assessment_leaves_no_cache_behind() {
        let paths = crate::support::paths::FakeRoot::new("plan-ro");
        let lib = paths.host("/usr/lib64/libvirt.so.0.9000.0");
        std::fs::create_dir_all(lib.parent().unwrap()).unwrap();
        std::fs::write(&lib, "").unwrap();
        std::fs::create_dir_all(paths.boot_id().parent().unwrap()).unwrap();
        std::fs::write(paths.boot_id(), "b1\n").unwrap();
        let c = cfg(&["page_faults"]);
        for mode in [Mode::Plan, Mode::Report] {
            let a = assess(&paths, &c, mode, None, CacheUse::ReadOnly);
            assert_eq!(a.plan.version, Some(Version::new(9, 0, 0)));
            assert_eq!(a.cache.state, CacheState::Missing, "{:?}", a.cache);
            assert!(a.cache.detail.contains("not written"), "{:?}", a.cache);
            assert!(!paths.cache_dir().exists(), "{mode:?} created the cache");
        }
        assert!(!paths.root().join("var").exists(), "nothing under /var");
        // A writer writes it; then a reader finds it fresh and leaves it byte for byte.
        assess(&paths, &c, Mode::Report, None, CacheUse::ReadWrite);
        let before = std::fs::read(paths.state_file()).unwrap();
        let a = assess(&paths, &c, Mode::Report, None, CacheUse::ReadOnly);
        assert_eq!(a.cache.state, CacheState::Fresh);
        // Stale (another boot): computed in memory, the file unchanged.
        std::fs::write(paths.boot_id(), "b2\n").unwrap();
        let a = assess(&paths, &c, Mode::Report, None, CacheUse::ReadOnly);
        assert_eq!(a.cache.state, CacheState::Stale);
        assert_eq!(std::fs::read(paths.state_file()).unwrap(), before);
    }

    #[test]
    fn remote_target_is_not_probed_here() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::new(tmp.path().join("root"));
        let r = Reported { version: Version::new(9, 0, 0), source: "virsh -c qemu+ssh://h/system version --daemon".into() };
        let c = cfg(&["page_faults", "cpu_cycles", "cmt"]);
        let p = plan(&paths, &c, &Target::Remote(r.clone()));
        assert_eq!(p.add, vec!["page_faults"]);
        assert!(p.dropped.iter().all(|d| d.reason.starts_with(REMOTE_NO_PROBE)), "{p:?}");
        assert!(p.unusable.is_empty(), "not knowing is no reason to remove: {p:?}");
        assert!(p.remote && p.monitors_unavailable().is_empty(), "the destination's resctrl decides: {p:?}");
        assert_eq!(p.version_source, r.source);
        assert!(!paths.root().exists(), "nothing local was touched");
        let trusting = Config { host_probe: false, ..c };
        assert_eq!(plan(&paths, &trusting, &Target::Remote(r)).add, vec!["cmt", "cpu_cycles", "page_faults"]);
    }

    /// Which monitor kinds a guest must not carry here: none for another host or an unknown
    /// libvirt; the distinct reasons of a kind joined.
    #[test]
    fn unavailable_monitor_kinds() {
        let state = |event, monitor, reason: Option<&str>| MonitorState {
            event,
            feature: "f",
            monitor,
            available: reason.is_none(),
            reason: reason.map(str::to_string),
        };
        let mut p = Plan {
            resctrl: vec![
                state("cmt", Monitor::Cache, Some("not mounted")),
                state("mbmt", Monitor::MemoryBandwidth, Some("no total")),
                state("mbml", Monitor::MemoryBandwidth, Some("no local")),
            ],
            ..Plan::default()
        };
        assert_eq!(
            p.monitors_unavailable(),
            vec![(Monitor::Cache, "not mounted".to_string()), (Monitor::MemoryBandwidth, "no total; no local".to_string())]
        );
        p.resctrl[2] = state("mbml", Monitor::MemoryBandwidth, None);
        assert_eq!(p.monitors_unavailable(), vec![(Monitor::Cache, "not mounted".to_string())], "one MBM feature is enough");
        p.resctrl[0] = state("cmt", Monitor::Cache, Some(resctrl::VERSION_UNKNOWN));
        assert!(p.monitors_unavailable().is_empty());
        assert!(Plan::default().monitors_unavailable().is_empty(), "not judged");
        let mut remote = Plan { resctrl: vec![state("cmt", Monitor::Cache, Some(REMOTE_NO_PROBE))], ..Plan::default() };
        remote.remote = true;
        assert!(remote.monitors_unavailable().is_empty());
    }
}

//! The `status` command: what each guest really has. For every selected guest: the events in its
//! persistent config and live, whether its live counters see all of its threads, and which events
//! would make its next start fail. It only reads (virsh list, dumpxml, domstats); it changes
//! nothing. Whatever the number of guests, it runs a handful of virsh processes: the lists, the
//! persistent configs, the live XML, and two domstats.
//!
//! libvirt opens a guest's counters on the QEMU process with `inherit=1`, so they count the
//! threads created after they were opened. Opened at launch (boot, restore, incoming migration)
//! they see every thread; opened on a running guest (`virsh perf --enable --live`, or when the
//! daemon restarts and reopens them) they miss the vCPU threads that already run. That is visible
//! by comparing a clock counter (`task_clock`, `cpu_clock`: nanoseconds the counted threads ran)
//! with the CPU time of the whole guest (`cpu.time`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::libvirt::parse::dedup;
use crate::libvirt::{self as lv, Call, Listing, Reply, Virsh, Xml};
use crate::support::text::table;
use crate::cmd::{filter, print_json, write_stdout, Ctx};
use crate::core::config::Config;
use crate::core::monitor::{Monitor, RemovedTune};
use crate::core::resctrl;
use crate::core::rewrite::Document;
use crate::host::domstats::{judge, parse_domstats, Counters, CLOCKS};
use crate::host::plan::{self, Plan};
use crate::support::error::{exit, Result};

/// The JSON's `schema`; raise it on any change that can break a reader.
pub const SCHEMA: u32 = 1;

/// How long the counters and CPU time are watched.
const INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusOpts {
    pub connect: Option<String>,
    pub json: bool,
    pub all: bool,
    pub domains: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AtRisk {
    pub event: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Guest {
    pub domain: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    pub running: bool,
    /// `enabled='yes'` events in the persistent config.
    pub config_events: Vec<String>,
    /// `enabled='yes'` events in the live XML (running guests).
    pub live_events: Vec<String>,
    pub counters: Counters,
    pub reason: String,
    /// Events in the persistent config that make the next start fail here.
    pub at_risk: Vec<AtRisk>,
    /// resctrl monitors the plan gives guests here that this running guest has not got live
    /// (`cache`, `memory-bandwidth`): it started before they were added, or they could not be.
    /// Left out of the JSON when empty, so hosts without resctrl see schema 1 unchanged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_monitors: Vec<Monitor>,
    /// Monitor-only `<cachetune>`/`<memorytune>` in the persistent config of a kind this host
    /// cannot have: libvirt refuses the next start ("Resource control is not supported on this
    /// host"). Left out of the JSON when empty, like `missing_monitors`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub monitors_at_risk: Vec<RemovedTune>,
}

impl Guest {
    /// Nothing shown is wrong or unverified, and the next start is safe.
    fn fine(&self) -> bool {
        self.at_risk.is_empty() && self.monitors_at_risk.is_empty() && matches!(self.counters, Counters::Complete | Counters::None)
    }
}

#[derive(Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub complete: usize,
    pub partial: usize,
    pub none: usize,
    pub unknown: usize,
    /// Guests with at least one event at risk.
    pub at_risk: usize,
}

/// The JSON document (`status --json`), fields in this order.
#[derive(serde::Serialize)]
struct Report<'a> {
    schema: u32,
    /// The libvirt version judged against, `null` when unknown.
    libvirt: Option<String>,
    /// What the exit status says: 0 exactly when this is true.
    ok: bool,
    guests: &'a [Guest],
    /// Guests the config's domains include/exclude leaves out: not examined.
    skipped: &'a [String],
    summary: &'a Summary,
    /// Why the guests could not be examined at all (libvirt unreachable, frozen, bad URI);
    /// absent when they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn summarize(guests: &[Guest]) -> Summary {
    let mut s = Summary::default();
    for g in guests {
        match g.counters {
            Counters::Complete => s.complete += 1,
            Counters::Partial => s.partial += 1,
            Counters::None => s.none += 1,
            Counters::Unknown => s.unknown += 1,
        }
        s.at_risk += usize::from(!g.at_risk.is_empty() || !g.monitors_at_risk.is_empty());
    }
    s
}

/// `virt-perf-hook status`: exit 0 when no selected guest has counters that are partial or
/// unknown and none has an event at risk; 1 otherwise.
pub fn status(ctx: &Ctx, o: &StatusOpts) -> Result<i32> {
    match ctx.load_config().and_then(|cfg| examine(ctx, &cfg, o)) {
        Err(e) if o.json => {
            // Still one JSON document: a monitoring script parses stdout whatever happened.
            let summary = summarize(&[]);
            let doc = Report { schema: SCHEMA, libvirt: None, ok: false, guests: &[], skipped: &[], summary: &summary, error: Some(e.to_string()) };
            print_json(&doc)?;
            Err(e)
        }
        other => other,
    }
}

fn examine(ctx: &Ctx, cfg: &Config, o: &StatusOpts) -> Result<i32> {
    let virsh = Virsh::from_env(o.connect.clone(), &ctx.paths);
    // A report: it reads the cache but never writes it.
    let plan = plan::plan_with(&ctx.paths, cfg, &crate::cmd::sweep::target(&virsh, cfg)?, plan::CacheUse::ReadOnly);
    let (guests, skipped) = inspect_all(&virsh, cfg, &plan, o)?;
    let mut guests = guests;
    judge_counters(&virsh, &mut guests)?;
    let summary = summarize(&guests);
    let ok = guests.iter().all(Guest::fine);
    if o.json {
        let doc = Report { schema: SCHEMA, libvirt: plan.version.map(|v| v.to_string()), ok, guests: &guests, skipped: &skipped, summary: &summary, error: None };
        print_json(&doc)?;
    } else {
        write_stdout(&render(&guests, &skipped))?;
    }
    if guests.is_empty() && skipped.is_empty() {
        log::warn!("no domains defined{}", virsh.on());
    } else if !ok {
        log::warn!(
            "{} partial, {} unknown, {} with events at risk; see the table",
            summary.partial,
            summary.unknown,
            summary.at_risk
        );
    }
    Ok(if ok { exit::OK } else { exit::FAILURE })
}

/// Every selected guest's configs, batched (see [`batch`](crate::libvirt::batch)): one virsh lists
/// the guests (`--all`) and the running ones by UUID, one reads every persistent config
/// (`dumpxml --inactive`, by UUID, or by the DOMAIN as given: virsh looks it up by ID, UUID or
/// name), one the live XML of the selected running guests. Returns the guests and the names
/// the config's include/exclude leaves out (judged on the name in the XML, so a UUID or ID
/// given on the command line works too). Counters are judged later, for all guests at once.
fn inspect_all(virsh: &Virsh, cfg: &Config, plan: &Plan, o: &StatusOpts) -> Result<(Vec<Guest>, Vec<String>)> {
    let mut calls: Vec<Call> = Vec::with_capacity(2);
    if o.all {
        calls.push(lv::list(Listing::All));
    }
    calls.push(lv::list(Listing::Active));
    let mut lists = virsh.batch_collect(&calls)?.iter().map(|r| lv::listed(virsh, r)).collect::<Result<Vec<_>>>()?;
    let active: HashSet<String> = lists.pop().unwrap_or_default().into_iter().collect();
    let targets = if o.all { lists.pop().unwrap_or_default() } else { dedup(&o.domains) };
    let calls: Vec<Call> = targets.iter().map(|t| lv::dumpxml(t, Xml::Persistent)).collect();
    let mut guests: Vec<Guest> = Vec::with_capacity(targets.len());
    let mut skipped: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    virsh.batch(&calls, &[], &mut |i, reply| {
        match inspect(cfg, plan, &targets[i], &reply, &active) {
            // The same guest named twice (by name and by UUID, say) is one row.
            Ok(g) if g.uuid.as_ref().is_some_and(|u| !seen.insert(u.clone())) => {}
            Ok(g) => guests.push(g),
            Err(name) => skipped.push(name),
        }
        Ok(())
    })?;
    let skipped = dedup(&skipped);
    // The live XML of the running guests whose config could be read.
    let live: Vec<usize> = (0..guests.len()).filter(|&i| guests[i].running && guests[i].reason.is_empty()).collect();
    let calls: Vec<Call> = live.iter().map(|&i| lv::dumpxml(guests[i].uuid.as_deref().unwrap_or_default(), Xml::Live)).collect();
    virsh.batch(&calls, &[], &mut |k, reply| {
        with_live(&mut guests[live[k]], &reply, &plan.monitors);
        Ok(())
    })?;
    Ok((guests, skipped))
}

/// One guest from its persistent config (`dumpxml --inactive` of `target`). `Err` with its
/// name when the config's include/exclude leaves it out.
fn inspect(cfg: &Config, plan: &Plan, target: &str, conf: &Reply, active: &HashSet<String>) -> std::result::Result<Guest, String> {
    let mut g = Guest {
        domain: target.to_string(),
        uuid: None,
        running: active.contains(target),
        config_events: Vec::new(),
        live_events: Vec::new(),
        counters: Counters::Unknown,
        reason: String::new(),
        at_risk: Vec::new(),
        missing_monitors: Vec::new(),
        monitors_at_risk: Vec::new(),
    };
    if conf.failed() || conf.stdout.trim().is_empty() {
        g.reason = conf.message();
        return Ok(g);
    }
    let doc = match Document::parse(&conf.stdout) {
        Ok(d) => d,
        Err(e) => {
            g.reason = format!("cannot read its XML: {e}");
            return Ok(g);
        }
    };
    g.domain = doc.name().unwrap_or(target).to_string();
    if !cfg.domains.selects(&g.domain) {
        return Err(g.domain);
    }
    g.uuid = doc.uuid().map(str::to_string);
    g.running = g.uuid.as_ref().is_some_and(|u| active.contains(u));
    g.config_events = enabled(&doc);
    // What the rewrite would take out, whatever "unsupported" says: this is about the next start.
    g.at_risk = filter::unusable_in(plan, &doc).into_iter().map(|u| AtRisk { event: u.event, reason: u.reason }).collect();
    g.monitors_at_risk = resctrl::removable(&doc, &plan.monitors_unavailable());
    if !g.running {
        g.counters = Counters::None;
        g.reason = "not running".to_string();
    }
    Ok(g)
}

/// Adds a running guest's live events (`dumpxml` without `--inactive`).
fn with_live(g: &mut Guest, live: &Reply, monitors: &[Monitor]) {
    let doc = if live.failed() || live.stdout.trim().is_empty() {
        Err(live.message())
    } else {
        Document::parse(&live.stdout).map_err(|e| e.to_string())
    };
    match doc {
        Ok(doc) => {
            g.live_events = enabled(&doc);
            let live = resctrl::monitors_in(&doc);
            g.missing_monitors = monitors.iter().filter(|m| !live.contains(m)).copied().collect();
        }
        Err(e) => {
            g.reason = format!("cannot read its live XML: {e}");
            return;
        }
    }
    if g.live_events.is_empty() {
        g.counters = Counters::None;
        g.reason = "no events live".to_string();
        if !g.config_events.is_empty() {
            g.reason.push_str("; the config's events start at its next start (boot, restore or migration)");
        }
    }
}

/// The `enabled='yes'` events of a domain XML, in document order.
fn enabled(doc: &Document<'_>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (name, state) in doc.perf_events() {
        if state == Some("yes") && !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
    }
    out
}

/// Judges every running guest with live events whose counters are not judged yet: two
/// `virsh domstats` calls for all of them, [`INTERVAL`] apart.
fn judge_counters(virsh: &Virsh, guests: &mut [Guest]) -> Result<()> {
    let pending = |g: &Guest| g.running && !g.live_events.is_empty() && g.counters == Counters::Unknown && g.reason.is_empty();
    let mut need = false;
    for g in guests.iter_mut().filter(|g| pending(g)) {
        if clock(g).is_none() {
            g.reason = "no task_clock or cpu_clock live to compare with its CPU time (enable one to let status judge)".into();
        } else {
            need = true;
        }
    }
    if !need {
        return Ok(());
    }
    let args = ["domstats", "--perf", "--cpu-total", "--list-active"];
    let first = virsh.run(&args)?;
    let start = Instant::now();
    std::thread::sleep(INTERVAL);
    let second = virsh.run(&args)?;
    let secs = start.elapsed().as_secs_f64();
    let failed = [&first, &second].into_iter().find(|o| !o.success()).map(|o| o.message());
    let (before, after) = (parse_domstats(&first.stdout), parse_domstats(&second.stdout));
    for g in guests.iter_mut().filter(|g| pending(g)) {
        let Some(clock) = clock(g) else { continue };
        (g.counters, g.reason) = match &failed {
            Some(msg) => (Counters::Unknown, format!("virsh domstats failed: {msg}")),
            None => judge(clock, before.get(&g.domain), after.get(&g.domain), secs),
        };
    }
    Ok(())
}

fn clock(g: &Guest) -> Option<&'static str> {
    CLOCKS.into_iter().find(|c| g.live_events.iter().any(|e| e == c))
}

/// One of each kind, for the table.
fn dedup_tunes(tunes: &[RemovedTune]) -> Vec<&RemovedTune> {
    let mut out: Vec<&RemovedTune> = Vec::new();
    for t in tunes {
        if !out.iter().any(|o| o.monitor == t.monitor) {
            out.push(t);
        }
    }
    out
}

/// The table: one row per guest, skipped ones last.
fn render(guests: &[Guest], skipped: &[String]) -> String {
    let list = |v: &[String]| if v.is_empty() { "-".to_string() } else { v.join(",") };
    let mut rows: Vec<[String; 7]> = guests
        .iter()
        .map(|g| {
            let mut risk: Vec<String> = g.at_risk.iter().map(|r| r.event.clone()).collect();
            let mut each: Vec<String> = g.at_risk.iter().map(|r| format!("{} ({})", r.event, r.reason)).collect();
            for t in dedup_tunes(&g.monitors_at_risk) {
                risk.push(format!("<{}>", t.monitor.element()));
                each.push(format!("a monitor-only <{}> ({})", t.monitor.element(), t.reason));
            }
            let mut detail = g.reason.clone();
            if !g.missing_monitors.is_empty() {
                let names: Vec<String> = g.missing_monitors.iter().map(|m| m.to_string()).collect();
                let sep = if detail.is_empty() { "" } else { "; " };
                detail.push_str(&format!("{sep}no resctrl {} monitor live (takes effect at its next start)", names.join(",")));
            }
            if !each.is_empty() {
                detail.push_str(&format!(
                    "; the next start fails on {}: run 'virt-perf-hook apply'",
                    each.join(", ")
                ));
            }
            [
                g.domain.clone(),
                if g.running { "running" } else { "off" }.to_string(),
                list(&g.config_events),
                list(&g.live_events),
                g.counters.to_string(),
                list(&risk),
                detail,
            ]
        })
        .collect();
    for name in skipped {
        let dash = || "-".to_string();
        let why = "not selected by the config's domains include/exclude".to_string();
        rows.push([name.clone(), "skipped".into(), dash(), dash(), dash(), dash(), why]);
    }
    table(["DOMAIN", "STATE", "CONFIG", "LIVE", "COUNTERS", "AT RISK", "DETAIL"], &rows)
}

//! The sweep `apply` and `watch` share: find the guests, read their persistent configs, and make
//! each match the config file — without ever writing back a whole XML that an operator may have
//! changed meanwhile.
//!
//! Per guest the rewrite is turned into a [`PerfDelta`]. Whatever it can say as enables and
//! disables goes to `virsh perf --domain UUID --enable … --disable … --config`, libvirt's
//! atomic change of `<perf>` alone: a define racing it keeps all of its own changes, and a guest
//! undefined meanwhile makes the call fail instead of coming back. Only what `perf` cannot say
//! ([`Surgery`]), or a driver without the perf API, takes the guarded define: the config is
//! read again right before `define`, and the guest is skipped if it changed, is no longer
//! persistent or is gone. The window left is between that second read and the define (one
//! virsh round trip, milliseconds): see docs/watch-and-apply.md.
//!
//! Batched (see [`batch`](crate::libvirt::batch)): one virsh lists and looks up, one asks
//! names, then per round of [`ROUND`] guests one reads their configs and one applies every
//! `perf` change; a guarded define costs two more (re-read, define).

use std::collections::{HashMap, HashSet};

use crate::cmd::filter;
use crate::core::config::Config;
use crate::core::delta::PerfDelta;
use crate::core::rewrite::Document;
use crate::host::plan::{self, Dropped, Plan, Reported, Target};
use crate::libvirt::{self as lv, Listing, MemFile, Reply, Virsh, Xml};
use crate::support::error::{Error, Result};
use crate::support::paths::Paths;
use crate::support::text::{printable, table};

/// Which guests a sweep covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// Every defined guest.
    All,
    /// Names, UUIDs or IDs, as virsh looks them up.
    Named(Vec<String>),
}

/// What the sweep did to one guest: the RESULT column.
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

/// The DOMAIN / RESULT / DETAIL table.
pub fn render_table(rows: &[Row]) -> String {
    let cells: Vec<[String; 3]> =
        rows.iter().map(|r| [r.domain.clone(), r.result.as_str().to_string(), r.detail.clone()]).collect();
    table(["DOMAIN", "RESULT", "DETAIL"], &cells)
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

/// Guests per round of a sweep. Each guarded define's config waits in a memfd (an open
/// descriptor): this keeps well under the usual limit of 1024 descriptors.
pub const ROUND: usize = 256;

/// Why a guest outside `domains` is left alone.
pub const NOT_SELECTED: &str = "not selected by the config's domains include/exclude";

/// Whose libvirt the plan is for, with the version from the pin or from the daemon virsh talks
/// to (outside a hook asking libvirt is safe). For a remote host nothing local (probe, cache,
/// library files) applies, so its version must come from virsh.
pub fn target(virsh: &Virsh, cfg: &Config) -> Result<Target> {
    let remote = virsh.is_remote()?;
    let reported = match cfg.libvirt_version {
        Some(version) => Some(Reported { version, source: "config pin".into() }),
        None => match virsh.daemon_version()? {
            Ok(d) => {
                log::debug!("libvirt {} (from {})", d.version, d.source);
                Some(Reported { version: d.version, source: d.source })
            }
            Err(why) if remote => {
                return Err(Error::Command {
                    what: format!("virsh version{}", virsh.on()),
                    code: crate::support::error::exit::FAILURE,
                    msg: format!("{why}; cannot tell the remote libvirt version (fix the connection, or set \"libvirt_version\" in the config)"),
                })
            }
            Err(why) => {
                crate::support::logging::log_once(
                    log::Level::Warn,
                    format!("cannot get the libvirt version from 'virsh version'{} ({why}); detecting it locally", virsh.on()),
                );
                None
            }
        },
    };
    Ok(match (remote, reported) {
        (true, Some(r)) => Target::Remote(r),
        (false, Some(r)) if cfg.libvirt_version.is_none() => Target::LocalReported(r),
        _ => Target::Local,
    })
}

/// The plan for `virsh`'s host, its dropped events warned about once.
pub fn plan_for(paths: &Paths, cfg: &Config, virsh: &Virsh) -> Result<Plan> {
    let plan = plan::plan(paths, cfg, &target(virsh, cfg)?);
    for Dropped { event, reason } in &plan.dropped {
        crate::support::logging::log_once(log::Level::Warn, format!("not enabling {event}: {reason}"));
    }
    Ok(plan)
}

/// The sweep: one row per guest. `Err` only when virsh cannot run or libvirt cannot be reached
/// at all (or does not answer in time); a guest's own failure is its row.
pub fn sweep(cfg: &Config, plan: &Plan, virsh: &Virsh, targets: &Targets, dry_run: bool) -> Result<Vec<Row>> {
    let Some(found) = find_guests(virsh, targets)? else { return Ok(Vec::new()) };
    let mut slots: Vec<Slot> = Vec::with_capacity(found.guests.len());
    for (label, looked_up) in found.guests {
        slots.push(match looked_up {
            Lookup::Failed(msg) => Slot::Done(Row { domain: label, result: Verdict::Failed, detail: msg }),
            Lookup::Gone => Slot::Done(Row { domain: label, result: Verdict::Skipped, detail: GONE.into() }),
            Lookup::Found(g) if found.transient.contains(&g.uuid) => {
                let detail = "transient: it has no persistent config to change".to_string();
                Slot::Done(Row { domain: g.name, result: Verdict::Skipped, detail })
            }
            Lookup::Found(g) if !cfg.domains.selects(&g.name) => Slot::Done(Row { domain: g.name, result: Verdict::Skipped, detail: NOT_SELECTED.into() }),
            Lookup::Found(g) => Slot::Pending(g),
        });
    }
    let pending: Vec<usize> = (0..slots.len()).filter(|&i| matches!(slots[i], Slot::Pending(_))).collect();
    for round in pending.chunks(ROUND) {
        Round { virsh, cfg, plan, dry_run, active: &found.active }.run(&mut slots, round)?;
    }
    Ok(slots
        .into_iter()
        .map(|s| match s {
            Slot::Done(row) => row,
            // Every pending guest got its row in its round.
            Slot::Pending(g) => Row { domain: g.name, result: Verdict::Failed, detail: "not handled".into() },
        })
        .collect())
}

/// What the sweep knows of the guests it covers.
struct Found {
    /// Each target, in order and once per guest: its label (as given, or its UUID for `--all`)
    /// and the guest, or why it could not be looked up.
    guests: Vec<(String, Lookup)>,
    /// UUIDs of the running guests: their change waits for their next start.
    active: HashSet<String>,
    /// UUIDs of the transient guests: no persistent config.
    transient: HashSet<String>,
}

/// What looking up one target found.
enum Lookup {
    Found(Guest),
    /// Found by the listing or `dominfo`, then undefined before virsh said its name (a race
    /// with an operator's `undefine`, not a failure).
    Gone,
    /// Not found, or virsh failed: the message says which.
    Failed(String),
}

/// A guest's place in the table: its row, or the guest still to be handled.
enum Slot {
    Done(Row),
    Pending(Guest),
}

/// Lists and looks up the targets: one virsh for the lists (and a `dominfo` per named target,
/// which finds a domain by ID, UUID or name as virsh does); then one for every guest's name
/// (`domname` by UUID, exactly as libvirt has it). `None` when there are none.
fn find_guests(virsh: &Virsh, targets: &Targets) -> Result<Option<Found>> {
    let named: &[String] = match targets {
        Targets::All => &[],
        Targets::Named(n) if n.is_empty() => return Ok(None),
        Targets::Named(n) => n,
    };
    let all = matches!(targets, Targets::All);
    let mut calls = Vec::with_capacity(3 + named.len());
    if all {
        calls.push(lv::list(Listing::All));
    }
    calls.push(lv::list(Listing::Active));
    calls.push(lv::list(Listing::Transient));
    calls.extend(named.iter().map(|t| lv::dominfo(t)));
    let mut replies = virsh.batch_collect(&calls)?.into_iter();
    let mut list = || lv::listed(virsh, &replies.next().unwrap_or_default());
    let listed = if all { Some(list()?) } else { None };
    let active: HashSet<String> = list()?.into_iter().collect();
    let transient: HashSet<String> = list()?.into_iter().collect();
    let looked_up: Vec<(String, std::result::Result<String, Lookup>)> = match listed {
        Some(uuids) => uuids.into_iter().map(|u| (u.clone(), Ok(u))).collect(),
        None => named.iter().cloned().zip(replies.map(|r| dominfo_uuid(&r))).collect(),
    };
    if looked_up.is_empty() {
        return Ok(None);
    }
    // Each guest once, however often and however it was named.
    let mut seen: HashSet<&str> = HashSet::new();
    let uuids: Vec<&str> = looked_up.iter().filter_map(|(_, u)| u.as_deref().ok()).filter(|u| seen.insert(u)).collect();
    let calls: Vec<lv::Call> = uuids.iter().map(|u| lv::domname(u)).collect();
    let mut names: HashMap<String, Lookup> = HashMap::with_capacity(uuids.len());
    virsh.batch(&calls, &[], &mut |i, r| {
        // virsh prints the name and a newline; a name never holds a '\n', any other byte is its.
        let name = r.stdout.strip_suffix('\n').unwrap_or(&r.stdout);
        let uuid = uuids[i].to_string();
        let got = match (r.failed(), name.is_empty()) {
            // libvirt gave this UUID moments ago: a guest not found now was undefined meanwhile.
            (true, _) if gone(&r) => Lookup::Gone,
            (true, _) | (_, true) => Lookup::Failed(r.message()),
            _ => Lookup::Found(Guest { uuid: uuid.clone(), name: name.to_string() }),
        };
        names.insert(uuid, got);
        Ok(())
    })?;
    let mut done: HashSet<String> = HashSet::new();
    let mut guests = Vec::with_capacity(looked_up.len());
    for (label, uuid) in looked_up {
        let got = match uuid {
            Err(end) => end,
            Ok(uuid) if !done.insert(uuid.clone()) => continue,
            Ok(uuid) => names.remove(&uuid).unwrap_or_else(|| Lookup::Failed("virsh did not say its name".into())),
        };
        guests.push((label, got));
    }
    Ok(Some(Found { guests, active, transient }))
}

/// The UUID in a `dominfo` reply, or why there is none.
fn dominfo_uuid(r: &Reply) -> std::result::Result<String, Lookup> {
    match lv::parse::dominfo_uuid(&r.stdout) {
        Some(u) if !r.failed() => Ok(u.to_string()),
        _ if vanished(r) => Err(Lookup::Gone),
        _ => Err(Lookup::Failed(r.message())),
    }
}

/// Whether virsh found the guest and lost it before it was done (undefined meanwhile): libvirt
/// then names it by UUID ("Domain not found: no domain with matching uuid"), where a name that
/// was never there is "failed to get domain" (an operator's typo stays a failure).
fn vanished(r: &Reply) -> bool {
    r.failed() && r.stderr.contains("Domain not found") && !r.stderr.contains("failed to get domain")
}

/// What one guest's config needs.
enum Change {
    /// Nothing; the row's detail.
    None(String),
    /// A change: the row's detail, the delta, the config as read, the rewritten config.
    New { detail: String, delta: PerfDelta, read: String, new: String },
}

/// A change waiting for its call.
struct Pending {
    slot: usize,
    detail: String,
    delta: PerfDelta,
    read: String,
    new: String,
}

/// One round of a sweep and what it needs to know.
struct Round<'a> {
    virsh: &'a Virsh,
    cfg: &'a Config,
    plan: &'a Plan,
    dry_run: bool,
    active: &'a HashSet<String>,
}

fn guest(slots: &[Slot], i: usize) -> Guest {
    match &slots[i] {
        Slot::Pending(g) => g.clone(),
        Slot::Done(_) => unreachable!("only pending guests go into a round"),
    }
}

impl Round<'_> {
    /// Reads the configs of `slots[round]` (one virsh), applies the atomic changes (one virsh)
    /// and the guarded defines (two), and fills in their rows.
    fn run(&self, slots: &mut [Slot], round: &[usize]) -> Result<()> {
        let calls: Vec<lv::Call> = round.iter().map(|&i| lv::dumpxml(&guest(slots, i).uuid, Xml::PersistentWithSecrets)).collect();
        let mut changes: Vec<Pending> = Vec::new();
        self.virsh.batch(&calls, &[], &mut |k, reply| {
            let slot = round[k];
            let g = guest(slots, slot);
            let row = |result, detail: String| Slot::Done(Row { domain: g.name.clone(), result, detail });
            slots[slot] = match self.rewrite(&g, &reply) {
                Err(done) => Slot::Done(done),
                Ok(Change::None(detail)) => row(Verdict::Ok, detail),
                Ok(Change::New { detail, .. }) if self.dry_run => row(Verdict::WouldChange, detail),
                Ok(Change::New { detail, delta, read, new }) => {
                    changes.push(Pending { slot, detail, delta, read, new });
                    Slot::Pending(g)
                }
            };
            Ok(())
        })?;
        let (atomic, surgery): (Vec<Pending>, Vec<Pending>) = changes.into_iter().partition(|c| c.delta.atomic());
        let mut guarded = self.perf(slots, atomic)?;
        guarded.extend(surgery);
        self.guarded_define(slots, guarded)
    }

    /// `virsh perf … --config` for each change; returns those the driver cannot do that way.
    fn perf(&self, slots: &mut [Slot], changes: Vec<Pending>) -> Result<Vec<Pending>> {
        let calls: Vec<lv::Call> = changes
            .iter()
            .map(|c| {
                let en: Vec<&str> = c.delta.enable.iter().map(String::as_str).collect();
                let dis: Vec<&str> = c.delta.disable.iter().map(String::as_str).collect();
                lv::perf_config(&guest(slots, c.slot).uuid, &en, &dis)
            })
            .collect();
        let mut replies: Vec<Reply> = Vec::with_capacity(calls.len());
        self.virsh.batch(&calls, &[], &mut |_, r| {
            replies.push(r);
            Ok(())
        })?;
        let mut unsupported = Vec::new();
        for (c, r) in changes.into_iter().zip(replies) {
            let g = guest(slots, c.slot);
            if lv::unsupported(&r) {
                unsupported.push(c);
                continue;
            }
            slots[c.slot] = Slot::Done(match r.failed() {
                false => Row { domain: g.name, result: Verdict::Changed, detail: disabled_wording(&c.detail) },
                true if gone(&r) => Row { domain: g.name, result: Verdict::Skipped, detail: GONE.into() },
                // Undefined while running: libvirt refuses a persistent change, as it should.
                true if r.stderr.contains("transient domain") => Row { domain: g.name, result: Verdict::Skipped, detail: TRANSIENT_NOW.into() },
                true => Row { domain: g.name, result: Verdict::Failed, detail: format!("virsh perf failed: {}", r.message()) },
            });
        }
        Ok(unsupported)
    }

    /// The guarded define: reads each config again with `dominfo` (still persistent?) and
    /// defines the rewrite only where the config is exactly what was read.
    fn guarded_define(&self, slots: &mut [Slot], changes: Vec<Pending>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut calls = Vec::with_capacity(2 * changes.len());
        for c in &changes {
            let uuid = guest(slots, c.slot).uuid;
            calls.push(lv::dominfo(&uuid));
            calls.push(lv::dumpxml(&uuid, Xml::PersistentWithSecrets));
        }
        let replies = self.virsh.batch_collect(&calls)?;
        let mut defines: Vec<(Pending, MemFile)> = Vec::new();
        for (k, c) in changes.into_iter().enumerate() {
            let (info, now) = (&replies[2 * k], &replies[2 * k + 1]);
            let g = guest(slots, c.slot);
            let skip = |detail: &str| Slot::Done(Row { domain: g.name.clone(), result: Verdict::Skipped, detail: detail.to_string() });
            let persistent = !info.failed() && info.stdout.lines().any(|l| l.starts_with("Persistent:") && l.trim_end().ends_with("yes"));
            slots[c.slot] = if info.failed() || now.failed() {
                skip(GONE)
            } else if !persistent {
                skip(TRANSIENT_NOW)
            } else if now.stdout != c.read {
                skip("its config changed meanwhile: left alone (the next event or sweep looks again)")
            } else {
                match MemFile::new("virt-perf-hook-domain.xml", c.new.as_bytes()) {
                    Ok(f) => {
                        defines.push((c, f));
                        continue;
                    }
                    Err(e) => Slot::Done(Row { domain: g.name, result: Verdict::Failed, detail: format!("cannot hold its new config in memory (memfd_create): {e}") }),
                }
            };
        }
        let calls: Vec<lv::Call> = defines.iter().map(|(_, f)| lv::define_file(&f.path())).collect();
        let fds: Vec<std::os::fd::RawFd> = defines.iter().map(|(_, f)| f.fd()).collect();
        let mut results: Vec<std::result::Result<(), String>> = vec![Ok(()); defines.len()];
        self.virsh.batch(&calls, &fds, &mut |i, reply| {
            if reply.failed() {
                // virsh names the file it read: say what it was.
                results[i] = Err(reply.message().replace(&defines[i].1.path(), "the new config"));
            }
            Ok(())
        })?;
        for ((c, _), res) in defines.into_iter().zip(results) {
            let g = guest(slots, c.slot);
            slots[c.slot] = Slot::Done(match res {
                Ok(()) => Row { domain: g.name, result: Verdict::Changed, detail: c.detail },
                Err(msg) => Row { domain: g.name, result: Verdict::Failed, detail: format!("defining the new config failed: {msg}") },
            });
        }
        Ok(())
    }

    /// The rewrite of one guest's persistent config as `dumpxml` gave it. `Err` is its (failed
    /// or skipped) row.
    fn rewrite(&self, g: &Guest, xml: &Reply) -> std::result::Result<Change, Row> {
        let row = |result, detail: String| Row { domain: g.name.clone(), result, detail };
        if xml.failed() || xml.stdout.trim().is_empty() {
            return Err(if gone(xml) { row(Verdict::Skipped, GONE.into()) } else { row(Verdict::Failed, xml.message()) });
        }
        let filtered = Document::parse(&xml.stdout)
            .and_then(|doc| filter::rewrite_planned(self.cfg, self.plan.clone(), &doc, g.name.clone()));
        let (filtered, outcome) = match filtered {
            Ok(f) => match f.outcome.clone() {
                Some(o) => (f, o),
                None => return Err(row(Verdict::Skipped, NOT_SELECTED.into())),
            },
            Err(e) => return Err(row(Verdict::Failed, format!("cannot read its XML: {e}"))),
        };
        let Some(new) = outcome.xml.as_deref() else {
            let has: Vec<&str> = self.plan.add.iter().copied().filter(|e| !outcome.kept_disabled.contains(e)).collect();
            let mut parts = vec![if has.is_empty() { "nothing to change".to_string() } else { format!("has {}", has.join(",")) }];
            if !outcome.kept_disabled.is_empty() {
                parts.push(format!("kept disabled {} (existing: respect)", outcome.kept_disabled.join(",")));
            }
            return Ok(Change::None(parts.join("; ")));
        };
        let rejected: Vec<&str> = filtered.removed.iter().filter(|u| u.rejected).map(|u| u.event.as_str()).collect();
        let delta = PerfDelta::of(&outcome, &rejected, &self.cfg.enabled_perf_events, self.cfg.existing);
        let mut detail = outcome.summary_with(|e| filtered.why_removed(e));
        if self.active.contains(&g.uuid) {
            detail.push_str("; ");
            detail.push_str(NEXT_START);
        }
        if let Some(s) = delta.surgery.first() {
            log::debug!("domain '{}': needs a guarded define: {s}", printable(&g.name));
        }
        // libvirt writes a '\r' in a value (a name may end in one) as is, and the XML parser
        // reads a bare '\r' as a newline (a name with one is refused): as a reference it stays.
        Ok(Change::New { detail, delta, read: xml.stdout.clone(), new: new.replace('\r', "&#13;") })
    }
}

/// A row's detail once `perf --disable` did the healing: the events are `enabled='no'` now, not
/// removed (the summary, written for the byte rewrite, says "removed").
fn disabled_wording(detail: &str) -> String {
    match detail.strip_prefix("removed ") {
        Some(rest) => format!("disabled {rest}"),
        None => detail.replacen("; removed ", "; disabled ", 1),
    }
}

/// Why a guest undefined while running (transient now) is left alone.
const TRANSIENT_NOW: &str = "no longer persistent (undefined meanwhile): left alone";

/// Why a guest that went away during the sweep is left alone.
const GONE: &str = "no longer defined: left alone";

/// Whether a reply says the guest is not there (undefined meanwhile).
fn gone(r: &Reply) -> bool {
    r.failed() && (r.stderr.contains("Domain not found") || r.stderr.contains("failed to get domain"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_table() {
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

//! The `top` command: one row per running guest with its CPU %, the per-second rate of each
//! enabled perf event and the ratios derived from them (IPC, cache-miss %), refreshed in the
//! terminal (plain ANSI, fits 80x24, usable over ssh) or printed once (`--once`, `--json`).
//! Rows whose counters are partial are marked: their rates undercount.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cmd::exporter::sample::{self, Sample};
use crate::cmd::exporter::judge_all;
use crate::libvirt::Virsh;
use crate::cmd::{print_json, write_stdout, Ctx};
use crate::host::domstats::Counters;
use crate::support::error::{Error, Result};

mod screen;

/// The JSON's `schema`; raise it on any change that can break a reader.
pub const SCHEMA: u32 = 1;
/// The default refresh interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopOpts {
    pub connect: Option<String>,
    pub once: bool,
    pub json: bool,
    pub interval: Duration,
    /// The column to sort by, as named in `--help` (`cpu`, `name`, `ipc`, `miss`, an event).
    pub sort: Option<String>,
    pub readonly: bool,
}

/// One guest over one interval.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Row {
    pub domain: String,
    pub uuid: String,
    /// Of one host CPU (a guest with two busy vCPUs shows 200).
    pub cpu_percent: f64,
    /// Whether its counters see all its threads (`null`: it has no perf events).
    pub counters: Option<Counters>,
    /// Per second, by event; clocks in seconds per second. Absent when the counter went back
    /// (libvirt reset it).
    pub rates: BTreeMap<String, f64>,
    /// instructions / cpu_cycles.
    pub ipc: Option<f64>,
    /// cache_misses / cache_references, in %.
    pub cache_miss_percent: Option<f64>,
}

#[derive(serde::Serialize)]
struct Report<'a> {
    schema: u32,
    interval_seconds: f64,
    guests: &'a [Row],
}

/// The rows for the time between two samples.
pub fn rows(before: &Sample, after: &Sample) -> Vec<Row> {
    let secs = after.at.saturating_duration_since(before.at).as_secs_f64().max(1e-3);
    let prev: std::collections::HashMap<&str, &crate::host::domstats::Record> =
        before.guests.iter().map(|(u, r)| (u.as_str(), r)).collect();
    let stats = before.guests.iter().map(|(u, r)| (u.clone(), (r.nums.clone(), before.at))).collect();
    let judged = judge_all(&stats, after);
    let mut out = Vec::new();
    for (uuid, rec) in &after.guests {
        let Some(old) = prev.get(uuid.as_str()) else { continue };
        let delta = |key: &str| Some(rec.nums.get(key)?.checked_sub(*old.nums.get(key)?)? as f64 / secs);
        let mut rates = BTreeMap::new();
        for (event, _) in rec.perf() {
            let scale = if event.ends_with("_clock") { 1e-9 } else { 1.0 };
            if let Some(r) = delta(&format!("perf.{event}")) {
                rates.insert(event.to_string(), r * scale);
            }
        }
        let ratio = |a: &str, b: &str| match (rates.get(a), rates.get(b)) {
            (Some(x), Some(y)) if *y > 0.0 => Some(x / y),
            _ => None,
        };
        let (ipc, miss) = (ratio("instructions", "cpu_cycles"), ratio("cache_misses", "cache_references").map(|r| r * 100.0));
        out.push(Row {
            domain: rec.domain.clone(),
            uuid: uuid.clone(),
            cpu_percent: delta("cpu.time").map_or(0.0, |ns| ns / 1e7),
            counters: judged.get(uuid).copied(),
            rates,
            ipc,
            cache_miss_percent: miss,
        });
    }
    out
}

fn take(virsh: &Virsh, o: &TopOpts) -> Result<Sample> {
    sample::take(virsh, o.readonly).map_err(|why| Error::Command {
        what: format!("virsh domstats{}", virsh.on()),
        code: crate::support::error::exit::FAILURE,
        msg: why,
    })
}

/// `virt-perf-hook top`.
pub fn top(ctx: &Ctx, o: &TopOpts) -> Result<i32> {
    let virsh = Virsh::from_env(o.connect.clone(), &ctx.paths);
    let sort = screen::Sort::parse(o.sort.as_deref())?;
    if !o.once {
        if o.json {
            return Err(Error::Usage("top: --json needs --once".into()));
        }
        return screen::run(&mut || take(&virsh, o), o.interval, sort);
    }
    let before = take(&virsh, o)?;
    std::thread::sleep(o.interval);
    let after = take(&virsh, o)?;
    let mut rows = rows(&before, &after);
    if o.json {
        let cols = screen::columns(&rows);
        sort.apply(&mut rows, &cols);
        let secs = after.at.saturating_duration_since(before.at).as_secs_f64();
        print_json(&Report { schema: SCHEMA, interval_seconds: (secs * 1000.0).round() / 1000.0, guests: &rows })?;
    } else {
        let (width, _) = screen::size();
        write_stdout(&screen::table(&mut rows, &sort, width, usize::MAX).join("\n"))?;
        write_stdout("\n")?;
    }
    Ok(0)
}

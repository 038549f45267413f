//! `events`: the catalog against this host: which events this libvirt accepts, which the host can
//! open, which the config enables, and the resctrl monitors that stand in for removed ones.
//! It never connects to libvirt and never writes the cache (it reads a fresh, trusted one and
//! computes in memory what is missing or stale).

use crate::cmd::{config_or_default, print_json, write_stdout, Ctx};
use crate::core::config::Config;
use crate::core::events::{Kind, CATALOG};
use crate::core::version::Version;
use crate::host::plan::{self, Assessment, CacheUse, Mode};
use crate::host::resctrl::MonitorState;
use crate::support::error::{exit, Result};
use crate::support::text::table;

#[derive(Debug, serde::Serialize)]
struct EventRow {
    name: &'static str,
    since: Version,
    kind: Kind,
    /// Whether this libvirt accepts it; `None` when the version is unknown.
    libvirt: Option<bool>,
    /// Whether this host can open it (the probe always runs for this report).
    host: bool,
    host_reason: Option<String>,
    configured: bool,
    /// The resctrl monitor that stands in for it (`cmt`, `mbmt`, `mbml` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    resctrl: Option<MonitorState>,
}

fn event_rows(cfg: &Config, a: &Assessment) -> Vec<EventRow> {
    CATALOG
        .iter()
        .map(|ev| {
            let reason = plan::probe_result(a.probe.as_ref(), ev.name).err();
            EventRow {
                name: ev.name,
                since: ev.since,
                kind: ev.kind,
                libvirt: a.detected.version.map(|v| ev.unsupported_by(v).is_none()),
                host: reason.is_none(),
                host_reason: reason,
                configured: cfg.enabled_perf_events.contains(&ev.name),
                resctrl: a.plan.resctrl.iter().find(|s| s.event == ev.name).cloned(),
            }
        })
        .collect()
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

pub fn run(ctx: &Ctx, json: bool) -> Result<i32> {
    let cfg = config_or_default(ctx, "showing configured = no for all events");
    let a = plan::assess(&ctx.paths, &cfg, Mode::Report, None, CacheUse::ReadOnly);
    let rows = event_rows(&cfg, &a);
    if json {
        print_json(&rows)?;
        return Ok(exit::OK);
    }
    let head = format!("libvirt {} ({})", a.detected.version.map_or("unknown".to_string(), |v| v.to_string()), a.detected.describe());
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let host = match &r.host_reason {
                None => "yes".to_string(),
                Some(why) => format!("no ({why})"),
            };
            let libvirt = r.libvirt.map_or("unknown", yes_no);
            [r.name.to_string(), r.since.to_string(), libvirt.to_string(), yes_no(r.configured).to_string(), host]
        })
        .collect();
    let mut out = format!("{head}\n{}", table(["EVENT", "SINCE", "LIBVIRT", "CONFIGURED", "HOST"], &cells));
    for s in &a.plan.resctrl {
        out.push_str(&format!("{}\n", s.describe()));
    }
    write_stdout(&out)?;
    Ok(exit::OK)
}


//! The `exporter` command: every running guest's perf counters in the Prometheus text format,
//! served over HTTP on `/metrics` (127.0.0.1 by default) or written to a file for
//! node_exporter's textfile collector. Each scrape runs one time-bounded virsh process for all
//! guests ([`sample::take`]); scrapes that arrive while one runs share its result, so a burst
//! of clients never starts more than one virsh at a time. With each guest goes the completeness
//! judgement `status` makes, between this scrape and the previous one.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::libvirt::Virsh;
use crate::cmd::Ctx;
use crate::host::domstats::{judge, Counters, Stats};
use crate::support::error::{Error, Result};
use crate::support::http::{self, Response};

pub mod metrics;
pub mod sample;

use metrics::Health;
use sample::Sample;

/// The default port: outside 9100-9999 (all allocated on Prometheus's default-port list, the
/// libvirt exporters on 9177) and not on that list where we checked (docs/monitoring.md).
pub const DEFAULT_PORT: u16 = 10077;
/// How long one virsh run may take by default (Prometheus's default scrape timeout is 10 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often `--textfile` rewrites its file by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExporterOpts {
    pub connect: Option<String>,
    /// `ADDR:PORT`, `ADDR` or `:PORT`.
    pub listen: Option<String>,
    pub textfile: Option<PathBuf>,
    pub interval: Duration,
    pub timeout: Duration,
    /// With `--textfile`: write once and exit.
    pub once: bool,
    /// Through libvirt's read-only socket (virsh -r).
    pub readonly: bool,
}

/// Samples libvirt and keeps what the next scrape compares with.
pub struct Scraper {
    virsh: Virsh,
    readonly: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Each guest's previous sample, by UUID (guests gone since are dropped).
    prev: HashMap<String, (Stats, Instant)>,
    virsh_errors: u64,
    scrapes: u64,
    /// The last exposition and when it was finished.
    last: Option<(Instant, String)>,
}

impl Scraper {
    pub fn new(virsh: Virsh, readonly: bool) -> Scraper {
        Scraper { virsh, readonly, state: Mutex::new(State::default()) }
    }

    /// The exposition for a request that arrived at `asked`: a scrape finished after that is
    /// shared, else one is made now (one at a time).
    pub fn metrics(&self, asked: Instant) -> String {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((done, text)) = &st.last {
            if *done >= asked {
                return text.clone();
            }
        }
        let text = self.scrape(&mut st);
        st.last = Some((Instant::now(), text.clone()));
        text
    }

    fn scrape(&self, st: &mut State) -> String {
        let start = Instant::now();
        let taken = sample::take(&self.virsh, self.readonly);
        st.scrapes += 1;
        let mut health = Health { seconds: start.elapsed().as_secs_f64(), scrapes: st.scrapes, ..Health::default() };
        match taken {
            Ok(s) => {
                let judged = judge_all(&st.prev, &s);
                st.prev = s.guests.iter().map(|(u, r)| (u.clone(), (r.nums.clone(), s.at))).collect();
                health.virsh_errors = st.virsh_errors;
                metrics::render(Some(&s), &judged, &health)
            }
            Err(why) => {
                crate::support::logging::log_once(log::Level::Warn, format!("cannot read libvirt{}: {why}", self.virsh.on()));
                st.virsh_errors += 1;
                // Counters reset while libvirt is away: judge afresh when it is back.
                st.prev.clear();
                health.virsh_errors = st.virsh_errors;
                health.down = Some(why);
                metrics::render(None, &BTreeMap::new(), &health)
            }
        }
    }
}

/// Each guest's completeness, by UUID: over the time since its previous sample when there is
/// one, else over its whole run. Guests without perf events are left out.
pub fn judge_all(prev: &HashMap<String, (Stats, Instant)>, s: &Sample) -> BTreeMap<String, Counters> {
    let mut out = BTreeMap::new();
    for (uuid, rec) in &s.guests {
        let counters = match rec.clock() {
            None if rec.perf().is_empty() => continue,
            None => Counters::Unknown,
            Some(clock) => {
                let (before, secs) = match prev.get(uuid) {
                    Some((st, t)) if s.at > *t => (st, (s.at - *t).as_secs_f64()),
                    _ => (&rec.nums, 0.0),
                };
                judge(clock, Some(before), Some(&rec.nums), secs).0
            }
        };
        out.insert(uuid.clone(), counters);
    }
    out
}

/// `--listen`: `ADDR:PORT`, `[V6]:PORT`, `ADDR` (default port) or `:PORT` (loopback).
pub fn listen_addr(spec: Option<&str>) -> Result<SocketAddr> {
    let spec = spec.unwrap_or("");
    let bad = || Error::Usage(format!("exporter: --listen '{spec}' is not ADDR:PORT, ADDR or :PORT (e.g. 127.0.0.1:{DEFAULT_PORT})"));
    if spec.is_empty() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)));
    }
    if let Some(port) = spec.strip_prefix(':').filter(|p| !p.contains(':')) {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port.parse().map_err(|_| bad())?)));
    }
    if let Ok(a) = spec.parse::<SocketAddr>() {
        return Ok(a);
    }
    let ip: std::net::IpAddr = spec.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| bad())?;
    Ok(SocketAddr::new(ip, DEFAULT_PORT))
}

/// `virt-perf-hook exporter`.
pub fn exporter(ctx: &Ctx, o: &ExporterOpts) -> Result<i32> {
    // A client that hangs up mid-response costs an EPIPE, not the process: SIGPIPE stays ignored
    // (Rust's default, which the CLI keeps).
    let scraper = Arc::new(Scraper::new(Virsh::from_env(o.connect.clone(), &ctx.paths), o.readonly));
    if let Some(path) = &o.textfile {
        return textfile(&scraper, path, o);
    }
    let addr = listen_addr(o.listen.as_deref())?;
    let listener = TcpListener::bind(addr).map_err(|e| Error::Other(format!("cannot listen on {addr}: {e} (choose another with --listen)")))?;
    if !addr.ip().is_loopback() {
        log::warn!("listening on {addr}, beyond this host: the metrics name every guest; firewall the port");
    }
    log::info!("serving /metrics on http://{}", listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| addr.to_string()));
    let page = move |path: &str| match path {
        "/metrics" => {
            let body = scraper.metrics(Instant::now());
            Response { status: 200, content_type: "text/plain; version=0.0.4; charset=utf-8", body }
        }
        _ => Response::text(404, "not found; the metrics are on /metrics\n"),
    };
    http::serve(listener, Arc::new(page))
}

/// `--textfile PATH`: the exposition written to a temporary file beside PATH and renamed over
/// it, so a reader sees the old file or the new one, never a part.
fn textfile(scraper: &Scraper, path: &Path, o: &ExporterOpts) -> Result<i32> {
    loop {
        let started = Instant::now();
        let text = scraper.metrics(started);
        write_atomic(path, &text)?;
        if o.once {
            let up = text.lines().any(|l| l == format!("{}_up 1", metrics::PREFIX));
            return Ok(if up { 0 } else { 1 });
        }
        std::thread::sleep(o.interval.saturating_sub(started.elapsed()));
    }
}

pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let name = path.file_name().ok_or_else(|| Error::Usage(format!("exporter: --textfile {} names no file", path.display())))?;
    // node_exporter reads only *.prom: the temporary name does not end so.
    let tmp = path.with_file_name(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, "write", e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_specs() {
        let a = |s: Option<&str>| listen_addr(s).map(|a| a.to_string());
        assert_eq!(a(None).unwrap(), format!("127.0.0.1:{DEFAULT_PORT}"));
        assert_eq!(a(Some(":9999")).unwrap(), "127.0.0.1:9999");
        assert_eq!(a(Some("0.0.0.0:1")).unwrap(), "0.0.0.0:1");
        assert_eq!(a(Some("::1")).unwrap(), format!("[::1]:{DEFAULT_PORT}"));
        assert_eq!(a(Some("[::]:5")).unwrap(), "[::]:5");
        for bad in ["x", ":", ":99999", "1.2.3.4:"] {
            assert!(a(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn judged_between_samples() {
        let recs = crate::host::domstats::parse(
            "Domain: 'a'\n  cpu.time=3000000000\n  perf.task_clock=1000000\nDomain: 'b'\n  cpu.time=1\nDomain: 'c'\n  cpu.time=9\n  perf.page_faults=1\n",
        );
        let now = Instant::now();
        let s = Sample { at: now, guests: recs.into_iter().map(|r| (r.domain.clone(), r)).collect() };
        let first = judge_all(&HashMap::new(), &s);
        assert_eq!(first.get("a"), Some(&Counters::Partial));
        assert_eq!(first.get("b"), None, "no events: no judgement");
        assert_eq!(first.get("c"), Some(&Counters::Unknown), "no clock event");
        // Over the interval: 1 s of CPU, 1 ms of task_clock.
        let before: Stats = [("cpu.time".to_string(), 2_000_000_000), ("perf.task_clock".to_string(), 0)].into_iter().collect();
        let prev = [("a".to_string(), (before, now - Duration::from_secs(1)))].into_iter().collect();
        assert_eq!(judge_all(&prev, &s).get("a"), Some(&Counters::Partial));
    }
}

//! The Prometheus text format (version 0.0.4) of a [`Sample`]: one family per perf event, the
//! guest's CPU time, the completeness gauge, resctrl monitors and the exporter's own health.
//! Values are libvirt's raw cumulative counters: when libvirt resets them (daemon restart,
//! migration) the series drops, which `rate()` and `increase()` take as a counter reset.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::cmd::exporter::sample::Sample;
use crate::host::domstats::{Counters, Record};

/// The prefix of every metric name.
pub const PREFIX: &str = "virt_perf_hook";

/// The exporter's own state at this scrape.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Why libvirt could not be read (`up` is 0 and no guest is shown), if so.
    pub down: Option<String>,
    pub seconds: f64,
    /// virsh runs that failed or timed out since the exporter started.
    pub virsh_errors: u64,
    pub scrapes: u64,
}

/// One metric family: its samples as (labels, value), in order.
struct Family {
    kind: &'static str,
    help: String,
    samples: Vec<(String, String)>,
}

#[derive(Default)]
struct Families(BTreeMap<String, Family>);

impl Families {
    fn add(&mut self, name: &str, kind: &'static str, help: &str, labels: String, value: String) {
        let f = self.0.entry(format!("{PREFIX}_{name}")).or_insert_with(|| Family { kind, help: help.to_string(), samples: Vec::new() });
        f.samples.push((labels, value));
    }

    fn text(self) -> String {
        let mut out = String::with_capacity(4096);
        for (name, f) in self.0 {
            let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {}", f.help, f.kind);
            for (labels, value) in f.samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        }
        out
    }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
pub fn escape(v: &str) -> String {
    v.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    format!("{{{}}}", inner.join(","))
}

/// A float in the text format (NaN and infinities spelled as Prometheus reads them).
fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v}")
    }
}

/// How an event is exported: metric name suffix, type, help and the factor to base units.
fn event_family(event: &str) -> Option<(String, &'static str, String, f64)> {
    if event.is_empty() || !event.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return None;
    }
    Some(match event {
        "cpu_clock" | "task_clock" => {
            (format!("perf_{event}_seconds_total"), "counter", format!("perf event {event}: seconds the guest's counted threads ran"), 1e-9)
        }
        // Intel CMT/MBM through perf (kernels before 4.14): readings, not counts.
        "cmt" => ("perf_cmt_bytes".into(), "gauge", "perf event cmt: last-level cache the guest occupies".into(), 1.0),
        "mbmt" | "mbml" => {
            (format!("perf_{event}_bytes_per_second"), "gauge", format!("perf event {event}: memory bandwidth"), 1.0)
        }
        _ => (format!("perf_{event}_total"), "counter", format!("perf event {event}, counted since libvirt opened it"), 1.0),
    })
}

/// The exposition: per-guest series (only when libvirt was read) and the health series.
/// `judged` holds each guest's completeness, by UUID.
pub fn render(sample: Option<&Sample>, judged: &BTreeMap<String, Counters>, h: &Health) -> String {
    let mut fam = Families::default();
    for (uuid, rec) in sample.map(|s| s.guests.as_slice()).unwrap_or_default() {
        guest(&mut fam, uuid, rec, judged.get(uuid).copied());
    }
    let up = if h.down.is_some() { "0" } else { "1" };
    fam.add("up", "gauge", "1 when libvirt answered this scrape, 0 when it could not be read (then no guest series)", String::new(), up.into());
    let guests = sample.map_or(0, |s| s.guests.len()).to_string();
    fam.add("guests", "gauge", "Running guests in this scrape", String::new(), guests);
    fam.add("scrape_duration_seconds", "gauge", "How long reading libvirt took for this scrape", String::new(), num(h.seconds));
    fam.add("virsh_errors_total", "counter", "virsh runs that failed or timed out", String::new(), h.virsh_errors.to_string());
    fam.add("scrapes_total", "counter", "Scrapes of libvirt", String::new(), h.scrapes.to_string());
    fam.text()
}

fn guest(fam: &mut Families, uuid: &str, rec: &Record, counters: Option<Counters>) {
    let id = [("domain", rec.domain.as_str()), ("uuid", uuid)];
    let l = labels(&id);
    for (event, value) in rec.perf() {
        if let Some((name, kind, help, factor)) = event_family(event) {
            let v = if factor == 1.0 { value.to_string() } else { num(value as f64 * factor) };
            fam.add(&name, kind, &help, l.clone(), v);
        }
    }
    if let Some(ns) = rec.nums.get("cpu.time") {
        fam.add("cpu_seconds_total", "counter", "CPU time of the whole guest (libvirt cpu.time)", l.clone(), num(*ns as f64 * 1e-9));
    }
    let complete = match counters {
        Some(Counters::Complete) => Some(1.0),
        Some(Counters::Partial) => Some(0.0),
        Some(Counters::Unknown) => Some(f64::NAN),
        Some(Counters::None) | None => None,
    };
    if let Some(v) = complete {
        let help = "1 when the guest's perf counters see all its threads, 0 when partial (opened on the running guest), NaN when it cannot be told";
        fam.add("counters_complete", "gauge", help, l.clone(), num(v));
    }
    for m in rec.monitors("cpu.cache.monitor", "bank", &["bytes"]) {
        for (bank, v) in &m.items {
            let ls = labels(&[id[0], id[1], ("monitor", &m.name), ("vcpus", &m.vcpus), ("bank", bank)]);
            if let Some(b) = v[0] {
                fam.add("llc_occupancy_bytes", "gauge", "Last-level cache the monitor's vCPUs occupy, per cache bank (resctrl)", ls, b.to_string());
            }
        }
    }
    for m in rec.monitors("memory.bandwidth.monitor", "node", &["bytes.local", "bytes.total"]) {
        for (node, v) in &m.items {
            let ls = labels(&[id[0], id[1], ("monitor", &m.name), ("vcpus", &m.vcpus), ("node", node)]);
            if let Some(b) = v[0] {
                fam.add("memory_bandwidth_local_bytes_total", "counter", "Memory traffic to the node's local memory (resctrl)", ls.clone(), b.to_string());
            }
            if let Some(b) = v[1] {
                fam.add("memory_bandwidth_bytes_total", "counter", "All memory traffic of the monitor's vCPUs on the node (resctrl)", ls, b.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::domstats::parse;

    #[test]
    fn renders_guests_and_health() {
        let recs = parse("Domain: 'a\"b'\n  cpu.time=2000000000\n  perf.task_clock=1500000000\n  perf.page_faults=7\n  perf.bad-name=1\n");
        let sample = Sample { at: std::time::Instant::now(), guests: vec![("u-1".into(), recs[0].clone())] };
        let judged = [("u-1".to_string(), Counters::Partial)].into_iter().collect();
        let text = render(Some(&sample), &judged, &Health { seconds: 0.25, scrapes: 3, ..Health::default() });
        let l = r#"{domain="a\"b",uuid="u-1"}"#;
        for line in [
            format!("virt_perf_hook_perf_task_clock_seconds_total{l} 1.5"),
            format!("virt_perf_hook_perf_page_faults_total{l} 7"),
            format!("virt_perf_hook_cpu_seconds_total{l} 2"),
            format!("virt_perf_hook_counters_complete{l} 0"),
            "# TYPE virt_perf_hook_perf_page_faults_total counter".into(),
            "virt_perf_hook_up 1".into(),
            "virt_perf_hook_scrape_duration_seconds 0.25".into(),
            "virt_perf_hook_scrapes_total 3".into(),
        ] {
            assert!(text.lines().any(|x| x == line), "{line} in\n{text}");
        }
        assert!(!text.contains("bad-name"), "{text}");
        let down = render(None, &BTreeMap::new(), &Health { down: Some("x".into()), ..Health::default() });
        assert!(down.contains("virt_perf_hook_up 0\n") && !down.contains("domain="), "{down}");
    }

    #[test]
    fn unknown_is_nan() {
        let recs = parse("Domain: 'g'\n  cpu.time=1\n  perf.cpu_clock=1\n");
        let sample = Sample { at: std::time::Instant::now(), guests: vec![("u".into(), recs[0].clone())] };
        let judged = [("u".to_string(), Counters::Unknown)].into_iter().collect();
        let text = render(Some(&sample), &judged, &Health::default());
        assert!(text.contains("virt_perf_hook_counters_complete{domain=\"g\",uuid=\"u\"} NaN\n"), "{text}");
        assert_eq!(escape("a\\b\nc\""), "a\\\\b\\nc\\\"");
    }
}

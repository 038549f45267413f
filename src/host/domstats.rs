//! `virsh domstats` output, read (pure: the caller runs virsh), and the one judgement of
//! whether a guest's perf counters can be trusted, shared by `status`, `exporter` and `top`.
//!
//! libvirt opens a guest's counters on the QEMU process with `inherit=1`, so they count the
//! threads created after they were opened. Opened at launch (boot, restore, incoming migration)
//! they see every thread; opened on a running guest (`virsh perf --enable --live`, or when the
//! daemon restarts and reopens them) they miss the vCPU threads that already run. That shows
//! when a clock counter (`task_clock`, `cpu_clock`: nanoseconds the counted threads ran) is
//! compared with the CPU time of the whole guest (`cpu.time`).

use std::collections::HashMap;

/// Less CPU time than this (ns) is too little to judge by.
const MIN_CPU_NS: u64 = 20_000_000;
/// Clock counter / CPU time at or above this: complete.
const COMPLETE: f64 = 0.9;
/// Below this: partial.
const PARTIAL: f64 = 0.5;
/// The events that count nanoseconds of the guest's threads, preferred first.
pub const CLOCKS: [&str; 2] = ["task_clock", "cpu_clock"];

/// One guest's `virsh domstats` fields with integer values.
pub type Stats = HashMap<String, u64>;

/// One `Domain: 'NAME'` block: its integer fields, and the others as text (resctrl monitor
/// names and vCPU lists).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub domain: String,
    pub nums: Stats,
    pub texts: HashMap<String, String>,
}

impl Record {
    /// The `perf.<event>` counters, sorted by event name.
    pub fn perf(&self) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self.nums.iter().filter_map(|(k, v)| Some((k.strip_prefix("perf.")?, *v))).collect();
        v.sort_unstable();
        v
    }

    /// The clock event this guest has live, preferred first.
    pub fn clock(&self) -> Option<&'static str> {
        CLOCKS.into_iter().find(|c| self.nums.contains_key(&format!("perf.{c}")))
    }

    fn text(&self, key: &str) -> String {
        self.texts.get(key).cloned().or_else(|| self.nums.get(key).map(u64::to_string)).unwrap_or_default()
    }

    /// resctrl monitors of a group (`cpu.cache.monitor`, `memory.bandwidth.monitor`): per
    /// monitor its name and vCPUs, and per item (`bank`, `node`) its id and `fields` values.
    pub fn monitors(&self, group: &str, item: &str, fields: &[&str]) -> Vec<Monitor> {
        let mut out = Vec::new();
        for m in 0..self.nums.get(&format!("{group}.count")).copied().unwrap_or(0).min(1024) {
            let base = format!("{group}.{m}");
            let mut mon = Monitor { name: self.text(&format!("{base}.name")), vcpus: self.text(&format!("{base}.vcpus")), items: Vec::new() };
            for i in 0..self.nums.get(&format!("{base}.{item}.count")).copied().unwrap_or(0).min(1024) {
                let at = format!("{base}.{item}.{i}");
                let values = fields.iter().map(|f| self.nums.get(&format!("{at}.{f}")).copied()).collect();
                mon.items.push((self.text(&format!("{at}.id")), values));
            }
            out.push(mon);
        }
        out
    }
}

/// One resctrl monitor: `items` are (bank or node id, the values asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitor {
    pub name: String,
    pub vcpus: String,
    pub items: Vec<(String, Vec<Option<u64>>)>,
}

/// `virsh domstats` output: `Domain: 'NAME'` and then indented `key=value` lines, in order.
pub fn parse(text: &str) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    let mut open = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Domain: '") {
            open = match rest.strip_suffix('\'') {
                Some(name) => {
                    out.push(Record { domain: name.to_string(), ..Record::default() });
                    true
                }
                None => false,
            };
        } else if let (true, Some(rec), Some((k, v))) = (open, out.last_mut(), line.trim().split_once('=')) {
            if !line.starts_with([' ', '\t']) {
                continue;
            }
            match v.parse::<u64>() {
                Ok(n) => {
                    rec.nums.insert(k.to_string(), n);
                }
                Err(_) => {
                    rec.texts.insert(k.to_string(), v.to_string());
                }
            }
        }
    }
    out
}

/// [`parse`], keyed by domain name, integer fields only.
pub fn parse_domstats(text: &str) -> HashMap<String, Stats> {
    parse(text).into_iter().map(|r| (r.domain, r.nums)).collect()
}

/// How far a guest's live counters can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Counters {
    /// The clock counter saw (nearly) all of the guest's CPU time.
    Complete,
    /// It saw less than half: opened on the running guest, it misses threads.
    Partial,
    /// No events live (or the guest is not running).
    None,
    /// Cannot tell; a reason says why.
    Unknown,
}

/// The serde name: the STATUS table says what `status --json` says.
impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::support::text::fmt_serde_name(self, f)
    }
}

/// Complete, partial or unknown from two samples `secs` apart of `cpu.time` and
/// `perf.<clock>` (both nanoseconds). Over the interval when the guest used at least
/// [`MIN_CPU_NS`] in it; else over its whole run (both count from its start when the counters
/// were opened at launch). Given the same sample twice, it judges over the whole run.
pub fn judge(clock: &str, before: Option<&Stats>, after: Option<&Stats>, secs: f64) -> (Counters, String) {
    let field = format!("perf.{clock}");
    let (Some(a), Some(b)) = (before, after) else {
        return (Counters::Unknown, "not in 'virsh domstats' (did it stop?)".into());
    };
    let (Some(c0), Some(c1), Some(k0), Some(k1)) = (a.get("cpu.time"), b.get("cpu.time"), a.get(&field), b.get(&field)) else {
        return (Counters::Unknown, format!("'virsh domstats' gave no cpu.time or {field}"));
    };
    let (d_cpu, d_clock) = (c1.saturating_sub(*c0), k1.saturating_sub(*k0));
    let ms = |ns: u64| ns as f64 / 1e6;
    let (ratio, basis) = if d_cpu >= MIN_CPU_NS {
        (d_clock as f64 / d_cpu as f64, format!("over {secs:.1} s"))
    } else if *c1 >= MIN_CPU_NS {
        (*k1 as f64 / *c1 as f64, format!("since its start (it was idle for the {secs:.1} s sample)"))
    } else {
        let why = format!("it used too little CPU to judge ({:.1} ms in {secs:.1} s, {:.1} ms in all)", ms(d_cpu), ms(*c1));
        return (Counters::Unknown, why);
    };
    let what = format!("{clock} counted {:.1}% of its CPU time {basis}", ratio * 100.0);
    if ratio >= COMPLETE {
        (Counters::Complete, what)
    } else if ratio < PARTIAL {
        let why = "the counters were opened on the running guest and miss its vCPU threads; \
                   they are complete from its next start (boot, restore or migration)";
        (Counters::Partial, format!("{what}: {why}"))
    } else {
        (Counters::Unknown, format!("{what}: between 50% and 90%, neither complete nor clearly partial"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(cpu: u64, clock: u64) -> Stats {
        [("cpu.time".to_string(), cpu), ("perf.task_clock".to_string(), clock)].into_iter().collect()
    }

    #[test]
    fn parses_domstats() {
        let text = "Domain: 'a b'\n  cpu.time=2336461000\n  perf.task_clock=1693201\n  state.reason=x\n\nDomain: 'c'\n  cpu.time=5\n";
        let s = parse_domstats(text);
        assert_eq!(s["a b"]["cpu.time"], 2_336_461_000);
        assert_eq!(s["a b"]["perf.task_clock"], 1_693_201);
        assert!(!s["a b"].contains_key("state.reason"));
        assert_eq!(s["c"].len(), 1);
        assert!(parse_domstats("garbage\n  x=1\n").is_empty());
        let r = parse(text);
        assert_eq!(r[0].texts["state.reason"], "x");
        assert_eq!(r[0].perf(), [("task_clock", 1_693_201)]);
        assert_eq!(r[0].clock(), Some("task_clock"));
        assert_eq!(r[1].clock(), None);
        // A line that is not indented, or a block with a broken header, is not a field.
        assert!(parse("Domain: 'x'\ncpu.time=1\n")[0].nums.is_empty());
        assert!(parse("Domain: 'x\n  cpu.time=1\n").is_empty());
    }

    #[test]
    fn reads_resctrl_monitors() {
        // The shape libvirt documents for VIR_DOMAIN_STATS_CPU_TOTAL and _MEMORY.
        let text = "Domain: 'g'\n  cpu.cache.monitor.count=1\n  cpu.cache.monitor.0.name=any\n  cpu.cache.monitor.0.vcpus=0-1\n  \
                    cpu.cache.monitor.0.bank.count=2\n  cpu.cache.monitor.0.bank.0.id=0\n  cpu.cache.monitor.0.bank.0.bytes=4096\n  \
                    cpu.cache.monitor.0.bank.1.id=1\n  cpu.cache.monitor.0.bank.1.bytes=8192\n  \
                    memory.bandwidth.monitor.count=1\n  memory.bandwidth.monitor.0.name=mon\n  memory.bandwidth.monitor.0.vcpus=0\n  \
                    memory.bandwidth.monitor.0.node.count=1\n  memory.bandwidth.monitor.0.node.0.id=0\n  \
                    memory.bandwidth.monitor.0.node.0.bytes.local=10\n  memory.bandwidth.monitor.0.node.0.bytes.total=30\n";
        let r = &parse(text)[0];
        let llc = r.monitors("cpu.cache.monitor", "bank", &["bytes"]);
        assert_eq!(llc.len(), 1);
        assert_eq!((llc[0].name.as_str(), llc[0].vcpus.as_str()), ("any", "0-1"));
        assert_eq!(llc[0].items, [("0".to_string(), vec![Some(4096)]), ("1".to_string(), vec![Some(8192)])]);
        let mbm = r.monitors("memory.bandwidth.monitor", "node", &["bytes.local", "bytes.total"]);
        assert_eq!(mbm[0].items, [("0".to_string(), vec![Some(10), Some(30)])]);
        assert!(r.monitors("nothing", "bank", &["bytes"]).is_empty());
    }

    #[test]
    fn judges_by_ratio() {
        // Measured on libvirt 9.0.0 (TCG guest spinning one vCPU): enabled live, then restored.
        let (c, why) = judge("task_clock", Some(&stats(1_315_301_000, 72_728)), Some(&stats(2_336_461_000, 1_693_201)), 1.0);
        assert_eq!(c, Counters::Partial, "{why}");
        assert!(why.starts_with("task_clock counted 0.2% of its CPU time over 1.0 s: "), "{why}");
        let (c, why) = judge("task_clock", Some(&stats(329_055_000, 327_294_664)), Some(&stats(1_348_047_000, 1_346_659_670)), 1.0);
        assert_eq!(c, Counters::Complete, "{why}");
        let (c, _) = judge("task_clock", Some(&stats(0, 0)), Some(&stats(100_000_000, 70_000_000)), 1.0);
        assert_eq!(c, Counters::Unknown);
    }

    #[test]
    fn idle_guests_are_judged_over_their_run() {
        let (c, why) = judge("task_clock", Some(&stats(900_000_000, 899_000_000)), Some(&stats(905_000_000, 904_000_000)), 1.0);
        assert_eq!(c, Counters::Complete);
        assert!(why.contains("since its start"), "{why}");
        let (c, _) = judge("task_clock", Some(&stats(900_000_000, 1_000)), Some(&stats(905_000_000, 2_000)), 1.0);
        assert_eq!(c, Counters::Partial);
        let (c, why) = judge("task_clock", Some(&stats(1_000_000, 0)), Some(&stats(2_000_000, 0)), 1.0);
        assert_eq!(c, Counters::Unknown);
        assert!(why.contains("too little CPU"), "{why}");
        let (c, why) = judge("task_clock", None, Some(&stats(1, 1)), 1.0);
        assert_eq!((c, why.as_str()), (Counters::Unknown, "not in 'virsh domstats' (did it stop?)"));
        // One sample given twice: judged over the whole run.
        let s = stats(900_000_000, 899_000_000);
        assert_eq!(judge("task_clock", Some(&s), Some(&s), 0.0).0, Counters::Complete);
    }
}

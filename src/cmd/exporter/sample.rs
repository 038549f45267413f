//! One sample of every running guest's counters: a single virsh process, time-bounded, runs
//! `domstats` for all running guests and `list` for their UUIDs, however many guests there are.

use std::collections::HashMap;
use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::cmd::virsh::Virsh;
use crate::host::domstats::{self, Record};
use crate::support::error::one_line;

/// Most a virsh run may print before it is cut (300 guests print about 100 KiB).
const MAX_OUTPUT: u64 = 64 << 20;

/// Every running guest at one moment.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    /// By UUID: the guest's domstats block.
    pub guests: Vec<(String, Record)>,
}

/// What one bounded virsh run printed.
pub struct Bounded {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs virsh with `args`, killing it when it runs longer than `limit` (`Err` then says so,
/// as it does when virsh cannot be started). The one place the exporter and `top` run virsh.
pub fn run_bounded(virsh: &Virsh, args: &[&str], limit: Duration) -> Result<Bounded, String> {
    let mut child = virsh
        .command(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| virsh.spawn_error(e).to_string())?;
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(r) = r {
                let _ = r.take(MAX_OUTPUT).read_to_end(&mut v);
            }
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out = reader(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let err = reader(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let start = Instant::now();
    let mut nap = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() < limit => std::thread::sleep(nap),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
        nap = (nap * 2).min(Duration::from_millis(5));
    };
    let (stdout, stderr) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    match status {
        None => Err(format!("virsh did not answer within {:.1} s (killed)", limit.as_secs_f64())),
        Some(s) => Ok(Bounded { ok: s.success() && !stderr.lines().any(|l| l.starts_with("error:")), stdout, stderr }),
    }
}

/// Takes a sample: `domstats` first, then `list` (a guest started in between is left for the
/// next sample; one that stopped has no UUID and is left out). `readonly` uses libvirt's
/// read-only socket (virsh -r). `Err` says why libvirt could not be read.
pub fn take(virsh: &Virsh, readonly: bool, limit: Duration) -> Result<Sample, String> {
    let marker = format!("vph-end-of-domstats-{}", std::process::id());
    // resctrl monitors come with --cpu-total (cache) and --memory (bandwidth).
    let script = format!("domstats --perf --cpu-total --memory --list-active; echo {marker}; list --uuid --name");
    let mut args: Vec<&str> = Vec::with_capacity(2);
    if readonly {
        args.push("-r");
    }
    args.push(&script);
    let at = Instant::now();
    let run = run_bounded(virsh, &args, limit)?;
    if !run.ok {
        let msg = one_line(&run.stderr);
        return Err(if msg.is_empty() { "virsh failed without a message".into() } else { msg });
    }
    let Some((stats, list)) = run.stdout.split_once(&format!("\n{marker}\n")).or_else(|| {
        run.stdout.strip_prefix(&format!("{marker}\n")).map(|rest| ("", rest))
    }) else {
        return Err("virsh's output ended early (no end marker)".into());
    };
    let uuids = parse_uuid_names(list);
    let guests = domstats::parse(stats)
        .into_iter()
        .filter_map(|r| Some((uuids.get(r.domain.as_str())?.clone(), r)))
        .collect();
    Ok(Sample { at, guests })
}

/// `list --uuid --name` lines: `UUID NAME` (virsh pads the name).
fn parse_uuid_names(text: &str) -> HashMap<&str, String> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(u, _)| u.len() == 36)
        .map(|(u, n)| (n.trim_end_matches(' '), u.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_names() {
        let m = parse_uuid_names("5c3f3250-174d-44b3-80df-157897bb75e5 h23 busy   \n\nnot a line\n");
        assert_eq!(m["h23 busy"], "5c3f3250-174d-44b3-80df-157897bb75e5");
        assert_eq!(m.len(), 1);
    }
}

//! One sample of every running guest's counters: a single virsh process, time-bounded, runs
//! `domstats` for all running guests and `list` for their UUIDs, however many guests there are.

use std::collections::HashMap;
use std::time::Instant;

use crate::libvirt::Virsh;
use crate::host::domstats::{self, Record};
use crate::support::error::one_line;

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

/// Runs virsh with `args` under the libvirt layer's bound (the exporter and `top` set it to
/// their `--timeout`): `Err` says why it gave no answer, as it does when virsh cannot start.
/// The one place the exporter and `top` run virsh.
pub fn run_bounded(virsh: &Virsh, args: &[&str]) -> Result<Bounded, String> {
    let out = virsh.run(args).map_err(|e| e.to_string())?;
    let ok = out.success() && !out.stderr.lines().any(|l| l.starts_with("error:"));
    Ok(Bounded { ok, stdout: out.stdout, stderr: out.stderr })
}

/// Takes a sample: `domstats` first, then `list` (a guest started in between is left for the
/// next sample; one that stopped has no UUID and is left out). `readonly` uses libvirt's
/// read-only socket (virsh -r). `Err` says why libvirt could not be read.
pub fn take(virsh: &Virsh, readonly: bool) -> Result<Sample, String> {
    let marker = format!("vph-end-of-domstats-{}", std::process::id());
    // resctrl monitors come with --cpu-total (cache) and --memory (bandwidth).
    let script = format!("domstats --perf --cpu-total --memory --list-active; echo {marker}; list --uuid --name");
    let mut args: Vec<&str> = Vec::with_capacity(2);
    if readonly {
        args.push("-r");
    }
    args.push(&script);
    let at = Instant::now();
    let run = run_bounded(virsh, &args)?;
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

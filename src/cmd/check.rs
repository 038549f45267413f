//! `check`: whether the setup works on this host: config, libvirt version, hook entries, the
//! daemon that should run them, MAC confinement and the resctrl budget. It never connects to
//! libvirt and never writes the cache (it reads a fresh, trusted one and computes in memory
//! what is missing or stale).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::cmd::{print_json, write_stdout, Ctx};
use crate::core::config::{Config, Unsupported};
use crate::core::finding::{Finding, Status};
use crate::host::plan::{self, Assessment, CacheState, CacheUse, Mode};
use crate::support::error::{exit, Result};
use crate::support::paths::Paths;

#[derive(Default)]
struct Items(Vec<Finding>);

impl Items {
    fn ok(&mut self, what: &'static str, message: String) {
        self.0.push(Finding { status: Status::Ok, what, message });
    }
    fn problem(&mut self, what: &'static str, message: String) {
        self.0.push(Finding { status: Status::Problem, what, message });
    }
    fn note(&mut self, what: &'static str, message: String) {
        self.0.push(Finding { status: Status::Note, what, message });
    }
    fn any_problem(&self) -> bool {
        self.0.iter().any(|i| i.status == Status::Problem)
    }
}

/// `check`: exit 0 when all is well, 1 when something needs fixing, 3 when the config is bad
/// (the CLI's config-error code; the rest of the report is still printed, with defaults).
pub fn run(ctx: &Ctx, json: bool) -> Result<i32> {
    let mut items = Items::default();
    let (cfg, config_ok) = check_config(ctx, &mut items);
    let a = plan::assess(&ctx.paths, &cfg, Mode::Plan, None, CacheUse::ReadOnly);
    match a.detected.version {
        Some(v) => items.ok("version", format!("libvirt {v} (from {})", a.detected.describe())),
        None => items.problem(
            "version",
            "libvirt version unknown: no libvirt.so.0.* in the library dirs and no working virtqemud/libvirtd \
             --version (install libvirt or set \"libvirt_version\" in the config)"
                .to_string(),
        ),
    }
    let cache_msg = format!("cache {}: {}", ctx.paths.state_file().display(), a.cache.state);
    let cache_msg = if a.cache.detail.is_empty() { cache_msg } else { format!("{cache_msg} ({})", a.cache.detail) };
    match a.cache.state {
        // The tool works without a cache; it only detects on every call.
        CacheState::Unwritable | CacheState::Busy => items.note("cache", cache_msg),
        // Someone else could have written it; the fix is in the message.
        CacheState::Untrusted => items.problem("cache", cache_msg),
        _ => items.ok("cache", cache_msg),
    }
    if !cfg.host_probe {
        items.note("probe", "host_probe is off: events are not checked against this host".to_string());
    }
    if cfg.unsupported == Unsupported::Keep {
        items.note(
            "heal",
            "unsupported is \"keep\": guests that enable events this host cannot have are not healed and fail to start".to_string(),
        );
    }
    for ev in &a.plan.add {
        items.ok("event", format!("will add {ev}"));
    }
    for d in &a.plan.dropped {
        items.problem("event", format!("will drop {}: {}", d.event, d.reason));
    }
    check_resctrl(&ctx.paths, &a, &mut items);
    let hooks = check_hooks(&ctx.paths, &mut items);
    check_daemon(&ctx.paths, hooks, &mut items);
    items.0.extend(crate::host::mac::check(&ctx.paths));

    let code = if !config_ok {
        exit::CONFIG
    } else if items.any_problem() {
        exit::FAILURE
    } else {
        exit::OK
    };
    if json {
        print_json(&serde_json::json!({
            "ok": code == exit::OK,
            "exit": code,
            "config": ctx.config_path,
            "version": a.plan.version,
            "version_source": a.plan.version_source,
            "cache": a.cache,
            "add": a.plan.add,
            "dropped": a.plan.dropped,
            "items": items.0,
        }))?;
    } else {
        let mut text: String = items.0.iter().map(|i| format!("{:<8} {}\n", i.status, i.message)).collect();
        text.push_str(if code == exit::OK { "all well\n" } else { "problems found\n" });
        write_stdout(&text)?;
    }
    Ok(code)
}

/// The config, or the defaults (and `false`) when it does not load: the rest of the report is
/// still useful then.
fn check_config(ctx: &Ctx, items: &mut Items) -> (Config, bool) {
    match ctx.load_config() {
        Ok(cfg) => {
            let n = cfg.enabled_perf_events.len();
            let msg = if n == 0 {
                "valid; no events configured, so none are added (guests are still healed: see \"unsupported\")".to_string()
            } else {
                format!("valid; {n} events configured: {}", cfg.enabled_perf_events.join(", "))
            };
            items.ok("config", format!("config {}: {msg}", ctx.config_path.display()));
            (cfg, true)
        }
        Err(e) => {
            items.problem("config", e.to_string());
            (Config::default(), false)
        }
    }
}

/// Each resctrl replacement, and the RMID budget: every running guest needs a monitoring
/// group of its own when monitors are added, and the default group holds one RMID.
fn check_resctrl(paths: &Paths, a: &Assessment, items: &mut Items) {
    for s in &a.plan.resctrl {
        match (s.available, a.plan.replaced.contains(&s.event)) {
            (true, true) => items.ok("resctrl", format!("{} (will add a <{}> monitor)", s.describe(), s.monitor.element())),
            _ => items.ok("resctrl", s.describe()),
        }
    }
    let Some(rmids) = a.resctrl.num_rmids else { return };
    let running = running_guests(paths);
    let free = rmids.saturating_sub(1);
    let msg = format!(
        "resctrl monitors: {free} RMIDs free of {rmids} (num_rmids; the default group holds one), \
         {running} running guests need one each"
    );
    if !a.plan.monitors.is_empty() && running as u64 > free {
        items.problem("resctrl", format!("{msg}: {} would get none", running as u64 - free));
    } else {
        items.ok("resctrl", msg);
    }
}

/// Running QEMU guests: libvirt keeps a status file for each (`/run/libvirt/qemu/NAME.xml`).
fn running_guests(paths: &Paths) -> usize {
    std::fs::read_dir(paths.host("/run/libvirt/qemu"))
        .map(|d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "xml")).count())
        .unwrap_or(0)
}

/// The hook files libvirt runs; returns when the newest was installed, if all are.
fn check_hooks(paths: &Paths, items: &mut Items) -> Option<f64> {
    let mut newest: Option<f64> = Some(0.0);
    for sub in ["qemu.d", "daemon.d"] {
        let path = paths.hooks_dir().join(sub).join("virt-perf-hook");
        // Symlinks resolved inside the root, as libvirt would see them.
        let abs = format!("{}/{sub}/virt-perf-hook", crate::support::paths::HOOKS_DIR);
        match crate::host::mac::resolve(paths, &abs).and_then(|t| std::fs::metadata(paths.host(&t))) {
            Ok(m) if crate::support::fsutil::is_executable_file(&m) => {
                items.ok("hook", format!("hook {}: installed", path.display()));
                let installed = secs(m.ctime(), m.ctime_nsec()).max(secs(m.mtime(), m.mtime_nsec()));
                newest = newest.map(|n| n.max(installed));
            }
            Ok(m) if m.is_file() => {
                items.problem("hook", format!("hook {}: not executable (chmod 755 {})", path.display(), path.display()));
                newest = None;
            }
            Ok(_) => {
                items.problem("hook", format!("hook {}: not a regular file (reinstall the package)", path.display()));
                newest = None;
            }
            Err(e) => {
                let why = if e.kind() == std::io::ErrorKind::NotFound { "missing".to_string() } else { e.to_string() };
                items.problem(
                    "hook",
                    format!("hook {}: {why} (reinstall the package, or: ln -sfn /usr/bin/virt-perf-hook {})", path.display(), path.display()),
                );
                newest = None;
            }
        }
    }
    newest
}

fn secs(s: i64, ns: i64) -> f64 {
    s as f64 + ns as f64 / 1e9
}

/// A qemu hook libvirt would have found at time `t`: `hooks/qemu` or an executable entry in
/// `hooks/qemu.d` whose directory entry was created before `t` (its birth time, else its change
/// time, which is never earlier: a file is never taken for older than it is).
fn qemu_hook_older_than(paths: &Paths, t: f64) -> Option<PathBuf> {
    let hooks = paths.hooks_dir();
    let mut candidates = vec![hooks.join("qemu")];
    if let Ok(entries) = std::fs::read_dir(hooks.join("qemu.d")) {
        let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        candidates.extend(names);
    }
    candidates.into_iter().find(|p| {
        let born = std::fs::symlink_metadata(p).ok().map(|m| {
            let birth = m.created().ok().and_then(|c| c.duration_since(std::time::UNIX_EPOCH).ok());
            birth.map_or_else(|| secs(m.ctime(), m.ctime_nsec()), |d| d.as_secs_f64())
        });
        born.is_some_and(|b| b < t) && crate::support::fsutil::is_executable(p)
    })
}

/// libvirt decides whether to run qemu hooks at all when the daemon starts (or gets SIGHUP):
/// when `hooks/qemu` or an executable `qemu.d` entry existed then, it lists `qemu.d` on every
/// call and runs entries added later (seen with libvirtd 9.0.0); when none existed, it runs none
/// until reloaded. So a daemon older than our entry is fine if another qemu hook older than the
/// daemon is still there; if none is, check cannot tell (one may have been removed since, or
/// an upgrade may have replaced an older copy of ours), and says so.
fn check_daemon(paths: &Paths, hooks_installed: Option<f64>, items: &mut Items) {
    let mut running = false;
    for name in ["virtqemud", "libvirtd"] {
        let pidfile = paths.host(&format!("/run/{name}.pid"));
        let Ok(text) = std::fs::read_to_string(&pidfile) else { continue };
        let Ok(pid) = text.trim().parse::<u32>() else {
            items.note("daemon", format!("{}: no pid in it; ignoring it", pidfile.display()));
            continue;
        };
        let Some(started) = process_start(paths, pid) else {
            items.note("daemon", format!("{name}: {} names pid {pid}, which is not running", pidfile.display()));
            continue;
        };
        running = true;
        let Some(installed) = hooks_installed else { continue };
        // btime has whole seconds, so the computed start may be up to 1 s early.
        if started + 1.0 <= installed {
            let before = format!("{name} (pid {pid}) started before the hook entries were installed or last upgraded");
            match qemu_hook_older_than(paths, started) {
                Some(hook) => items.ok(
                    "daemon",
                    format!(
                        "{before}, but {} was there already: a daemon that had a qemu hook at start looks in \
                         qemu.d on every call, so it runs this one",
                        hook.display()
                    ),
                ),
                None => items.problem(
                    "daemon",
                    format!(
                        "{before}, and no qemu hook older than it is left: if it had none at start it runs none \
                         until reloaded (after an upgrade that replaced an older copy it does run this one; check \
                         cannot tell): reload it (systemctl reload {name}, or kill -HUP {pid})"
                    ),
                ),
            }
        } else {
            items.ok("daemon", format!("{name} (pid {pid}) started after the hook entries were installed"));
        }
    }
    if !running {
        items.note("daemon", "no libvirt daemon running (no live /run/virtqemud.pid or /run/libvirtd.pid)".to_string());
    }
}

/// Start of `pid` in seconds since the epoch: boot time + `/proc/<pid>/stat` starttime.
fn process_start(paths: &Paths, pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(paths.host(&format!("/proc/{pid}/stat"))).ok()?;
    let btime = read_btime(&paths.host("/proc/stat"))?;
    let ticks = parse_starttime(&stat)?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().filter(|&h| h > 0).unwrap_or(100);
    Some(btime as f64 + ticks as f64 / hz as f64)
}

/// Field 22 of `/proc/<pid>/stat`; the command name (field 2) may hold spaces and parentheses,
/// so fields are counted after its last `)`.
fn parse_starttime(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn read_btime(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starttime_after_odd_comm() {
        let stat = "1234 (lib virt) d)) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 17 0 4242 1000 10";
        assert_eq!(parse_starttime(stat), Some(4242));
        assert_eq!(parse_starttime("garbage"), None);
        assert_eq!(parse_starttime("1 (x) S 1"), None);
    }
}


//! `refresh`: re-detect the libvirt version, re-probe the host's events and rebuild the cache.
//! The only command that writes the cache on purpose (`filter`, the hook and the sweeps update it
//! as they go; `events`, `check` and `status` only read it).

use std::path::PathBuf;

use crate::cmd::{config_or_default, write_stdout, Ctx};
use crate::core::events::CATALOG;
use crate::host::cache;
use crate::host::plan::{self, CacheUse, Mode};
use crate::support::error::{exit, Result};

/// `refresh`: re-detect, re-probe, rewrite the cache and say what was found. It succeeds
/// without a config and with an unknown version: packaging runs it at install time.
pub fn run(ctx: &Ctx) -> Result<i32> {
    let cfg = config_or_default(ctx, "detecting with the defaults");
    // Collected, then written at once (a closed stdout is not an error: write_stdout).
    let mut out = String::new();
    let mut say = |line: String| {
        out.push_str(&line);
        out.push('\n');
    };
    // A cache others could have written is thrown away, never adopted: the rebuild below then
    // writes into a directory only root (or the caller) can write.
    match cache::repair(&ctx.paths) {
        Ok(done) => done.iter().for_each(|d| say(format!("cache: {d}"))),
        Err(e) => say(format!("cache: {e}")),
    }
    let a = plan::assess(&ctx.paths, &cfg, Mode::Refresh, None, CacheUse::ReadWrite);
    match a.detected.version {
        Some(v) => say(format!("libvirt: {v} ({})", a.detected.describe())),
        None => say("libvirt: unknown (no libvirt library or daemon found; nothing will be added)".to_string()),
    }
    if let Some(results) = &a.probe {
        let open: Vec<&str> = results.iter().filter(|(_, r)| r.is_none()).map(|(n, _)| n.as_str()).collect();
        say(format!("host: {} of {} events openable", open.len(), results.len()));
        // Catalog order, grouped by reason: one line per reason, not 13 identical lines.
        let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
        for ev in CATALOG.iter() {
            let Some(Some(why)) = results.get(ev.name) else { continue };
            match groups.iter_mut().find(|(w, _)| w == why) {
                Some((_, names)) => names.push(ev.name),
                None => groups.push((why, vec![ev.name])),
            }
        }
        for (why, names) in groups {
            say(format!("host: not openable ({why}): {}", names.join(", ")));
        }
    }
    let state_file: PathBuf = ctx.paths.state_file();
    say(format!("cache: {} {} ({})", state_file.display(), a.cache.state, a.cache.detail));
    write_stdout(&out)?;
    Ok(exit::OK)
}

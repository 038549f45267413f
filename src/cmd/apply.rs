//! `apply`: make the persistent config of existing guests match the config and this host,
//! through the shared [`sweep`](crate::cmd::sweep) (atomic `virsh perf … --config` changes; a
//! guarded define only where those cannot say it). A running guest keeps its live counters; the
//! new ones start complete at its next start.

use crate::cmd::sweep::{self, render_table, Targets, Verdict};
use crate::cmd::{write_stdout, Ctx};
use crate::libvirt::{parse, Virsh};
use crate::support::error::{exit, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOpts {
    pub connect: Option<String>,
    pub all: bool,
    pub dry_run: bool,
    pub domains: Vec<String>,
}

/// `virt-perf-hook apply`: the table of what was done, exit 1 when a guest failed.
pub fn apply(ctx: &Ctx, o: &ApplyOpts) -> Result<i32> {
    let cfg = ctx.load_config()?;
    let virsh = Virsh::from_env(o.connect.clone(), &ctx.paths);
    let targets = if o.all { Targets::All } else { Targets::Named(parse::dedup(&o.domains)) };
    let plan = sweep::plan_for(&ctx.paths, &cfg, &virsh)?;
    let rows = sweep::sweep(&cfg, &plan, &virsh, &targets, o.dry_run)?;
    if rows.is_empty() {
        // The header alone, like `status`: a script reading the table sees the same shape.
        write_stdout(&render_table(&rows))?;
        log::warn!("no domains defined{}", virsh.on());
        return Ok(exit::OK);
    }
    for row in &rows {
        row.log(log::Level::Info);
    }
    write_stdout(&render_table(&rows))?;
    let failed = rows.iter().filter(|r| r.result == Verdict::Failed).count();
    if failed > 0 {
        log::warn!("{failed} of {} domain(s) failed; see the table", rows.len());
        return Ok(exit::FAILURE);
    }
    Ok(exit::OK)
}

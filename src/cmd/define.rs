//! `define` and `create`: the operator's own XML, rewritten, handed to `virsh define` or
//! `virsh create` on its stdin (a file in a shared TMPDIR could be replaced by another user
//! between our write and virsh's read, and root would define their domain). This is the one
//! place that may rewrite a whole domain XML: the operator gave it to us to define.

use std::io::Write;

use crate::cmd::sweep::target;
use crate::cmd::{filter, read_input, Ctx};
use crate::libvirt::Virsh;
use crate::support::error::{exit, Error, Result};

/// What `define` hands virsh as the file to read: its own standard input.
const STDIN: &str = "/dev/stdin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefineOpts {
    pub verb: Verb,
    pub connect: Option<String>,
    pub validate: bool,
    /// `create --paused`.
    pub paused: bool,
    /// A file path, or `-` for stdin.
    pub input: String,
}

/// What virsh does with the rewritten XML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `virsh define`: a persistent guest.
    Define,
    /// `virsh create`: a transient guest, started at once, so its counters are complete from
    /// launch.
    Create,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Define => "define",
            Verb::Create => "create",
        }
    }

    fn past(self) -> &'static str {
        match self {
            Verb::Define => "defined",
            Verb::Create => "created",
        }
    }
}

/// `virt-perf-hook define` and `create`: rewrite the XML, then `virsh define` or `virsh create`
/// it; virsh's output and exit status pass through.
pub fn define(ctx: &Ctx, o: &DefineOpts) -> Result<i32> {
    let cfg = ctx.load_config()?;
    let xml = read_input(Some(&o.input))?;
    let virsh = Virsh::from_env(o.connect.clone(), &ctx.paths);
    let target = target(&virsh, &cfg)?;
    let result = filter::filter_for(&ctx.paths, &cfg, &xml, None, &target)?;
    let verb = o.verb.as_str();
    result.log(&format!("{verb}: "));
    let text = result.xml().unwrap_or(&xml);
    let mut args = vec![verb];
    if o.validate {
        args.push("--validate");
    }
    if o.paused {
        args.push("--paused");
    }
    args.extend(["--file", STDIN]);
    let out = virsh.feed(&args, text.as_bytes())?;
    // virsh names the file it read ("Domain 'x' defined from /dev/stdin"): name the user's.
    let label = if o.input == "-" { "-" } else { o.input.as_str() };
    let shown = |b: &str| b.replace(STDIN, label);
    // Like virsh itself: whatever cannot be printed is lost, nothing else to do about it.
    let _ = std::io::stdout().lock().write_all(shown(&out.stdout).as_bytes());
    let _ = std::io::stderr().lock().write_all(shown(&out.stderr).as_bytes());
    match out.code {
        Some(0) => Ok(exit::OK),
        Some(code) => {
            log::warn!("virsh {verb} exited with status {code}; the domain was not {}", o.verb.past());
            Ok(code)
        }
        None => Err(Error::Command {
            what: format!("virsh {verb}"),
            code: exit::FAILURE,
            msg: format!("virsh was killed by a signal; check with 'virsh dominfo' whether the domain was {}", o.verb.past()),
        }),
    }
}

//! The parser: the words of the command line, checked against the command table, become a typed
//! [`Command`]. Options may come before or after the command; short ones cluster and take values
//! attached or separate (`-vv`, `-cPATH`, `-c PATH`, `-C=URI`), long ones take `--opt VALUE` or
//! `--opt=VALUE`. Words after `--` are operands, and everything after `qemu`/`daemon` is the
//! hook's argv, verbatim (a domain may be called `-x`).

use std::ffi::OsString;
use std::path::PathBuf;

use super::table::{self, CmdSpec, Flag, Name, Operands};
use super::{Command, Doc, Invocation};
use crate::cmd::filter::FilterMode;
use crate::cmd::{status, virsh, watch};
use crate::support::error::{Error, Result};

/// The options a command was given (globals excepted), with how each was spelled.
#[derive(Default)]
struct Given {
    opts: Vec<(Flag, Option<String>, String)>,
    operands: Vec<String>,
}

impl Given {
    fn has(&self, flag: Flag) -> bool {
        self.opts.iter().any(|(f, _, _)| *f == flag)
    }

    /// The last value given for `flag`.
    fn value(&self, flag: Flag) -> Option<String> {
        self.opts.iter().rev().find(|(f, _, _)| *f == flag).and_then(|(_, v, _)| v.clone())
    }
}

pub fn parse(args: &[OsString]) -> Result<Invocation> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args.iter().cloned());
    let (mut config, mut verbosity) = (None, 0i8);
    let mut spec: Option<&'static CmdSpec> = None;
    let mut given = Given::default();
    let usage = |e: lexopt::Error| Error::Usage(e.to_string());
    let done = |command, config, verbosity| Ok(Invocation { command, config, verbosity });
    while let Some(arg) = p.next().map_err(usage)? {
        let (opt, spelled) = match arg {
            Value(v) if spec.is_none() => {
                let word = utf8(v)?;
                let s = table::command(&word).ok_or_else(|| Error::Usage(format!("unknown command '{word}'")))?;
                if s.operands == Operands::Raw {
                    let raw = p.raw_args().map_err(usage)?.map(|a| a.to_string_lossy().into_owned()).collect();
                    let command = if s.name == Name::Qemu { Command::Qemu(raw) } else { Command::Daemon(raw) };
                    return done(command, config, verbosity);
                }
                spec = Some(s);
                continue;
            }
            Value(v) => {
                given.operands.push(utf8(v)?);
                continue;
            }
            Short(c) => (table::OPTIONS.iter().find(|o| o.short == Some(c)), format!("-{c}")),
            Long(l) => (table::OPTIONS.iter().find(|o| o.long == l), format!("--{l}")),
        };
        let Some(opt) = opt else {
            let at = spec.map(|s| format!("{}: ", s.word)).unwrap_or_default();
            return Err(Error::Usage(format!("{at}unknown option '{spelled}'")));
        };
        let value = match &opt.value {
            Some(v) => {
                let got = p.value().ok().filter(|v| !v.is_empty());
                Some(got.ok_or_else(|| Error::Usage(format!("{spelled} needs {}", v.needs)))?)
            }
            None => None,
        };
        match opt.flag {
            Flag::Help => return done(Command::Help, config, verbosity),
            Flag::Version => return done(Command::Version, config, verbosity),
            Flag::Verbose => verbosity = verbosity.max(0).saturating_add(1),
            Flag::Quiet => verbosity = -1,
            // A config path need not be UTF-8.
            Flag::Config => config = value.map(PathBuf::from),
            flag => given.opts.push((flag, value.map(utf8).transpose()?, spelled)),
        }
    }
    let spec = spec.ok_or_else(|| Error::Usage("no command given".into()))?;
    // `help` and `version` ignore the rest of the line, like -h and -V.
    if let Name::Help | Name::Version = spec.name {
        let command = if spec.name == Name::Help { Command::Help } else { Command::Version };
        return done(command, config, verbosity);
    }
    if let Some((_, _, spelled)) = given.opts.iter().find(|(f, _, _)| !spec.options.contains(f)) {
        return Err(Error::Usage(format!("{}: unknown option '{spelled}'", spec.word)));
    }
    done(build(spec, given)?, config, verbosity)
}

fn utf8(arg: OsString) -> Result<String> {
    arg.into_string().map_err(|a| Error::Usage(format!("argument {a:?} is not valid UTF-8")))
}

/// Why `apply --live` is refused.
const APPLY_LIVE: &str = "apply: --live is gone: counters enabled on a running guest miss its vCPU threads \
     (libvirt counts only threads created after it opens them); they start complete at the guest's next \
     start (boot, restore or migration), so apply changes the persistent config only";

/// The typed command, from options the command takes (checked by `parse`) and its operands.
fn build(spec: &CmdSpec, mut g: Given) -> Result<Command> {
    let word = spec.word;
    let connect = g.value(Flag::Connect);
    if let (Operands::None, Some(w)) = (spec.operands, g.operands.first()) {
        return Err(Error::Usage(format!("{word}: unexpected argument '{w}'")));
    }
    let cmd = match spec.name {
        // Answered by `parse` before the options are checked.
        Name::Help => Command::Help,
        Name::Version => Command::Version,
        Name::Filter => {
            let mode = match (g.has(Flag::DryRun), g.has(Flag::Diff)) {
                (true, true) => return Err(Error::Usage("filter: --dry-run and --diff exclude each other".into())),
                (true, false) => FilterMode::DryRun,
                (false, true) => FilterMode::Diff,
                (false, false) => FilterMode::Print,
            };
            Command::Filter { mode, input: at_most_one(word, &mut g.operands)? }
        }
        Name::Define | Name::Create => {
            let verb = if spec.name == Name::Define { virsh::Verb::Define } else { virsh::Verb::Create };
            let (validate, paused) = (g.has(Flag::Validate), g.has(Flag::Paused));
            let input = at_most_one(word, &mut g.operands)?
                .ok_or_else(|| Error::Usage(format!("{word}: give a FILE, or - for stdin")))?;
            Command::Define(virsh::DefineOpts { verb, connect, validate, paused, input })
        }
        Name::Apply => {
            if g.has(Flag::Live) {
                return Err(Error::Usage(APPLY_LIVE.into()));
            }
            let all = all_or_domains(word, &g)?;
            Command::Apply(virsh::ApplyOpts { connect, all, dry_run: g.has(Flag::DryRun), domains: g.operands })
        }
        Name::Status => {
            let all = all_or_domains(word, &g)?;
            Command::Status(status::StatusOpts { connect, json: g.has(Flag::Json), all, domains: g.operands })
        }
        Name::Watch => Command::Watch(watch::WatchOpts { connect }),
        Name::Events => Command::Events { json: g.has(Flag::Json) },
        Name::Check => Command::Check { json: g.has(Flag::Json) },
        Name::Refresh => Command::Refresh,
        // Taken whole by `parse` before any option is read.
        Name::Qemu => Command::Qemu(g.operands),
        Name::Daemon => Command::Daemon(g.operands),
        Name::Generate => {
            let doc = match g.operands.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                ["man"] => Doc::Man,
                ["bash"] => Doc::Bash,
                ["zsh"] => Doc::Zsh,
                ["fish"] => Doc::Fish,
                _ => return Err(Error::Usage(format!("{word}: give one of man, bash, zsh, fish"))),
            };
            return Ok(Command::Generate(doc));
        }
    };
    Ok(cmd)
}

fn at_most_one(word: &str, operands: &mut Vec<String>) -> Result<Option<String>> {
    if operands.len() > 1 {
        return Err(Error::Usage(format!("{word}: only one FILE may be given, got {}", operands.len())));
    }
    Ok(operands.pop())
}

/// `--all` or domain names: exactly one of the two.
fn all_or_domains(word: &str, g: &Given) -> Result<bool> {
    let all = g.has(Flag::All);
    if all == g.operands.is_empty() {
        Ok(all)
    } else {
        Err(Error::Usage(format!("{word}: give --all or domain names (not both)")))
    }
}

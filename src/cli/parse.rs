//! The parser: the words of the command line, checked against the command table, become a typed
//! [`Command`]. Options may come before or after the command; short ones cluster and take values
//! attached or separate (`-vv`, `-cPATH`, `-c PATH`, `-C=URI`), long ones take `--opt VALUE` or
//! `--opt=VALUE`. Words after `--` are operands, and everything after `qemu`/`daemon` is the
//! hook's argv, verbatim (a domain may be called `-x`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::table::{self, CmdSpec, Flag, Name, Operands};
use super::{Command, Doc, Invocation};
use crate::cmd::filter::FilterMode;
use crate::cmd::{apply, define, exporter, status, top, watch};
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
    let (mut config, mut verbosity, mut timeout) = (None, 0i8, None);
    let mut spec: Option<&'static CmdSpec> = None;
    let mut given = Given::default();
    let usage = |e: lexopt::Error| Error::Usage(e.to_string());
    let done = |command, config, verbosity, timeout| Ok(Invocation { command, config, verbosity, timeout });
    while let Some(arg) = p.next().map_err(usage)? {
        let (opt, spelled) = match arg {
            Value(v) if spec.is_none() => {
                let word = utf8(v)?;
                let s = table::command(&word).ok_or_else(|| Error::Usage(format!("unknown command '{word}'")))?;
                if s.operands == Operands::Raw {
                    let raw = p.raw_args().map_err(usage)?.map(|a| a.to_string_lossy().into_owned()).collect();
                    let command = if s.name == Name::Qemu { Command::Qemu(raw) } else { Command::Daemon(raw) };
                    return done(command, config, verbosity, timeout);
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
            // Missing or not, the value is judged by `seconds`, whose message names the range.
            Some(_) if opt.flag == Flag::Timeout => Some(p.value().unwrap_or_default()),
            Some(v) => {
                let got = p.value().ok().filter(|v| !v.is_empty());
                Some(got.ok_or_else(|| Error::Usage(format!("{spelled} needs {}", v.needs)))?)
            }
            None => None,
        };
        match opt.flag {
            Flag::Help => return done(Command::Help, config, verbosity, timeout),
            Flag::Version => return done(Command::Version, config, verbosity, timeout),
            Flag::Timeout => timeout = Some(seconds(value.unwrap_or_default(), &spelled)?),
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
        return done(command, config, verbosity, timeout);
    }
    if let Some((_, _, spelled)) = given.opts.iter().find(|(f, _, _)| !spec.options.contains(f)) {
        return Err(Error::Usage(format!("{}: unknown option '{spelled}'", spec.word)));
    }
    let mut command = build(spec, given)?;
    if let (Command::Exporter(o), Some(limit)) = (&mut command, timeout) {
        o.timeout = limit;
    }
    done(command, config, verbosity, timeout)
}

/// A `--timeout` value: seconds, more than 0 and at most a day (fractions allowed).
fn seconds(v: OsString, spelled: &str) -> Result<Duration> {
    let text = v.into_string().unwrap_or_default();
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(Error::Usage(format!("{spelled} needs a number of seconds (more than 0, at most 86400), got '{text}'"))),
    }
}

/// `--interval SECS` of `word` (a positive number, fractions allowed), else `default`.
fn interval(word: &str, g: &Given, default: Duration) -> Result<Duration> {
    let Some(v) = g.value(Flag::Interval) else { return Ok(default) };
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.1..=86_400.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(Error::Usage(format!("{word}: --interval '{v}' is not a number of seconds from 0.1 to 86400"))),
    }
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
            let verb = if spec.name == Name::Define { define::Verb::Define } else { define::Verb::Create };
            let (validate, paused) = (g.has(Flag::Validate), g.has(Flag::Paused));
            let input = at_most_one(word, &mut g.operands)?
                .ok_or_else(|| Error::Usage(format!("{word}: give a FILE, or - for stdin")))?;
            Command::Define(define::DefineOpts { verb, connect, validate, paused, input })
        }
        Name::Apply => {
            if g.has(Flag::Live) {
                return Err(Error::Usage(APPLY_LIVE.into()));
            }
            let all = all_or_domains(word, &g)?;
            Command::Apply(apply::ApplyOpts { connect, all, dry_run: g.has(Flag::DryRun), domains: g.operands })
        }
        Name::Status => {
            let all = all_or_domains(word, &g)?;
            Command::Status(status::StatusOpts { connect, json: g.has(Flag::Json), all, domains: g.operands })
        }
        Name::Watch => Command::Watch(watch::WatchOpts { connect }),
        Name::Exporter => {
            let (listen, textfile) = (g.value(Flag::Listen), g.value(Flag::Textfile).map(PathBuf::from));
            let interval = interval(word, &g, exporter::DEFAULT_INTERVAL)?;
            let (once, readonly) = (g.has(Flag::Once), g.has(Flag::Readonly));
            if textfile.is_some() && listen.is_some() {
                return Err(Error::Usage("exporter: --textfile and --listen exclude each other".into()));
            }
            if once && textfile.is_none() {
                return Err(Error::Usage("exporter: --once needs --textfile".into()));
            }
            // The global --timeout replaces the exporter's own default (`parse`).
            let timeout = exporter::DEFAULT_TIMEOUT;
            Command::Exporter(exporter::ExporterOpts { connect, listen, textfile, interval, timeout, once, readonly })
        }
        Name::Top => {
            let interval = interval(word, &g, top::DEFAULT_INTERVAL)?;
            let (once, json, readonly) = (g.has(Flag::Once), g.has(Flag::Json), g.has(Flag::Readonly));
            Command::Top(top::TopOpts { connect, once, json, interval, sort: g.value(Flag::Sort), readonly })
        }
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

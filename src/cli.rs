//! Command-line parsing and dispatch. Hook invocations are recognised first and cheaply: the
//! qemu hook runs for every lifecycle event of every guest.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::cmd::filter::{self, FilterMode};
use crate::cmd::{hook, report, status, virsh, Ctx};
use crate::support::error::{exit, Error, Result};
use crate::support::logging;
use crate::support::paths::Paths;

pub const HELP: &str = "\
virt-perf-hook — give every libvirt/QEMU guest the operator's perf events

USAGE:
    virt-perf-hook [OPTIONS] <COMMAND> [ARGS]

COMMANDS:
    filter [--dry-run | --diff] [FILE|-]
        Print the domain XML from FILE (or stdin) with the configured <perf> events.
        --dry-run prints what would change; --diff prints a unified diff.
    define [--connect URI] [--validate] FILE|-
        Rewrite the XML, then 'virsh define' it (virsh's errors and exit code pass through).
    apply [--connect URI] [--dry-run] (--all | DOMAIN...)
        Make the persistent config of already-defined guests match: add the configured
        events, remove those this host cannot have (virsh dumpxml, rewrite, virsh define).
        A running guest gets them at its next start (boot, restore or migration).
    status [--connect URI] [--json] (--all | DOMAIN...)
        Per guest: events in its config and live, whether its live counters are complete,
        and events that make its next start fail here. Changes nothing. Exits 0 only when
        no counters are partial or unknown and nothing is at risk.
    events [--json]
        All 22 libvirt perf events: libvirt-since, supported here, openable here, configured.
    check [--json]
        Config, libvirt version and its source, cache, the events that will be added or dropped,
        and the installed hooks. Exits 0 only when all is well.
    refresh
        Re-detect the libvirt version, re-probe the host and rewrite the cache.
    qemu <domain> <op> <subop> <extra>
        The libvirt qemu hook (also when run as .../hooks/qemu or from .../hooks/qemu.d/).
        'migrate begin' and 'restore begin' print the rewritten XML (nothing when unchanged);
        every other op exits 0 at once.
    daemon <-> <op> <subop> <extra>
        The libvirt daemon hook: 'start' and 'reload' refresh the cache.

OPTIONS:
    -c, --config PATH   Config file [env VIRT_PERF_HOOK_CONFIG; default /etc/virt-perf-hook/config.json]
    -v, --verbose       More log output (repeat for debug); RUST_LOG overrides
    -q, --quiet         Only errors
    -h, --help          This help
    -V, --version       Version

EXIT STATUS:
    0 success; 1 failure (I/O, virsh, 'check' found problems, or 'status' found counters
    that are partial or unknown or events at risk); 2 usage error;
    3 config error; 4 domain XML rejected. 'define' passes virsh's exit status through.
    Hook mode exits 0 on any internal error unless the config says \"on_error\": \"fail\".
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    Filter { mode: FilterMode, input: Option<String> },
    Define(virsh::DefineOpts),
    Apply(virsh::ApplyOpts),
    Status(status::StatusOpts),
    Events { json: bool },
    Check { json: bool },
    Refresh,
    Qemu(Vec<String>),
    Daemon(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub command: Command,
    pub config: Option<PathBuf>,
    pub verbosity: i8,
}

/// Entry point used by `main`: returns the process exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let argv0 = args.first().cloned().unwrap_or_default();
    let rest: Vec<OsString> = args.into_iter().skip(1).collect();

    // Hook fast path: invoked as a hook file (qemu, qemu.d/*, daemon, daemon.d/*).
    if let Some(kind) = hook::kind_from_argv0(Path::new(&argv0)) {
        let strings: Vec<String> = rest.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        return hook::run(kind, &strings, None);
    }

    let inv = match parse(&rest) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("virt-perf-hook: {e}");
            return e.exit_code();
        }
    };
    match &inv.command {
        Command::Qemu(a) => return hook::run(hook::Kind::Qemu, a, inv.config.clone()),
        Command::Daemon(a) => return hook::run(hook::Kind::Daemon, a, inv.config.clone()),
        Command::Help => {
            print!("{HELP}");
            return exit::OK;
        }
        Command::Version => {
            println!("virt-perf-hook {}", env!("CARGO_PKG_VERSION"));
            return exit::OK;
        }
        _ => {}
    }
    // Like other Unix filters, end quietly when the reader goes away (`events | head`) instead of
    // failing every later write; Rust ignores SIGPIPE by default. Not in hook mode, where a failed
    // write must be reported to libvirt as an error.
    // SAFETY: no other threads exist yet and SIG_DFL installs no Rust handler.
    unsafe {
        let _ = nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl);
    }
    logging::init_cli(inv.verbosity);
    let paths = Paths::from_env();
    let ctx = Ctx { config_path: crate::cmd::config_path(&paths, inv.config.clone()), paths };
    match dispatch(&ctx, inv.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("virt-perf-hook: {e}");
            e.exit_code()
        }
    }
}

fn dispatch(ctx: &Ctx, cmd: Command) -> Result<i32> {
    match cmd {
        Command::Filter { mode, input } => filter::run(ctx, mode, input.as_deref()),
        Command::Define(o) => virsh::define(ctx, &o),
        Command::Apply(o) => virsh::apply(ctx, &o),
        Command::Status(o) => status::status(ctx, &o),
        Command::Events { json } => report::events(ctx, json),
        Command::Check { json } => report::check(ctx, json),
        Command::Refresh => report::refresh(ctx),
        Command::Help | Command::Version | Command::Qemu(_) | Command::Daemon(_) => Ok(exit::OK),
    }
}

/// Parses the arguments after argv[0].
pub fn parse(args: &[OsString]) -> Result<Invocation> {
    let mut config = None;
    let mut verbosity: i8 = 0;
    let mut words: Vec<String> = Vec::new();
    let mut it = args.iter();
    let mut options_done = false;
    while let Some(arg) = it.next() {
        let Some(a) = arg.to_str() else {
            return Err(Error::Usage(format!("argument {:?} is not valid UTF-8", arg)));
        };
        if options_done {
            words.push(a.to_string());
            continue;
        }
        match a {
            // Kept as a marker: the command's own parser treats what follows as operands.
            "--" => {
                options_done = true;
                words.push(a.to_string());
            }
            "-h" | "--help" => return Ok(Invocation { command: Command::Help, config, verbosity }),
            "-V" | "--version" => return Ok(Invocation { command: Command::Version, config, verbosity }),
            "-v" | "--verbose" => verbosity = verbosity.saturating_add(1),
            "-vv" => verbosity = verbosity.saturating_add(2),
            "-q" | "--quiet" => verbosity = -1,
            "-c" | "--config" => {
                let v = it.next().ok_or_else(|| Error::Usage(format!("{a} needs a file path")))?;
                config = Some(PathBuf::from(v));
            }
            _ if a.starts_with("--config=") => config = Some(PathBuf::from(&a["--config=".len()..])),
            _ => {
                words.push(a.to_string());
                // Hook arguments are passed through verbatim (a domain may be called "-x").
                if words.len() == 1 && matches!(a, "qemu" | "daemon") {
                    words.extend(it.by_ref().map(|s| s.to_string_lossy().into_owned()));
                    break;
                }
            }
        }
    }
    let command = command(&words)?;
    Ok(Invocation { command, config, verbosity })
}

/// Why `apply --live` is refused.
const APPLY_LIVE: &str = "apply: --live is gone: counters enabled on a running guest miss its vCPU threads \
     (libvirt counts only threads created after it opens them); they start complete at the guest's next \
     start (boot, restore or migration), so apply changes the persistent config only";

fn command(words: &[String]) -> Result<Command> {
    // `-- COMMAND ARGS…`: everything after the command is an operand.
    let (words, all_operands) = match words.split_first() {
        Some((first, rest)) if first == "--" => (rest, true),
        _ => (words, false),
    };
    let Some((name, rest)) = words.split_first() else {
        return Err(Error::Usage("no command given".into()));
    };
    let mut flags = Flags::new(name, rest, all_operands);
    let cmd = match name.as_str() {
        "help" => Command::Help,
        "version" => Command::Version,
        "filter" => {
            let dry = flags.take("--dry-run");
            let diff = flags.take("--diff");
            if dry && diff {
                return Err(Error::Usage("filter: --dry-run and --diff exclude each other".into()));
            }
            let mode = if dry { FilterMode::DryRun } else if diff { FilterMode::Diff } else { FilterMode::Print };
            let input = flags.at_most_one_positional("FILE")?;
            Command::Filter { mode, input }
        }
        "define" => {
            let connect = flags.value(&["--connect", "-C"])?;
            let validate = flags.take("--validate");
            let input = flags.at_most_one_positional("FILE")?.ok_or_else(|| {
                Error::Usage("define: give a FILE, or - for stdin".into())
            })?;
            Command::Define(virsh::DefineOpts { connect, validate, input })
        }
        "apply" => {
            let connect = flags.value(&["--connect", "-C"])?;
            let all = flags.take("--all");
            if flags.take("--live") {
                return Err(Error::Usage(APPLY_LIVE.into()));
            }
            let dry_run = flags.take("--dry-run");
            let domains = flags.positionals()?;
            if all != domains.is_empty() {
                return Err(Error::Usage("apply: give --all or domain names (not both)".into()));
            }
            Command::Apply(virsh::ApplyOpts { connect, all, dry_run, domains })
        }
        "status" => {
            let connect = flags.value(&["--connect", "-C"])?;
            let all = flags.take("--all");
            let json = flags.take("--json");
            let domains = flags.positionals()?;
            if all != domains.is_empty() {
                return Err(Error::Usage("status: give --all or domain names (not both)".into()));
            }
            Command::Status(status::StatusOpts { connect, json, all, domains })
        }
        "events" => {
            let json = flags.take("--json");
            flags.no_positionals()?;
            Command::Events { json }
        }
        "check" => {
            let json = flags.take("--json");
            flags.no_positionals()?;
            Command::Check { json }
        }
        "refresh" => {
            flags.no_positionals()?;
            Command::Refresh
        }
        "qemu" => return Ok(Command::Qemu(rest.to_vec())),
        "daemon" => return Ok(Command::Daemon(rest.to_vec())),
        other => return Err(Error::Usage(format!("unknown command '{other}'"))),
    };
    Ok(cmd)
}

/// Tiny per-command flag parser over the words after the command name. Words after `--` are
/// operands even when they look like options (a domain may be called `-x` or `--all`).
struct Flags<'a> {
    cmd: &'a str,
    words: Vec<Option<&'a str>>,
    operands: &'a [String],
}

impl<'a> Flags<'a> {
    fn new(cmd: &'a str, rest: &'a [String], all_operands: bool) -> Self {
        let (opts, operands): (&[String], &[String]) = match rest.iter().position(|w| w == "--") {
            _ if all_operands => (&[], rest),
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[]),
        };
        Flags { cmd, words: opts.iter().map(|s| Some(s.as_str())).collect(), operands }
    }

    fn take(&mut self, flag: &str) -> bool {
        let mut found = false;
        for w in self.words.iter_mut() {
            if *w == Some(flag) {
                *w = None;
                found = true;
            }
        }
        found
    }

    fn value(&mut self, names: &[&str]) -> Result<Option<String>> {
        let mut out = None;
        let mut i = 0;
        while i < self.words.len() {
            if let Some(w) = self.words[i] {
                if let Some(v) = names.iter().find_map(|n| w.strip_prefix(&format!("{n}="))) {
                    out = Some(v.to_string());
                    self.words[i] = None;
                } else if names.contains(&w) {
                    let v = self.words.get(i + 1).copied().flatten().ok_or_else(|| {
                        Error::Usage(format!("{}: {w} needs a value", self.cmd))
                    })?;
                    out = Some(v.to_string());
                    self.words[i] = None;
                    self.words[i + 1] = None;
                    i += 1;
                }
            }
            i += 1;
        }
        Ok(out)
    }

    fn positionals(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for w in self.words.iter().flatten() {
            if w.starts_with('-') && *w != "-" && w.len() > 1 {
                return Err(Error::Usage(format!("{}: unknown option '{w}'", self.cmd)));
            }
            out.push(w.to_string());
        }
        out.extend(self.operands.iter().cloned());
        Ok(out)
    }

    fn at_most_one_positional(&self, what: &str) -> Result<Option<String>> {
        let mut p = self.positionals()?;
        if p.len() > 1 {
            return Err(Error::Usage(format!("{}: only one {what} may be given, got {}", self.cmd, p.len())));
        }
        Ok(p.pop())
    }

    fn no_positionals(&self) -> Result<()> {
        match self.positionals()?.first() {
            Some(w) => Err(Error::Usage(format!("{}: unexpected argument '{w}'", self.cmd))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Invocation> {
        parse(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn parses_commands() {
        let i = p(&["--config", "/x.json", "filter", "--diff", "in.xml"]).unwrap();
        assert_eq!(i.config, Some(PathBuf::from("/x.json")));
        assert_eq!(i.command, Command::Filter { mode: FilterMode::Diff, input: Some("in.xml".into()) });
        assert_eq!(p(&["filter"]).unwrap().command, Command::Filter { mode: FilterMode::Print, input: None });
        assert_eq!(p(&["filter", "-c", "a", "-"]).unwrap().config, Some(PathBuf::from("a")));
        let q = p(&["qemu", "-weird", "restore", "begin", "-"]).unwrap();
        assert_eq!(q.command, Command::Qemu(vec!["-weird".into(), "restore".into(), "begin".into(), "-".into()]));
        let a = p(&["apply", "--connect", "test:///default", "a", "b"]).unwrap();
        assert_eq!(
            a.command,
            Command::Apply(virsh::ApplyOpts {
                connect: Some("test:///default".into()),
                all: false,
                dry_run: false,
                domains: vec!["a".into(), "b".into()]
            })
        );
        assert_eq!(
            p(&["status", "--json", "--all"]).unwrap().command,
            Command::Status(status::StatusOpts { connect: None, json: true, all: true, domains: vec![] })
        );
        assert_eq!(p(&["-v", "-v", "events", "--json"]).unwrap().verbosity, 2);
        assert_eq!(p(&["check", "--help"]).unwrap().command, Command::Help);
    }

    #[test]
    fn operands_after_double_dash() {
        let apply = |args: &[&str]| match p(args).unwrap().command {
            Command::Apply(o) => (o.all, o.dry_run, o.domains),
            other => panic!("{other:?}"),
        };
        assert_eq!(apply(&["apply", "--dry-run", "--", "--all", "-x"]), (false, true, vec!["--all".into(), "-x".into()]));
        assert_eq!(apply(&["apply", "--", "-x"]), (false, false, vec!["-x".into()]));
        assert_eq!(apply(&["--", "apply", "--all"]), (false, false, vec!["--all".into()]));
        assert_eq!(
            p(&["filter", "--diff", "--", "-weird.xml"]).unwrap().command,
            Command::Filter { mode: FilterMode::Diff, input: Some("-weird.xml".into()) }
        );
        assert!(p(&["apply", "--", "-x", "--", "y"]).is_ok(), "a second -- is an operand");
    }

    #[test]
    fn usage_errors() {
        for (args, want) in [
            (&["frob"][..], "unknown command 'frob'"),
            (&[][..], "no command given"),
            (&["filter", "a", "b"][..], "only one FILE"),
            (&["filter", "--dry-run", "--diff"][..], "exclude each other"),
            (&["filter", "--bogus"][..], "unknown option '--bogus'"),
            (&["define"][..], "give a FILE"),
            (&["apply"][..], "--all or domain names"),
            (&["apply", "--all", "x"][..], "--all or domain names"),
            (&["apply", "--live", "--all"][..], "--live is gone: counters enabled on a running guest miss its vCPU threads"),
            (&["status"][..], "status: give --all or domain names"),
            (&["status", "--live", "x"][..], "unknown option '--live'"),
            (&["events", "x"][..], "unexpected argument 'x'"),
            (&["--config"][..], "needs a file path"),
        ] {
            let e = p(args).unwrap_err();
            assert_eq!(e.exit_code(), exit::USAGE);
            assert!(e.to_string().contains(want), "{args:?}: {e}");
        }
    }
}

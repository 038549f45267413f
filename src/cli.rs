//! Command-line parsing and dispatch. Hook invocations are recognised first and cheaply: the
//! qemu hook runs for every lifecycle event of every guest.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::cmd::filter::{self, FilterMode};
use crate::cmd::{hook, report, status, virsh, watch, write_stdout, Ctx};
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
    define [-C|--connect URI] [--validate] FILE|-
        Rewrite the XML, then 'virsh define' it (virsh's errors and exit code pass through).
    create [-C|--connect URI] [--validate] [--paused] FILE|-
        The same with 'virsh create': a transient guest that launches with the events, so its
        counters are complete from the start.
    apply [-C|--connect URI] [--dry-run] (--all | DOMAIN...)
        Make the persistent config of already-defined guests match: add the configured
        events, remove those this host cannot have (virsh dumpxml, rewrite, virsh define).
        A running guest gets them at its next start (boot, restore or migration).
        DOMAIN is a name, UUID or ID. -C/--connect is virsh's -c URI (-c here is --config).
    status [-C|--connect URI] [--json] (--all | DOMAIN...)
        Per guest: events in its config and live, whether its live counters are complete,
        and events that make its next start fail here. Changes nothing. Exits 0 only when
        no counters are partial or unknown and nothing is at risk.
    watch [-C|--connect URI]
        Keep every persistent guest's config matching the config file, whoever defines it
        (on qemu:///system unless -C says otherwise): sweeps at start and after every
        reconnect, then fixes each guest libvirt reports as defined. Runs until SIGTERM or
        SIGINT (exit 0); SIGHUP re-reads the config and sweeps. Packaged as
        virt-perf-hook.service.
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
    Options go before or after the command; short ones combine (-vv) and take values attached or
    separate (-cPATH, -c PATH, --config=PATH). Arguments after -- are operands (a domain named -x).

EXIT STATUS:
    0 success; 1 failure (I/O, virsh, 'check' found problems, or 'status' found counters
    that are partial or unknown or events at risk); 2 usage error;
    3 config error; 4 domain XML rejected. 'define' and 'create' pass virsh's exit status
    through.
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
    Watch(watch::WatchOpts),
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
    if let Some(which) = hook::hook_from_argv0(Path::new(&argv0)) {
        let strings: Vec<String> = rest.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        return hook::run(which, &strings, None);
    }

    let inv = match parse(&rest) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("virt-perf-hook: {e}");
            return e.exit_code();
        }
    };
    match &inv.command {
        Command::Qemu(a) => return hook::run(hook::Hook::Qemu, a, inv.config.clone()),
        Command::Daemon(a) => return hook::run(hook::Hook::Daemon, a, inv.config.clone()),
        Command::Help => {
            return finish(write_stdout(HELP).map(|()| exit::OK));
        }
        Command::Version => {
            return finish(write_stdout(&format!("virt-perf-hook {}\n", env!("CARGO_PKG_VERSION"))).map(|()| exit::OK));
        }
        _ => {}
    }
    // A service logs what it changes: info by default (-q still silences it).
    let service = matches!(inv.command, Command::Watch(_)) && inv.verbosity >= 0;
    logging::init_cli(inv.verbosity + i8::from(service));
    let paths = Paths::from_env();
    let ctx = Ctx { config_path: crate::cmd::config_path(&paths, inv.config.clone()), paths };
    finish(dispatch(&ctx, inv.command))
}

/// SIGPIPE stays ignored (Rust's default), so a reader that goes away (`events | head`) costs
/// an EPIPE that `write_stdout` takes as success, like other Unix filters ending quietly. Hook
/// mode writes on its own and reports a failed write to libvirt as an error.
fn finish(outcome: Result<i32>) -> i32 {
    match outcome {
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
        Command::Watch(o) => watch::watch(ctx, &o),
        Command::Events { json } => report::events(ctx, json),
        Command::Check { json } => report::check(ctx, json),
        Command::Refresh => report::refresh(ctx),
        Command::Help | Command::Version | Command::Qemu(_) | Command::Daemon(_) => Ok(exit::OK),
    }
}

/// Parses the arguments after argv[0]. Options may come before or after the command; short
/// ones cluster and take values attached or separate (`-vv`, `-cPATH`, `-c PATH`, `-C=URI`),
/// long ones take `--opt VALUE` or `--opt=VALUE`. Words after `--` are operands, and everything
/// after `qemu`/`daemon` is the hook's argv, verbatim (a domain may be called `-x`).
pub fn parse(args: &[OsString]) -> Result<Invocation> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args.iter().cloned());
    let (mut config, mut verbosity) = (None, 0i8);
    let mut name: Option<String> = None;
    let mut opts = CommandOpts::default();
    let usage = |e: lexopt::Error| Error::Usage(e.to_string());
    while let Some(arg) = p.next().map_err(usage)? {
        let spelled = match arg {
            Short(c) => format!("-{c}"),
            Long(l) => format!("--{l}"),
            Value(_) => String::new(),
        };
        match arg {
            Short('h') | Long("help") => return Ok(Invocation { command: Command::Help, config, verbosity }),
            Short('V') | Long("version") => return Ok(Invocation { command: Command::Version, config, verbosity }),
            Short('v') | Long("verbose") => verbosity = verbosity.max(0).saturating_add(1),
            Short('q') | Long("quiet") => verbosity = -1,
            Short('c') | Long("config") => {
                let v = p.value().ok().filter(|v| !v.is_empty());
                config = Some(PathBuf::from(v.ok_or_else(|| Error::Usage(format!("{spelled} needs a file path")))?));
            }
            Short('C') | Long("connect") => {
                let v = p.value().ok().filter(|v| !v.is_empty());
                let v = v.ok_or_else(|| Error::Usage(format!("{spelled} needs a connection URI")))?;
                opts.connect = Some((utf8(v)?, spelled));
            }
            Long(flag @ ("dry-run" | "diff" | "validate" | "paused" | "all" | "live" | "json")) => opts.flags.push(flag.to_string()),
            Value(v) if name.is_none() => {
                let word = utf8(v)?;
                if matches!(word.as_str(), "qemu" | "daemon") {
                    let hook_args = p.raw_args().map_err(usage)?.map(|a| a.to_string_lossy().into_owned()).collect();
                    let command = if word == "qemu" { Command::Qemu(hook_args) } else { Command::Daemon(hook_args) };
                    return Ok(Invocation { command, config, verbosity });
                }
                if !COMMANDS.contains(&word.as_str()) {
                    return Err(Error::Usage(format!("unknown command '{word}'")));
                }
                name = Some(word);
            }
            Value(v) => opts.operands.push(utf8(v)?),
            _ => {
                let at = name.as_deref().map(|n| format!("{n}: ")).unwrap_or_default();
                return Err(Error::Usage(format!("{at}unknown option '{spelled}'")));
            }
        }
    }
    let name = name.ok_or_else(|| Error::Usage("no command given".into()))?;
    let command = command(&name, opts)?;
    Ok(Invocation { command, config, verbosity })
}

const COMMANDS: &[&str] = &["help", "version", "filter", "define", "create", "apply", "status", "watch", "events", "check", "refresh"];

fn utf8(arg: OsString) -> Result<String> {
    arg.into_string().map_err(|a| Error::Usage(format!("argument {a:?} is not valid UTF-8")))
}

/// The options and operands given with a command, checked against what it accepts by `command`.
#[derive(Default)]
struct CommandOpts {
    /// Long names without dashes, as given.
    flags: Vec<String>,
    /// The URI and how the option was spelled (`-C`, `--connect`).
    connect: Option<(String, String)>,
    operands: Vec<String>,
}

impl CommandOpts {
    /// Takes the flag `name` (without dashes) if given.
    fn take(&mut self, name: &str) -> bool {
        let before = self.flags.len();
        self.flags.retain(|f| f != name);
        self.flags.len() != before
    }

    /// `--all` or domain names: exactly one of the two.
    fn all_or_operands(&self, cmd: &str, all: bool) -> Result<()> {
        if all == self.operands.is_empty() {
            Ok(())
        } else {
            Err(Error::Usage(format!("{cmd}: give --all or domain names (not both)")))
        }
    }

    /// Fails on any option the command did not take.
    fn done(&self, cmd: &str) -> Result<()> {
        let left = self.flags.first().map(|f| format!("--{f}")).or_else(|| self.connect.as_ref().map(|c| c.1.clone()));
        match left {
            Some(opt) => Err(Error::Usage(format!("{cmd}: unknown option '{opt}'"))),
            None => Ok(()),
        }
    }

    fn at_most_one_operand(&mut self, cmd: &str, what: &str) -> Result<Option<String>> {
        if self.operands.len() > 1 {
            return Err(Error::Usage(format!("{cmd}: only one {what} may be given, got {}", self.operands.len())));
        }
        Ok(self.operands.pop())
    }

    fn no_operands(&self, cmd: &str) -> Result<()> {
        match self.operands.first() {
            Some(w) => Err(Error::Usage(format!("{cmd}: unexpected argument '{w}'"))),
            None => Ok(()),
        }
    }
}

/// Why `apply --live` is refused.
const APPLY_LIVE: &str = "apply: --live is gone: counters enabled on a running guest miss its vCPU threads \
     (libvirt counts only threads created after it opens them); they start complete at the guest's next \
     start (boot, restore or migration), so apply changes the persistent config only";

fn command(name: &str, mut o: CommandOpts) -> Result<Command> {
    let cmd = match name {
        "help" => return Ok(Command::Help),
        "version" => return Ok(Command::Version),
        "filter" => {
            let dry = o.take("dry-run");
            let diff = o.take("diff");
            if dry && diff {
                return Err(Error::Usage("filter: --dry-run and --diff exclude each other".into()));
            }
            let mode = if dry { FilterMode::DryRun } else if diff { FilterMode::Diff } else { FilterMode::Print };
            o.done(name)?;
            Command::Filter { mode, input: o.at_most_one_operand(name, "FILE")? }
        }
        "define" | "create" => {
            let verb = if name == "define" { virsh::Verb::Define } else { virsh::Verb::Create };
            let connect = o.connect.take().map(|c| c.0);
            let validate = o.take("validate");
            let paused = verb == virsh::Verb::Create && o.take("paused");
            o.done(name)?;
            let input = o
                .at_most_one_operand(name, "FILE")?
                .ok_or_else(|| Error::Usage(format!("{name}: give a FILE, or - for stdin")))?;
            Command::Define(virsh::DefineOpts { verb, connect, validate, paused, input })
        }
        "apply" => {
            let connect = o.connect.take().map(|c| c.0);
            let all = o.take("all");
            if o.take("live") {
                return Err(Error::Usage(APPLY_LIVE.into()));
            }
            let dry_run = o.take("dry-run");
            o.done(name)?;
            o.all_or_operands(name, all)?;
            Command::Apply(virsh::ApplyOpts { connect, all, dry_run, domains: o.operands })
        }
        "status" => {
            let connect = o.connect.take().map(|c| c.0);
            let all = o.take("all");
            let json = o.take("json");
            o.done(name)?;
            o.all_or_operands(name, all)?;
            Command::Status(status::StatusOpts { connect, json, all, domains: o.operands })
        }
        "watch" => {
            let connect = o.connect.take().map(|c| c.0);
            o.done(name)?;
            o.no_operands(name)?;
            Command::Watch(watch::WatchOpts { connect })
        }
        "events" | "check" => {
            let json = o.take("json");
            o.done(name)?;
            o.no_operands(name)?;
            if name == "events" {
                Command::Events { json }
            } else {
                Command::Check { json }
            }
        }
        "refresh" => {
            o.done(name)?;
            o.no_operands(name)?;
            Command::Refresh
        }
        other => unreachable!("'{other}' is not in COMMANDS"),
    };
    Ok(cmd)
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

    #[test]
    fn short_and_long_option_forms() {
        let cfg = |args: &[&str]| p(args).unwrap().config;
        for args in [
            &["-c/x.json", "check"][..],
            &["-c", "/x.json", "check"],
            &["-c=/x.json", "check"],
            &["--config=/x.json", "check"],
            &["--config", "/x.json", "check"],
            &["check", "-qc/x.json"],
        ] {
            assert_eq!(cfg(args), Some(PathBuf::from("/x.json")), "{args:?}");
        }
        let verbosity = |args: &[&str]| p(args).unwrap().verbosity;
        assert_eq!(verbosity(&["-vvv", "events"]), 3);
        assert_eq!(verbosity(&["-v", "events", "--verbose"]), 2);
        assert_eq!(verbosity(&["-q", "events"]), -1);
        // The last of -q and -v wins.
        assert_eq!(verbosity(&["-vq", "events"]), -1);
        assert_eq!(verbosity(&["-qv", "events"]), 1);
        let connect = |args: &[&str]| match p(args).unwrap().command {
            Command::Apply(o) => o.connect,
            Command::Define(o) => o.connect,
            other => panic!("{other:?}"),
        };
        for args in [
            &["apply", "-Cqemu:///system", "--all"][..],
            &["apply", "-C", "qemu:///system", "--all"],
            &["apply", "-C=qemu:///system", "--all"],
            &["apply", "--all", "--connect=qemu:///system"],
            &["define", "--connect", "qemu:///system", "-"],
            &["-C", "qemu:///system", "define", "-"],
        ] {
            assert_eq!(connect(args).as_deref(), Some("qemu:///system"), "{args:?}");
        }
        assert_eq!(p(&["-vc", "/x.json", "--", "events"]).unwrap().command, Command::Events { json: false });
    }

    #[test]
    fn hook_arguments_are_verbatim() {
        let i = p(&["-c", "/x.json", "qemu", "-c", "restore", "--", "-"]).unwrap();
        assert_eq!(i.config, Some(PathBuf::from("/x.json")));
        assert_eq!(i.command, Command::Qemu(vec!["-c".into(), "restore".into(), "--".into(), "-".into()]));
        assert_eq!(p(&["-v", "--", "daemon", "-", "start"]).unwrap().command, Command::Daemon(vec!["-".into(), "start".into()]));
        assert_eq!(p(&["qemu", "--help"]).unwrap().command, Command::Qemu(vec!["--help".into()]));
    }

    #[test]
    fn option_errors_name_the_option() {
        for (args, want) in [
            (&["-vvx", "events"][..], "unknown option '-x'"),
            (&["filter", "--json"][..], "filter: unknown option '--json'"),
            (&["events", "-C", "x"][..], "events: unknown option '-C'"),
            (&["check", "--connect=x"][..], "check: unknown option '--connect'"),
            (&["refresh", "--all"][..], "refresh: unknown option '--all'"),
            (&["apply", "-C"][..], "-C needs a connection URI"),
            (&["apply", "--connect="][..], "--connect needs a connection URI"),
            (&["check", "-c"][..], "-c needs a file path"),
            (&["--config=", "check"][..], "--config needs a file path"),
            (&["frob", "--help"][..], "unknown command 'frob'"),
            (&["-vvv"][..], "no command given"),
        ] {
            let e = p(args).unwrap_err();
            assert_eq!(e.exit_code(), exit::USAGE);
            assert!(e.to_string().contains(want), "{args:?}: {e}");
        }
        use std::os::unix::ffi::OsStringExt;
        let e = parse(&[OsString::from("apply"), OsString::from_vec(vec![b'a', 0xff])]).unwrap_err();
        assert!(e.to_string().contains("is not valid UTF-8"), "{e}");
        // A config path need not be UTF-8.
        let i = parse(&[OsString::from("-c"), OsString::from_vec(vec![b'/', 0xff]), OsString::from("check")]).unwrap();
        assert_eq!(i.config, Some(PathBuf::from(OsString::from_vec(vec![b'/', 0xff]))));
    }
}

//! Command-line parsing and dispatch. Hook invocations are recognised first and cheaply: the
//! qemu hook runs for every lifecycle event of every guest. The commands and options are one
//! table ([`table`]), from which [`parse`] reads the command line and [`render`] makes `--help`,
//! the man page and the shell completions.

mod parse;
mod render;
pub mod table;

pub use parse::parse;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::cmd::filter::{self, FilterMode};
use crate::cmd::{apply, check, define, events, exporter, hook, refresh, status, top, watch, write_stdout, Ctx};
use crate::support::error::{exit, Result};
use crate::support::logging;
use crate::support::paths::Paths;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    Filter { mode: FilterMode, input: Option<String> },
    Define(define::DefineOpts),
    Apply(apply::ApplyOpts),
    Status(status::StatusOpts),
    Watch(watch::WatchOpts),
    Exporter(exporter::ExporterOpts),
    Top(top::TopOpts),
    Events { json: bool },
    Check { json: bool },
    Refresh,
    Qemu(Vec<String>),
    Daemon(Vec<String>),
    Generate(Doc),
}

/// A document made from the command table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doc {
    Man,
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub command: Command,
    pub config: Option<PathBuf>,
    pub verbosity: i8,
    /// `--timeout SECONDS`: the bound on every virsh call.
    pub timeout: Option<std::time::Duration>,
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
            return finish(write_stdout(&render::help()).map(|()| exit::OK));
        }
        Command::Version => {
            return finish(write_stdout(&format!("virt-perf-hook {}\n", env!("CARGO_PKG_VERSION"))).map(|()| exit::OK));
        }
        Command::Generate(doc) => {
            let text = match doc {
                Doc::Man => render::man(),
                Doc::Bash => render::bash(),
                Doc::Zsh => render::zsh(),
                Doc::Fish => render::fish(),
            };
            return finish(write_stdout(&text).map(|()| exit::OK));
        }
        _ => {}
    }
    // A service logs what it changes: info by default (-q still silences it).
    let service = matches!(inv.command, Command::Watch(_) | Command::Exporter(_)) && inv.verbosity >= 0;
    logging::init_cli(inv.verbosity + i8::from(service));
    // The exporter and top answer a scrape or a refresh: their virsh gets a shorter bound.
    let limit = match &inv.command {
        Command::Exporter(o) => Some(o.timeout),
        Command::Top(_) => Some(inv.timeout.unwrap_or(exporter::DEFAULT_TIMEOUT)),
        _ => inv.timeout,
    };
    if let Some(limit) = limit {
        crate::libvirt::process::set_timeout(limit);
    }
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
        Command::Define(o) => define::define(ctx, &o),
        Command::Apply(o) => apply::apply(ctx, &o),
        Command::Status(o) => status::status(ctx, &o),
        Command::Watch(o) => watch::watch(ctx, &o),
        Command::Exporter(o) => exporter::exporter(ctx, &o),
        Command::Top(o) => top::top(ctx, &o),
        Command::Events { json } => events::run(ctx, json),
        Command::Check { json } => check::run(ctx, json),
        Command::Refresh => refresh::run(ctx),
        Command::Help | Command::Version | Command::Qemu(_) | Command::Daemon(_) | Command::Generate(_) => Ok(exit::OK),
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
            Command::Apply(apply::ApplyOpts {
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
    fn hidden_commands() {
        assert_eq!(p(&["__generate", "zsh"]).unwrap().command, Command::Generate(Doc::Zsh));
        for args in [&["__generate"][..], &["__generate", "man", "bash"], &["__generate", "html"]] {
            let e = p(args).unwrap_err();
            assert!(e.to_string().contains("__generate: give one of man, bash, zsh, fish"), "{args:?}: {e}");
        }
        // `help` and `version` ignore the rest of the line, as -h and -V do.
        assert_eq!(p(&["help", "--json", "x"]).unwrap().command, Command::Help);
        assert_eq!(p(&["version"]).unwrap().command, Command::Version);
    }

    #[test]
    fn timeout_is_global_and_sets_the_exporters_bound() {
        use std::time::Duration;
        let i = p(&["status", "--all", "--timeout", "1.5"]).unwrap();
        assert_eq!(i.timeout, Some(Duration::from_millis(1500)));
        match p(&["--timeout=2", "exporter"]).unwrap().command {
            Command::Exporter(o) => assert_eq!(o.timeout, Duration::from_secs(2)),
            other => panic!("{other:?}"),
        }
        match p(&["exporter"]).unwrap().command {
            Command::Exporter(o) => assert_eq!(o.timeout, exporter::DEFAULT_TIMEOUT),
            other => panic!("{other:?}"),
        }
        for args in [&["check", "--timeout"][..], &["--timeout", "0", "check"], &["--timeout=", "check"]] {
            let e = p(args).unwrap_err();
            assert!(e.to_string().contains("--timeout needs a number of seconds (more than 0, at most 86400), got '"), "{args:?}: {e}");
        }
        let e = p(&["top", "--interval", "0.01"]).unwrap_err();
        assert!(e.to_string().starts_with("top: --interval '0.01' is not a number of seconds from 0.1 to 86400"), "{e}");
        assert!(p(&["top", "--listen", ":1"]).unwrap_err().to_string().contains("top: unknown option '--listen'"));
        assert!(p(&["exporter", "--sort"]).unwrap_err().to_string().contains("--sort needs a value"));
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

//! The one command table: every command, operand and option with its one-line and long help.
//! The parser (`parse`), `--help`, the man page and the bash, zsh and fish completions
//! (`render`) are all made from it, so they cannot drift apart.
//!
//! Adding an option: a variant in [`Flag`] and one [`OptSpec`] in [`OPTIONS`]; list the flag in
//! the `options` of each command that takes it, and read it in that command's arm of
//! `parse::build` (`given.has(Flag::X)` or `given.value(Flag::X)`). A value-taking option
//! (e.g. a virsh time bound) sets `value`; the parser then insists on a non-empty value with
//! the error "--x needs `needs`".
//!
//! Adding a command: a variant in [`Name`], one [`CmdSpec`] in [`COMMANDS`] (in the order
//! `--help` lists them), an arm in `parse::build` that turns the given options into the
//! command's typed options, and one in `cli::dispatch`. The compiler finds every place a
//! missing arm would leave out. Then regenerate the shipped man page and completions:
//! `VPH_BLESS=1 cargo test --test cli generated` (the test fails while they differ).
//!
//! Help text markup (`long`, and the man-only parts): paragraphs separated by a blank line,
//! `` `x` `` bold (commands, options, literal values), `<x>` italic (placeholders, paths),
//! `~` a non-breaking space. `help` is printed by `--help` as written.

/// A command, as a type: the parser matches on it exhaustively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    Help,
    Version,
    Filter,
    Define,
    Create,
    Apply,
    Status,
    Watch,
    Exporter,
    Top,
    Events,
    Check,
    Refresh,
    Qemu,
    Daemon,
    /// `__generate man|bash|zsh|fish`: the generated documents, for packaging and the tests.
    Generate,
}

/// An option, as a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    Config,
    Verbose,
    Quiet,
    /// `--timeout SECONDS`: the bound on every virsh call (global).
    Timeout,
    Help,
    Version,
    Connect,
    DryRun,
    Diff,
    Validate,
    Paused,
    All,
    Json,
    Listen,
    Textfile,
    Interval,
    Sort,
    Once,
    Readonly,
    /// Refused with a reason (`apply --live`); not shown.
    Live,
}

/// What follows the command word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operands {
    None,
    /// One file, or `-` for stdin.
    File,
    /// Domain names, UUIDs or IDs.
    Domains,
    /// The rest of the command line, verbatim (the hooks' argv).
    Raw,
    /// One word of a fixed list.
    Word(&'static [&'static str]),
}

/// An option's value: how `--help` names it and what the error says is missing.
#[derive(Debug)]
pub struct Value {
    pub metavar: &'static str,
    /// "a file path": the error is "--config needs a file path".
    pub needs: &'static str,
    /// Shell completion completes files.
    pub file: bool,
}

#[derive(Debug)]
pub struct OptSpec {
    pub flag: Flag,
    pub short: Option<char>,
    pub long: &'static str,
    pub value: Option<Value>,
    /// Taken by every command, before or after the command word; listed under OPTIONS.
    pub global: bool,
    /// One line: under OPTIONS in `--help` (global options), and in the completions.
    pub help: &'static str,
    /// The man page's OPTIONS entry; empty: described with its commands only.
    pub long_help: &'static str,
    pub hidden: bool,
}

#[derive(Debug)]
pub struct CmdSpec {
    pub name: Name,
    pub word: &'static str,
    /// One line, for the completions' menus.
    pub brief: &'static str,
    /// What follows the word in `--help` and the man page's SYNOPSIS.
    pub usage: &'static str,
    /// The command's own options (globals are always taken).
    pub options: &'static [Flag],
    pub operands: Operands,
    /// `--help`: the lines under the usage line, as printed.
    pub help: &'static str,
    /// The man page's COMMANDS entry (markup above).
    pub long: &'static str,
    pub hidden: bool,
}

const PATH: Value = Value { metavar: "PATH", needs: "a file path", file: true };
const URI: Value = Value { metavar: "URI", needs: "a connection URI", file: false };
/// The exporter's and top's values say only "needs a value" when missing; their commands
/// check the values themselves.
const fn any(metavar: &'static str, file: bool) -> Value {
    Value { metavar, needs: "a value", file }
}

const fn flag(flag: Flag, long: &'static str) -> OptSpec {
    OptSpec { flag, short: None, long, value: None, global: false, help: "", long_help: "", hidden: false }
}

pub static OPTIONS: &[OptSpec] = &[
    OptSpec {
        short: Some('c'),
        value: Some(PATH),
        global: true,
        help: "Config file [env VIRT_PERF_HOOK_CONFIG; default /etc/virt-perf-hook/config.json]",
        long_help: "Config file. Default: the value of `VIRT_PERF_HOOK_CONFIG`, else \
                    </etc/virt-perf-hook/config.json>.",
        ..flag(Flag::Config, "config")
    },
    OptSpec {
        short: Some('v'),
        global: true,
        help: "More log output (repeat for debug); RUST_LOG overrides",
        long_help: "More log output; repeat for debug output. `RUST_LOG` overrides it.",
        ..flag(Flag::Verbose, "verbose")
    },
    OptSpec {
        short: Some('q'),
        global: true,
        help: "Only errors",
        long_help: "Log errors only.",
        ..flag(Flag::Quiet, "quiet")
    },
    OptSpec {
        // Its value is checked by the parser (`seconds`), which words the missing one too.
        value: Some(Value { metavar: "SECONDS", needs: "a number of seconds", file: false }),
        global: true,
        help: "How long any virsh call may go without answering before it is killed
and the command fails (default 30; watch logs an outage and retries)",
        long_help: "How long any `virsh` call may go without answering (a frozen or unreachable \
                    daemon) before its whole process group is killed and the command fails with one \
                    line naming the call and the limit. Default 30. `watch` logs the outage once and \
                    retries with backoff; `status~--json` still prints one JSON document, with an \
                    `error` field.",
        ..flag(Flag::Timeout, "timeout")
    },
    OptSpec {
        short: Some('h'),
        global: true,
        help: "This help",
        long_help: "Print the help text and exit.",
        ..flag(Flag::Help, "help")
    },
    OptSpec {
        short: Some('V'),
        global: true,
        help: "Version",
        long_help: "Print the version and exit.",
        ..flag(Flag::Version, "version")
    },
    OptSpec {
        short: Some('C'),
        value: Some(URI),
        help: "The libvirt URI for virsh (its -c)",
        long_help: "For `define`, `create`, `apply`, `status` and `watch`: the libvirt URI for `virsh`, \
                    passed as its `-c`. Note that `-c` is this tool's `--config`: `apply -c qemu:///system` \
                    reads a config file of that name, and the error says so.",
        ..flag(Flag::Connect, "connect")
    },
    OptSpec { help: "Change nothing, say what would change", ..flag(Flag::DryRun, "dry-run") },
    OptSpec { help: "Print a unified diff", ..flag(Flag::Diff, "diff") },
    OptSpec { help: "Have virsh validate the XML against the schema", ..flag(Flag::Validate, "validate") },
    OptSpec { help: "Start the guest paused", ..flag(Flag::Paused, "paused") },
    OptSpec { help: "Every guest", ..flag(Flag::All, "all") },
    OptSpec { help: "JSON output", ..flag(Flag::Json, "json") },
    OptSpec { help: "exporter: listen on ADDR:PORT (default 127.0.0.1:10077)", value: Some(any("ADDR:PORT", false)), ..flag(Flag::Listen, "listen") },
    OptSpec { help: "exporter: write the metrics to PATH (textfile collector)", value: Some(any("PATH", true)), ..flag(Flag::Textfile, "textfile") },
    OptSpec { help: "Seconds between refreshes", value: Some(any("SECS", false)), ..flag(Flag::Interval, "interval") },
    OptSpec { help: "top: the column to sort by", value: Some(any("COLUMN", false)), ..flag(Flag::Sort, "sort") },
    OptSpec { help: "Run once, then exit", ..flag(Flag::Once, "once") },
    OptSpec { help: "Use libvirt's read-only socket", ..flag(Flag::Readonly, "readonly") },
    OptSpec { hidden: true, ..flag(Flag::Live, "live") },
];

/// The lines under OPTIONS in `--help`, after the options.
pub const OPTIONS_NOTE: &str = "\
Options go before or after the command; short ones combine (-vv) and take values attached or
separate (-cPATH, -c PATH, --config=PATH). Arguments after -- are operands (a domain named -x).
";

pub const SUMMARY: &str = "give every libvirt/QEMU guest the operator's perf events";

/// `--help`'s EXIT STATUS.
pub const EXIT_STATUS: &str = "\
0 success; 1 failure (I/O, virsh, 'check' found problems, or 'status' found counters
that are partial or unknown or events at risk); 2 usage error;
3 config error; 4 domain XML rejected; 5 'watch' refused: another watch already runs
on that connection. 'define' and 'create' pass virsh's exit status through.
Hook mode exits 0 on any internal error unless the config says \"on_error\": \"fail\".
";

const CONNECT: &[Flag] = &[Flag::Connect];

pub static COMMANDS: &[CmdSpec] = &[
    CmdSpec {
        name: Name::Filter,
        word: "filter",
        brief: "Print domain XML with the configured perf events",
        usage: "[--dry-run | --diff] [FILE|-]",
        options: &[Flag::DryRun, Flag::Diff],
        operands: Operands::File,
        help: "\
Print the domain XML from FILE (or stdin) with the configured <perf> events.
--dry-run prints what would change; --diff prints a unified diff.",
        long: "Print the domain XML from <FILE> (or standard input) with the configured `<perf>` events. \
`--dry-run` prints what would change; `--diff` prints a unified diff.",
        hidden: false,
    },
    CmdSpec {
        name: Name::Define,
        word: "define",
        brief: "Rewrite domain XML and virsh define it",
        usage: "[-C|--connect URI] [--validate] FILE|-",
        options: &[Flag::Connect, Flag::Validate],
        operands: Operands::File,
        help: "Rewrite the XML, then 'virsh define' it (virsh's errors and exit code pass through).",
        long: "Rewrite the XML, then `virsh define` it, handing it over on `virsh`'s standard input \
(no temporary file). `virsh`'s messages and exit status pass through; where they name the file \
read, they name <FILE> (or `-`).",
        hidden: false,
    },
    CmdSpec {
        name: Name::Create,
        word: "create",
        brief: "Rewrite domain XML and virsh create it (a transient guest)",
        usage: "[-C|--connect URI] [--validate] [--paused] FILE|-",
        options: &[Flag::Connect, Flag::Validate, Flag::Paused],
        operands: Operands::File,
        help: "\
The same with 'virsh create': a transient guest that launches with the events, so its
counters are complete from the start.",
        long: "The same with `virsh create`: a transient guest, started at once (`--paused`: paused), \
with the configured events from its launch, so its counters are complete. Neither `apply` nor \
`watch` can do this later for a transient guest: it has no persistent config, and counters \
enabled on a running guest miss its vCPU threads.",
        hidden: false,
    },
    CmdSpec {
        name: Name::Apply,
        word: "apply",
        brief: "Make defined guests' persistent config match",
        usage: "[-C|--connect URI] [--dry-run] (--all | DOMAIN...)",
        options: &[Flag::Connect, Flag::DryRun, Flag::All, Flag::Live],
        operands: Operands::Domains,
        help: "\
Make the persistent config of already-defined guests match: enable the configured
events, disable those this host cannot have, with 'virsh perf --config' (only <perf>
changes; a guarded define only for what that cannot say).
A running guest gets them at its next start (boot, restore or migration).
DOMAIN is a name, UUID or ID. -C/--connect is virsh's -c URI (-c here is --config).",
        long: "Make the persistent config of guests that are already defined match: read it with \
`virsh dumpxml --inactive`, work out which events to enable (the configured ones) and disable \
(those this host cannot open), and change only `<perf>` with \
`virsh perf --enable `<a,b>` --disable `<c>` --config`, libvirt's atomic call: a define by someone \
else at the same moment keeps all of its changes, and a guest undefined meanwhile is not defined \
again. Only what that call cannot say (a name this libvirt rejects, duplicate events, a configured \
event this host cannot open under `\"existing\": \"respect\"`, which is removed rather than left \
`enabled='no'`) is written back whole, and only after reading the config again right before \
`virsh define` and finding it unchanged and still persistent. See <docs/watch-and-apply.md> for \
what remains. A <DOMAIN> is a name, a UUID or a domain ID; the `domains` rules \
apply to the guest's name.

A running guest's live counters are not changed: counters enabled on a running guest miss its \
vCPU threads, because libvirt counts only the threads created after it opens them. Counters are \
complete when libvirt opens them at launch (boot, restore or incoming migration), so a running \
guest gets the change at its next start, and its row says so. `--live` is refused with exit \
status 2 for this reason. Transient guests are skipped: they have no persistent config. \
`--dry-run` changes nothing. The exit status is 1 when any guest failed.",
        hidden: false,
    },
    CmdSpec {
        name: Name::Status,
        word: "status",
        brief: "Events, counter completeness and risk per guest",
        usage: "[-C|--connect URI] [--json] (--all | DOMAIN...)",
        options: &[Flag::Connect, Flag::Json, Flag::All],
        operands: Operands::Domains,
        help: "\
Per guest: events in its config and live, whether its live counters are complete,
and events that make its next start fail here. Changes nothing. Exits 0 only when
no counters are partial or unknown and nothing is at risk.",
        long: "One row per guest: the events enabled in its persistent config and live, whether its \
live counters are complete, and the events at risk (enabled in the config but not openable here \
or not known to this libvirt, so that its next start fails).

Counters are `complete` when a live `task_clock` (or `cpu_clock`) counted at least 90% of the \
guest's CPU time over a 1~s sample (two `virsh domstats` calls for all guests; over the guest's \
whole run when it was idle), `partial` below 50% (opened on the running guest, for example by \
`virsh perf --enable --live` or a daemon restart, they miss its vCPU threads), `none` when no \
events are live or the guest is not running, and `unknown` otherwise (the row says why).

It changes nothing. Exit status 0 only when no guest is partial or unknown and nothing is at \
risk. `--json` prints a document with `\"schema\":~1`, described in the README.",
        hidden: false,
    },
    CmdSpec {
        name: Name::Watch,
        word: "watch",
        brief: "Keep every guest's config matching (the service)",
        usage: "[-C|--connect URI]",
        options: CONNECT,
        operands: Operands::None,
        help: "\
Keep every persistent guest's config matching the config file, whoever defines it
(on qemu:///system unless -C says otherwise): sweeps at start and after every
reconnect, then fixes each guest libvirt reports as defined (a burst in one batch).
Runs until SIGTERM or SIGINT (exit 0); SIGHUP re-reads the config and sweeps. One
watch per connection: a second exits with status 5. Packaged as
virt-perf-hook.service.",
        long: "Run until stopped, keeping every persistent guest's config matching the config file, \
whoever defines the guest (virt-install, virt-manager, a plain `virsh define`). It connects to \
`qemu:///system` unless `--connect` names another URI; it does not read `LIBVIRT_DEFAULT_URI` or \
`uri_default`.

At start and after every reconnect it sweeps all guests as `apply --all` does; on each `Defined` \
lifecycle event (from `virsh event --loop --event lifecycle`) it fixes that guest as `apply` \
does. The guests of a burst (lines arriving less than 50~ms apart, gathered for at most 300~ms) \
are fixed in one batch. `virsh perf --config` emits no lifecycle event, so a fix does not echo; a \
guarded define does, and the pass it causes finds nothing to change. Only one `watch` runs per \
connection: a second exits at once with status 5. A guest that starts without the configured events is reported once (its \
counters start at its next start); transient guests and guests outside `domains` are left alone. \
When libvirt goes away it retries after 1~s, doubling up to 30~s, logs the outage once and the \
reconnect once, and sweeps again.

It logs to standard error, at `info` level unless `-q` or `-v` say otherwise: one line per guest \
it changes (the events added and removed), never one per event received.

`SIGTERM`, `SIGINT`: exit 0 within a second; the `virsh` processes it started end with it. \
`SIGHUP`: read the config again and sweep all guests; an invalid config is logged and the last \
good one stays in force.

An invalid config at start is exit status 3. The packages run it as `virt-perf-hook.service`; \
see `FILES`.",
        hidden: false,
    },
    CmdSpec {
        name: Name::Exporter,
        word: "exporter",
        brief: "Serve guests' perf counters to Prometheus",
        usage: "[-C URI] [--listen ADDR:PORT] [--timeout SECS] [--readonly]
[-C URI] --textfile PATH [--interval SECS | --once] [--timeout SECS] [--readonly]",
        options: &[Flag::Connect, Flag::Listen, Flag::Textfile, Flag::Interval, Flag::Once, Flag::Readonly],
        operands: Operands::None,
        help: "\
Every running guest's perf counters, CPU time and whether its counters are complete,
in the Prometheus text format on http://127.0.0.1:10077/metrics (--listen: another
address; anything but loopback only when given), or written to PATH for
node_exporter's textfile collector (atomic rename; every 15 s, or once). One virsh
per scrape, killed after --timeout (5 s). --readonly: libvirt's read-only socket.
Packaged as virt-perf-hook-exporter.service (disabled). See docs/monitoring.md.",
        long: "Serve every running guest's perf counters in the Prometheus text format on `/metrics` \
at `http://127.0.0.1:10077` (other paths answer 404, methods other than GET and HEAD 405); \
`--listen` takes another address, and only then does it listen beyond loopback. Per guest \
(labels `domain`, `uuid`): each enabled event as a counter \
(`virt_perf_hook_perf_`<event>`_total`; `cpu_clock` and `task_clock` in seconds), the guest's \
CPU time, and `virt_perf_hook_counters_complete` (1 complete, 0 partial, NaN unknown, judged as \
`status` does between two scrapes); resctrl cache and memory-bandwidth monitors when libvirt \
reports them; and `virt_perf_hook_up`, which is 0, with no guest series, when libvirt cannot be \
read. Each scrape runs one `virsh` for all guests, killed after `--timeout` (default 5~s); \
scrapes that arrive meanwhile share its result. `--textfile` writes the same text to <PATH> (a \
temporary file renamed over it) every `--interval` (15~s), or once with `--once` (exit 1 when \
libvirt could not be read). `--readonly` uses libvirt's read-only socket. Packaged as \
`virt-perf-hook-exporter.service`, disabled.",
        hidden: false,
    },
    CmdSpec {
        name: Name::Top,
        word: "top",
        brief: "Live per-guest CPU and perf counter rates",
        usage: "[-C URI] [--interval SECS] [--sort COLUMN] [--once [--json]] [--readonly]",
        options: &[Flag::Connect, Flag::Interval, Flag::Sort, Flag::Once, Flag::Json, Flag::Readonly],
        operands: Operands::None,
        help: "\
Per running guest: CPU %, the rate of each enabled event, IPC and cache-miss %;
PART marks partial counters. Keys: P (CPU) N (name) I (IPC) < > (column) R (reverse)
q (quit). --once prints one table (or JSON) after one interval (2 s).",
        long: "One row per running guest: CPU~%, the per-second rate of each enabled event, IPC \
(instructions/cpu_cycles) and cache-miss~% (cache_misses/cache_references) where those events \
are enabled; `PART` marks partial counters. Refreshes every `--interval` (2~s); keys: `P` CPU, \
`N` name, `I` IPC, `<` and `>` the next column, `R` reverse, `q` quit. `--sort` takes `name`, \
`cpu`, `counters`, `ipc`, `miss` or an event name. `--once` prints one table after one \
interval; `--once --json` prints a document with `\"schema\":~1`.",
        hidden: false,
    },
    CmdSpec {
        name: Name::Events,
        word: "events",
        brief: "The 22 libvirt perf events and their state here",
        usage: "[--json]",
        options: &[Flag::Json],
        operands: Operands::None,
        help: "All 22 libvirt perf events: libvirt-since, supported here, openable here, configured.",
        long: "List all 22 libvirt perf events: the libvirt version that introduced each, whether it \
is supported here, whether it can be opened here, and whether it is configured.",
        hidden: false,
    },
    CmdSpec {
        name: Name::Check,
        word: "check",
        brief: "Check config, libvirt, cache, hooks and MAC",
        usage: "[--json]",
        options: &[Flag::Json],
        operands: Operands::None,
        help: "\
Config, libvirt version and its source, cache, the events that will be added or dropped,
and the installed hooks. Exits 0 only when all is well.",
        long: "Report the config, the libvirt version and where it came from, the cache, the events \
that will be added or dropped, the installed hooks, and whether AppArmor or SELinux lets the \
libvirt daemon run them (see `MANDATORY ACCESS CONTROL`). Exits 0 only when all is well.",
        hidden: false,
    },
    CmdSpec {
        name: Name::Refresh,
        word: "refresh",
        brief: "Re-detect libvirt, re-probe the host, rewrite the cache",
        usage: "",
        options: &[],
        operands: Operands::None,
        help: "Re-detect the libvirt version, re-probe the host and rewrite the cache.",
        long: "Re-detect the libvirt version, re-probe the host and rewrite the cache. A cache that \
others could have written (a state or lock file, or the cache directory, not owned by root or \
writable by group or others) is removed first, never adopted; an untrusted directory is created \
anew with mode 0700. Each such step is printed.",
        hidden: false,
    },
    CmdSpec {
        name: Name::Qemu,
        word: "qemu",
        brief: "The libvirt qemu hook",
        usage: "<domain> <op> <subop> <extra>",
        options: &[],
        operands: Operands::Raw,
        help: "\
The libvirt qemu hook (also when run as .../hooks/qemu or from .../hooks/qemu.d/).
'migrate begin' and 'restore begin' print the rewritten XML (nothing when unchanged);
every other op exits 0 at once.",
        long: "The libvirt qemu hook (also selected when the program runs as <.../hooks/qemu> or from \
<.../hooks/qemu.d/>). `migrate begin` and `restore begin` print the rewritten XML (nothing when \
it is unchanged); every other operation exits 0 at once.",
        hidden: false,
    },
    CmdSpec {
        name: Name::Daemon,
        word: "daemon",
        brief: "The libvirt daemon hook",
        usage: "<-> <op> <subop> <extra>",
        options: &[],
        operands: Operands::Raw,
        help: "The libvirt daemon hook: 'start' and 'reload' refresh the cache.",
        long: "The libvirt daemon hook: `start` and `reload` refresh the cache. It always exits 0.",
        hidden: false,
    },
    CmdSpec {
        name: Name::Help,
        word: "help",
        brief: "",
        usage: "",
        options: &[],
        operands: Operands::None,
        help: "",
        long: "",
        hidden: true,
    },
    CmdSpec {
        name: Name::Version,
        word: "version",
        brief: "",
        usage: "",
        options: &[],
        operands: Operands::None,
        help: "",
        long: "",
        hidden: true,
    },
    CmdSpec {
        name: Name::Generate,
        word: "__generate",
        brief: "",
        usage: "man|bash|zsh|fish",
        options: &[],
        operands: Operands::Word(&["man", "bash", "zsh", "fish"]),
        help: "",
        long: "",
        hidden: true,
    },
];

pub fn command(word: &str) -> Option<&'static CmdSpec> {
    COMMANDS.iter().find(|c| c.word == word)
}

pub fn option(flag: Flag) -> &'static OptSpec {
    // Every Flag has an entry: the table test below proves it.
    OPTIONS.iter().find(|o| o.flag == flag).unwrap_or(&OPTIONS[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_consistent() {
        for c in COMMANDS {
            assert_eq!(command(c.word).map(|s| s.name), Some(c.name), "{} twice", c.word);
            for f in c.options {
                assert!(OPTIONS.iter().any(|o| o.flag == *f && !o.global), "{}: {f:?} has no entry", c.word);
            }
        }
        for (i, o) in OPTIONS.iter().enumerate() {
            assert!(std::ptr::eq(option(o.flag), o), "{:?} twice", o.flag);
            let used = o.global || COMMANDS.iter().any(|c| c.options.contains(&o.flag));
            assert!(used, "{:?} is taken by no command", o.flag);
            assert!(OPTIONS[..i].iter().all(|p| p.long != o.long && (o.short.is_none() || p.short != o.short)));
        }
    }
}

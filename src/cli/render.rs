//! What the command table is rendered to: `--help`, the man page and the shell completions.
//! The man page's prose sections (DESCRIPTION; CONFIGURATION to SEE ALSO) are roff kept beside
//! this file; everything about commands and options comes from the table.

use super::table::{self, CmdSpec, Flag, OptSpec, Operands, COMMANDS, OPTIONS};

const BIN: &str = "virt-perf-hook";

fn visible_commands() -> impl Iterator<Item = &'static CmdSpec> {
    COMMANDS.iter().filter(|c| !c.hidden)
}

fn spelled(o: &OptSpec) -> String {
    let short = o.short.map(|c| format!("-{c}, ")).unwrap_or_default();
    let value = o.value.as_ref().map(|v| format!(" {}", v.metavar)).unwrap_or_default();
    format!("{short}--{}{value}", o.long)
}

/// `--help`.
pub fn help() -> String {
    let mut s = format!("{BIN} — {}\n\nUSAGE:\n    {BIN} [OPTIONS] <COMMAND> [ARGS]\n\nCOMMANDS:\n", table::SUMMARY);
    for c in visible_commands() {
        for usage in usages(c) {
            s.push_str(format!("    {} {usage}", c.word).trim_end());
            s.push('\n');
        }
        c.help.lines().for_each(|l| s.push_str(&format!("        {l}\n")));
    }
    s.push_str("\nOPTIONS:\n");
    for o in OPTIONS.iter().filter(|o| o.global) {
        let mut lines = o.help.lines();
        s.push_str(&format!("    {:<20}{}\n", spelled(o), lines.next().unwrap_or("")));
        lines.for_each(|l| s.push_str(&format!("{:24}{l}\n", "")));
    }
    let indent = |text: &str| text.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!("{s}{}\nEXIT STATUS:\n{}", indent(table::OPTIONS_NOTE), indent(table::EXIT_STATUS))
}

// ---- man page ------------------------------------------------------------------------------

/// The man page's date: the day its command reference last changed (not the build's, so that
/// the page is reproducible).
const MAN_DATE: &str = "2026-12-04";

/// The man page, `packaging/virt-perf-hook.1`.
pub fn man() -> String {
    let mut s = format!(
        ".\\\" Man page for {BIN}(1). Generated from the command table (src/cli/table.rs) by\n\
         .\\\" '{BIN} __generate man'; edit the table, not this file.\n\
         .TH VIRT-PERF-HOOK 1 \"{MAN_DATE}\" \"{BIN} {}\" \"User Commands\"\n\
         .SH NAME\n{BIN} \\- {}\n.SH SYNOPSIS\n",
        env!("CARGO_PKG_VERSION"),
        table::SUMMARY
    );
    for c in visible_commands() {
        for usage in usages(c) {
            s.push_str(&format!(".SY {BIN}\n[\\fIOPTIONS\\fR] {}\n.YS\n", usage_roff(c.word, usage)));
        }
    }
    s.push_str(&format!(".SY {BIN}\n\\fB\\-h\\fR | \\fB\\-\\-help\\fR | \\fB\\-V\\fR | \\fB\\-\\-version\\fR\n.YS\n"));
    s.push_str(include_str!("man/description.roff"));
    s.push_str(".SH COMMANDS\n");
    for c in visible_commands() {
        let heads: Vec<String> = usages(c).map(|u| usage_roff(c.word, u)).collect();
        s.push_str(&format!(".TP\n{}\n{}", heads.join("\n.TQ\n"), paragraphs(c.long)));
    }
    s.push_str(".SH OPTIONS\n");
    for o in OPTIONS.iter().filter(|o| !o.long_help.is_empty()) {
        s.push_str(&format!(".TP\n{}\n{}", roff_inline(&option_markup(o)), paragraphs(o.long_help)));
    }
    s.push_str(include_str!("man/reference.roff"));
    s
}

/// A command's usage lines: one, or one per form (`exporter`).
fn usages(c: &CmdSpec) -> impl Iterator<Item = &'static str> {
    let usage: &'static str = c.usage;
    usage.split('\n').filter(move |u| !u.is_empty() || usage.is_empty())
}

/// An option's help on one line, for the completions.
fn one_line(help: &str) -> String {
    help.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn option_markup(o: &OptSpec) -> String {
    let short = o.short.map(|c| format!("`-{c}`, ")).unwrap_or_default();
    let value = o.value.as_ref().map(|v| format!(" <{}>", v.metavar)).unwrap_or_default();
    format!("{short}`--{}`{value}", o.long)
}

/// `filter [--dry-run | --diff] [FILE|-]` in roff: the command and options bold, placeholders
/// (upper case or `<x>`) italic.
fn usage_roff(word: &str, usage: &str) -> String {
    let mut out = format!("\\fB{word}\\fR");
    if !usage.is_empty() {
        out.push(' ');
    }
    let chars: Vec<char> = usage.chars().collect();
    let mut i = 0;
    let word_char = |ch: char| ch.is_ascii_alphanumeric() || "-_.:/".contains(ch);
    while i < chars.len() {
        let ch = chars[i];
        if ch == '<' {
            let end = chars[i..].iter().position(|&x| x == '>').map_or(chars.len(), |p| i + p);
            let inner: String = chars[i + 1..end].iter().collect();
            out.push_str(&format!("\\fI{}\\fR", escape(&inner)));
            i = end + 1;
        } else if word_char(ch) && ch != '.' {
            // A word ends before `...` (DOMAIN...), which stays roman.
            let end = chars[i..].iter().position(|&x| !word_char(x) || x == '.').map_or(chars.len(), |p| i + p);
            let w: String = chars[i..end].iter().collect();
            let font = if w.starts_with('-') { 'B' } else { 'I' };
            out.push_str(&format!("\\f{font}{}\\fR", escape(&w)));
            i = end;
        } else {
            out.push(ch);
            i += 1;
        }
    }
    out
}

/// Text inside a font change: `-` is a minus (options), `\` printable.
fn escape(s: &str) -> String {
    s.replace('\\', "\\e").replace('-', "\\-")
}

/// Help markup to roff: paragraphs after the first start with `.IP` (inside a `.TP` entry).
fn paragraphs(text: &str) -> String {
    let mut out = String::new();
    for (i, para) in text.split("\n\n").enumerate() {
        if i > 0 {
            out.push_str(".IP\n");
        }
        // One sentence per line, as roff wants (it then spaces sentences itself).
        let flowed = roff_inline(&para.split_whitespace().collect::<Vec<_>>().join(" ")).replace(". ", ".\n");
        for line in flowed.lines() {
            if line.starts_with(['.', '\'']) {
                out.push_str("\\&");
            }
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `` `bold` ``, `<italic>` and `~` (non-breaking space) to roff escapes.
fn roff_inline(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(ch) = rest.chars().next() {
        let span = |open: char, close: char| {
            let body = rest.strip_prefix(open)?;
            let end = body.find(close)?;
            let inner = &body[..end];
            let ok = !inner.is_empty() && (open == '`' || !inner.contains(char::is_whitespace));
            ok.then_some((inner, end + 2))
        };
        if let Some((inner, len)) = span('`', '`') {
            out.push_str(&format!("\\fB{}\\fR", escape(inner)));
            rest = &rest[len..];
        } else if let Some((inner, len)) = span('<', '>').filter(|(i, _)| i.starts_with(|c: char| c.is_alphabetic() || c == '.' || c == '/')) {
            out.push_str(&format!("\\fI{}\\fR", escape(inner)));
            rest = &rest[len..];
        } else {
            match ch {
                '~' => out.push_str("\\~"),
                '\\' => out.push_str("\\e"),
                _ => out.push(ch),
            }
            rest = &rest[ch.len_utf8()..];
        }
    }
    out
}

// ---- completions -----------------------------------------------------------------------------

const GENERATED: &str = "generated from virt-perf-hook's command table ('virt-perf-hook __generate'); do not edit";

fn takes_files(c: &CmdSpec) -> bool {
    c.operands == Operands::File
}

fn shown_options(c: &CmdSpec) -> impl Iterator<Item = &'static OptSpec> + '_ {
    c.options.iter().map(|f| table::option(*f)).filter(|o| !o.hidden)
}

fn words(opts: impl Iterator<Item = &'static OptSpec>) -> String {
    let mut w = Vec::new();
    for o in opts {
        w.extend(o.short.map(|c| format!("-{c}")));
        w.push(format!("--{}", o.long));
    }
    w.join(" ")
}

pub fn bash() -> String {
    let globals = words(OPTIONS.iter().filter(|o| o.global));
    let names: Vec<&str> = visible_commands().map(|c| c.word).collect();
    let valued = |file: bool| {
        OPTIONS
            .iter()
            .filter(|o| o.value.as_ref().is_some_and(|v| v.file == file))
            .flat_map(|o| o.short.map(|c| format!("-{c}")).into_iter().chain([format!("--{}", o.long)]))
            .collect::<Vec<_>>()
            .join("|")
    };
    let mut cases = String::new();
    for c in visible_commands().filter(|c| c.operands != Operands::Raw) {
        let files = if takes_files(c) { " files=1;" } else { "" };
        cases.push_str(&format!("        {}) opts+=\" {}\";{files} ;;\n", c.word, words(shown_options(c))));
    }
    format!(
        "# bash completion for {BIN}; {GENERATED}.
_virt_perf_hook() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}} cmd= files= w
    for w in \"${{COMP_WORDS[@]:1:COMP_CWORD-1}}\"; do
        case $w in {cmds}) cmd=$w; break ;; esac
    done
    case $prev in
        {file_opts}) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;
        {other_opts}) COMPREPLY=(); return ;;
    esac
    local opts=\"{globals}\"
    case $cmd in
        '') COMPREPLY=($(compgen -W \"{names} $opts\" -- \"$cur\")); return ;;
{cases}        *) return ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))
    elif [[ -n $files ]]; then
        COMPREPLY=($(compgen -f -- \"$cur\"))
    fi
}}
complete -o filenames -F _virt_perf_hook {BIN}
",
        cmds = names.join("|"),
        names = names.join(" "),
        file_opts = valued(true),
        other_opts = valued(false),
    )
}

/// `'text'` for zsh and fish: a single-quoted word.
fn quoted(text: &str, fish: bool) -> String {
    let inner = if fish { text.replace('\\', "\\\\").replace('\'', "\\'") } else { text.replace('\'', "'\\''") };
    format!("'{inner}'")
}

/// An `_arguments` spec: `'(-c --config)'{-c+,--config=}'[Config file]:path:_files'`.
fn zsh_spec(o: &OptSpec) -> String {
    let desc = one_line(o.help).replace('[', "(").replace(']', ")").replace(':', "\\:");
    let (arg, suffix) = match &o.value {
        Some(v) if v.file => (format!(":{}:_files", v.metavar.to_lowercase()), ("+", "=")),
        Some(v) => (format!(":{}: ", v.metavar.to_lowercase()), ("+", "=")),
        None => (String::new(), ("", "")),
    };
    match o.short {
        Some(c) => {
            // -v repeats; the others exclude their other spelling.
            let group = if o.flag == Flag::Verbose { "'*'".to_string() } else { format!("'(-{c} --{})'", o.long) };
            let (s, e) = suffix;
            format!("{group}{{-{c}{s},--{}{e}}}{}", o.long, quoted(&format!("[{desc}]{arg}"), false))
        }
        None => quoted(&format!("--{}{}[{desc}]{arg}", o.long, suffix.1), false),
    }
}

pub fn zsh() -> String {
    let globals: Vec<String> = OPTIONS.iter().filter(|o| o.global).map(zsh_spec).collect();
    let commands: Vec<String> =
        visible_commands().map(|c| quoted(&format!("{}:{}", c.word, c.brief), false)).collect();
    let mut cases = String::new();
    for c in visible_commands() {
        let mut specs: Vec<String> = shown_options(c).map(zsh_spec).collect();
        match c.operands {
            Operands::File => specs.push("'1:file:_files'".into()),
            Operands::Domains => specs.push("'*:domain: '".into()),
            Operands::Raw => specs.push("'*::hook argument: '".into()),
            Operands::None | Operands::Word(_) => {}
        }
        cases.push_str(&format!("        {}) _arguments -s $globals {} ;;\n", c.word, specs.join(" ")));
    }
    format!(
        "#compdef {BIN}
# zsh completion for {BIN}; {GENERATED}.
local -a globals commands
globals=({globals})
commands=({commands})
local curcontext=$curcontext state line
_arguments -s -C $globals '1:command:->command' '*::argument:->argument'
case $state in
    command) _describe -t commands command commands ;;
    argument)
    case $line[1] in
{cases}    esac ;;
esac
",
        globals = globals.join(" "),
        commands = commands.join(" "),
    )
}

pub fn fish() -> String {
    let names: Vec<&str> = visible_commands().map(|c| c.word).collect();
    let mut s = format!(
        "# fish completion for {BIN}; {GENERATED}.\ncomplete -c {BIN} -f\nset -l commands {}\n",
        names.join(" ")
    );
    for c in visible_commands() {
        s.push_str(&format!(
            "complete -c {BIN} -n \"not __fish_seen_subcommand_from $commands\" -a {} -d {}\n",
            c.word,
            quoted(c.brief, true)
        ));
    }
    let line = |o: &OptSpec, cond: &str| {
        let short = o.short.map(|c| format!(" -s {c}")).unwrap_or_default();
        let value = match &o.value {
            Some(v) if v.file => " -r -F",
            Some(_) => " -x",
            None => "",
        };
        format!("complete -c {BIN}{cond}{short} -l {}{value} -d {}\n", o.long, quoted(&one_line(o.help), true))
    };
    OPTIONS.iter().filter(|o| o.global).for_each(|o| s.push_str(&line(o, "")));
    for o in OPTIONS.iter().filter(|o| !o.global && !o.hidden) {
        let users: Vec<&str> = visible_commands().filter(|c| c.options.contains(&o.flag)).map(|c| c.word).collect();
        s.push_str(&line(o, &format!(" -n \"__fish_seen_subcommand_from {}\"", users.join(" "))));
    }
    let file_users: Vec<&str> = visible_commands().filter(|c| takes_files(c)).map(|c| c.word).collect();
    s.push_str(&format!("complete -c {BIN} -n \"__fish_seen_subcommand_from {}\" -F\n", file_users.join(" ")));
    s
}

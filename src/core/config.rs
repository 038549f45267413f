//! The JSON config: strict, with errors that name the key or event and suggest near misses.

use std::path::Path;

use serde_json::Value;

use crate::core::events;
use crate::core::rewrite::Existing;
use crate::core::version::Version;
use crate::support::error::{Error, Result};

/// Config files are small; anything larger is a mistake (wrong file), not a config.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Hook mode leaves the XML unchanged and exits 0 on any internal error.
    Pass,
    /// Hook mode exits non-zero, so libvirt aborts the operation.
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
/// What to do with an event a guest's XML enables but this host cannot have (config key
/// `unsupported`).
pub enum Unsupported {
    /// Take it out of `<perf>`, so the guest starts (the default).
    Remove,
    /// Leave the XML as it is (libvirt then refuses to start the guest).
    Keep,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Domains {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl Domains {
    /// A domain is selected when it matches an include glob (or there are none) and no exclude glob.
    pub fn selects(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|g| glob_match(g, name)))
            && !self.exclude.iter().any(|g| glob_match(g, name))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Config {
    /// Catalog names, validated, without duplicates, in the order given.
    pub enabled_perf_events: Vec<&'static str>,
    pub libvirt_version: Option<Version>,
    pub host_probe: bool,
    pub existing: Existing,
    pub unsupported: Unsupported,
    pub on_error: OnError,
    pub domains: Domains,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled_perf_events: Vec::new(),
            libvirt_version: None,
            host_probe: true,
            existing: Existing::Respect,
            unsupported: Unsupported::Remove,
            on_error: OnError::Pass,
            domains: Domains::default(),
        }
    }
}

const KEYS: &[&str] =
    &["enabled_perf_events", "libvirt_version", "host_probe", "existing", "unsupported", "on_error", "domains"];

impl Config {
    /// Reads and validates the config file. The file must be a regular file (not a symlink),
    /// owned by root or the caller, and not writable by group or others: a hook runs as root
    /// on every guest, so its config is held to sshd's StrictModes standard.
    pub fn load(path: &Path) -> Result<Config> {
        let text = read_strict(path)?;
        Config::parse(&text).map_err(|msg| Error::config(path, msg))
    }

    /// Parses config JSON; the error is a one-line message without the path.
    pub fn parse(text: &str) -> std::result::Result<Config, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        let Value::Object(map) = value else {
            return Err(format!("the top level must be a JSON object, not {}", kind(&value)));
        };
        let mut cfg = Config::default();
        for (key, val) in &map {
            match key.as_str() {
                "enabled_perf_events" => cfg.enabled_perf_events = parse_events(val)?,
                "libvirt_version" => {
                    cfg.libvirt_version = match val {
                        Value::Null => None,
                        Value::String(s) => Some(s.parse().map_err(|e: String| format!("libvirt_version: {}", printable(&e)))?),
                        other => return Err(type_error("libvirt_version", "a string like \"9.0.0\"", other)),
                    }
                }
                "host_probe" => {
                    cfg.host_probe = val.as_bool().ok_or_else(|| type_error("host_probe", "true or false", val))?
                }
                "existing" => {
                    cfg.existing = match one_of(key, val, &["respect", "override"])? {
                        "respect" => Existing::Respect,
                        _ => Existing::Override,
                    }
                }
                "unsupported" => {
                    cfg.unsupported = match one_of(key, val, &["remove", "keep"])? {
                        "remove" => Unsupported::Remove,
                        _ => Unsupported::Keep,
                    }
                }
                "on_error" => {
                    cfg.on_error = match one_of(key, val, &["pass", "fail"])? {
                        "pass" => OnError::Pass,
                        _ => OnError::Fail,
                    }
                }
                "domains" => cfg.domains = parse_domains(val)?,
                other => return Err(unknown_key(other, KEYS, "")),
            }
        }
        Ok(cfg)
    }
}

fn read_strict(path: &Path) -> Result<String> {
    use crate::support::fsutil::{read_trusted, Step, Untrusted};
    read_trusted(path, MAX_CONFIG_BYTES).map_err(|why| match why {
        Untrusted::Symlink => Error::config(path, "is a symlink; refusing it (point --config at the real file)"),
        Untrusted::Missing => Error::config(
            path,
            "not found (create it, e.g. {\"enabled_perf_events\": [\"page_faults\"]}, or pass --config)",
        ),
        Untrusted::Directory => Error::config(path, "is a directory, not a JSON file"),
        Untrusted::NotRegular | Untrusted::NotDirectory => Error::config(path, "is not a regular file"),
        Untrusted::Owner(uid) => Error::config(
            path,
            format!("is owned by uid {uid}, not root; refusing it (chown root {})", path.display()),
        ),
        Untrusted::Writable(mode) => Error::config(
            path,
            format!("is writable by group or others (mode {mode:o}); refusing it (chmod go-w {})", path.display()),
        ),
        Untrusted::TooLarge(n) => Error::config(path, format!("is {n} bytes; a config is at most {MAX_CONFIG_BYTES}")),
        Untrusted::NotUtf8 => Error::config(path, "is not UTF-8 text"),
        Untrusted::Io(Step::Open, e) => Error::io(path, "open config", e),
        Untrusted::Io(Step::Stat, e) => Error::io(path, "stat config", e),
        Untrusted::Io(Step::Read, e) => Error::io(path, "read config", e),
    })
}

fn parse_events(val: &Value) -> std::result::Result<Vec<&'static str>, String> {
    let Value::Array(items) = val else {
        return Err(type_error("enabled_perf_events", "a list of event names", val));
    };
    let mut out: Vec<&'static str> = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(name) = item else {
            return Err(type_error("enabled_perf_events entries", "event name strings", item));
        };
        let Some(event) = events::lookup(name) else {
            let hint = match events::suggest(name) {
                Some(s) => format!("; did you mean '{s}'?"),
                None => "; 'virt-perf-hook events' lists the 22 names".to_string(),
            };
            return Err(format!("enabled_perf_events: unknown event '{}'{hint}", printable(name)));
        };
        if out.contains(&event.name) {
            return Err(format!("enabled_perf_events: '{name}' is listed twice"));
        }
        out.push(event.name);
    }
    Ok(out)
}

fn parse_domains(val: &Value) -> std::result::Result<Domains, String> {
    let Value::Object(map) = val else {
        return Err(type_error("domains", "an object like {\"include\": [...], \"exclude\": [...]}", val));
    };
    let mut d = Domains::default();
    for (key, v) in map {
        let target = match key.as_str() {
            "include" => &mut d.include,
            "exclude" => &mut d.exclude,
            other => return Err(unknown_key(other, &["include", "exclude"], "domains.")),
        };
        *target = globs(&format!("domains.{key}"), v)?;
    }
    Ok(d)
}

fn globs(key: &str, v: &Value) -> std::result::Result<Vec<String>, String> {
    let Value::Array(items) = v else {
        return Err(type_error(key, "a list of name globs", v));
    };
    items
        .iter()
        .map(|i| match i {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            other => Err(type_error(key, "non-empty glob strings", other)),
        })
        .collect()
}

fn one_of<'a>(key: &str, val: &Value, allowed: &[&'a str]) -> std::result::Result<&'a str, String> {
    let quoted = allowed.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(" or ");
    match val {
        Value::String(s) => allowed
            .iter()
            .find(|a| **a == s)
            .copied()
            .ok_or_else(|| format!("{key}: '{}' is not allowed; use {quoted}", printable(s))),
        other => Err(type_error(key, &quoted, other)),
    }
}

fn unknown_key(key: &str, known: &[&str], prefix: &str) -> String {
    let shown = printable(key);
    let near = known
        .iter()
        .map(|k| (events::distance(&key.to_ascii_lowercase(), k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d);
    match near {
        Some((_, k)) => format!("unknown key '{prefix}{shown}'; did you mean '{prefix}{k}'?"),
        None => format!("unknown key '{prefix}{shown}'; known keys: {}", known.join(", ")),
    }
}

/// `s` with control characters escaped (`\n`, `\u{1b}`): messages that echo input stay one
/// line and cannot drive a terminal.
pub fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

fn type_error(key: &str, expected: &str, got: &Value) -> String {
    format!("{key}: expected {expected}, got {}", kind(got))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Shell-style glob: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`; everything else is literal.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with one backtrack point for the last `*` (linear in practice).
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, len)) = class_match(&p[pi..], n[ni]) {
                        if matched {
                            pi += len;
                            ni += 1;
                            continue;
                        }
                    } else if n[ni] == '[' {
                        pi += 1;
                        ni += 1;
                        continue;
                    }
                }
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Matches `c` against the class at the start of `p` (which begins with `[`). Returns whether it
/// matched and the class length, or None when the `[` is not a complete class (then literal).
fn class_match(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err()
    }

    #[test]
    fn defaults() {
        let c = Config::parse("{}").unwrap();
        assert_eq!(c, Config::default());
        assert!(c.host_probe);
        assert_eq!(c.existing, Existing::Respect);
        assert_eq!(c.unsupported, Unsupported::Remove);
        assert_eq!(c.on_error, OnError::Pass);
        assert!(c.domains.selects("anything"));
    }

    #[test]
    fn full() {
        let c = Config::parse(
            r#"{"enabled_perf_events": ["page_faults", "cpu_cycles"], "libvirt_version": "9.0.0",
                "host_probe": false, "existing": "override", "unsupported": "keep", "on_error": "fail",
                "domains": {"include": ["instance-*"], "exclude": ["*-test"]}}"#,
        )
        .unwrap();
        assert_eq!(c.enabled_perf_events, vec!["page_faults", "cpu_cycles"]);
        assert_eq!(c.libvirt_version, Some(Version::new(9, 0, 0)));
        assert!(!c.host_probe);
        assert_eq!(c.existing, Existing::Override);
        assert_eq!(c.unsupported, Unsupported::Keep);
        assert_eq!(c.on_error, OnError::Fail);
        assert!(c.domains.selects("instance-0001"));
        assert!(!c.domains.selects("instance-0001-test"));
        assert!(!c.domains.selects("other"));
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            err(r#"{"enabled_perf_events": ["cpu_cycle"]}"#),
            "enabled_perf_events: unknown event 'cpu_cycle'; did you mean 'cpu_cycles'?"
        );
        assert!(err(r#"{"enabled_perf_events": ["CPU_CYCLES"]}"#).contains("did you mean 'cpu_cycles'"));
        assert!(err(r#"{"enabled_perf_events": ["zzz"]}"#).contains("lists the 22 names"));
        assert_eq!(
            err(r#"{"enabled_perf_events": ["page_faults", "page_faults"]}"#),
            "enabled_perf_events: 'page_faults' is listed twice"
        );
        assert_eq!(err(r#"{"enabled_perf_event": []}"#), "unknown key 'enabled_perf_event'; did you mean 'enabled_perf_events'?");
        assert!(err(r#"{"colour": 1}"#).starts_with("unknown key 'colour'; known keys: enabled_perf_events"));
        assert_eq!(err(r#"{"host_probe": "yes"}"#), "host_probe: expected true or false, got a string");
        assert_eq!(err(r#"{"existing": "keep"}"#), "existing: 'keep' is not allowed; use \"respect\" or \"override\"");
        assert_eq!(err(r#"{"unsupported": "drop"}"#), "unsupported: 'drop' is not allowed; use \"remove\" or \"keep\"");
        assert_eq!(err(r#"{"on_error": 1}"#), "on_error: expected \"pass\" or \"fail\", got a number");
        assert!(err(r#"{"libvirt_version": "nine"}"#).starts_with("libvirt_version: 'nine' is not a libvirt version"));
        assert_eq!(err(r#"{"domains": {"incude": []}}"#), "unknown key 'domains.incude'; did you mean 'domains.include'?");
        assert_eq!(err(r#"{"domains": {"include": "a*"}}"#), "domains.include: expected a list of name globs, got a string");
        assert_eq!(err(r#"{"enabled_perf_events": "cpu_cycles"}"#), "enabled_perf_events: expected a list of event names, got a string");
        assert_eq!(err("[]"), "the top level must be a JSON object, not a list");
        assert!(err("{").starts_with("invalid JSON: EOF while parsing"));
        assert!(err("").starts_with("invalid JSON"));
    }

    #[test]
    fn echoed_input_stays_on_one_line() {
        for text in [
            "{\"a\\nb\": 1}",
            "{\"domains\": {\"in\\rclude\\u001b[2J\": []}}",
            "{\"enabled_perf_events\": [\"cpu\\ncycles\"]}",
            "{\"existing\": \"keep\\n\"}",
            "{\"libvirt_version\": \"9\\n0\"}",
        ] {
            let e = err(text);
            assert!(!e.chars().any(char::is_control), "{text}: {e:?}");
        }
        assert_eq!(err("{\"a\\nb\": 1}").split(';').next().unwrap(), "unknown key 'a\\nb'");
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("instance-*", "instance-00000001"));
        assert!(!glob_match("instance-*", "xinstance-1"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("*-[0-9]", "web-7"));
        assert!(!glob_match("*-[!0-9]", "web-7"));
        assert!(glob_match("[ab]*", "beta"));
        assert!(glob_match("a[b", "a[b"));
        assert!(glob_match("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!glob_match("*a*b*c*", "xxaxxcxxbxx"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }
}

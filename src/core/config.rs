//! The JSON config: strict, with errors that name the key or event and suggest near misses.

use std::path::Path;

use glob::Pattern;
use serde_json::Value;

use crate::core::events;
use crate::core::version::Version;
use crate::support::error::{Error, Result};
use crate::support::text::{closest, printable};

/// Config files are small; anything larger is a mistake (wrong file), not a config.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
/// What to do with a configured event the XML already has with `enabled='no'` (config key
/// `existing`).
pub enum Existing {
    /// An event the XML already has with `enabled='no'` stays `no`.
    Respect,
    /// Configured events are forced to `enabled='yes'`.
    Override,
}

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

/// Shell globs on the domain name: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Domains {
    #[serde(serialize_with = "glob_strings", deserialize_with = "de::include")]
    pub include: Vec<Pattern>,
    #[serde(serialize_with = "glob_strings", deserialize_with = "de::exclude")]
    pub exclude: Vec<Pattern>,
}

impl Domains {
    /// A domain is selected when it matches an include glob (or there are none) and no exclude glob.
    pub fn selects(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|g| g.matches(name)))
            && !self.exclude.iter().any(|g| g.matches(name))
    }
}

fn glob_strings<S: serde::Serializer>(globs: &[Pattern], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(globs.iter().map(Pattern::as_str))
}

/// Read by serde derive: unknown and repeated keys are refused by it (and reworded by
/// [`message`]); each value goes through a `de::` function that names the key in its errors.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Catalog names, validated, without duplicates, in the order given.
    #[serde(deserialize_with = "de::events")]
    pub enabled_perf_events: Vec<&'static str>,
    #[serde(deserialize_with = "de::version")]
    pub libvirt_version: Option<Version>,
    #[serde(deserialize_with = "de::host_probe")]
    pub host_probe: bool,
    #[serde(deserialize_with = "de::existing")]
    pub existing: Existing,
    #[serde(deserialize_with = "de::unsupported")]
    pub unsupported: Unsupported,
    #[serde(deserialize_with = "de::on_error")]
    pub on_error: OnError,
    #[serde(deserialize_with = "de::domains")]
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
const DOMAIN_KEYS: &[&str] = &["include", "exclude"];

impl Config {
    /// Reads and validates the config file. The file must be a regular file (not a symlink),
    /// owned by root or the caller, and not writable by group or others: a hook runs as root
    /// on every guest, so its config is held to sshd's StrictModes standard.
    pub fn load(path: &Path) -> Result<Config> {
        let loaded = read_strict(path).and_then(|text| Config::parse(&text).map_err(|msg| Error::config(path, msg)));
        // `-c` is --config: `apply -c qemu:///system` reads a config file of that name.
        match loaded {
            Err(Error::Config { path, msg }) if path.to_string_lossy().contains("://") => Err(Error::Config {
                msg: format!("{msg}; this looks like a libvirt URI: -c is --config, use --connect URI (or -C URI)"),
                path,
            }),
            other => other,
        }
    }

    /// Parses config JSON; the error is a one-line message without the path.
    pub fn parse(text: &str) -> std::result::Result<Config, String> {
        // JSON forbids it, and serde_json's "expected value at line 1 column 1" does not say why.
        if text.starts_with('\u{feff}') {
            return Err("starts with a UTF-8 byte-order mark; save it without one".to_string());
        }
        let mut de = serde_json::Deserializer::from_str(text);
        let config = de::object(&mut de, "the top level to be a JSON object").and_then(|c| de.end().map(|()| c));
        config.map_err(message)
    }
}

/// The value readers, one per key; each error names its key.
mod de {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    use super::*;

    /// `T` from a JSON object only: derive alone also takes a list, positionally (`[[\"a*\"]]`
    /// would be a `domains` whose `include` is `a*`).
    pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D, expecting: &'static str) -> Result<T, D::Error> {
        struct Object<T>(std::marker::PhantomData<T>, &'static str);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Object<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.1)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Object(std::marker::PhantomData, expecting))
    }

    pub fn domains<'de, D: Deserializer<'de>>(d: D) -> Result<Domains, D::Error> {
        object(d, "domains: an object like {\"include\": [...], \"exclude\": [...]}")
    }

    fn with<'de, D: Deserializer<'de>, T>(d: D, read: impl FnOnce(&Value) -> Result<T, String>) -> Result<T, D::Error> {
        read(&Value::deserialize(d)?).map_err(D::Error::custom)
    }

    pub fn events<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<&'static str>, D::Error> {
        with(d, parse_events)
    }

    pub fn version<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Version>, D::Error> {
        with(d, |v| match v {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.parse().map_err(|e: String| format!("libvirt_version: {}", printable(&e)))?)),
            other => Err(type_error("libvirt_version", "a string like \"9.0.0\"", other)),
        })
    }

    pub fn host_probe<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        with(d, |v| v.as_bool().ok_or_else(|| type_error("host_probe", "true or false", v)))
    }

    pub fn existing<'de, D: Deserializer<'de>>(d: D) -> Result<Existing, D::Error> {
        with(d, |v| one_of("existing", v, &[("respect", Existing::Respect), ("override", Existing::Override)]))
    }

    pub fn unsupported<'de, D: Deserializer<'de>>(d: D) -> Result<Unsupported, D::Error> {
        with(d, |v| one_of("unsupported", v, &[("remove", Unsupported::Remove), ("keep", Unsupported::Keep)]))
    }

    pub fn on_error<'de, D: Deserializer<'de>>(d: D) -> Result<OnError, D::Error> {
        with(d, |v| one_of("on_error", v, &[("pass", OnError::Pass), ("fail", OnError::Fail)]))
    }

    pub fn include<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Pattern>, D::Error> {
        with(d, |v| globs("domains.include", v))
    }

    pub fn exclude<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Pattern>, D::Error> {
        with(d, |v| globs("domains.exclude", v))
    }
}

/// serde_json's error as one line for the operator, with where it is in the file: unknown keys get
/// a did-you-mean, repeated ones are named (serde_json would keep the last silently without
/// derive's check, and other JSON tools may keep the first).
fn message(e: serde_json::Error) -> String {
    let text = e.to_string();
    if e.classify() != serde_json::error::Category::Data {
        return format!("invalid JSON: {text}");
    }
    let msg = text.strip_suffix(&format!(" at line {} column {}", e.line(), e.column())).unwrap_or(&text);
    let at = format!(" (at line {}, column {})", e.line(), e.column());
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let (key, expected) = rest.rsplit_once("`, expected").or_else(|| rest.rsplit_once("`, there")).unwrap_or((rest, ""));
        let (known, prefix) = if expected.contains("`include`") { (DOMAIN_KEYS, "domains.") } else { (KEYS, "") };
        return format!("{}{at}", unknown_key(key, known, prefix));
    }
    if let Some(key) = msg.strip_prefix("duplicate field `").and_then(|r| r.strip_suffix('`')) {
        // Only `domains` has these keys.
        let prefix = if DOMAIN_KEYS.contains(&key) { "domains." } else { "" };
        return format!("duplicate key '{prefix}{}': give each key once{at}", printable(key));
    }
    format!("{}{at}", printable(msg))
}

fn read_strict(path: &Path) -> Result<String> {
    use crate::support::fsutil::{advice, read_trusted, Remedy, Step, Untrusted};
    read_trusted(path, MAX_CONFIG_BYTES).map_err(|why| match why {
        Untrusted::Symlink => Error::config(path, "is a symlink; refusing it (point --config at the real file)"),
        Untrusted::Missing => Error::config(
            path,
            "not found (create it, e.g. {\"enabled_perf_events\": [\"page_faults\"]}, or pass --config)",
        ),
        Untrusted::Directory => Error::config(path, "is a directory, not a JSON file"),
        Untrusted::NotRegular | Untrusted::NotDirectory => Error::config(path, "is not a regular file"),
        Untrusted::Owner(_) | Untrusted::Writable(_) => {
            Error::config(path, format!("{why}; refusing it ({})", advice(path, &why, Remedy::Fix)))
        }
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

fn globs(key: &str, v: &Value) -> std::result::Result<Vec<Pattern>, String> {
    let Value::Array(items) = v else {
        return Err(type_error(key, "a list of name globs", v));
    };
    items
        .iter()
        .map(|i| match i {
            Value::String(s) if !s.is_empty() => glob(key, s),
            other => Err(type_error(key, "non-empty glob strings", other)),
        })
        .collect()
}

fn glob(key: &str, s: &str) -> std::result::Result<Pattern, String> {
    let invalid = |why: &str| format!("{key}: invalid glob '{}': {why}", printable(s));
    // glob reads `[^a]` as the class {^, a}; some shells negate it. Refuse the ambiguity rather
    // than select other guests than the operator meant.
    if s.contains("[^") {
        return Err(invalid("write [!...] to negate a class"));
    }
    Pattern::new(s).map_err(|e| invalid(e.msg))
}

fn one_of<T: Copy>(key: &str, val: &Value, allowed: &[(&str, T)]) -> std::result::Result<T, String> {
    let quoted = allowed.iter().map(|(a, _)| format!("\"{a}\"")).collect::<Vec<_>>().join(" or ");
    match val {
        Value::String(s) => allowed
            .iter()
            .find(|(a, _)| a == s)
            .map(|(_, t)| *t)
            .ok_or_else(|| format!("{key}: '{}' is not allowed; use {quoted}", printable(s))),
        other => Err(type_error(key, &quoted, other)),
    }
}

fn unknown_key(key: &str, known: &[&str], prefix: &str) -> String {
    let shown = printable(key);
    match closest(&key.to_ascii_lowercase(), known.iter().copied()) {
        Some(k) => format!("unknown key '{prefix}{shown}'; did you mean '{prefix}{k}'?"),
        None => format!("unknown key '{prefix}{shown}'; known keys: {}", known.join(", ")),
    }
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

    /// The message without where it is (" (at line L, column C)"), checked separately.
    fn what(text: &str) -> String {
        let e = err(text);
        e.rsplit_once(" (at line ").map_or(e.clone(), |(m, _)| m.to_string())
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            err(r#"{"enabled_perf_events": ["cpu_cycle"]}"#),
            "enabled_perf_events: unknown event 'cpu_cycle'; did you mean 'cpu_cycles'? (at line 1, column 38)"
        );
        assert!(err(r#"{"enabled_perf_events": ["CPU_CYCLES"]}"#).contains("did you mean 'cpu_cycles'"));
        assert!(err(r#"{"enabled_perf_events": ["zzz"]}"#).contains("lists the 22 names"));
        assert_eq!(what(r#"{"enabled_perf_events": ["page_faults", "page_faults"]}"#), "enabled_perf_events: 'page_faults' is listed twice");
        assert_eq!(
            err(r#"{"enabled_perf_event": []}"#),
            "unknown key 'enabled_perf_event'; did you mean 'enabled_perf_events'? (at line 1, column 21)"
        );
        assert!(err(r#"{"colour": 1}"#).starts_with("unknown key 'colour'; known keys: enabled_perf_events"));
        assert_eq!(what(r#"{"host_probe": "yes"}"#), "host_probe: expected true or false, got a string");
        assert_eq!(what(r#"{"existing": "keep"}"#), "existing: 'keep' is not allowed; use \"respect\" or \"override\"");
        assert_eq!(what(r#"{"unsupported": "drop"}"#), "unsupported: 'drop' is not allowed; use \"remove\" or \"keep\"");
        assert_eq!(what(r#"{"on_error": 1}"#), "on_error: expected \"pass\" or \"fail\", got a number");
        assert!(err(r#"{"libvirt_version": "nine"}"#).starts_with("libvirt_version: 'nine' is not a libvirt version"));
        assert_eq!(what(r#"{"domains": {"incude": []}}"#), "unknown key 'domains.incude'; did you mean 'domains.include'?");
        assert_eq!(what(r#"{"domains": {"include": "a*"}}"#), "domains.include: expected a list of name globs, got a string");
        assert!(what(r#"{"domains": []}"#).ends_with("expected domains: an object like {\"include\": [...], \"exclude\": [...]}"));
        assert_eq!(what(r#"{"enabled_perf_events": "cpu_cycles"}"#), "enabled_perf_events: expected a list of event names, got a string");
        assert_eq!(what("[]"), "invalid type: sequence, expected the top level to be a JSON object");
        assert!(what(r#"{"domains": [["a*"]]}"#).starts_with("invalid type: sequence, expected domains: an object"));
        assert!(err("{").starts_with("invalid JSON: EOF while parsing"));
        assert!(err("").starts_with("invalid JSON"));
        assert!(err("{} x").starts_with("invalid JSON: trailing characters"));
    }

    #[test]
    fn errors_say_where() {
        assert!(err("{\n  \"host_probe\": 1}").contains(" (at line 2, column "), "{}", err("{\n  \"host_probe\": 1}"));
        assert!(err("{\"domains\": {\n\"exclude\": [\"[\"]}}").contains("(at line 2, column "));
    }

    #[test]
    fn duplicate_keys_are_refused() {
        assert_eq!(
            err(r#"{"enabled_perf_events":["page_faults"],"enabled_perf_events":[]}"#),
            "duplicate key 'enabled_perf_events': give each key once (at line 1, column 60)"
        );
        assert_eq!(
            err("{\"domains\": {\"include\": [\"a\"],\n \"include\": [\"b\"]}}"),
            "duplicate key 'domains.include': give each key once (at line 2, column 10)"
        );
        assert!(!err("{\"a\\nb\": 1, \"a\\nb\": 2}").chars().any(char::is_control));
        // The same key in different objects is fine.
        let c = Config::parse(r#"{"domains": {"include": ["a"], "exclude": ["b"]}, "host_probe": true}"#).unwrap();
        assert_eq!(c.domains.include, vec![Pattern::new("a").unwrap()]);
    }

    #[test]
    fn byte_order_mark_is_named() {
        assert_eq!(err("\u{feff}{}"), "starts with a UTF-8 byte-order mark; save it without one");
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
        let matches = |glob: &str, name: &str| {
            let d = Config::parse(&format!(r#"{{"domains": {{"include": ["{glob}"]}}}}"#)).unwrap().domains;
            d.selects(name)
        };
        assert!(matches("*", ""));
        assert!(matches("instance-*", "instance-00000001"));
        assert!(!matches("instance-*", "xinstance-1"));
        assert!(matches("a?c", "abc"));
        assert!(matches("*-[0-9]", "web-7"));
        assert!(!matches("*-[!0-9]", "web-7"));
        assert!(matches("*-[!0-9]", "web-x"));
        assert!(matches("[ab]*", "beta"));
        assert!(matches("a[[]b", "a[b"));
        assert!(matches("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!matches("*a*b*c*", "xxaxxcxxbxx"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
        assert!(!matches("Exact", "exact"), "case-sensitive, like domain names");
    }

    #[test]
    fn malformed_globs_are_config_errors() {
        assert_eq!(
            err(r#"{"domains": {"include": ["[a-"]}}"#),
            "domains.include: invalid glob '[a-': invalid range pattern (at line 1, column 32)"
        );
        assert!(err(r#"{"domains": {"exclude": ["ok-*", "a[b"]}}"#).starts_with("domains.exclude: invalid glob 'a[b': "));
        assert!(err(r#"{"domains": {"exclude": ["x**"]}}"#).starts_with("domains.exclude: invalid glob 'x**': "));
        assert!(err(r#"{"domains": {"exclude": ["[^t]*"]}}"#).starts_with("domains.exclude: invalid glob '[^t]*': write [!...] to negate a class"));
    }
}

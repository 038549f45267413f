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
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Domains {
    #[serde(serialize_with = "glob_strings")]
    pub include: Vec<Pattern>,
    #[serde(serialize_with = "glob_strings")]
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
        let value = parse_json(text)?;
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

/// JSON text to a `Value`, refusing duplicate keys at any depth: serde_json's map keeps the last
/// one silently, so `{"enabled_perf_events": [...], "enabled_perf_events": []}` would drop the
/// events without a word (and other JSON tools may keep the first).
fn parse_json(text: &str) -> std::result::Result<Value, String> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = UniqueKeys { path: String::new() }.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    value.map_err(|e| match e.classify() {
        // Our own error (the only data error a Value can raise): it names the key already.
        serde_json::error::Category::Data => format!("{e}; give each key once"),
        _ => format!("invalid JSON: {e}"),
    })
}

/// Builds a `Value` like serde_json's own, but fails on a key seen twice in one object.
/// `path` is where the value sits (`domains.`), for the message.
struct UniqueKeys {
    path: String,
}

impl<'de> serde::de::DeserializeSeed<'de> for UniqueKeys {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueKeys {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, b: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> std::result::Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> std::result::Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> std::result::Result<Value, E> {
        // JSON has no NaN or infinity; serde_json never hands one over.
        Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }

    fn visit_string<E>(self, s: String) -> std::result::Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(UniqueKeys { path: format!("{}[{}].", self.path.trim_end_matches('.'), items.len()) })? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let full = format!("{}{key}", self.path);
            let value = map.next_value_seed(UniqueKeys { path: format!("{full}.") })?;
            if out.insert(key, value).is_some() {
                return Err(serde::de::Error::custom(format_args!("duplicate key '{}'", printable(&full))));
            }
        }
        Ok(Value::Object(out))
    }
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
        assert!(err("{} x").starts_with("invalid JSON: trailing characters"));
    }

    #[test]
    fn duplicate_keys_are_refused() {
        assert_eq!(
            err(r#"{"enabled_perf_events":["page_faults"],"enabled_perf_events":[]}"#),
            "duplicate key 'enabled_perf_events' at line 1 column 64; give each key once"
        );
        assert_eq!(
            err("{\"domains\": {\"include\": [\"a\"],\n \"include\": [\"b\"]}}"),
            "duplicate key 'domains.include' at line 2 column 18; give each key once"
        );
        assert!(err(r#"{"on_error": "pass", "x": {"a": [{"k": 1, "k": 2}]}}"#).starts_with("duplicate key 'x.a[0].k'"));
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
            "domains.include: invalid glob '[a-': invalid range pattern"
        );
        assert!(err(r#"{"domains": {"exclude": ["ok-*", "a[b"]}}"#).starts_with("domains.exclude: invalid glob 'a[b': "));
        assert!(err(r#"{"domains": {"exclude": ["x**"]}}"#).starts_with("domains.exclude: invalid glob 'x**': "));
        assert_eq!(err(r#"{"domains": {"exclude": ["[^t]*"]}}"#), "domains.exclude: invalid glob '[^t]*': write [!...] to negate a class");
    }
}

//! AppArmor: whether the libvirt daemon's profile lets it execute what each hook entry resolves
//! to. A blocked entry fails every guest start: libvirt runs each `qemu.d` entry at
//! `prepare begin` and aborts when one cannot be executed. The profile is parsed as far as exec
//! rules need: includes, `@{VAR}` definitions, nested profiles (whose rules are not the
//! daemon's), `deny`, and the glob forms AppArmor uses ([`glob`]).

mod glob;

use std::path::{Path, PathBuf};

pub use glob::{glob_match, GlobError, Vars};

use super::{entries, finding, shown, AA_DIR, AA_PROFILES, DAEMONS};
use crate::core::finding::{Finding, Status};
use crate::support::paths::Paths;

// ---- AppArmor profiles ---------------------------------------------------------------------

/// A file rule whose permissions include `x` (`ix`, `Px`, `PUx`, `rmix`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRule {
    pub deny: bool,
    pub pattern: String,
    pub perms: String,
    /// The rule as written, for messages.
    pub text: String,
}

/// A top-level profile of a policy file, with the exec rules of its own body (those of nested
/// child profiles and hats excluded) and the variables visible to it.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub attach: Option<String>,
    pub vars: Vars,
    pub rules: Vec<ExecRule>,
}

/// How a profile treats the exec of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed(ExecRule),
    Denied(ExecRule),
    /// No `x` rule matches; the variables some rules used but nobody defined.
    NoRule {
        unknown: Vec<String>,
    },
}

impl Profile {
    pub fn exec_verdict(&self, path: &str) -> Verdict {
        let mut unknown: Vec<String> = Vec::new();
        let mut allowed = None;
        for r in &self.rules {
            match glob_match(&r.pattern, &self.vars, path) {
                // A deny rule wins over any allow rule.
                Ok(true) if r.deny => return Verdict::Denied(r.clone()),
                Ok(true) => {
                    allowed.get_or_insert_with(|| r.clone());
                }
                Ok(false) => {}
                Err(GlobError::UnknownVariable(v)) => {
                    if !unknown.contains(&v) {
                        unknown.push(v);
                    }
                }
                Err(GlobError::Unusable(_)) => {}
            }
        }
        match allowed {
            Some(r) => Verdict::Allowed(r),
            None => Verdict::NoRule { unknown },
        }
    }
}

/// Parses the policy file `file` (a host path under `paths`' root) with its includes and
/// returns its top-level profiles.
pub fn parse_policy(paths: &Paths, file: &Path) -> Vec<Profile> {
    let mut p = Flattener { paths, vars: Vars::new(), files: 0 };
    let mut lines = Vec::new();
    p.flatten(file, 0, &mut lines);
    profiles_of(&lines, &p.vars)
}

/// Policy text with includes spliced in, comments gone, variable definitions collected.
struct Flattener<'a> {
    paths: &'a Paths,
    vars: Vars,
    files: usize,
}

impl Flattener<'_> {
    fn flatten(&mut self, file: &Path, depth: usize, out: &mut Vec<String>) {
        // AppArmor refuses include loops; a cap is enough here.
        self.files += 1;
        if depth > 16 || self.files > 500 {
            return;
        }
        if file.is_dir() {
            let mut names: Vec<PathBuf> = std::fs::read_dir(file)
                .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_file() && !hidden(p)).collect())
                .unwrap_or_default();
            names.sort();
            for n in names {
                self.flatten(&n, depth + 1, out);
            }
            return;
        }
        let Ok(text) = std::fs::read_to_string(file) else { return };
        for raw in text.lines() {
            let line = raw.trim();
            if let Some(target) = include_target(line) {
                let path = if let Some(rel) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')) {
                    self.paths.host(AA_DIR).join(rel)
                } else {
                    let t = target.trim_matches('"');
                    if t.starts_with('/') {
                        self.paths.host(t)
                    } else {
                        self.paths.host(AA_DIR).join(t)
                    }
                };
                self.flatten(&path, depth + 1, out);
                continue;
            }
            let line = strip_comment(line).trim();
            if line.is_empty() {
                continue;
            }
            if let Some((name, append, values)) = variable_definition(line) {
                let entry = self.vars.entry(name).or_default();
                if !append {
                    entry.clear();
                }
                entry.extend(values);
                continue;
            }
            out.push(line.to_string());
        }
    }
}

fn hidden(p: &Path) -> bool {
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.starts_with('.') || name.ends_with('~') || name.contains(".dpkg-") || name.contains(".rpm")
}

/// `#include <x>`, `include <x>`, `include if exists "x"`: the `<x>` or `"x"` part.
fn include_target(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("#include").or_else(|| line.strip_prefix("include"))?;
    if !rest.starts_with([' ', '\t', '<', '"']) {
        return None;
    }
    let rest = rest.trim_start();
    let rest = rest.strip_prefix("if exists").map(str::trim_start).unwrap_or(rest);
    let rest = rest.trim_end().trim_end_matches(',').trim_end();
    (rest.starts_with('<') && rest.ends_with('>') || rest.starts_with('"') && rest.ends_with('"') && rest.len() > 1)
        .then_some(rest)
}

/// The line up to a `#` outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// `@{NAME}=a b "c d"` or `@{NAME}+=…`: (name, appends, values).
fn variable_definition(line: &str) -> Option<(String, bool, Vec<String>)> {
    let rest = line.strip_prefix("@{")?;
    let close = rest.find('}')?;
    let name = rest[..close].to_string();
    let rest = rest[close + 1..].trim_start();
    let (append, values) = match rest.strip_prefix("+=") {
        Some(v) => (true, v),
        None => (false, rest.strip_prefix('=')?),
    };
    Some((name, append, words(values.trim_end_matches(','))))
}

/// Whitespace-separated words; `"…"` groups and is removed.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

enum Block {
    /// Index into the profiles found so far.
    TopProfile(usize),
    /// A child profile, hat or conditional: its rules are not the profile's.
    Other,
}

fn profiles_of(lines: &[String], vars: &Vars) -> Vec<Profile> {
    let mut profiles: Vec<Profile> = Vec::new();
    let mut stack: Vec<Block> = Vec::new();
    let mut pending = String::new();
    for line in lines {
        if let Some(rest) = line.strip_prefix('}') {
            stack.pop();
            pending.clear();
            // `} else {`
            if rest.trim_end().ends_with('{') {
                stack.push(Block::Other);
            }
            continue;
        }
        if let Some(header) = line.strip_suffix('{') {
            let header = format!("{pending} {header}");
            pending.clear();
            let block = match (stack.is_empty(), profile_header(&header)) {
                (true, Some((name, attach))) => {
                    profiles.push(Profile { name, attach, vars: vars.clone(), rules: Vec::new() });
                    Block::TopProfile(profiles.len() - 1)
                }
                _ => Block::Other,
            };
            stack.push(block);
            continue;
        }
        if !pending.is_empty() {
            pending.push(' ');
        }
        pending.push_str(line);
        let Some(stmt) = pending.strip_suffix(',') else { continue };
        if let ([Block::TopProfile(p)], Some(rule)) = (stack.as_slice(), exec_rule(stmt)) {
            profiles[*p].rules.push(rule);
        }
        pending.clear();
    }
    profiles
}

/// `profile NAME [ATTACH] [flags=…]` or `/path/name [flags=…]`: (name, attachment).
fn profile_header(header: &str) -> Option<(String, Option<String>)> {
    let w = words(header);
    let is_path = |s: &str| s.starts_with('/') || s.starts_with("@{");
    match w.first().map(String::as_str) {
        Some("profile") => {
            let name = w.get(1)?.clone();
            let attach = w.get(2).filter(|a| is_path(a)).cloned();
            Some((name, attach))
        }
        Some(first) if is_path(first) => Some((first.to_string(), Some(first.to_string()))),
        _ => None,
    }
}

/// A file rule with `x` in its permissions: `[audit] [deny] [owner] [file] PATH PERMS [-> T]`
/// or `… PERMS PATH …`.
fn exec_rule(stmt: &str) -> Option<ExecRule> {
    let w = words(stmt);
    let mut k = 0;
    let mut deny = false;
    while let Some(q) = w.get(k) {
        match q.as_str() {
            "deny" => deny = true,
            "audit" | "allow" | "owner" | "other" | "quiet" | "file" => {}
            _ => break,
        }
        k += 1;
    }
    let is_path = |s: &str| s.starts_with('/') || s.starts_with("@{");
    let is_perms = |s: &str| !s.is_empty() && s.chars().all(|c| "rwaxlkmiupcUPC".contains(c));
    let (pattern, perms) = match (w.get(k), w.get(k + 1)) {
        (Some(a), Some(b)) if is_path(a) && is_perms(b) => (a, b),
        (Some(a), Some(b)) if is_perms(a) && is_path(b) => (b, a),
        _ => return None,
    };
    perms.contains('x').then(|| ExecRule {
        deny,
        pattern: pattern.clone(),
        perms: perms.clone(),
        text: format!("{},", stmt.trim()),
    })
}

// ---- AppArmor: the check -------------------------------------------------------------------

/// A loaded profile of a daemon that runs hooks, with its mode (`enforce`, `complain`, …).
struct Loaded {
    name: String,
    mode: String,
}

/// `libvirtd (enforce)` lines of the kernel's list, for the daemons that run hooks.
fn loaded_daemon_profiles(text: &str) -> Vec<Loaded> {
    text.lines()
        .filter_map(|l| {
            let (name, mode) = l.trim().rsplit_once(" (")?;
            let mode = mode.strip_suffix(')')?;
            let base = name.rsplit('/').next().unwrap_or(name);
            (!name.contains("//") && DAEMONS.contains(&base))
                .then(|| Loaded { name: name.to_string(), mode: mode.to_string() })
        })
        .collect()
}

/// Policy files under /etc/apparmor.d that may hold the daemons' profiles, the stock names
/// first; only files that mention a daemon are parsed.
fn daemon_policies(paths: &Paths) -> Vec<(PathBuf, Vec<Profile>)> {
    let dir = paths.host(AA_DIR);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_file() && !hidden(p)).collect())
        .unwrap_or_default();
    files.sort_by_key(|p| {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        (!DAEMONS.iter().any(|d| name == format!("usr.sbin.{d}")), name)
    });
    files
        .into_iter()
        .filter(|f| std::fs::read_to_string(f).is_ok_and(|t| DAEMONS.iter().any(|d| t.contains(d))))
        .map(|f| {
            let profiles = parse_policy(paths, &f);
            (f, profiles)
        })
        .filter(|(_, p)| !p.is_empty())
        .collect()
}

fn is_daemon_profile(p: &Profile) -> bool {
    let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    DAEMONS.iter().any(|d| base(&p.name) == *d || p.attach.as_deref().is_some_and(|a| base(a) == *d))
}

pub(super) fn check(paths: &Paths) -> Vec<Finding> {
    const W: &str = "apparmor";
    let list = paths.host(AA_PROFILES);
    let loaded = match std::fs::read_to_string(&list) {
        Ok(text) => Some(loaded_daemon_profiles(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            let msg = format!(
                "AppArmor: cannot read {}: {e}; run check as root to see whether a profile blocks the hooks",
                shown(paths, &list)
            );
            return vec![finding(Status::Note, W, msg)];
        }
    };
    let entries = entries(paths);
    let policies = daemon_policies(paths);
    let Some(loaded) = loaded else {
        // Not in force: still say what the profiles on disk would do, as notes.
        let mut out = vec![finding(
            Status::Note,
            W,
            format!("AppArmor is not in force here (no {}): it cannot block the hooks", shown(paths, &list)),
        )];
        for (file, profiles) in &policies {
            for p in profiles.iter().filter(|p| is_daemon_profile(p)) {
                for j in entries.iter().filter_map(|(entry, target)| judge(paths, p, file, None, entry, target)) {
                    let msg = match j.fix {
                        None => format!("AppArmor, if enabled: {}", j.text),
                        Some(fix) => {
                            format!("AppArmor, if enabled: {}: every guest start would fail; fix: {fix}", j.text)
                        }
                    };
                    out.push(finding(Status::Note, W, msg));
                }
            }
        }
        return out;
    };
    if loaded.is_empty() {
        let msg = "AppArmor: no libvirtd or virtqemud profile loaded, so libvirt runs the hooks unconfined";
        return vec![finding(Status::Ok, W, msg.to_string())];
    }
    let mut out = Vec::new();
    for l in &loaded {
        let found = policies.iter().find_map(|(f, ps)| ps.iter().find(|p| p.name == l.name).map(|p| (f, p)));
        let Some((file, profile)) = found else {
            let msg = format!(
                "AppArmor profile {} ({}) is loaded, but no file in {} declares it: its exec rules cannot be checked",
                l.name,
                l.mode,
                shown(paths, &paths.host(AA_DIR))
            );
            out.push(finding(Status::Note, W, msg));
            continue;
        };
        let enforced = matches!(l.mode.as_str(), "enforce" | "kill");
        for j in entries.iter().filter_map(|(entry, target)| judge(paths, profile, file, Some(&l.mode), entry, target))
        {
            out.push(match j.fix {
                None => finding(Status::Ok, W, format!("AppArmor: {}", j.text)),
                Some(fix) if enforced => finding(
                    Status::Problem,
                    W,
                    format!("AppArmor: {}: libvirt cannot run it, so every guest start fails; fix: {fix}", j.text),
                ),
                Some(fix) => finding(
                    Status::Note,
                    W,
                    format!("AppArmor: {}: mode {} does not block it, under enforce every guest start would fail; fix: {fix}", j.text, l.mode),
                ),
            });
        }
    }
    out
}

/// What a profile does to the exec of one hook entry: `fix` is `None` when it is allowed.
struct Judgement {
    text: String,
    fix: Option<String>,
}

/// How `profile` (from `file`, loaded in `mode`, `None` when AppArmor is off) treats the exec of
/// `entry`, which resolves to `target`.
fn judge(
    paths: &Paths,
    profile: &Profile,
    file: &Path,
    mode: Option<&str>,
    entry: &Path,
    target: &Result<String, std::io::Error>,
) -> Option<Judgement> {
    // libvirt skips an entry that does not resolve to an executable; `check` reports it as missing.
    let target = target.as_ref().ok()?;
    let file_shown = shown(paths, file);
    let mode_shown = mode.map(|m| format!("{m}, ")).unwrap_or_default();
    let who = format!("profile {} ({mode_shown}{file_shown})", profile.name);
    let what = format!("hook {} -> {target}", shown(paths, entry));
    let local =
        format!("{AA_DIR}/local/{}", file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    let fix = format!(
        "make the entry a symlink to /usr/bin/virt-perf-hook (reinstall the package), or add '{target} PUx,' to {local} \
         and reload it: apparmor_parser -r {file_shown}"
    );
    let blocked =
        |why: String| Some(Judgement { text: format!("{who} blocks {what} ({why})"), fix: Some(fix.clone()) });
    match profile.exec_verdict(target) {
        Verdict::Allowed(rule) => {
            // Px/Cx without a fallback need a profile for the target, which nobody ships.
            let strict = !rule.perms.contains(['U', 'u', 'i']) && rule.perms.contains(['P', 'p', 'C', 'c']);
            let caveat = if strict { "; a Px/Cx rule works only while a profile for the target is loaded" } else { "" };
            Some(Judgement { text: format!("{who} lets libvirt run {what} (rule '{}'){caveat}", rule.text), fix: None })
        }
        Verdict::Denied(rule) => blocked(format!("rule '{}'", rule.text)),
        Verdict::NoRule { unknown } if unknown.is_empty() => blocked("no exec rule matches it".to_string()),
        Verdict::NoRule { unknown } => blocked(format!(
            "no exec rule matches it; rules using undefined variables {} were taken as not matching",
            unknown.iter().map(|v| format!("@{{{v}}}")).collect::<Vec<_>>().join(", ")
        )),
    }
}

// ---- SELinux -------------------------------------------------------------------------------
#[cfg(test)]
mod tests {
    use super::*;

    fn profile(text: &str) -> Profile {
        let lines: Vec<String> =
            text.lines().map(|l| strip_comment(l.trim()).trim().to_string()).filter(|l| !l.is_empty()).collect();
        let mut ps = profiles_of(&lines, &Vars::new());
        assert_eq!(ps.len(), 1, "{text}");
        ps.remove(0)
    }

    #[test]
    fn exec_rules_of_the_profile_body_only() {
        let p = profile(
            "profile libvirtd /usr/sbin/libvirtd flags=(attach_disconnected) {\n\
               capability perfmon,\n\
               mount options=(rw, nosuid) -> /{var/,}run/libvirt/qemu/*.dev/,\n\
               signal (send) set=(\"kill\", \"term\") peer=unconfined,\n\
               / r,\n\
               /** rwmkl,  # no x\n\
               /usr/bin/* PUx,\n\
               owner ix /opt/tool,\n\
               audit deny /{usr/,}sbin/apparmor_parser rwxl,\n\
               /usr/lib/libvirt/* PUxr,\n\
               /usr/libexec/helper Cx -> helper,\n\
               profile helper {\n\
                 /usr/lib/virt-perf-hook/** rmix,\n\
               }\n\
               ^hat {\n  /srv/** ix,\n  }\n\
               /etc/libvirt/hooks/** rmix,\n\
             }\n",
        );
        assert_eq!(p.name, "libvirtd");
        assert_eq!(p.attach.as_deref(), Some("/usr/sbin/libvirtd"));
        let pats: Vec<&str> = p.rules.iter().map(|r| r.pattern.as_str()).collect();
        assert_eq!(
            pats,
            [
                "/usr/bin/*",
                "/opt/tool",
                "/{usr/,}sbin/apparmor_parser",
                "/usr/lib/libvirt/*",
                "/usr/libexec/helper",
                "/etc/libvirt/hooks/**"
            ]
        );
        assert!(
            matches!(p.exec_verdict("/usr/bin/virt-perf-hook"), Verdict::Allowed(r) if r.text == "/usr/bin/* PUx,")
        );
        assert!(matches!(p.exec_verdict("/etc/libvirt/hooks/qemu.d/x"), Verdict::Allowed(r) if r.perms == "rmix"));
        assert!(matches!(p.exec_verdict("/opt/tool"), Verdict::Allowed(r) if r.perms == "ix"));
        assert_eq!(
            p.exec_verdict("/usr/lib/virt-perf-hook/hooks/qemu.d/virt-perf-hook"),
            Verdict::NoRule { unknown: vec![] }
        );
        assert_eq!(p.exec_verdict("/srv/x"), Verdict::NoRule { unknown: vec![] }, "a hat's rule is not the profile's");
        assert!(matches!(p.exec_verdict("/usr/sbin/apparmor_parser"), Verdict::Denied(r) if r.deny));
    }

    #[test]
    fn path_named_profile_and_variable_definitions() {
        assert_eq!(
            variable_definition("@{LIBVIRT}=\"libvirt\""),
            Some(("LIBVIRT".into(), false, vec!["libvirt".into()]))
        );
        assert_eq!(variable_definition("@{X} += /a/ /b/"), Some(("X".into(), true, vec!["/a/".into(), "/b/".into()])));
        assert_eq!(include_target("#include <tunables/global>"), Some("<tunables/global>"));
        assert_eq!(include_target("include if exists <local/usr.sbin.virtqemud>"), Some("<local/usr.sbin.virtqemud>"));
        assert_eq!(include_target("#include \"/etc/x\""), Some("\"/etc/x\""));
        assert_eq!(include_target("# a comment"), None);
        assert_eq!(include_target("includes /x r,"), None);
        let p = profile("/usr/sbin/libvirtd flags=(complain) {\n /usr/bin/virt-perf-hook ix,\n}\n");
        assert_eq!(p.name, "/usr/sbin/libvirtd");
        assert!(matches!(p.exec_verdict("/usr/bin/virt-perf-hook"), Verdict::Allowed(_)));
    }

    #[test]
    fn includes_and_variables_from_files() {
        let root = std::env::temp_dir().join(format!("vph-mac-inc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let paths = Paths::new(&root);
        let w = |rel: &str, text: &str| {
            let p = paths.host(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
        };
        w("/etc/apparmor.d/tunables/global", "@{TOOLS}=/opt/tools\n");
        w("/etc/apparmor.d/local/usr.sbin.virtqemud", "@{TOOLS}/* PUx,\n");
        w(
            "/etc/apparmor.d/usr.sbin.virtqemud",
            "#include <tunables/global>\nprofile virtqemud /usr/sbin/virtqemud {\n  #include <abstractions/missing>\n  include if exists <local/usr.sbin.virtqemud>\n}\n",
        );
        let ps = parse_policy(&paths, &paths.host("/etc/apparmor.d/usr.sbin.virtqemud"));
        assert_eq!(ps.len(), 1);
        assert!(
            matches!(ps[0].exec_verdict("/opt/tools/virt-perf-hook"), Verdict::Allowed(r) if r.text == "@{TOOLS}/* PUx,")
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn loaded_profile_list() {
        let l = loaded_daemon_profiles("libvirtd (enforce)\nlibvirtd//qemu_bridge_helper (enforce)\n/usr/sbin/virtqemud (complain)\nman (enforce)\nlibvirt-0a-1 (enforce)\n");
        let got: Vec<(&str, &str)> = l.iter().map(|l| (l.name.as_str(), l.mode.as_str())).collect();
        assert_eq!(got, [("libvirtd", "enforce"), ("/usr/sbin/virtqemud", "complain")]);
    }

}

//! AppArmor path globs: `*`, `**`, `?`, `[...]`, `{a,b}` and `@{VAR}`, as profiles use them.

use std::collections::HashMap;

/// Profile variables: `@{NAME}` and its values (alternatives).
pub type Vars = HashMap<String, Vec<String>>;

/// Why a pattern could not be judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobError {
    /// `@{NAME}` is not defined in the profile or its includes.
    UnknownVariable(String),
    /// Unbalanced `{`/`}`, or more alternatives than are worth expanding.
    Unusable(String),
}

/// Alternatives beyond this are not expanded (profiles use a handful).
const MAX_ALTERNATIVES: usize = 4096;

/// Whether the AppArmor path pattern matches `path`: `*` is any run without `/`, `**` any run,
/// `?` one character but `/`, `[a-z]`/`[^/]` one character of a class, `{a,b,}` alternatives
/// (nested), `@{VAR}` a variable from `vars`, `\` escapes the next character.
pub fn glob_match(pattern: &str, vars: &Vars, path: &str) -> Result<bool, GlobError> {
    let path: Vec<char> = path.chars().collect();
    Ok(expand(pattern, vars, 0)?.iter().any(|p| match_plain(&collapse_slashes(p), &path)))
}

/// AppArmor treats `//` as `/`; variables like `@{HOMEDIRS}/*/` produce them.
fn collapse_slashes(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for c in p.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

/// The pattern with every `{…}` and `@{…}` expanded: plain globs, one per alternative.
fn expand(pattern: &str, vars: &Vars, depth: usize) -> Result<Vec<String>, GlobError> {
    if depth > 8 {
        return Err(GlobError::Unusable(format!("variables nested too deep in {pattern}")));
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let out = expand_seq(&chars, &mut i, vars, depth, false)?;
    if i < chars.len() {
        return Err(GlobError::Unusable(format!("unbalanced '}}' in {pattern}")));
    }
    Ok(out)
}

fn expand_seq(s: &[char], i: &mut usize, vars: &Vars, depth: usize, nested: bool) -> Result<Vec<String>, GlobError> {
    let mut out = vec![String::new()];
    let append = |out: &mut Vec<String>, text: &str| out.iter_mut().for_each(|o| o.push_str(text));
    while *i < s.len() {
        let c = s[*i];
        match c {
            ',' | '}' if nested => break,
            '}' => return Err(GlobError::Unusable("unbalanced '}'".into())),
            '\\' => {
                let text: String = s[*i..(*i + 2).min(s.len())].iter().collect();
                append(&mut out, &text);
                *i += 2;
            }
            '[' => {
                // A class is copied whole: `{`, `,` and `@` in it are plain characters.
                let start = *i;
                *i += 1;
                if s.get(*i) == Some(&'^') {
                    *i += 1;
                }
                if s.get(*i) == Some(&']') {
                    *i += 1;
                }
                while *i < s.len() && s[*i] != ']' {
                    *i += 1;
                }
                *i = (*i + 1).min(s.len());
                append(&mut out, &s[start..*i].iter().collect::<String>());
            }
            '{' => {
                *i += 1;
                let mut alts = Vec::new();
                loop {
                    alts.extend(expand_seq(s, i, vars, depth, true)?);
                    match s.get(*i) {
                        Some(',') => *i += 1,
                        Some('}') => {
                            *i += 1;
                            break;
                        }
                        _ => return Err(GlobError::Unusable("unbalanced '{'".into())),
                    }
                }
                out = product(out, &alts)?;
            }
            '@' if s.get(*i + 1) == Some(&'{') => {
                let Some(len) = s[*i + 2..].iter().position(|&c| c == '}') else {
                    return Err(GlobError::Unusable("unterminated '@{'".into()));
                };
                let name: String = s[*i + 2..*i + 2 + len].iter().collect();
                *i += 3 + len;
                let values = vars.get(&name).ok_or_else(|| GlobError::UnknownVariable(name.clone()))?;
                let mut alts = Vec::new();
                for v in values {
                    alts.extend(expand(v, vars, depth + 1)?);
                }
                out = product(out, &alts)?;
            }
            _ => {
                append(&mut out, c.encode_utf8(&mut [0; 4]));
                *i += 1;
            }
        }
    }
    Ok(out)
}

fn product(heads: Vec<String>, tails: &[String]) -> Result<Vec<String>, GlobError> {
    if heads.len().saturating_mul(tails.len()) > MAX_ALTERNATIVES {
        return Err(GlobError::Unusable(format!("more than {MAX_ALTERNATIVES} alternatives")));
    }
    Ok(heads.iter().flat_map(|h| tails.iter().map(move |t| format!("{h}{t}"))).collect())
}

#[derive(Debug)]
enum Tok {
    Lit(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**`
    Stars,
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

fn tokens(p: &str) -> Vec<Tok> {
    let s: Vec<char> = p.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            '\\' if i + 1 < s.len() => {
                out.push(Tok::Lit(s[i + 1]));
                i += 2;
            }
            '*' if s.get(i + 1) == Some(&'*') => {
                while s.get(i) == Some(&'*') {
                    i += 1;
                }
                out.push(Tok::Stars);
            }
            '*' => {
                out.push(Tok::Star);
                i += 1;
            }
            '?' => {
                out.push(Tok::One);
                i += 1;
            }
            '[' => {
                let mut j = i + 1;
                let negated = s.get(j) == Some(&'^');
                if negated {
                    j += 1;
                }
                let mut items = Vec::new();
                let mut first = true;
                while j < s.len() && (s[j] != ']' || first) {
                    first = false;
                    let lo = s[j];
                    if s.get(j + 1) == Some(&'-') && s.get(j + 2).is_some_and(|&c| c != ']') {
                        items.push((lo, s[j + 2]));
                        j += 3;
                    } else {
                        items.push((lo, lo));
                        j += 1;
                    }
                }
                if j >= s.len() {
                    // No closing bracket: a literal '['.
                    out.push(Tok::Lit('['));
                    i += 1;
                } else {
                    out.push(Tok::Class { negated, items });
                    i = j + 1;
                }
            }
            c => {
                out.push(Tok::Lit(c));
                i += 1;
            }
        }
    }
    out
}

/// A glob without alternatives against a path; dynamic programming, so no pattern is slow.
fn match_plain(pattern: &str, path: &[char]) -> bool {
    let toks = tokens(pattern);
    // can[j]: the tokens so far can match path[..j].
    let mut can = vec![false; path.len() + 1];
    can[0] = true;
    let mut prev_slash = false;
    for t in &toks {
        let mut next = vec![false; path.len() + 1];
        match t {
            Tok::Star | Tok::Stars => {
                // After a '/', a star matches at least one character: `/dir/*` is not `/dir/`.
                let min1 = prev_slash;
                let star = matches!(t, Tok::Star);
                let mut reach = false;
                for j in 0..=path.len() {
                    if j > 0 {
                        if star && path[j - 1] == '/' {
                            reach = false;
                        }
                        if min1 && can[j - 1] && !(star && path[j - 1] == '/') {
                            reach = true;
                        }
                    }
                    if !min1 && can[j] {
                        reach = true;
                    }
                    next[j] = reach;
                }
            }
            _ => {
                for j in 0..path.len() {
                    if can[j] && one_char(t, path[j]) {
                        next[j + 1] = true;
                    }
                }
            }
        }
        can = next;
        prev_slash = matches!(t, Tok::Lit('/'));
    }
    can[path.len()]
}

fn one_char(t: &Tok, c: char) -> bool {
    match t {
        Tok::Lit(l) => *l == c,
        Tok::One => c != '/',
        Tok::Class { negated, items } => c != '/' && items.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated,
        Tok::Star | Tok::Stars => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &[&str])]) -> Vars {
        pairs.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect()
    }

    fn m(pattern: &str, path: &str) -> bool {
        glob_match(pattern, &Vars::new(), path).unwrap()
    }

    #[test]
    fn stars() {
        assert!(m("/usr/bin/*", "/usr/bin/virt-perf-hook"));
        assert!(!m("/usr/bin/*", "/usr/bin/x/virt-perf-hook"), "* stops at /");
        assert!(!m("/usr/bin/*", "/usr/lib/virt-perf-hook/hooks/qemu.d/virt-perf-hook"));
        assert!(m("/etc/libvirt/hooks/**", "/etc/libvirt/hooks/qemu.d/virt-perf-hook"));
        assert!(m("/etc/libvirt/hooks/**", "/etc/libvirt/hooks/qemu"));
        assert!(!m("/etc/libvirt/hooks/**", "/etc/libvirt/hook"));
        assert!(m("/var/lib/libvirt/virtd*", "/var/lib/libvirt/virtd-ebtables"));
        assert!(m("/**", "/usr/lib/virt-perf-hook/hooks/qemu.d/virt-perf-hook"));
        assert!(m("/usr/*/virt-perf-hook", "/usr/bin/virt-perf-hook"));
        assert!(m("/a/*b*c", "/a/xbyc") && !m("/a/*b*c", "/a/x/byc"));
        assert!(m("/a/?", "/a/b") && !m("/a/?", "/a/") && !m("/a/?", "/a//"));
        assert!(
            !m("/dir/*", "/dir/") && !m("/etc/libvirt/hooks/**", "/etc/libvirt/hooks/"),
            "after / a star needs a character"
        );
        assert!(m("/dir/x*", "/dir/x") && m("/dir/**/y", "/dir/a/b/y"));
    }

    #[test]
    fn alternatives_and_classes() {
        assert!(m("/{usr/,}lib/udev/scsi_id", "/lib/udev/scsi_id"));
        assert!(m("/{usr/,}lib/udev/scsi_id", "/usr/lib/udev/scsi_id"));
        assert!(m("/usr/{lib,lib64,lib/qemu,libexec}/virtiofsd", "/usr/lib/qemu/virtiofsd"));
        assert!(!m("/usr/{lib,lib64,lib/qemu,libexec}/virtiofsd", "/usr/share/virtiofsd"));
        assert!(m("/{,var/}run/libvirt/qemu/*{,/}", "/var/run/libvirt/qemu/x/"));
        assert!(m("/a/{b,{c,d}e}/f", "/a/de/f") && m("/a/{b,{c,d}e}/f", "/a/b/f") && !m("/a/{b,{c,d}e}/f", "/a/d/f"));
        assert!(m("/usr/lib/libvirt/libvirt-[0-9a-f]*", "/usr/lib/libvirt/libvirt-3fx"));
        assert!(!m("/usr/lib/libvirt/libvirt-[0-9a-f]*", "/usr/lib/libvirt/libvirt-g"));
        assert!(m("/x/[^a]", "/x/b") && !m("/x/[^a]", "/x/a") && !m("/x/[^a]", "/x//"));
        assert!(m("/x/[{,]", "/x/,"), "braces and commas in a class are plain");
        assert!(m("/x/\\{a\\}", "/x/{a}") && m("/x/a\\*", "/x/a*") && !m("/x/a\\*", "/x/ab"));
        assert!(matches!(glob_match("/a/{b", &Vars::new(), "/a/b"), Err(GlobError::Unusable(_))));
    }

    #[test]
    fn variables() {
        let v = vars(&[
            ("LIBVIRT", &["libvirt"]),
            ("multiarch", &["*-linux-gnu*"]),
            ("HOME", &["@{HOMEDIRS}/*/", "/root/"]),
            ("HOMEDIRS", &["/home/"]),
        ]);
        assert_eq!(glob_match("@{LIBVIRT}-[0-9a-f]*", &v, "libvirt-0a1b"), Ok(true));
        assert_eq!(
            glob_match("/usr/lib/@{multiarch}/ld*.so*", &v, "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
            Ok(true)
        );
        assert_eq!(glob_match("@{HOME}.x", &v, "/home/ann/.x"), Ok(true));
        assert_eq!(glob_match("@{HOME}.x", &v, "/root/.x"), Ok(true));
        assert_eq!(glob_match("@{HOME}.x", &v, "/etc/.x"), Ok(false));
        assert_eq!(glob_match("@{NOPE}/bin/*", &v, "/x/bin/y"), Err(GlobError::UnknownVariable("NOPE".into())));
    }

}

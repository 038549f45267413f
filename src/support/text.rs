//! Small text helpers shared by every message the tool prints.

/// The candidate closest to `word`, when it is close enough to be a likely typo: at most two
/// edits, or a quarter of the candidate's length for long names. The one rule behind every
/// "did you mean" (event names, config keys).
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance; names are short ASCII so the simple form is enough.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `s` with control characters escaped (`\n`, `\u{1b}`): messages that echo input stay one
/// line and cannot drive a terminal.
pub fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// A table: columns padded to the widest cell as shown on screen (a CJK character takes two
/// columns), the last one not padded, control characters in cells escaped (names come from
/// guests).
pub fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    use unicode_width::UnicodeWidthStr;
    let cells: Vec<[String; N]> = std::iter::once(header.map(String::from))
        .chain(rows.iter().map(|r| r.clone().map(|c| printable(&c))))
        .collect();
    let widths: Vec<usize> = (0..N).map(|i| cells.iter().map(|c| c[i].width()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < N {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[i].saturating_sub(cell.width()) + 2));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The text serde gives a unit variant (its `rename_all` spelling), padded like `{:<8}` asks, so
/// a state prints the same word in text and JSON from one table.
pub fn fmt_serde_name(value: &impl serde::Serialize, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => f.pad(&name),
        _ => Err(std::fmt::Error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_within_the_threshold() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(closest("hots_probe", ["host_probe", "domains"]), Some("host_probe"));
        assert_eq!(closest("colour", ["host_probe", "domains"]), None);
        // The nearest wins, not the first within reach.
        assert_eq!(closest("abcd", ["abxy", "abcx"]), Some("abcx"));
    }
}

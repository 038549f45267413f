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

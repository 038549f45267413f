//! `filter --diff`: a unified diff built from the rewrite's own edits (byte-range replacements
//! of the input), so only the lines an edit touches are shown, one hunk per region with three
//! lines of context, hunks closer than that merged, as `diff -u` prints and `patch` applies.

use std::ops::Range;

/// Lines of context around each change.
const CONTEXT: usize = 3;

/// A run of whole lines of the old text, `old[span]`, replaced by `new` (whole lines too, except
/// at the end of the text).
struct Region {
    span: Range<usize>,
    new: String,
}

/// The unified diff between `old` and `old` with `edits` applied. `edits` are byte ranges of
/// `old` with their replacements, sorted and not overlapping (as `rewrite::Outcome::edits`).
pub fn unified(old: &str, edits: &[(Range<usize>, String)], label: &str) -> String {
    let regions = regions(old, edits);
    if regions.is_empty() {
        return String::new();
    }
    let old_lines: Vec<&str> = old.split_inclusive('\n').collect();
    // Line numbers of each region in the old text, and its new lines.
    let starts = line_starts(old);
    let line_of = |byte: usize| starts.partition_point(|&s| s <= byte) - 1;
    let mut out = format!("--- {label}\n+++ {label} (virt-perf-hook)\n");
    let mut shift: isize = 0; // new line number minus old line number before the current region
    let mut i = 0;
    while i < regions.len() {
        // Regions whose gaps are at most two contexts go into one hunk.
        let mut j = i + 1;
        while j < regions.len() && line_of(regions[j].span.start) <= lines_end(&regions[j - 1], &line_of) + 2 * CONTEXT {
            j += 1;
        }
        let first = line_of(regions[i].span.start);
        let last = lines_end(&regions[j - 1], &line_of);
        let start = first.saturating_sub(CONTEXT);
        let end = (last + CONTEXT).min(old_lines.len());
        let mut body = String::new();
        let mut at = start;
        let mut new_count = 0;
        let hunk_shift = shift;
        for r in &regions[i..j] {
            let (a, b) = (line_of(r.span.start), lines_end(r, &line_of));
            for l in &old_lines[at..a] {
                body.push_str(&line(' ', l));
            }
            new_count += a - at;
            for l in &old_lines[a..b] {
                body.push_str(&line('-', l));
            }
            let added: Vec<&str> = r.new.split_inclusive('\n').collect();
            for l in &added {
                body.push_str(&line('+', l));
            }
            new_count += added.len();
            shift += added.len() as isize - (b - a) as isize;
            at = b;
        }
        for l in &old_lines[at..end] {
            body.push_str(&line(' ', l));
        }
        new_count += end - at;
        let new_start = (start as isize + hunk_shift) as usize;
        out.push_str(&format!("@@ -{} +{} @@\n", range(start, end - start), range(new_start, new_count)));
        out.push_str(&body);
        i = j;
    }
    out
}

/// `start,count` as `diff -u` writes it (1-based; `,1` left out; an empty range names the line
/// before it).
fn range(start: usize, count: usize) -> String {
    match count {
        0 => format!("{start},0"),
        1 => format!("{}", start + 1),
        _ => format!("{},{count}", start + 1),
    }
}

fn line(sign: char, l: &str) -> String {
    if l.ends_with('\n') {
        format!("{sign}{l}")
    } else {
        format!("{sign}{l}\n\\ No newline at end of file\n")
    }
}

/// Byte offset where each line of `text` starts.
fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect()
}

/// The old line index just past a region.
fn lines_end(r: &Region, line_of: &impl Fn(usize) -> usize) -> usize {
    if r.span.is_empty() {
        line_of(r.span.start)
    } else {
        line_of(r.span.end - 1) + 1
    }
}

/// The edits widened to whole lines and grouped where they share a line.
fn regions(old: &str, edits: &[(Range<usize>, String)]) -> Vec<Region> {
    let line_start = |p: usize| old[..p].rfind('\n').map_or(0, |i| i + 1);
    let line_end = |p: usize| old[p..].find('\n').map_or(old.len(), |i| p + i + 1);
    let at_line_start = |p: usize| p == 0 || old.as_bytes()[p - 1] == b'\n';
    let mut out: Vec<Region> = Vec::new();
    let mut k = 0;
    while k < edits.len() {
        let first = k;
        let a = line_start(edits[k].0.start);
        let mut b = a;
        loop {
            // Take every edit that starts inside the region so far (or the first one).
            while k < edits.len() && (k == first || edits[k].0.start < b) {
                let (r, text) = &edits[k];
                let whole = at_line_start(r.end) && (r.start < r.end || text.ends_with('\n'));
                b = b.max(if whole { r.end } else { line_end(r.end) });
                k += 1;
            }
            // A replacement that leaves the last line open takes the next old line along.
            let mut new = String::new();
            let mut at = a;
            for (r, text) in &edits[first..k] {
                new.push_str(&old[at..r.start.max(at)]);
                new.push_str(text);
                at = r.end.max(at);
            }
            new.push_str(&old[at..b]);
            if !new.is_empty() && !new.ends_with('\n') && b < old.len() {
                b = line_end(b);
                continue;
            }
            out.push(trimmed(old, a..b, new));
            break;
        }
    }
    out.retain(|r| !(r.span.is_empty() && r.new.is_empty()));
    out
}

/// The region without the whole lines that its old and new text begin or end with alike (an
/// edit inside a line, e.g. a block inserted before `  <devices>` on that line, keeps the line).
fn trimmed(old: &str, span: Range<usize>, new: String) -> Region {
    let o: Vec<&str> = old[span.clone()].split_inclusive('\n').collect();
    let n: Vec<&str> = new.split_inclusive('\n').collect();
    let head = o.iter().zip(&n).take_while(|(x, y)| x == y).count();
    let tail = o[head..].iter().rev().zip(n[head..].iter().rev()).take_while(|(x, y)| x == y).count();
    let bytes = |lines: &[&str]| lines.iter().map(|l| l.len()).sum::<usize>();
    let (head_bytes, tail_old, tail_new) = (bytes(&o[..head]), bytes(&o[o.len() - tail..]), bytes(&n[n.len() - tail..]));
    Region {
        span: span.start + head_bytes..span.end - tail_old,
        new: new[head_bytes..new.len() - tail_new].to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(old: &str, edits: &[(Range<usize>, &str)]) -> String {
        let edits: Vec<(Range<usize>, String)> = edits.iter().map(|(r, t)| (r.clone(), t.to_string())).collect();
        unified(old, &edits, "f")
    }

    #[test]
    fn insertion_of_whole_lines() {
        assert_eq!(diff("a\nb\nc\n", &[(4..4, "x\n")]), "--- f\n+++ f (virt-perf-hook)\n@@ -1,3 +1,4 @@\n a\n b\n+x\n c\n");
        assert_eq!(diff("same", &[]), "");
    }

    #[test]
    fn edits_inside_lines_show_whole_lines() {
        let d = diff("a\n<p><e/></p>\nc\n", &[(9..9, "<f/>")]);
        assert_eq!(d, "--- f\n+++ f (virt-perf-hook)\n@@ -1,3 +1,3 @@\n a\n-<p><e/></p>\n+<p><e/><f/></p>\n c\n");
        let d = diff("a", &[(0..1, "b")]);
        assert_eq!(d, "--- f\n+++ f (virt-perf-hook)\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+b\n\\ No newline at end of file\n");
    }

    #[test]
    fn lines_an_edit_keeps_are_context() {
        // A block inserted before `  <d/>` on its own line: `  <d/>` is not shown as changed.
        let d = diff("a\n  <d/>\nz\n", &[(4..4, "<p/>\n  ")]);
        assert_eq!(d, "--- f\n+++ f (virt-perf-hook)\n@@ -1,3 +1,4 @@\n a\n+  <p/>\n   <d/>\n z\n");
        assert_eq!(diff("a\nb\n", &[(2..3, "b")]), "", "a replacement by the same text");
    }

    #[test]
    fn far_apart_edits_are_separate_hunks() {
        let old: String = (1..=20).map(|i| format!("l{i}\n")).collect();
        let at = |n: usize| old.match_indices('\n').nth(n - 2).map_or(0, |(i, _)| i + 1); // start of line n
        // Replace line 3, delete line 17.
        let d = diff(&old, &[(at(3)..at(4), "L3\n"), (at(17)..at(18), "")]);
        let hunks: Vec<&str> = d.lines().filter(|l| l.starts_with("@@")).collect();
        assert_eq!(hunks, ["@@ -1,6 +1,6 @@", "@@ -14,7 +14,6 @@"]);
        // Within 6 lines of each other: one hunk.
        let d = diff(&old, &[(at(3)..at(4), "L3\n"), (at(10)..at(11), "")]);
        let hunks: Vec<&str> = d.lines().filter(|l| l.starts_with("@@")).collect();
        assert_eq!(hunks, ["@@ -1,13 +1,12 @@"]);
    }

    #[test]
    fn pure_insertion_at_the_start_and_deletion_at_the_end() {
        assert_eq!(diff("a\nb\n", &[(0..0, "x\n")]), "--- f\n+++ f (virt-perf-hook)\n@@ -1,2 +1,3 @@\n+x\n a\n b\n");
        assert_eq!(diff("a\nb\n", &[(2..4, "")]), "--- f\n+++ f (virt-perf-hook)\n@@ -1,2 +1 @@\n a\n-b\n");
    }
}

#!/usr/bin/env bash
# Before/after: the hook passthrough (vs /bin/true) and the 8 KB filter rewrite (vs cat) of the
# work tree and of an older commit, both built as the packages ship them, timed in the same
# session in alternating rounds. Prints the table and writes its section of benches/results.md.
#
#   benches/compare.sh REV [ROUNDS]      # e.g. benches/compare.sh main; ROUNDS default 10
#
# Needs hyperfine and python3. REV is built in a temporary git worktree (target dir
# target/bench-before, kept for the next run); the inputs and config are benches/run.sh's, the
# commands its shell-less ones (hyperfine -N: `qemu vm prepare begin -` with stdin /dev/null,
# `filter FILE`). Without a shell: hyperfine subtracts a shell spawn it calibrates once per run,
# and on a shared VM that calibration alone moved sub-millisecond ratios by ±30 %.
# Each round is one hyperfine run per measure with the baseline, REV and the work tree, the
# order of the two builds swapped every round; a ratio is taken within one hyperfine run, so
# the drift of the VM between rounds cancels. Medians, not means: a sub-millisecond process on
# a shared VM has a long tail of preempted runs. The spread over rounds shows the noise.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
rev=${1:?usage: benches/compare.sh REV [ROUNDS]}
rounds=${2:-10}
work=$repo/benches/work-compare
for tool in hyperfine python3 git; do
  command -v "$tool" >/dev/null || { echo "compare: $tool missing"; exit 2; }
done
commit=$(git rev-parse --short "$rev^{commit}")

after=$(packaging/release-binary.sh)
src=$(mktemp -d)
trap 'git worktree remove --force "$src" 2>/dev/null || rm -rf "$src"' EXIT
git worktree add --quiet --detach "$src" "$commit"
before=$(CARGO_TARGET_DIR=$repo/target/bench-before "$src/packaging/release-binary.sh")
rm -rf "$work"
mkdir -p "$work"
cp "$before" "$work/before"
cp "$after" "$work/after"
python3 benches/gen.py "$work" >/dev/null
x8k=$work/domain-8k.xml

# The fake host root and pinned config of benches/run.sh.
root=$work/root
mkdir -p "$root"
export VIRT_PERF_HOOK_ROOT=$root VIRT_PERF_HOOK_CONFIG=$work/config.json
for b in before after; do
  n=$("$work/$b" filter "$x8k" 2>/dev/null | grep -o "<event " | wc -l)
  [ "$n" -eq 5 ] || { echo "compare: the $b build added $n events, not 5"; exit 1; }
done

echo "compare: $commit (before) vs the work tree (after), $rounds rounds"
for r in $(seq "$rounds"); do
  order=(before after)
  [ $((r % 2)) -eq 0 ] && order=(after before)
  pass=() rw=()
  for b in "${order[@]}"; do
    pass+=(-n "$b" "$work/$b qemu vm prepare begin -")
    rw+=(-n "$b" "$work/$b filter $x8k")
  done
  hyperfine -N --style none --export-json "$work/passthrough-$r.json" --warmup 50 --runs 400 \
    -n true /bin/true "${pass[@]}" >>"$work/hyperfine.log" 2>&1
  hyperfine -N --style none --export-json "$work/rewrite8k-$r.json" --warmup 30 --runs 400 \
    -n cat "cat $x8k" "${rw[@]}" >>"$work/hyperfine.log" 2>&1
  echo "compare: round $r of $rounds done"
done

python3 - "$work" "$rounds" "$commit" "$(git rev-parse --short HEAD)" "$(git status --porcelain -- src Cargo.toml Cargo.lock | wc -l)" <<'PY'
import json, os, platform, re, subprocess, sys, time
work, rounds, before_rev, head, dirty = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
def load(name, r):
    return {x["command"]: x["times"] for x in json.load(open(os.path.join(work, f"{name}-{r}.json")))["results"]}
def median(t):
    t = sorted(t)
    n = len(t)
    return (t[n // 2] + t[(n - 1) // 2]) / 2
rows = []
for name, base, what in (("passthrough", "true", "hook passthrough (`qemu vm prepare begin -`)"),
                         ("rewrite8k", "cat", "8 KB rewrite (`filter FILE`)")):
    runs = [load(name, r) for r in range(1, rounds + 1)]
    for b in ("before", "after"):
        ratios = [median(x[b]) / median(x[base]) for x in runs]
        ms = median([t for x in runs for t in x[b]]) * 1e3
        rows.append((f"{what}, {b}", f"{ms:.3f} ms", f"{median(ratios):.2f}× `{base}` ({min(ratios):.2f}–{max(ratios):.2f})"))
    d = [median(x["after"]) / median(x["before"]) - 1 for x in runs]
    rows.append((f"{what}, after / before", "—", f"{median(d) * 100:+.1f} % ({min(d) * 100:+.1f} to {max(d) * 100:+.1f})"))
    base_ms = median([t for x in runs for t in x[base]]) * 1e3
    rows.append((f"`{base}` in the same runs", f"{base_ms:.3f} ms", "—"))
head_row = ("measure", "median of all runs", f"ratio: median of {rounds} rounds (min–max)")
w = [max(len(r[i]) for r in rows + [head_row]) for i in range(3)]
line = lambda r: "| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |"
table = "\n".join([line(head_row), "|" + "|".join("-" * (x + 2) for x in w) + "|"] + [line(r) for r in rows])
print(table)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
hv = subprocess.run(["hyperfine", "--version"], capture_output=True, text=True).stdout.strip()
after = f"{head}" + (" with uncommitted changes to the sources" if dirty else "")
section = (f"<!-- compare.sh begin -->\n## Before/after (`benches/compare.sh`)\n\n"
           f"On {time.strftime('%Y-%m-%d', time.gmtime())}, {cpu}, {os.cpu_count()} CPUs, {platform.platform()}, {hv}: "
           f"before = {before_rev}, after = {after}, both built by `packaging/release-binary.sh`; {rounds} alternating "
           f"rounds of 400 runs per command without a shell (`hyperfine -N`); a round's ratio is of medians within one hyperfine run.\n\n"
           f"{table}\n<!-- compare.sh end -->\n")
out_md = os.path.join(os.path.dirname(work), "results.md")
text = open(out_md).read() if os.path.exists(out_md) else "# Benchmark results\n"
marker = "<!-- Sections written by other bench scripts follow; benches/run.sh keeps them. -->"
if "<!-- compare.sh begin -->" in text:
    text = re.sub(r"<!-- compare.sh begin -->.*?<!-- compare.sh end -->\n", lambda _: section, text, flags=re.S)
elif marker in text:
    text = text.replace(marker, marker + "\n\n" + section.rstrip("\n"), 1)
else:
    text = text.rstrip("\n") + f"\n\n{marker}\n\n" + section
open(out_md, "w").write(text)
print("\ncompare: wrote its section of benches/results.md")
PY

#!/usr/bin/env bash
# Sweeps at fleet scale (issue 12): `apply --all` and `status --all` over 100, 300 and 1000
# guests on a real libvirtd, the tool (one virsh process per phase) against the per-guest
# approach measured in the same run. Prints a table with PASS/FAIL per target and writes its
# section of benches/results.md.
#
#   sudo benches/sweep.sh [SIZES...]       # default: 100 300 1000; about 10 minutes
#
# Run by hand as root, not in CI: it starts its own libvirtd (and virtlogd) like the e2e test,
# under the same lock (/run/lock/virt-perf-hook-system-test.lock), refuses to run next to a
# libvirt daemon it did not start, defines the guests (shut-off TCG guests, <domain
# type='qemu'>, 64 MiB, no disk: they cost nothing to keep) and undefines all of them at the
# end, also when interrupted. Needs libvirt-daemon-system, libvirt-clients, qemu-system-x86,
# python3 and GNU time (/usr/bin/time).
#
# The per-guest baseline is a shell loop doing what the tool did before batching, one virsh
# process per call: `version --daemon` and the three lists, then per guest `dominfo`, `domname`,
# `dumpxml --inactive --security-info`, the rewrite (`virt-perf-hook filter` and `cmp`, a few ms)
# and, when the config changes, `define --file /dev/stdin`; for status the lists and one
# `dumpxml --inactive` per guest (no live XML: the guests are off). Its rewrite costs two short
# processes per guest that the old code did in-process, its status leaves out the old code's
# work after the dumps: both roughly even out against the baseline (< 10 % of its time).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
. benches/lib.sh
bench_lock sweep virsh libvirtd virtlogd python3 /usr/bin/time flock -- "$0" "$@"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100 300 1000)
uri=qemu:///system
work=$repo/benches/work-sweep
prefix=vph-sweep-

bench_no_daemon sweep

rm -rf "$work"
mkdir -p "$work/xml"
bin=$(packaging/release-binary.sh)
cfg=$work/config.json
# No version pin (the tool asks the daemon, as on a real host), the host probe on; only this
# bench's guests are selected, whatever else the host has defined.
printf '{"enabled_perf_events": ["page_faults", "cpu_clock"], "domains": {"include": ["%s*"]}}\n' "$prefix" >"$cfg"
chmod 0644 "$cfg"

cleanup() {
  set +e
  pgrep -x libvirtd >/dev/null && undefine_all
  bench_stop_libvirt
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs one command string per chunk of lines of FILE (each line one command).
batch() {
  split -l 300 "$1" "$work/chunk."
  for c in "$work"/chunk.*; do
    virsh -q -c "$uri" "$(tr '\n' ';' <"$c")" >/dev/null 2>>"$work/virsh-errors" || true
    rm -f "$c"
  done
}
undefine_all() {
  virsh -q -c "$uri" list --all --uuid --name 2>/dev/null | awk -v p="$prefix" '$2 ~ "^"p { print "undefine --domain " $1 }' >"$work/undef" || true
  [ -s "$work/undef" ] && batch "$work/undef"
  rm -f "$work/undef"
}
# The guests, without <perf>: defining them again resets them.
define_all() { # N
  : >"$work/defs"
  for f in "$work"/xml/*.xml; do echo "define --file $f" >>"$work/defs"; done
  batch "$work/defs"
}
make_guests() { # N
  rm -f "$work"/xml/*.xml
  for i in $(seq -w 1 "$1"); do
    printf "<domain type='qemu'><name>%s%s</name><uuid>5eeb0000-0000-4000-8000-%012d</uuid><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os><devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>\n" \
      "$prefix" "$i" "$((10#$i))" >"$work/xml/$i.xml"
  done
}

bench_start_libvirt "$uri"
undefine_all

# The per-guest approach (see the top).
per_guest_apply() { # dry|apply
  local v=(virsh -c "$uri") u name changed=0
  "${v[@]}" version --daemon >/dev/null
  local uuids
  uuids=$("${v[@]}" list --all --uuid)
  "${v[@]}" list --uuid >/dev/null
  "${v[@]}" list --transient --uuid >/dev/null
  for u in $uuids; do
    "${v[@]}" dominfo --domain "$u" >/dev/null
    name=$("${v[@]}" domname --domain "$u")
    case $name in "$prefix"*) ;; *) continue ;; esac
    "${v[@]}" dumpxml --inactive --security-info --domain "$u" >"$work/old.xml"
    "$bin" -q -c "$cfg" filter "$work/old.xml" >"$work/new.xml"
    cmp -s "$work/old.xml" "$work/new.xml" && continue
    changed=$((changed + 1))
    [ "$1" = apply ] && "${v[@]}" define --file /dev/stdin <"$work/new.xml" >/dev/null
  done
  echo "$changed" >"$work/per-guest-changed"
}
per_guest_status() {
  local v=(virsh -c "$uri") n
  "${v[@]}" version --daemon >/dev/null
  "${v[@]}" list --name >/dev/null
  for n in $("${v[@]}" list --all --name); do
    "${v[@]}" dumpxml --inactive --domain "$n" >/dev/null
  done
}
export -f per_guest_apply per_guest_status
export uri bin cfg work prefix

results=$work/results.tsv
: >"$results"
# measure SIZE WHAT APPROACH CMD...: one timed run, seconds and peak RSS (KB) to the results.
measure() {
  local size=$1 what=$2 approach=$3
  shift 3
  /usr/bin/time -o "$work/time" -f "%e %M" "$@" >"$work/out" 2>"$work/err" || true
  read -r secs rss <"$work/time"
  printf '%s\t%s\t%s\t%s\t%s\n' "$size" "$what" "$approach" "$secs" "$rss" >>"$results"
  echo "sweep: $size guests, $what, $approach: $secs s, $rss KB" >&2
}
# check_all_have_events N WHAT: every guest of this bench carries the events (WHAT did its work).
check_all_have_events() {
  local n
  n=$(virsh -q -c "$uri" "$(virsh -q -c "$uri" list --all --uuid --name | awk -v p="$prefix" '$2 ~ "^"p { printf "dumpxml --inactive --domain %s;", $1 }')" | grep -c "<event name='page_faults' enabled='yes'/>")
  [ "$n" = "$1" ] || { echo "sweep: $n of $1 guests have the events after $2"; exit 1; }
}

for n in "${sizes[@]}"; do
  make_guests "$n"
  define_all
  for round in 1 2 3; do
    measure "$n" dry-run tool "$bin" -c "$cfg" apply --connect "$uri" --all --dry-run
    grep -q "would change" "$work/out" || { cat "$work/err"; exit 1; }
    measure "$n" status tool "$bin" -c "$cfg" status --connect "$uri" --all
    measure "$n" first tool "$bin" -c "$cfg" apply --connect "$uri" --all
    [ "$(grep -c " changed " "$work/out")" = "$n" ] || { echo "sweep: apply changed $(grep -c " changed " "$work/out") of $n"; cat "$work/err"; exit 1; }
    check_all_have_events "$n" "apply --all"
    measure "$n" no-op tool "$bin" -c "$cfg" apply --connect "$uri" --all
    [ "$(grep -c " ok " "$work/out")" = "$n" ] || { echo "sweep: no-op apply: $(grep -c " ok " "$work/out") ok of $n"; exit 1; }
    define_all
  done
  measure "$n" dry-run per-guest bash -c 'per_guest_apply dry'
  measure "$n" status per-guest bash -c per_guest_status
  measure "$n" first per-guest bash -c 'per_guest_apply apply'
  [ "$(cat "$work/per-guest-changed")" = "$n" ] || { echo "sweep: per-guest apply changed $(cat "$work/per-guest-changed") of $n"; exit 1; }
  check_all_have_events "$n" "the per-guest apply"
  measure "$n" no-op per-guest bash -c 'per_guest_apply apply'
  [ "$(cat "$work/per-guest-changed")" = 0 ] || { echo "sweep: per-guest no-op changed something"; exit 1; }
  undefine_all
done
[ -s "$work/virsh-errors" ] && { echo "sweep: virsh reported errors while preparing guests:"; head "$work/virsh-errors"; }

python3 - "$results" "$repo/benches/results.md" "$(virsh --version)" <<'PY'
import os, platform, re, statistics, sys, time
results, out_md, libvirt = sys.argv[1], sys.argv[2], sys.argv[3]
runs = {}
for line in open(results):
    size, what, approach, secs, rss = line.split("\t")
    runs.setdefault((int(size), what, approach), []).append((float(secs), int(rss)))
sizes = sorted({k[0] for k in runs})
whats = [("no-op", "no-op `apply --all`", 2.0), ("first", "first `apply --all` (every guest changed)", 5.0),
         ("dry-run", "`apply --all --dry-run`", None), ("status", "`status --all`", 3.0)]
med = lambda k: statistics.median(s for s, _ in runs[k])
rows, fails = [], 0
def verdict(ok):
    global fails
    fails += 0 if ok else 1
    return "PASS" if ok else "FAIL"
for what, label, target in whats:
    for n in sizes:
        t, b = med((n, what, "tool")), med((n, what, "per-guest"))
        ratio = b / t
        big = n == max(sizes)
        goal, ok = [], True
        if big and target is not None:
            goal.append(f"≤ {target:g} s")
            ok &= t <= target
        if big:
            goal.append("≥ 15×")
            ok &= ratio >= 15
        rows.append((label, str(n), f"{t:.2f} s", f"{t / n * 1e3:.2f} ms", f"{b:.1f} s", f"{b / n * 1e3:.1f} ms",
                     f"{ratio:.0f}×", ", ".join(goal) or "—", verdict(ok) if goal else "—"))
# Linear: the time per guest does not grow from the middle size to the largest.
lin = []
for what, label, _ in whats:
    if len(sizes) >= 2:
        a, b = sizes[-2], sizes[-1]
        pa, pb = med((a, what, "tool")) / a, med((b, what, "tool")) / b
        lin.append((f"{label}: time per guest at {b} / at {a}", f"{pb / pa:.2f}", "≤ 1.25 (linear)", verdict(pb / pa <= 1.25)))
rss = max(r for k, v in runs.items() if k[2] == "tool" for _, r in v)
lin.append(("peak RSS of the tool with the virsh it runs (GNU time %M), any run", f"{rss / 1024:.1f} MB", "< 50 MB", verdict(rss < 50 * 1024)))
head = ("measure", "guests", "tool", "per guest", "per-guest approach", "per guest", "ratio", "target", "verdict")
def table(head, rows):
    w = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |"
    return "\n".join([line(head), "|" + "|".join("-" * (x + 2) for x in w) + "|"] + [line(r) for r in rows])
t1, t2 = table(head, rows), table(("measure", "result", "target", "verdict"), lin)
print(t1 + "\n\n" + t2)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
section = (f"<!-- sweep.sh begin -->\n## Sweeps at fleet scale (`benches/sweep.sh`)\n\n"
           f"On {time.strftime('%Y-%m-%d', time.gmtime())}, {cpu}, {os.cpu_count()} CPUs, {platform.platform()}, libvirt {libvirt} (libvirtd, qemu:///system), "
           f"guests shut off. Tool: median of 3 runs; per-guest approach (one virsh process per call, "
           f"a shell loop): one run.\n\n{t1}\n\n{t2}\n<!-- sweep.sh end -->\n")
text = open(out_md).read() if os.path.exists(out_md) else "# Benchmark results\n"
if "<!-- sweep.sh begin -->" in text:
    text = re.sub(r"<!-- sweep.sh begin -->.*?<!-- sweep.sh end -->\n", lambda _: section, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + section
open(out_md, "w").write(text)
print(f"\nsweep: {fails} target(s) failed; wrote benches/results.md")
sys.exit(1 if fails else 0)
PY

#!/usr/bin/env bash
# How long a guest defined with plain `virsh define` goes without its events while `watch` runs:
# the time from `virsh define` returning to the configured events being in
# `virsh dumpxml --inactive` (polled every 10 ms), for N guests (default 50) defined one by one.
# Prints p50, p90, p99 and the maximum (target: p99 ≤ 1 s) and writes them to the "watch latency"
# section of benches/results.md. By hand, not in CI:
#
#   sudo benches/watch-latency.sh [N]
#
# Needs root and libvirt with QEMU (apt-get install libvirt-daemon-system libvirt-clients
# qemu-system-x86). Uses the running libvirt daemon on qemu:///system, or starts libvirtd (and
# virtlogd) for the run and stops it afterwards. Holds the lock the system tests hold
# (/run/lock/virt-perf-hook-system-test.lock). Times the binary the packages ship
# (packaging/release-binary.sh). Guests are named vph-bench-watch-N, never started, and
# undefined at the end, also on failure; a cache directory it creates is removed again.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
n=${1:-50}
uri=qemu:///system
[ "$(id -u)" = 0 ] || { echo "watch-latency: needs root (it defines guests on $uri)" >&2; exit 2; }
for tool in virsh libvirtd virtlogd flock; do
  command -v "$tool" >/dev/null || { echo "watch-latency: $tool missing (apt-get install libvirt-daemon-system libvirt-clients)" >&2; exit 2; }
done
[ -x /usr/bin/qemu-system-x86_64 ] || { echo "watch-latency: qemu-system-x86_64 missing (apt-get install qemu-system-x86)" >&2; exit 2; }

bin=$(packaging/release-binary.sh)
lock=/run/lock/virt-perf-hook-system-test.lock
[ -d /run/lock ] || lock=/tmp/virt-perf-hook-system-test.lock
exec 9>"$lock"
flock -w 600 9 || { echo "watch-latency: could not take $lock within 600 s" >&2; exit 2; }

work=$(mktemp -d)
chmod 0755 "$work"
started_libvirtd=0 started_virtlogd=0 watcher=
# The watcher caches the host probe there, as the packaged service does; gone again if it was.
cache=/var/cache/libvirt/virt-perf-hook
cache_existed=0; [ -e "$cache" ] && cache_existed=1
cleanup() {
  [ -n "$watcher" ] && kill -TERM "$watcher" 2>/dev/null && wait "$watcher" 2>/dev/null
  for i in $(seq "$n"); do virsh -q -c "$uri" undefine "vph-bench-watch-$i" >/dev/null 2>&1 || true; done
  [ "$started_libvirtd" = 1 ] && kill "$(cat /run/libvirtd.pid)" 2>/dev/null
  [ "$started_virtlogd" = 1 ] && kill "$(cat /run/virtlogd.pid)" 2>/dev/null
  [ "$cache_existed" = 1 ] || rm -rf "$cache"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

if ! virsh -q -c "$uri" version >/dev/null 2>&1; then
  if pgrep -x libvirtd >/dev/null || pgrep -x virtqemud >/dev/null; then
    echo "watch-latency: a libvirt daemon runs but $uri does not answer" >&2; exit 2
  fi
  pgrep -x virtlogd >/dev/null || { virtlogd -d; started_virtlogd=1; }
  libvirtd -d
  started_libvirtd=1
  for _ in $(seq 150); do virsh -q -c "$uri" version >/dev/null 2>&1 && break; sleep 0.2; done
  virsh -q -c "$uri" version >/dev/null || { echo "watch-latency: libvirtd did not come up" >&2; exit 1; }
fi
for i in $(seq "$n"); do
  if virsh -q -c "$uri" dominfo "vph-bench-watch-$i" >/dev/null 2>&1; then
    echo "watch-latency: vph-bench-watch-$i is already defined; undefine it first" >&2; exit 2
  fi
done

printf '{"enabled_perf_events": ["page_faults", "task_clock"]}\n' >"$work/config.json"
chmod 0644 "$work/config.json"
"$bin" --config "$work/config.json" watch 2>"$work/watch.log" &
watcher=$!
for _ in $(seq 300); do grep -q "swept all guests" "$work/watch.log" && break; sleep 0.1; done
grep -q "swept all guests" "$work/watch.log" || { cat "$work/watch.log" >&2; echo "watch-latency: watch did not start" >&2; exit 1; }

want="<event name='task_clock' enabled='yes'/>"
now_us() { local t=${EPOCHREALTIME/./}; echo "$t"; }
: >"$work/latency"
for i in $(seq "$n"); do
  name=vph-bench-watch-$i
  cat >"$work/g.xml" <<EOF
<domain type='qemu'><name>$name</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
<devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>
EOF
  virsh -q -c "$uri" define "$work/g.xml" >/dev/null
  t0=$(now_us)
  while :; do
    virsh -q -c "$uri" dumpxml --inactive "$name" | grep -qF "$want" && break
    if [ $(( $(now_us) - t0 )) -gt 10000000 ]; then
      cat "$work/watch.log" >&2; echo "watch-latency: $name not fixed within 10 s" >&2; exit 1
    fi
    sleep 0.01
  done
  echo $(( $(now_us) - t0 )) >>"$work/latency"
done

# One poll's cost (a virsh dumpxml), the resolution of the measure.
t0=$(now_us)
for _ in 1 2 3 4 5 6 7 8 9 10; do virsh -q -c "$uri" dumpxml --inactive vph-bench-watch-1 >/dev/null; done
poll_ms=$(( ($(now_us) - t0) / 10000 ))
changes=$(grep -c "domain 'vph-bench-watch-[0-9]*': changed" "$work/watch.log" || true)
libvirt=$(virsh -q -c "$uri" version --daemon | sed -n 's/^Running against daemon: *//p')

summary=$(sort -n "$work/latency" | awk -v n="$n" '
  { v[NR] = $1 / 1000 }
  function at(p,  k) { k = int(p * n + 0.999999); if (k < 1) k = 1; return v[k] }
  END { printf "%d %.0f %.0f %.0f %.0f", NR, at(0.5), at(0.9), at(0.99), v[NR] }')
read -r count p50 p90 p99 max <<<"$summary"
verdict=PASS; [ "$p99" -le 1000 ] || verdict=FAIL
echo "watch-latency: $count guests: p50 $p50 ms, p90 $p90 ms, p99 $p99 ms, max $max ms (target p99 ≤ 1000 ms: $verdict)"
echo "watch-latency: one poll (virsh dumpxml) takes $poll_ms ms; the watcher logged $changes changes for $n guests"

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
section="## watch latency

\`benches/watch-latency.sh\` on $cpu, $(nproc) CPUs, libvirt $libvirt ($(date -u +%Y-%m-%d)): $count guests defined one
by one with plain \`virsh define\` while \`watch\` runs; the time from \`virsh define\` returning to
the events being in \`virsh dumpxml --inactive\`, polled every 10 ms (one poll, a \`virsh dumpxml\`,
takes $poll_ms ms). The watcher logged $changes changes, one per guest.

| p50 | p90 | p99 | max | target | verdict |
|---|---|---|---|---|---|
| $p50 ms | $p90 ms | $p99 ms | $max ms | p99 ≤ 1 s | $verdict |"
results=benches/results.md
marker='<!-- Sections written by other bench scripts follow; benches/run.sh keeps them. -->'
python3 - "$results" "$marker" "$section" <<'PY'
import re, sys
path, marker, section = sys.argv[1:]
text = open(path).read() if __import__("os").path.exists(path) else "# Benchmark results\n"
if marker not in text:
    text = text.rstrip("\n") + "\n\n" + marker + "\n"
head, tail = text.split(marker, 1)
# Replace this script's section, keep the others.
tail = re.sub(r"\n## watch latency\n.*?(?=\n## |\Z)", "", tail, flags=re.S)
open(path, "w").write(head + marker + tail.rstrip("\n") + "\n\n" + section + "\n")
PY
echo "watch-latency: wrote the watch latency section of $results"
[ "$verdict" = PASS ]

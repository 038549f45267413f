#!/usr/bin/env bash
# The exporter and top at fleet scale (issue 23): with 300 guests defined and 20 running on a
# real libvirtd, 200 scrapes of /metrics one after another (latency p50/p99), the exporter's
# resident memory, its CPU per scrape (its own and its virsh children's), and the CPU of one
# `top` refresh. Prints a table with PASS/FAIL per target and writes benches/results-exporter.md.
#
#   sudo benches/exporter.sh            # about 3 minutes after the release build
#
# Run by hand as root, not in CI: it starts its own libvirtd (and virtlogd) under the lock the
# tests take (/run/lock/virt-perf-hook-system-test.lock), refuses to run next to a libvirt daemon
# it did not start, and undefines its guests at the end, also when interrupted. The running
# guests are diskless TCG guests (64 MiB): their firmware finds nothing to boot and idles, so
# the numbers are the tool's, not a busy host's. Each has page_faults, cpu_clock and task_clock
# enabled at launch. Needs libvirt-daemon-system, libvirt-clients, qemu-system-x86, curl and
# GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
. benches/lib.sh
if [ -z "${VPH_BENCH_LOCKED:-}" ]; then
  export VPH_BENCH_BIN
  VPH_BENCH_BIN=$(packaging/release-binary.sh)
fi
bench_lock "exporter bench" virsh libvirtd virtlogd curl python3 /usr/bin/time flock -- "$0" "$@"
bin=$VPH_BENCH_BIN
uri=qemu:///system
defined=${VPH_BENCH_DEFINED:-300}
running=${VPH_BENCH_RUNNING:-20}
scrapes=200
work=$repo/benches/work-exporter
prefix=vph-exp-bench-

bench_no_daemon "exporter bench"
rm -rf "$work"
mkdir -p "$work"
exporter_pid=
cleanup() {
  set +e
  [ -n "$exporter_pid" ] && kill "$exporter_pid" 2>/dev/null
  if pgrep -x libvirtd >/dev/null; then
    virsh -q -c "$uri" list --all --name | grep "^$prefix" | while read -r n; do
      echo "destroy --domain $n; undefine --domain $n;"; done >"$work/undef"
    [ -s "$work/undef" ] && virsh -q -c "$uri" "$(tr -d '\n' <"$work/undef")" >/dev/null 2>&1
  fi
  bench_stop_libvirt
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench_start_libvirt "$uri"

perf="<perf><event name='page_faults' enabled='yes'/><event name='cpu_clock' enabled='yes'/><event name='task_clock' enabled='yes'/></perf>"
cmds=
for i in $(seq -w 1 "$defined"); do
  printf "<domain type='qemu'><name>%s%s</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>%s<devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>\n" \
    "$prefix" "$i" "$perf" >"$work/$i.xml"
  cmds="${cmds}define --file $work/$i.xml;"
  if [ $((10#$i)) -le "$running" ]; then cmds="${cmds}start --domain $prefix$i;"; fi
  # One virsh per 50 guests (see the command-string limits in src/cmd/batch.rs).
  if [ $((10#$i % 50)) = 0 ] || [ $((10#$i)) = "$defined" ]; then
    virsh -q -c "$uri" "$cmds" >/dev/null; cmds=
  fi
done
echo "exporter bench: $(virsh -q -c "$uri" list --all --name | grep -c "^$prefix") defined, $(virsh -q -c "$uri" list --name | grep -c "^$prefix") running" >&2

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" -q exporter -C "$uri" --listen "127.0.0.1:$port" & exporter_pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/metrics" >/dev/null && break; sleep 0.1; done
guests=$(curl -sf "http://127.0.0.1:$port/metrics" | sed -n 's/^virt_perf_hook_guests //p')
[ "$guests" = "$running" ] || { echo "exporter bench: the exporter sees $guests running guests, not $running"; exit 1; }
# utime+stime+cutime+cstime of the exporter (its waited-for virsh children included), in ticks.
cpu_ticks() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$exporter_pid/stat"; }
hz=$(getconf CLK_TCK)
before=$(cpu_ticks)
for _ in $(seq "$scrapes"); do
  curl -sf -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port/metrics" >>"$work/latency"
done
after=$(cpu_ticks)
rss=$(awk '/^VmHWM/ { print $2 }' "/proc/$exporter_pid/status")
cpu_ms=$(awk -v a="$before" -v b="$after" -v n="$scrapes" -v hz="$hz" 'BEGIN { printf "%.1f", (b - a) * 1000 / hz / n }')
read -r p50 p99 < <(sort -n "$work/latency" | awk '{ v[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; printf "%.1f %.1f\n", v[int((NR + 1) / 2)] * 1000, v[i] * 1000 }')
# top: two samples (start and end of one interval) and the table; its CPU bounds one refresh.
/usr/bin/time -o "$work/top-time" -f "%U %S" "$bin" -q top -C "$uri" --once --json --interval 0.2 >"$work/top.json"
top_ms=$(awk '{ printf "%.0f", ($1 + $2) * 1000 }' "$work/top-time")
rows=$(grep -c '"domain"' "$work/top.json")
[ "$rows" = "$running" ] || { echo "exporter bench: top showed $rows guests, not $running"; exit 1; }

verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t) ? "PASS" : "FAIL" }'; }
table="| measure ($defined defined, $running running) | value | target | |
|---|---|---|---|
| scrape latency p50 ($scrapes scrapes) | $p50 ms | | |
| scrape latency p99 | $p99 ms | ≤ 150 ms | $(verdict "$p99" 150) |
| exporter peak RSS (VmHWM) | $((rss / 1024)).$(( (rss % 1024) * 10 / 1024 )) MB | ≤ 15 MB | $(verdict "$rss" $((15 * 1024))) |
| CPU per scrape (exporter + virsh) | $cpu_ms ms | printed | |
| top --once (two samples + table), CPU | $top_ms ms | one refresh ≤ 100 ms | $(verdict "$top_ms" 100) |"
echo "$table"
{
  echo "# Exporter and top (benches/exporter.sh)"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) CPUs, $(virsh --version | sed 's/^/libvirt /'), release binary."
  echo
  echo "$table"
} >"$repo/benches/results-exporter.md"
! grep -q FAIL <<<"$table"

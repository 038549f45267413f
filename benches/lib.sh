# Sourced by the benches that run a libvirtd of their own (sweep.sh, exporter.sh): the lock the
# system tests hold, and starting and stopping the daemons. NAME prefixes every message.

bench_lock=/run/lock/virt-perf-hook-system-test.lock
[ -d /run/lock ] || bench_lock=/tmp/virt-perf-hook-system-test.lock

# bench_lock NAME TOOL... -- SCRIPT ARGS...: unless already under the lock, checks for root and
# the tools, then runs the script again holding the lock (VPH_BENCH_LOCKED=1 in its environment).
bench_lock() {
  local name=$1
  shift
  [ -z "${VPH_BENCH_LOCKED:-}" ] || return 0
  [ "$(id -u)" = 0 ] || { echo "$name: run as root (it starts libvirtd)"; exit 2; }
  while [ "$1" != -- ]; do
    command -v "$1" >/dev/null || { echo "$name: $1 missing"; exit 2; }
    shift
  done
  shift
  echo "$name: waiting for $bench_lock" >&2
  exec env VPH_BENCH_LOCKED=1 flock "$bench_lock" "$@"
}

# bench_no_daemon NAME: a daemon another test left behind may take a moment to go (the lock is
# ours now); one that stays is not ours to stop.
bench_no_daemon() {
  for _ in $(seq 30); do pgrep -x libvirtd >/dev/null || pgrep -x virtqemud >/dev/null || break; sleep 1; done
  if pgrep -x libvirtd >/dev/null || pgrep -x virtqemud >/dev/null; then
    echo "$1: a libvirt daemon is already running; stop it first"; exit 1
  fi
}

# bench_start_libvirt URI: virtlogd (unless running: then bench_started_virtlogd stays empty) and
# libvirtd, until it answers.
bench_started_virtlogd=
bench_start_libvirt() {
  # A usable /dev/kvm spares libvirt a capability re-probe per call (see tests/cli/common.rs).
  [ -e /dev/kvm ] && { chgrp kvm /dev/kvm; chmod 0660 /dev/kvm; } 2>/dev/null || true
  if ! pgrep -x virtlogd >/dev/null; then virtlogd -d; bench_started_virtlogd=1; fi
  libvirtd -d
  for _ in $(seq 150); do virsh -c "$1" version >/dev/null 2>&1 && break; sleep 0.2; done
}

# bench_stop_libvirt: libvirtd, and virtlogd when bench_start_libvirt started it.
bench_stop_libvirt() {
  if pgrep -x libvirtd >/dev/null; then
    kill "$(cat /run/libvirtd.pid)" 2>/dev/null
    for _ in $(seq 50); do pgrep -x libvirtd >/dev/null || break; sleep 0.2; done
  fi
  [ -n "$bench_started_virtlogd" ] && kill "$(cat /run/virtlogd.pid)" 2>/dev/null
}

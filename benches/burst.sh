#!/bin/sh
# Burst latency of `watch`: 200 guests defined by a script (one plain `virsh define` after
# another) on a real libvirtd started for the run; prints define-to-fixed p50/p99 and how long
# after the last define every guest had its events (target: all within 2 s). Root only. It runs
# tests/cli/race.rs's burst test, which takes the shared system-test lock, owns the daemon and
# cleans up after itself.
set -eu
cd "$(dirname "$0")/.."
VPH_SYSTEM_TESTS=1 VPH_NO_SKIP=1 cargo test --test cli race::watch_fixes_a_burst_of_200_within_2s -- --nocapture 2>&1 |
  grep -E '^burst:|test result'

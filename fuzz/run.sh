#!/usr/bin/env bash
# Runs each fuzz target for a bounded time; fails (non-zero) on any crash.
#
#   fuzz/run.sh [SECONDS]      # default 30 s per target
#
# Needs only the stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the sanitizer flags.
# Installs cargo-fuzz when missing. New corpus entries go to fuzz/target/corpus/<target>
# (not committed); the seeds in fuzz/corpus/<target>/seed-* are read, never written.
# A crash leaves its input in fuzz/artifacts/<target>/; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/crash-…
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-30}"
targets=(rewrite config resctrl)
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Build once up front so the time budget below is all fuzzing.
cargo fuzz build 2>&1 | tail -n 3 || { echo "fuzz: build failed"; exit 1; }

status=0
for t in "${targets[@]}"; do
  mkdir -p "target/corpus/$t" "artifacts/$t"
  log="target/fuzz-$t.log"
  echo "fuzz: $t for ${secs}s (log: fuzz/$log)"
  # The rewrite is bounded by the 16 MiB cap; inputs up to 64 KiB are plenty for coverage.
  if cargo fuzz run "$t" "target/corpus/$t" "corpus/$t" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -timeout=10 \
      -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^(Done|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb))' "$log" | sed 's/^/  /'
  else
    echo "fuzz: $t FAILED (input in fuzz/artifacts/$t/):"
    grep -m1 -A25 -E 'panicked|ERROR: libFuzzer|ERROR: AddressSanitizer' "$log" || tail -n 40 "$log"
    status=1
  fi
done
[ "$status" -eq 0 ] && echo "fuzz: all targets ran ${secs}s each without a crash"
exit "$status"

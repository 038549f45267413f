#!/bin/sh
# Builds the release binary as it ships and prints its path on stdout (build output on stderr).
#
# glibc is linked statically: the hook starts for every lifecycle event of every guest, and a
# static binary starts as fast as /bin/true (0.6 ms) where the dynamically linked one takes
# 0.85 ms, mostly in the loader (README "Performance"). The binary uses no NSS or dlopen, which
# is what static glibc cannot do. `--target` keeps the flag off build scripts and proc-macros,
# which cannot be linked statically.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cargo=${CARGO:-cargo}  # cargo test sets CARGO
host=$(rustc -vV | sed -n 's/^host: //p')
[ -n "$host" ] || { echo "release-binary.sh: cannot tell the host target from 'rustc -vV'" >&2; exit 1; }
(cd "$top" && RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    "$cargo" build --release --quiet --target "$host") >&2
# target/ unless CARGO_TARGET_DIR or a cargo config moves it.
target_dir=$(cd "$top" && "$cargo" metadata --format-version 1 --no-deps \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
echo "${target_dir:-$top/target}/$host/release/virt-perf-hook"

# Shared helpers for packaging/test-deb.sh and packaging/test-rpm.sh (sourced, not run).
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
name=$(basename "$0")
failures=0

# skip REASON: exit 0 saying why the test did not run; with VPH_NO_SKIP=1 (CI) a skip is a failure.
skip() {
    if [ "${VPH_NO_SKIP:-}" = 1 ]; then echo "FAIL $name: would skip, but VPH_NO_SKIP=1 is set: $*" >&2; exit 1; fi
    echo "SKIP $name: $*"; exit 0
}
note() { echo "$name: $*"; }
fail() { echo "FAIL $name: $*" >&2; failures=$((failures + 1)); }
# check DESCRIPTION COMMAND...: runs COMMAND, counts a failure when it fails.
check() {
    what=$1; shift
    if "$@"; then echo "ok   $what"; else fail "$what"; fi
}
# same ACTUAL EXPECTED DESCRIPTION
same() {
    if [ "$1" = "$2" ]; then echo "ok   $3"; else fail "$3: got '$1', want '$2'"; fi
}
# has TEXT FIXED-STRING DESCRIPTION / lacks ...: whether TEXT contains a line with the string.
has() {
    if printf '%s\n' "$1" | grep -qF -- "$2"; then echo "ok   $3"; else fail "$3: no '$2' in the output above"; fi
}
lacks() {
    if printf '%s\n' "$1" | grep -qF -- "$2"; then fail "$3: '$2' is there"; else echo "ok   $3"; fi
}
# The script's argument: --no-build, or the package file to test (built already, e.g. by
# tests/cli/package.rs, which builds once for both scripts).
case "${1:-}" in
    --no-build) no_build=1 ;;
    *.deb|*.rpm) no_build=1; package_file=$1 ;;
esac
# The package built by build.sh for FORMAT (deb|rpm): the file given, else the newest one with
# --no-build, else built now.
package() {
    if [ -n "${package_file:-}" ]; then
        echo "$package_file"
    elif [ "${no_build:-}" = 1 ]; then
        ls -t "$top"/target/packages/*."$1" 2>/dev/null | head -n 1
    else
        "$here/build.sh" "$1" | tail -n 1
    fi
}
finish() {
    if [ "$failures" -gt 0 ]; then echo "FAIL $name: $failures check(s) failed" >&2; exit 1; fi
    echo "PASS $name"
}

#!/bin/sh
# Builds the .deb (packaging/build.sh deb), lints it, installs it on this machine, checks the
# installed files and the program, then removes and purges it, checking what each step leaves.
#     packaging/test-deb.sh [--no-build | FILE.deb]   (--no-build: the newest target/packages/*.deb)
# Run as root (CI does). Skips (exit 0, printing why; exit 1 with VPH_NO_SKIP=1) when not root,
# without dpkg, dpkg-dev or lintian, or when the package, its binary or its hook entries are
# already on this machine (it never touches an installation it did not make). Whatever happens,
# it leaves the package purged (trap).
#
# Other tests that install into /etc/libvirt/hooks or /usr/bin hold the same lock:
#     flock /run/lock/virt-perf-hook-system-test.lock ...
set -u
. "$(dirname "$0")/test-lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root (it installs the package with dpkg)"
for tool in dpkg dpkg-deb; do
    command -v "$tool" >/dev/null 2>&1 || skip "$tool not found (not a Debian-based system)"
done
[ "${no_build:-}" = 1 ] || command -v readelf >/dev/null 2>&1 || skip "readelf not found (apt-get install binutils)"
command -v lintian >/dev/null 2>&1 || skip "lintian not found (apt-get install lintian)"

# One system test at a time: the hook end-to-end test also installs into /etc/libvirt/hooks.
lock=/run/lock/virt-perf-hook-system-test.lock
[ -d /run/lock ] || lock=/tmp/virt-perf-hook-system-test.lock
# The test suite takes it before running this script and says so (VPH_SYSTEM_FLOCK_HELD=1):
# taking it again here, on another open file, would wait for ourselves.
if [ "${VPH_SYSTEM_FLOCK_HELD:-}" != 1 ]; then
    command -v flock >/dev/null 2>&1 || { echo "FAIL $name: flock not found (apt-get install util-linux)" >&2; exit 1; }
    exec 9>"$lock"
    flock -w 1800 9 || { echo "FAIL $name: could not take $lock within 1800 s (see fuser -v $lock)" >&2; exit 1; }
fi

entries="/etc/libvirt/hooks/qemu.d/virt-perf-hook /etc/libvirt/hooks/daemon.d/virt-perf-hook"
if dpkg-query -W -f '${db:Status-Status}' virt-perf-hook 2>/dev/null | grep -qv '^not-installed$'; then
    skip "virt-perf-hook is already installed here; not touching it"
fi
for f in /usr/bin/virt-perf-hook /etc/virt-perf-hook $entries /var/cache/libvirt/virt-perf-hook /var/cache/virt-perf-hook; do
    if [ -e "$f" ] || [ -L "$f" ]; then skip "$f exists (a manual install or another test); not touching it"; fi
done
# dpkg removes the package's directories qemu.d/ and daemon.d/ on remove when they are empty, even
# if they were there before; cleanup puts them back.
dirs_before=""
for d in /etc/libvirt/hooks /etc/libvirt/hooks/qemu.d /etc/libvirt/hooks/daemon.d /var/cache/libvirt; do [ -d "$d" ] && dirs_before="$dirs_before $d"; done

scratch=$(mktemp -d)
cleanup() {
    if dpkg-query -W -f '${db:Status-Status}' virt-perf-hook 2>/dev/null | grep -qv '^not-installed$'; then
        echo "$name: cleanup: purging virt-perf-hook"
        dpkg -P virt-perf-hook >/dev/null 2>&1 || echo "$name: cleanup: dpkg -P failed" >&2
    fi
    # The symlink planted by the install check, if the install never replaced it.
    [ -L /var/cache/libvirt/virt-perf-hook ] && rm -f /var/cache/libvirt/virt-perf-hook
    rm -rf "$scratch"
    # Give back the (empty) hook directories that were here before; drop libvirt's cache dir if
    # the package created it (postinst does when libvirt is not installed).
    for d in $dirs_before; do [ -d "$d" ] || install -d -m 0755 "$d"; done
    case " $dirs_before " in *" /var/cache/libvirt "*) ;; *) rmdir /var/cache/libvirt 2>/dev/null ;; esac
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

mode() { stat -c '%a %U:%G' "$1" 2>/dev/null || echo missing; }
status() { dpkg-query -W -f '${Status}' virt-perf-hook 2>/dev/null || echo "not-installed"; }
vph() { env -u VIRT_PERF_HOOK_CONFIG -u VIRT_PERF_HOOK_ROOT -u RUST_LOG /usr/bin/virt-perf-hook "$@"; }

deb=$(package deb) && [ -f "$deb" ] || { echo "FAIL $name: no .deb built" >&2; exit 1; }
note "testing $deb"

# --- lintian -------------------------------------------------------------------------------
# Errors fail the test; warnings are shown. initial-upload-closes-no-bugs is about the Debian
# archive (an ITP bug), which this package is not uploaded to.
if lintian --fail-on error --suppress-tags initial-upload-closes-no-bugs "$deb"; then
    echo "ok   lintian: no errors"
else
    fail "lintian reports errors"
fi

# --- install -------------------------------------------------------------------------------
# A symlink planted where the cache directory goes: the install must replace it, never chmod or
# chown (or write into) its target.
victim="$scratch/victim"
planted=""
if [ -d /var/cache/libvirt ]; then
    install -d -m 0755 -o nobody "$victim"
    ln -s "$victim" /var/cache/libvirt/virt-perf-hook && planted=1
else
    note "no /var/cache/libvirt (libvirt not installed): the planted-symlink check does not run"
fi
if ! dpkg -i --force-confdef --force-confold "$deb"; then
    echo "FAIL $name: dpkg -i failed" >&2
    exit 1
fi
if [ -n "$planted" ]; then
    check "the cache dir planted as a symlink is a directory again" test -d /var/cache/libvirt/virt-perf-hook -a ! -L /var/cache/libvirt/virt-perf-hook
    same "$(mode "$victim")" "755 nobody:root" "the planted symlink's target keeps its mode and owner"
    same "$(ls -A "$victim")" "" "nothing was written into the planted symlink's target"
fi
same "$(status)" "install ok installed" "dpkg -i: installed"
same "$(mode /usr/bin/virt-perf-hook)" "755 root:root" "binary /usr/bin/virt-perf-hook 0755 root:root"
# The hook entries: package-owned symlinks straight to the binary, which the libvirt daemon's
# AppArmor profile and SELinux policy let it execute (README "Mandatory access control").
for kind in qemu daemon; do
    entry=/etc/libvirt/hooks/$kind.d/virt-perf-hook
    same "$(readlink "$entry")" /usr/bin/virt-perf-hook "$entry is a symlink to /usr/bin/virt-perf-hook"
    same "$(readlink "$entry")" "$(readlink "$top/hooks/$kind.d/virt-perf-hook")" "$entry is hooks/$kind.d/virt-perf-hook"
    same "$(readlink -f "$entry")" /usr/bin/virt-perf-hook "$entry resolves to /usr/bin/virt-perf-hook"
    check "$entry resolves to an executable file" test -x "$entry" -a -f "$entry"
    same "$(dpkg -S "$entry" 2>/dev/null)" "virt-perf-hook: $entry" "dpkg owns $entry"
done
# The installed entries against this machine's libvirtd AppArmor profile, with check's own
# matcher: a scratch root holds them, the binary, a copy of /etc/apparmor.d and a fake kernel
# list naming the profile as enforced (AppArmor may not be enabled on this kernel).
profile=/etc/apparmor.d/usr.sbin.libvirtd
if [ -f "$profile" ]; then
    fake="$scratch/aa-root"
    mkdir -p "$fake/etc" "$fake/usr/bin" "$fake/sys/kernel/security/apparmor"
    cp -a /etc/apparmor.d "$fake/etc/"
    cp /usr/bin/virt-perf-hook "$fake/usr/bin/"
    for kind in qemu daemon; do
        mkdir -p "$fake/etc/libvirt/hooks/$kind.d"
        cp -P "/etc/libvirt/hooks/$kind.d/virt-perf-hook" "$fake/etc/libvirt/hooks/$kind.d/"
    done
    aa_name=$(sed -n 's/^ *profile \([^ ]*libvirtd[^ ]*\) .*/\1/p' "$profile" | head -n 1)
    echo "${aa_name:-/usr/sbin/libvirtd} (enforce)" >"$fake/sys/kernel/security/apparmor/profiles"
    aa=$(env -u VIRT_PERF_HOOK_CONFIG VIRT_PERF_HOOK_ROOT="$fake" /usr/bin/virt-perf-hook check 2>/dev/null | grep AppArmor)
    printf '%s\n' "$aa" | sed 's/^/    check (profile enforced): /'
    same "$(printf '%s\n' "$aa" | grep -c '^ok .*lets libvirt run hook /etc/libvirt/hooks/.* -> /usr/bin/virt-perf-hook')" 2 \
        "$profile, enforced, lets libvirt run both hook entries"
elif [ "${VPH_NO_SKIP:-}" = 1 ]; then
    fail "$profile missing (libvirt-daemon-system installs it)"
else
    note "no $profile (libvirt-daemon-system): the AppArmor check of the entries does not run"
fi
same "$(mode /etc/virt-perf-hook/config.json)" "644 root:root" "config 0644 root:root"
same "$(cat /var/lib/dpkg/info/virt-perf-hook.conffiles 2>/dev/null)" "/etc/virt-perf-hook/config.json" \
    "config.json is the only conffile"
same "$(mode /var/cache/libvirt/virt-perf-hook)" "700 root:root" "cache dir /var/cache/libvirt/virt-perf-hook 0700 root:root"
check "copyright and changelog.Debian.gz installed" \
    test -f /usr/share/doc/virt-perf-hook/copyright -a -f /usr/share/doc/virt-perf-hook/changelog.Debian.gz
check "bash, zsh and fish completions installed" test -f /usr/share/bash-completion/completions/virt-perf-hook \
    -a -f /usr/share/zsh/vendor-completions/_virt-perf-hook -a -f /usr/share/fish/vendor_completions.d/virt-perf-hook.fish
man=/usr/share/man/man1/virt-perf-hook.1.gz
check "man page installed gzipped" gzip -t "$man"
unit=/lib/systemd/system/virt-perf-hook.service
check "watch unit installed" test -f "$unit"
# verify also checks ExecStart= (the installed binary) and runs `man virt-perf-hook(1)` for the
# Documentation= link: both hold once the package is installed (man-db comes with lintian,
# required above), so a missing page fails here rather than being left out of the check.
if command -v systemd-analyze >/dev/null 2>&1; then
    verify=$(systemd-analyze verify "$unit" 2>&1)
    same "$verify" "" "systemd-analyze verify $unit"
else
    note "systemd-analyze not found: the unit is not verified"
fi
if command -v deb-systemd-helper >/dev/null 2>&1; then
    check "watch unit enabled on install (multi-user.target.wants)" \
        test -L /etc/systemd/system/multi-user.target.wants/virt-perf-hook.service
    check "exporter unit installed, disabled" test -f /lib/systemd/system/virt-perf-hook-exporter.service \
        -a ! -e /etc/systemd/system/multi-user.target.wants/virt-perf-hook-exporter.service
fi
if command -v systemd-analyze >/dev/null 2>&1; then
    same "$(systemd-analyze verify /lib/systemd/system/virt-perf-hook-exporter.service 2>&1)" "" \
        "systemd-analyze verify the exporter unit"
fi
if command -v groff >/dev/null 2>&1; then
    warnings=$(zcat "$man" | LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z 2>&1)
    same "$warnings" "" "man page renders without groff warnings"
fi
has "$(vph --version)" "virt-perf-hook " "virt-perf-hook --version"

# 'check' may exit non-zero while features are still landing: it must run and say something.
out=$(vph check 2>&1); rc=$?
printf '%s\n' "$out" | sed 's/^/    check: /'
check "virt-perf-hook check runs (exit $rc) and prints something" test -n "$out" -a "$rc" -lt 126
# It reports the mandatory access control state, whatever it is here.
has "$out" "AppArmor" "check reports on AppArmor"
has "$out" "SELinux" "check reports on SELinux"
if [ ! -e /sys/kernel/security/apparmor/profiles ]; then
    has "$out" "note     AppArmor is not in force here" "check notes that AppArmor is not in force on this kernel"
fi

xml='<domain type="kvm">
  <name>pkg-test</name>
  <memory unit="KiB">1048576</memory>
  <os><type arch="x86_64">hvm</type></os>
  <devices/>
</domain>
'
printf '%s' "$xml" >"$scratch/in.xml"
vph filter "$scratch/in.xml" >"$scratch/out.xml" 2>"$scratch/err"; rc=$?
cat "$scratch/err"
same "$rc" 0 "filter with the shipped config exits 0"
check "filter with the shipped config (no events) leaves the XML unchanged" cmp -s "$scratch/in.xml" "$scratch/out.xml"

# The installed hook entries, called as libvirt calls them.
for op in "start begin" "restore begin" "migrate begin"; do
    # shellcheck disable=SC2086
    /etc/libvirt/hooks/qemu.d/virt-perf-hook pkg-test $op - <"$scratch/in.xml" >"$scratch/hook.out" 2>"$scratch/err"; rc=$?
    same "$rc" 0 "qemu.d entry '$op' exits 0"
    same "$(cat "$scratch/hook.out")" "" "qemu.d entry '$op' prints nothing (XML unchanged)"
done
/etc/libvirt/hooks/daemon.d/virt-perf-hook - start - start </dev/null; rc=$?
same "$rc" 0 "daemon.d entry 'start' exits 0"

# Reinstall (the upgrade path): an operator's config survives.
printf '{\n  "enabled_perf_events": [],\n  "on_error": "pass"\n}\n' >/etc/virt-perf-hook/config.json
if dpkg -i --force-confdef --force-confold "$deb" >"$scratch/reinstall" 2>&1; then
    echo "ok   reinstall (upgrade path) succeeds"
else
    cat "$scratch/reinstall"; fail "reinstall failed"
fi
has "$(cat /etc/virt-perf-hook/config.json)" '"on_error": "pass"' "reinstall keeps the operator's config"

# --- remove --------------------------------------------------------------------------------
check "dpkg -r succeeds" dpkg -r virt-perf-hook
same "$(status)" "deinstall ok config-files" "dpkg -r: config-files state"
check "binary gone after remove" test ! -e /usr/bin/virt-perf-hook
for entry in $entries; do
    check "$entry gone after remove" test ! -e "$entry" -a ! -L "$entry"
done
# Only what the package owns: other tests may add their own entries meanwhile.
same "$(find /etc/libvirt/hooks \( -name virt-perf-hook -o -lname '*/virt-perf-hook/*' \) 2>/dev/null)" "" \
    "nothing of the package left in /etc/libvirt/hooks"
check "/usr/lib/virt-perf-hook gone after remove" test ! -e /usr/lib/virt-perf-hook
check "watch unit gone after remove" test ! -e /lib/systemd/system/virt-perf-hook.service
if command -v deb-systemd-helper >/dev/null 2>&1; then
    same "$(readlink /etc/systemd/system/virt-perf-hook.service)" /dev/null "watch unit masked after remove (as dh_installsystemd does)"
fi
check "config kept after remove (conffile)" test -f /etc/virt-perf-hook/config.json

# --- purge ---------------------------------------------------------------------------------
check "dpkg -P succeeds" dpkg -P virt-perf-hook
same "$(dpkg-query -W -f '${db:Status-Status}' virt-perf-hook 2>/dev/null || echo not-installed)" "not-installed" \
    "dpkg -P: not installed"
check "/etc/virt-perf-hook gone after purge" test ! -e /etc/virt-perf-hook
check "cache dir gone after purge" test ! -e /var/cache/libvirt/virt-perf-hook
check "man page gone" test ! -e "$man"
check "no trace of the watch unit after purge" test ! -e /etc/systemd/system/virt-perf-hook.service \
    -a ! -e /etc/systemd/system/multi-user.target.wants/virt-perf-hook.service

# --- upgrade from the 0.1.0 layout ----------------------------------------------------------
# 0.1.0 linked the entries to shell scripts in /usr/lib/virt-perf-hook/hooks/ (which AppArmor's
# libvirtd profile does not let the daemon execute) and kept its cache in /var/cache/virt-perf-hook.
# A package of that shape (version 0.0.9) upgraded to this one leaves the new layout in place.
old="$scratch/old"
mkdir -p "$old/DEBIAN"
for kind in qemu daemon; do
    mkdir -p "$old/usr/lib/virt-perf-hook/hooks/$kind.d" "$old/etc/libvirt/hooks/$kind.d"
    printf '#!/bin/sh\nexit 0\n' >"$old/usr/lib/virt-perf-hook/hooks/$kind.d/virt-perf-hook"
    chmod 0755 "$old/usr/lib/virt-perf-hook/hooks/$kind.d/virt-perf-hook"
    ln -s "/usr/lib/virt-perf-hook/hooks/$kind.d/virt-perf-hook" "$old/etc/libvirt/hooks/$kind.d/virt-perf-hook"
done
printf 'Package: virt-perf-hook\nVersion: 0.0.9-1\nArchitecture: %s\nMaintainer: test <test@example.invalid>\nDescription: virt-perf-hook in the 0.1.0 layout (test-deb.sh)\n' \
    "$(dpkg --print-architecture)" >"$old/DEBIAN/control"
printf '#!/bin/sh\ninstall -d -m 0700 /var/cache/virt-perf-hook\necho {} >/var/cache/virt-perf-hook/state.json\n' \
    >"$old/DEBIAN/postinst"
chmod 0755 "$old/DEBIAN/postinst"
if dpkg-deb --root-owner-group --build "$old" "$scratch/old.deb" >/dev/null && dpkg -i "$scratch/old.deb" >/dev/null; then
    same "$(readlink /etc/libvirt/hooks/qemu.d/virt-perf-hook)" /usr/lib/virt-perf-hook/hooks/qemu.d/virt-perf-hook \
        "the 0.1.0 layout is installed"
    if dpkg -i --force-confdef --force-confold "$deb" >"$scratch/upgrade" 2>&1; then
        echo "ok   upgrade from the 0.1.0 layout succeeds"
    else
        cat "$scratch/upgrade"; fail "upgrade from the 0.1.0 layout failed"
    fi
    for kind in qemu daemon; do
        entry=/etc/libvirt/hooks/$kind.d/virt-perf-hook
        same "$(readlink "$entry")" /usr/bin/virt-perf-hook "after the upgrade $entry links to /usr/bin/virt-perf-hook"
    done
    check "after the upgrade /usr/lib/virt-perf-hook/hooks is gone" test ! -e /usr/lib/virt-perf-hook/hooks
    check "after the upgrade the 0.1.0 cache /var/cache/virt-perf-hook is gone" test ! -e /var/cache/virt-perf-hook
    same "$(mode /var/cache/libvirt/virt-perf-hook)" "700 root:root" "after the upgrade the cache is /var/cache/libvirt/virt-perf-hook"
    check "dpkg -P after the upgrade succeeds" dpkg -P virt-perf-hook
    check "nothing of the package left after that purge" test ! -e /usr/bin/virt-perf-hook \
        -a ! -e /var/cache/libvirt/virt-perf-hook -a ! -L /etc/libvirt/hooks/qemu.d/virt-perf-hook \
        -a ! -L /etc/libvirt/hooks/daemon.d/virt-perf-hook
else
    fail "could not build or install the 0.1.0-layout package"
fi

finish

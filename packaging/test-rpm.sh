#!/bin/sh
# Builds the .rpm (packaging/build.sh rpm) and checks its contents, modes, config files,
# scriptlets and dependencies with rpm -qp. Installs nothing; needs no root.
#     packaging/test-rpm.sh [--no-build | FILE.rpm]   (--no-build: the newest target/packages/*.rpm)
# Skips (exit 0, printing why; exit 1 with VPH_NO_SKIP=1) when rpmbuild or rpm is missing.
set -u
. "$(dirname "$0")/test-lib.sh"

command -v rpm >/dev/null 2>&1 || skip "rpm not found (apt-get install rpm)"
[ "${no_build:-}" = 1 ] || command -v rpmbuild >/dev/null 2>&1 || skip "rpmbuild not found (apt-get install rpm)"
# Queries use a scratch database: rpm on Debian otherwise creates ~/.rpmdb on first use.
rpmdb=$(mktemp -d)
trap 'rm -rf "$rpmdb"' EXIT
rpm() { command rpm --dbpath "$rpmdb" "$@"; }
rpm=$(package rpm) && [ -f "$rpm" ] || { echo "FAIL $name: no .rpm built" >&2; exit 1; }
note "testing $rpm"

files=$(rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' "$rpm" | LC_ALL=C sort -k3)
echo "$files"
want="drwxr-xr-x root:root /etc/libvirt/hooks/daemon.d
lrwxrwxrwx root:root /etc/libvirt/hooks/daemon.d/virt-perf-hook
drwxr-xr-x root:root /etc/libvirt/hooks/qemu.d
lrwxrwxrwx root:root /etc/libvirt/hooks/qemu.d/virt-perf-hook
drwxr-xr-x root:root /etc/virt-perf-hook
-rw-r--r-- root:root /etc/virt-perf-hook/config.json
-rwxr-xr-x root:root /usr/bin/virt-perf-hook
-rw-r--r-- root:root /usr/lib/systemd/system/virt-perf-hook-exporter.service
-rw-r--r-- root:root /usr/lib/systemd/system/virt-perf-hook.service
drwxr-xr-x root:root /usr/lib/virt-perf-hook
-rwxr-xr-x root:root /usr/lib/virt-perf-hook/post-install
-rw-r--r-- root:root /usr/share/bash-completion/completions/virt-perf-hook
-rw-r--r-- root:root /usr/share/doc/virt-perf-hook/README.md
-rw-r--r-- root:root /usr/share/fish/vendor_completions.d/virt-perf-hook.fish
-rw-r--r-- root:root /usr/share/licenses/virt-perf-hook/LICENSE-APACHE
-rw-r--r-- root:root /usr/share/licenses/virt-perf-hook/LICENSE-MIT
-rw-r--r-- root:root /usr/share/man/man1/virt-perf-hook.1.gz
-rw-r--r-- root:root /usr/share/zsh/site-functions/_virt-perf-hook
drwx------ root:root /var/cache/libvirt/virt-perf-hook"
same "$files" "$want" "file list, modes and owners"

# The hook entries are links straight to the binary (relative, Fedora's convention): SELinux lets
# the libvirt daemons execute bin_t, AppArmor's libvirtd profile /usr/bin/* (README).
links=$(rpm -qp --qf '[%{FILENAMES} -> %{FILELINKTOS}\n]' "$rpm")
for kind in qemu daemon; do
    has "$links" "/etc/libvirt/hooks/$kind.d/virt-perf-hook -> ../../../../usr/bin/virt-perf-hook" \
        "$kind.d entry is a symlink to /usr/bin/virt-perf-hook"
done

same "$(rpm -qpc "$rpm")" "/etc/virt-perf-hook/config.json" "rpm -qpc: the config is the only config file"
flags=$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm" | sed -n 's| /etc/virt-perf-hook/config.json$||p')
same "$flags" "cn" "config.json is %config(noreplace)"

scripts=$(rpm -qp --scripts "$rpm")
echo "$scripts"
has "$scripts" '/usr/lib/virt-perf-hook/post-install "$mode" || :' "%post runs post-install (refresh, reload) and cannot fail"
has "$scripts" 'rm -rf /var/cache/libvirt/virt-perf-hook' "%postun removes the cache on erase"
has "$scripts" 'rm -rf /var/cache/virt-perf-hook' "%post removes the cache of 0.1.0 (/var/cache/virt-perf-hook)"

has "$scripts" 'systemctl --no-reload enable virt-perf-hook.service' "%post enables the watch service on install (offline too)"
has "$scripts" 'systemctl start virt-perf-hook.service' "%post starts it where systemd runs"
has "$scripts" 'systemctl try-restart virt-perf-hook.service' "%post restarts it on upgrade where systemd runs"
has "$scripts" 'systemctl stop virt-perf-hook.service' "%preun stops it on erase"
has "$scripts" 'systemctl --no-reload disable virt-perf-hook.service' "%preun disables it on erase"
if printf '%s' "$scripts" | grep -q 'enable virt-perf-hook-exporter'; then
    echo "FAIL $name: %post enables the exporter (it is disabled by default)" >&2; exit 1
fi

has "$(rpm -qp --recommends "$rpm")" "libvirt-daemon" "Recommends: libvirt-daemon"
requires=$(rpm -qpR "$rpm")
lacks "$requires" "libc.so.6" "no shared-library requirements (the binary is statically linked)"
lacks "$requires" "libvirt" "libvirt is not required (filter works without it)"
same "$(rpm -qp --qf '%{LICENSE}' "$rpm")" "MIT OR Apache-2.0" "License"
if command -v rpm2cpio >/dev/null 2>&1; then
    # rpm2cpio writes the uncompressed payload; the config is the only file with this text.
    has "$(rpm2cpio "$rpm" | grep -a '"enabled_perf_events"')" \
        '"enabled_perf_events": []' "the config enables no events"
fi

finish

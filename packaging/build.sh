#!/bin/sh
# Builds the distro packages of virt-perf-hook into target/packages/:
#
#     packaging/build.sh            # both: virt-perf-hook_<v>-1_<arch>.deb and virt-perf-hook-<v>-1.<arch>.rpm
#     packaging/build.sh deb|rpm    # one of them
#
# Needs cargo and readelf (binutils), and for the .deb dpkg-deb (apt: dpkg-dev), for the .rpm rpmbuild
# (apt: rpm; dnf: rpm-build). No cargo plugins: the binary comes from release-binary.sh,
# the rest is a staged tree (packaging/ holds every other file) packed by dpkg-deb and rpmbuild.
# Prints the paths of the packages it wrote, one a line, on stdout; everything else on stderr.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
out="$top/target/packages"
formats=${1:-all}
case "$formats" in
    all) formats="deb rpm" ;;
    deb|rpm) ;;
    *) echo "usage: $0 [all|deb|rpm]" >&2; exit 2 ;;
esac

say() { echo "build.sh: $*" >&2; }
need() {
    command -v "$1" >/dev/null 2>&1 || { say "$1 not found; install $2"; exit 1; }
}
cargo=${CARGO:-cargo}  # cargo test sets CARGO
need "$cargo" "a Rust toolchain (https://rustup.rs)"
for f in $formats; do
    case "$f" in
        deb) need dpkg-deb dpkg-dev ;;
        rpm) need rpmbuild "rpm (Debian) or rpm-build (Fedora/RHEL)" ;;
    esac
done

version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$top/Cargo.toml" | head -n 1)
[ -n "$version" ] || { say "no version in Cargo.toml"; exit 1; }
release=1
deb_version="$version-$release"
# The Debian changelog's newest entry must describe this version (lintian and dpkg read it).
if ! head -n 1 "$here/changelog" | grep -q "^virt-perf-hook ($deb_version) "; then
    say "packaging/changelog's first entry is not $deb_version; add an entry for the new version"
    exit 1
fi

say "cargo build --release (static glibc, see release-binary.sh)"
need readelf binutils
bin=$("$here/release-binary.sh")
# The packages declare no library dependencies: make sure there are none.
if readelf -d "$bin" | grep -q '(NEEDED)'; then
    say "$bin needs shared libraries; it should be statically linked (release-binary.sh)"
    exit 1
fi

# A private scratch tree, so concurrent runs (the deb and rpm tests) do not trip over each other.
mkdir -p "$out"
build=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$build"' EXIT
trap 'exit 1' HUP INT TERM
umask 022

# The tree both formats install (docs and the cache dir are added per format).
stage="$build/stage"
install -D -m 0755 "$bin" "$stage/usr/bin/virt-perf-hook"
# What dh_strip does; Rust release binaries keep std's symbols otherwise.
if command -v strip >/dev/null 2>&1; then
    strip --remove-section=.comment --remove-section=.note --strip-unneeded "$stage/usr/bin/virt-perf-hook"
else
    say "strip not found (binutils); the binary keeps its symbols"
fi
# The libvirt hook entries: package-owned symlinks straight to the binary, as in hooks/. libvirt's
# AppArmor profile and SELinux policy judge the file a link resolves to; /usr/bin/* is what both let
# the daemon execute (README "Mandatory access control"). Removing the package removes them.
for kind in qemu daemon; do
    entry="$top/hooks/$kind.d/virt-perf-hook"
    if [ "$(readlink "$entry" 2>/dev/null)" != /usr/bin/virt-perf-hook ]; then
        say "$entry should be a symlink to /usr/bin/virt-perf-hook (git config core.symlinks true)"
        exit 1
    fi
    mkdir -p "$stage/etc/libvirt/hooks/$kind.d"
    cp -P "$entry" "$stage/etc/libvirt/hooks/$kind.d/virt-perf-hook"
done
install -D -m 0755 "$here/post-install" "$stage/usr/lib/virt-perf-hook/post-install"
install -D -m 0644 "$here/config.json" "$stage/etc/virt-perf-hook/config.json"
mkdir -p "$stage/usr/share/man/man1"
sed "1,5s/\"virt-perf-hook [0-9][^\"]*\"/\"virt-perf-hook $version\"/" "$here/virt-perf-hook.1" \
    | gzip -9n >"$stage/usr/share/man/man1/virt-perf-hook.1.gz"
chmod 0644 "$stage/usr/share/man/man1/virt-perf-hook.1.gz"
# Shell completions, generated from the command table (tests/cli/cli_docs.rs keeps them current).
install -D -m 0644 "$top/completions/virt-perf-hook.bash" "$stage/usr/share/bash-completion/completions/virt-perf-hook"
install -D -m 0644 "$top/completions/virt-perf-hook.fish" "$stage/usr/share/fish/vendor_completions.d/virt-perf-hook.fish"
docs="$build/docs"
install -D -m 0644 "$top/README.md" "$docs/README.md"
install -D -m 0644 "$here/copyright" "$docs/copyright"
# The licence texts, for the rpm's %license (the .deb's copyright file carries them instead).
install -m 0644 "$top/LICENSE-MIT" "$top/LICENSE-APACHE" "$docs/"
# The watch unit: /lib/systemd/system in the .deb (Debian 12), /usr/lib/systemd/system in the .rpm.
install -m 0644 "$here/virt-perf-hook.service" "$docs/"
# The exporter's unit, shipped disabled.
install -m 0644 "$here/virt-perf-hook-exporter.service" "$docs/"
# zsh's directory differs: vendor-completions on Debian, site-functions on Fedora.
install -m 0644 "$top/completions/_virt-perf-hook" "$docs/"

build_deb() {
    arch=$(dpkg --print-architecture)
    root="$build/deb-root"
    cp -a "$stage" "$root"
    doc="$root/usr/share/doc/virt-perf-hook"
    install -D -m 0644 "$docs/copyright" "$doc/copyright"
    gzip -9nc "$docs/README.md" >"$doc/README.md.gz"
    gzip -9nc "$here/changelog" >"$doc/changelog.Debian.gz"
    chmod 0644 "$doc/README.md.gz" "$doc/changelog.Debian.gz"

    mkdir -p "$root/DEBIAN"
    install -m 0755 "$here/deb/postinst" "$here/deb/prerm" "$here/deb/postrm" "$root/DEBIAN/"
    # Debian 12 keeps units in /lib (merged /usr makes it the same directory).
    install -D -m 0644 "$docs/virt-perf-hook.service" "$root/lib/systemd/system/virt-perf-hook.service"
    install -m 0644 "$docs/virt-perf-hook-exporter.service" "$root/lib/systemd/system/"
    install -D -m 0644 "$docs/_virt-perf-hook" "$root/usr/share/zsh/vendor-completions/_virt-perf-hook"
    echo /etc/virt-perf-hook/config.json >"$root/DEBIAN/conffiles"
    (cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print | sed 's|^\./||' \
        | LC_ALL=C sort | xargs md5sum) >"$root/DEBIAN/md5sums"
    size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
    maintainer=$(sed -n 's/^ -- \(.*>\)  .*/\1/p' "$here/changelog" | head -n 1)
    sed -e "s|@DEB_VERSION@|$deb_version|" -e "s|@DEB_ARCH@|$arch|" -e "s|@MAINTAINER@|$maintainer|" \
        -e "s|@INSTALLED_SIZE@|$size|" "$here/deb/control.in" >"$root/DEBIAN/control"
    chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

    deb="$out/virt-perf-hook_${deb_version}_$arch.deb"
    rm -f "$deb"
    dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
    echo "$deb"
}

build_rpm() {
    top_rpm="$build/rpmbuild"
    mkdir -p "$top_rpm"
    # Its own database: rpm on Debian otherwise creates ~/.rpmdb, which would outlive the build.
    rpmbuild -bb --quiet --dbpath "$build/rpmdb" \
        --define "_topdir $top_rpm" \
        --define "_rpmdir $out" \
        --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
        --define "pkg_version $version" \
        --define "stage $stage" \
        --define "stage_docs $docs" \
        "$here/rpm/virt-perf-hook.spec" >&2
    ls "$out"/virt-perf-hook-"$version"-"$release"*.rpm
}

for f in $formats; do
    say "building .$f"
    "build_$f"
done

#!/bin/bash
# Installs a purifyd .deb into a clean Debian 12 root made by debootstrap, as apt would on a server
# without the Swift toolchain, and checks it there: the binaries run (--version, --help), the shipped
# configuration passes `purifyd --check-config`, `purify` purifies the shipped samples with the
# installed bundle and flags the adversarial ones, the man pages, completions, unit and conffile are
# in place, and removing the package leaves no binary behind.
#   packaging/deb/test-install.sh dist/purifyd_<version>_<arch>.deb [ROOT_CACHE]
# ROOT_CACHE (default var/debootstrap-bookworm.tar) keeps the bare root between runs; each run
# unpacks a fresh copy of it, so nothing from one run reaches the next.
set -euo pipefail

package=$(realpath "$1")
cache=${2:-var/debootstrap-bookworm.tar}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d)
root=$work/root
cleanup() {
    for mount in "$root/proc" "$root/dev"; do mountpoint -q "$mount" && umount -l "$mount"; done
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "test-install: $*" >&2; exit 1; }

if [ ! -s "$cache" ]; then
    echo "debootstrap bookworm (minbase) from $mirror"
    mkdir -p "$(dirname "$cache")"
    debootstrap --variant=minbase bookworm "$work/bare" "$mirror" >"$work/debootstrap.log" 2>&1 ||
        { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap failed"; }
    tar -C "$work/bare" -cf "$cache.tmp" . && mv "$cache.tmp" "$cache"
    rm -rf "$work/bare"
fi
mkdir -p "$root"
tar -C "$root" -xf "$cache"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }

cp "$package" "$root/tmp/purifyd.deb"
cp -R samples "$root/tmp/samples"
in_root apt-get update -qq
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends /tmp/purifyd.deb \
    >"$work/install.log" 2>&1 || { tail -30 "$work/install.log" >&2; fail "apt-get install failed"; }
[ -x "$root/usr/bin/swift" ] && fail "the Swift toolchain is in the root: the test proves nothing"

version=$(dpkg-deb -f "$package" Version)
for program in purify purifyctl purifyd; do
    [ "$(in_root "$program" --version)" = "$version" ] || fail "$program --version is not $version"
    in_root "$program" --help >/dev/null || fail "$program --help failed"
done
in_root getent passwd purifyd >/dev/null || fail "no purifyd user (sysusers)"
[ -d "$root/srv/purifyd/mnist/inbox" ] || fail "no inbox folder (tmpfiles)"
in_root purifyd --check-config --config /etc/purifyd/purifyd.toml || fail "the shipped configuration does not check"
grep -qx /etc/purifyd/purifyd.toml "$root/var/lib/dpkg/info/purifyd.conffiles" || fail "the configuration is not a conffile"
for file in /lib/systemd/system/purifyd.service /usr/share/man/man1/purify.1.gz /usr/share/man/man1/purifyctl.1.gz \
            /usr/share/man/man8/purifyd.8.gz /usr/share/bash-completion/completions/purifyctl \
            /usr/share/purifyd/report.schema.json /usr/share/purifyd/models/mnist/bundle.toml; do
    [ -s "$root$file" ] || fail "$file is missing"
done

for bundle in mnist fashion-mnist cifar10; do
    in_root purify --bundle "/usr/share/purifyd/models/$bundle" --out "/tmp/out/$bundle" "/tmp/samples/$bundle" \
        >"$work/purify.log" 2>&1 || { cat "$work/purify.log" >&2; fail "purify failed on the $bundle samples"; }
    flagged=0
    for sample in "$root/tmp/samples/$bundle"/*.png; do
        report=$root/tmp/out/$bundle/$(basename "$sample").json
        [ -s "$report" ] || fail "no report for $bundle/$(basename "$sample")"
        [ -s "${report%.json}" ] || fail "no purified image for $bundle/$(basename "$sample")"
        case $(basename "$sample") in
            adversarial-*) grep -q '"suspected_adversarial" : true' "$report" && flagged=$((flagged + 1)) ;;
            clean-*) grep -q '"suspected_adversarial" : false' "$report" || fail "clean $bundle/$(basename "$sample") flagged" ;;
        esac
    done
    [ "$flagged" -gt 0 ] || fail "no adversarial $bundle sample was flagged"
    echo "$bundle: $(ls "$root/tmp/samples/$bundle" | wc -l) samples purified, $flagged adversarial flagged"
done

in_root env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq purifyd >/dev/null 2>&1 || fail "purge failed"
for program in purify purifyctl purifyd; do [ ! -e "$root/usr/bin/$program" ] || fail "$program left after purge"; done
[ ! -e "$root/etc/purifyd/purifyd.toml" ] || fail "the configuration is left after purge"
echo "installed, checked and purged $(basename "$package") in a clean Debian 12 root"

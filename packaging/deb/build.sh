#!/bin/bash
# Builds the Debian package of purifyd into OUT (default dist/): the three release binaries with the
# Swift runtime linked statically, every bundle, the unit and its socket, sysusers and tmpfiles
# snippets, the default configuration as a conffile, man pages, shell completions, the report schema
# and the docs. Run from the repository root: `make deb` (it installs what this needs first).
set -euo pipefail

out=${1:-dist}
version=$(sed -n 's/^ *public static let string = "\(.*\)"$/\1/p' Sources/PurifyVersion/PurifyVersion.swift)
[ -n "$version" ] || { echo "build.sh: no version in Sources/PurifyVersion/PurifyVersion.swift" >&2; exit 1; }
architecture=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root

# The files, where Debian puts them (units under /lib: bookworm's systemd searches it first).
make --no-print-directory install DESTDIR="$root" PREFIX=/usr UNIT_DIR=/lib/systemd/system \
  SYSUSERS_DIR=/usr/lib/sysusers.d TMPFILES_DIR=/usr/lib/tmpfiles.d CONFIG_DIR=/etc/purifyd
bin=$root/usr/bin
install -D -m 0644 Sources/PurifyPipeline/Resources/report.schema.json "$root/usr/share/purifyd/report.schema.json"
install -D -m 0644 packaging/deb/copyright "$root/usr/share/doc/purifyd/copyright"

# Man pages from the argument parsers (swift-argument-parser's generate-manual tool, run on the
# installed binaries); the daemon in section 8, the tools in section 1.
swift build -c release --product generate-manual >/dev/null
generate_manual=$(swift build -c release --show-bin-path)/generate-manual
date=$(git log -1 --format=%cs 2>/dev/null || date -u +%F)
for program in purify purifyctl purifyd; do
  section=1; [ "$program" = purifyd ] && section=8
  mkdir -p "$root/usr/share/man/man$section"
  "$generate_manual" "$bin/$program" --section "$section" --date "$date" --authors "purifyd developers" \
    --output-directory "$root/usr/share/man/man$section"
  gzip -9n "$root/usr/share/man/man$section/$program.$section"
done

# Shell completions, from the same parsers.
for program in purify purifyctl purifyd; do
  "$bin/$program" --generate-completion-script bash | install -D -m 0644 /dev/stdin "$root/usr/share/bash-completion/completions/$program"
  "$bin/$program" --generate-completion-script zsh | install -D -m 0644 /dev/stdin "$root/usr/share/zsh/vendor-completions/_$program"
  "$bin/$program" --generate-completion-script fish | install -D -m 0644 /dev/stdin "$root/usr/share/fish/vendor_completions.d/$program.fish"
done

# Dependencies: the shared libraries the binaries link, mapped to packages by dpkg-shlibdeps
# (which wants a debian/control beside it); systemd for sysusers, tmpfiles and the unit.
mkdir -p "$stage/src/debian"
printf 'Source: purifyd\n\nPackage: purifyd\nArchitecture: any\n' > "$stage/src/debian/control"
depends=$(cd "$stage/src" && dpkg-shlibdeps -O "$bin/purify" "$bin/purifyctl" "$bin/purifyd" | sed -n 's/^shlibs:Depends=//p')

mkdir -p "$root/DEBIAN"
installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCHITECTURE@|$architecture|" -e "s|@DEPENDS@|$depends, systemd|" \
    -e "s|@INSTALLED_SIZE@|$installed_size|" packaging/deb/control > "$root/DEBIAN/control"
echo /etc/purifyd/purifyd.toml > "$root/DEBIAN/conffiles"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"

mkdir -p "$out"
package=$out/purifyd_${version}_${architecture}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$package" >/dev/null
echo "$package"

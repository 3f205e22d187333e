#!/usr/bin/env bash
# Builds Berth's .deb and .rpm from already-built binaries, with Debian's own tools (dpkg-deb,
# rpmbuild from Debian's `rpm`), so CI needs no extra cargo install:
#
#   packaging/build.sh BIN_DIR OUT_DIR [VERSION]
#
# BIN_DIR holds berth-agent, berth-scheduler, berthctl and berth-package-files (target/release
# for `make package`; target/debug for `make package-check`). The binaries are stripped into
# the package, as dh_strip does. VERSION defaults to the workspace's. SOURCE_DATE_EPOCH, when
# set, fixes every file's time (reproducible packages). BERTH_PACKAGE_COMPRESSION=fast trades
# size for time (make package-check: the packages are linted, not shipped); the default is xz.
# BERTH_PACKAGE_FORMATS (default "deb rpm") names the packages to build.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
bin_dir="$(cd "${1:?usage: build.sh BIN_DIR OUT_DIR [VERSION]}" && pwd)"
out_dir="${2:?usage: build.sh BIN_DIR OUT_DIR [VERSION]}"
version="${3:-$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n1)}"
mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}"

case "${BERTH_PACKAGE_COMPRESSION:-xz}" in
xz) deb_compress=(-Zxz) rpm_payload=w6.xzdio ;;
fast) deb_compress=(-Zgzip -z1) rpm_payload=w1.gzdio ;;
*) echo "BERTH_PACKAGE_COMPRESSION is xz or fast" >&2; exit 2 ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The file tree both packages share; `lib_systemd` is where the units go.
stage() {
	local root="$1" lib_systemd="$2"
	install -d -m 0755 "$root/usr/bin" "$root/$lib_systemd" "$root/etc/default" \
		"$root/usr/share/doc/berth"
	for b in berth-agent berth-scheduler berthctl; do
		install -m 0755 "$bin_dir/$b" "$root/usr/bin/$b"
		strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/$b"
	done
	install -m 0644 "$repo/systemd/berth-agent.service" "$repo/systemd/berth-scheduler.service" \
		"$repo/systemd/berth-agent-first-boot.service" "$root/$lib_systemd/"
	# etc/berth/agent.toml, man pages, completions: generated from the code.
	"$bin_dir/berth-package-files" "$root" >/dev/null
	chmod 0644 "$root/etc/berth/agent.toml"
	install -m 0600 "$here/deb/default-berth-agent" "$root/etc/default/berth-agent"
	gzip -9n "$root"/usr/share/man/man1/*.1
	# The agent's state: root's alone.
	install -d -m 0700 "$root/var/lib/berth"
	find "$root" -type d -exec chmod go-w {} +
	find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}

deb() {
	local root="$work/deb" arch
	arch="$(dpkg --print-architecture)"
	stage "$root" lib/systemd/system
	install -m 0644 "$here/deb/copyright" "$root/usr/share/doc/berth/copyright"
	# A native package's changelog (Debian policy 12.7), from the version being built.
	{
		echo "berth ($version) unstable; urgency=medium"
		echo
		echo "  * Release $version: see https://github.com/berth-dev/berth."
		echo
		echo " -- Berth developers <berth@berth.dev>  $(date -R -u -d "@$SOURCE_DATE_EPOCH")"
	} | gzip -9n >"$root/usr/share/doc/berth/changelog.gz"
	install -d -m 0755 "$root/usr/share/lintian/overrides"
	install -m 0644 "$here/deb/lintian-overrides" "$root/usr/share/lintian/overrides/berth"
	install -d -m 0755 "$root/DEBIAN"
	for script in postinst prerm postrm; do
		install -m 0755 "$here/deb/$script" "$root/DEBIAN/$script"
	done
	printf '/etc/berth/agent.toml\n/etc/default/berth-agent\n' >"$root/DEBIAN/conffiles"
	local depends size
	# The shared libraries the binaries link (libc, libgcc_s), as dpkg-shlibdeps would say.
	mkdir -p "$work/shlibs/debian"
	printf 'Source: berth\n\nPackage: berth\nArchitecture: any\n' >"$work/shlibs/debian/control"
	depends="$(cd "$work/shlibs" && dpkg-shlibdeps -O -e "$root/usr/bin/berth-agent" \
		-e "$root/usr/bin/berth-scheduler" -e "$root/usr/bin/berthctl" 2>/dev/null |
		sed -n 's/^shlibs:Depends=//p')"
	[ -n "$depends" ] || { echo "dpkg-shlibdeps found no dependencies" >&2; exit 1; }
	size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
	sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
		-e "s/@DEPENDS@/$depends/" "$here/deb/control.in" >"$root/DEBIAN/control"
	(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
		xargs -0 md5sum) >"$root/DEBIAN/md5sums"
	chmod 0644 "$root/DEBIAN/md5sums" "$root/DEBIAN/conffiles" "$root/DEBIAN/control"
	dpkg-deb --root-owner-group "${deb_compress[@]}" --build "$root" "$out_dir/berth_${version}_${arch}.deb" >/dev/null
	echo "$out_dir/berth_${version}_${arch}.deb"
}

rpm_pkg() {
	local root="$work/rpm/root" top="$work/rpm/top" arch
	arch="$(uname -m)"
	stage "$root" usr/lib/systemd/system
	install -m 0644 "$repo/LICENSE" "$root/usr/share/doc/berth/LICENSE"
	mkdir -p "$top"/{BUILD,RPMS,SPECS,SRPMS,SOURCES}
	# rpm's version may not hold '-' or '~'; a pre-release keeps its order with '~'.
	local rpm_version="${version//-/\~}"
	rpmbuild --quiet -bb "$here/rpm/berth.spec" \
		--define "_topdir $top" --define "_build_id_links none" \
		--define "berth_root $root" --define "berth_version $rpm_version" \
		--define "berth_changelog_date $(LC_ALL=C date -u -d "@$SOURCE_DATE_EPOCH" '+%a %b %d %Y')" \
		--define "_binary_payload $rpm_payload" --define "__os_install_post %{nil}" --define "use_source_date_epoch_as_buildtime 1" \
		--define "clamp_mtime_to_source_date_epoch 1" --target "$arch" \
		--dbpath "$work/rpm/db" 2>&1 | grep -v '^warning: Could not canonicalize hostname' >&2 || true
	local rpm_file
	rpm_file="$(find "$top/RPMS" -name '*.rpm' | head -n1)"
	[ -n "$rpm_file" ] || { echo "rpmbuild made no package" >&2; exit 1; }
	install -m 0644 "$rpm_file" "$out_dir/"
	echo "$out_dir/$(basename "$rpm_file")"
}

for format in ${BERTH_PACKAGE_FORMATS:-deb rpm}; do
	case "$format" in
	deb) deb ;;
	rpm) rpm_pkg ;;
	*) echo "BERTH_PACKAGE_FORMATS holds deb and rpm, not $format" >&2; exit 2 ;;
	esac
done

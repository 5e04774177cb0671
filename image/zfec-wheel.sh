#!/usr/bin/env bash
# zfec publishes no Linux aarch64 wheel. Build one from its sdist with Debian's arm64 gcc and
# python3 under qemu-user, in a sysroot that is only unpacked (mmdebstrap --variant=extract: no
# maintainer scripts, ~1 min), and put it where packaging/build-pyz.py looks for wheels built
# here (.cache/wheels/aarch64/built, tag linux_aarch64). Skipped when one is already there.
. "$(dirname "$0")/lib.sh"
need_root
BUILT=$ROOT/.cache/wheels/aarch64/built
mkdir -p "$BUILT"
if ls "$BUILT"/zfec-*-linux_aarch64.whl >/dev/null 2>&1; then
  log "zfec aarch64 wheel cached: $(basename "$(ls "$BUILT"/zfec-*-linux_aarch64.whl | tail -1)")"
  exit 0
fi
SYSROOT=$WORK/arm64-sysroot
T0=$(date +%s)
rm -rf "$SYSROOT"
mmdebstrap --quiet --architectures=arm64 --variant=extract \
  --include="python$PYVER,libpython$PYVER-dev,python$PYVER-dev,gcc,libc6-dev,python3-pip,python3-setuptools,python3-wheel,python3-pkg-resources" \
  "$SUITE" "$SYSROOT" "$MIRROR"
mkdir -p "$SYSROOT/tmp/src" "$SYSROOT/tmp/wh" "$SYSROOT/proc" "$SYSROOT/dev"
spec=zfec${ZFEC:+==$ZFEC}
"$ROOT/.venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps --no-binary=:all: \
  "$spec" -d "$SYSROOT/tmp/src" 2>&1 | { grep -v '^WARNING: Location' || true; } >&2
sdist=$(basename "$(ls "$SYSROOT"/tmp/src/zfec-*.tar.gz | head -1)")
trap 'chroot_umounts "$SYSROOT"' EXIT
chroot_mounts "$SYSROOT"
[ -x "$SYSROOT/sbin/ldconfig" ] && chroot "$SYSROOT" /sbin/ldconfig
env -i PATH=/usr/bin:/bin HOME=/tmp "$(command -v chroot)" "$SYSROOT" "/usr/bin/python$PYVER" -m pip wheel -q --no-deps \
  --no-build-isolation --no-index -w /tmp/wh "/tmp/src/$sdist"
cp "$SYSROOT"/tmp/wh/zfec-*-linux_aarch64.whl "$BUILT/"
chroot_umounts "$SYSROOT"; trap - EXIT
rm -rf "$SYSROOT"
log "zfec aarch64 wheel built in $(( $(date +%s)-T0 )) s: $(ls "$BUILT"/zfec-*-linux_aarch64.whl)"

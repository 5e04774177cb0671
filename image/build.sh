#!/usr/bin/env bash
# Build the Stratum Raspberry Pi 4 image, from this repository and Debian's packages:
#   image/build.sh        (or ./dev image)  ->  dist/stratum-pi4.img and dist/stratum-pi4.img.xz
#
# Steps (each says how long it took): host tools; the zfec aarch64 wheel (cached under
# .cache/wheels/aarch64/built); dist/stratum-aarch64.pyz (packaging/build-pyz.py --arch aarch64,
# CPython 3.11 = bookworm's); the arm64 root filesystem (image/rootfs.sh, mmdebstrap under
# qemu-user, the slow part); Stratum and the appliance into it (image/customize.sh); the .img
# without any mount (image/mkimg.sh); compression.
#
#   COMPRESS=xz (default) | zst | none    the compressed copy next to the .img
#   REUSE_ROOTFS=1     keep build/image/rootfs if it exists (iterating on the appliance)
#   INITRD_MODULES=most (default) | list  see image/rootfs.sh
#   WORK=DIR OUT=DIR   scratch (build/image) and output (dist) directories
# Needs root (mmdebstrap, chroot) on Debian/Ubuntu; about 3 GB in build/image.
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then
  exec sudo --preserve-env=COMPRESS,REUSE_ROOTFS,INITRD_MODULES,WORK,OUT,MIRROR "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"
need_root
COMPRESS=${COMPRESS:-xz}
T0=$(date +%s)
step() { log "== $1 (t+$(( $(date +%s)-T0 )) s)"; }
step "host tools"
bash "$IMAGE_DIR/host-setup.sh"
if [ ! -x "$ROOT/.venv/bin/python" ] || ! "$ROOT/.venv/bin/python" -c 'import shiv' 2>/dev/null; then
  "$ROOT/dev" setup
fi
step "zfec aarch64 wheel"
bash "$IMAGE_DIR/zfec-wheel.sh"
step "stratum-aarch64.pyz"
"$ROOT/.venv/bin/python" "$ROOT/packaging/build-pyz.py" --arch aarch64 --python "$PYVER" \
  --output "$PYZ_ARM" 2>&1 | grep -v '^WARNING: Location' >&2
if [ "${REUSE_ROOTFS:-0}" = 1 ] && [ -d "$WORK/rootfs/usr" ] && [ -d "$WORK/bootfs" ]; then
  step "root filesystem: reusing $WORK/rootfs"
else
  step "root filesystem (mmdebstrap, arm64 under qemu-user)"
  bash "$IMAGE_DIR/rootfs.sh"
fi
step "Stratum and the appliance into the root filesystem"
bash "$IMAGE_DIR/customize.sh"
step "disk image"
bash "$IMAGE_DIR/mkimg.sh"
case "$COMPRESS" in
  xz) step "xz"; xz -T0 -6 -k -f "$IMG"; ls -la "$IMG.xz" >&2 ;;
  zst) step "zstd"; zstd -q -T0 -6 -f "$IMG" -o "$IMG.zst"; ls -la "$IMG.zst" >&2 ;;
  none) ;;
  *) die "COMPRESS must be xz, zst or none" ;;
esac
step "done: $IMG ($(du -h --apparent-size "$IMG" | cut -f1)) in $(( $(date +%s)-T0 )) s"

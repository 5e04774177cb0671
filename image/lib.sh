# Sourced by the image scripts: settings and helpers. Everything is built under $WORK.
set -euo pipefail
IMAGE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$IMAGE_DIR/.." && pwd)
WORK=${WORK:-$ROOT/build/image}          # scratch: sysroot, rootfs, partitions (~3 GB)
OUT=${OUT:-$ROOT/dist}                     # stratum-pi4.img, .img.xz, aarch64 pyz
SUITE=${SUITE:-bookworm}
PYVER=${PYVER:-3.11}                       # bookworm's python3: the pyz is built for it only
ZFEC=${ZFEC:-1.6.0.0}
IMG=${IMG:-$OUT/stratum-pi4.img}
PYZ_ARM=${PYZ_ARM:-$OUT/stratum-aarch64.pyz}
debian_mirror() {  # the Debian archive this machine's apt already uses
  sed -nE 's#^(URIs:[[:space:]]*|deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)(https?://[^[:space:]]+/debian)/?([[:space:]].*)?$#\3#p' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true
}
MIRROR=${MIRROR:-$(debian_mirror)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# Some environments export this; then the pyz would compile nothing (every start a first start).
unset PYTHONDONTWRITEBYTECODE || true
export LC_ALL=C.UTF-8 SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)}
mkdir -p "$WORK" "$OUT"
log() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
# chroot with /proc and /dev, unmounted again whatever happens
chroot_mounts() { mount -t proc proc "$1/proc"; mount --bind /dev "$1/dev"; }
chroot_umounts() {
  local m
  for m in "$1/dev" "$1/proc"; do
    mountpoint -q "$m" || continue
    umount "$m" 2>/dev/null || umount -l "$m"   # lazily when busy (qemu-user keeps /proc open)
  done
}
no_mounts_under() { ! grep -q " $(realpath "$1")/" /proc/self/mounts || die "something is mounted under $1"; }
need_root() { [ "$(id -u)" = 0 ] || die "run as root (mmdebstrap, chroot and binfmt_misc need it)"; }

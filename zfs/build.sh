#!/bin/bash
# Build everything run-in-vm.sh needs to boot a Debian kernel with a real
# ZFS module, zfsutils and python3-pyzfs inside a qemu VM, with Stratum's
# Python dependencies (from ../pyproject.toml) for `tests/zfs`:
#
#   $ZFSVM_DIR/out/vmlinuz      Debian kernel (from linux-image-$KVER .deb)
#   $ZFSVM_DIR/out/initrd.img   tiny busybox initramfs (virtio/ext4/9p modules)
#   $ZFSVM_DIR/out/rootfs.ext4  Debian minbase + zfsutils-linux + python3-pyzfs
#                               + zfs/spl .ko built by dkms for $KVER
#   $ZFSVM_DIR/out/manifest.txt versions and build timings
#
# Must run as root on Debian 12 (bookworm) x86_64 with apt access to
# this machine's Debian archive (main, contrib, bookworm-backports in its apt sources).
#
# Knobs (environment):
#   ZFSVM_DIR            work/output dir (the cache) (default build/zfsvm in this clone)
#   ZFS_SUITE            bookworm (zfs 2.1.11)  | bookworm-backports (zfs 2.3.x)
#   KERNEL_SUITE         bookworm (linux 6.1)   | bookworm-backports (linux 6.12)
#   ZFSVM_EXTRA_PACKAGES extra Debian packages for the VM rootfs, space separated
#                        (default: none)
#   ZFSVM_MIRROR         Debian mirror URL  (default: the one this machine's apt uses)
#   ZFSVM_PIP_PACKAGES   PyPI packages to add to the VM's python3 (binary wheels for
#                        CPython 3.11 on x86_64 glibc 2.36, fetched with the host's
#                        pip into /usr/local/lib/python3.11/dist-packages).
#                        Default: Stratum's dependencies from ../pyproject.toml,
#                        plus pytest and pytest-timeout.
#   ZFSVM_PIP_PYTHON     the host python that runs pip (default python3)
#   ZFSVM_SKIP_APT=1     do not apt-get update/install on the host
#   ZFSVM_REUSE=1        if out/ already holds a build of the same flavour (suites,
#                        packages and this recipe's own files), only make sure qemu is
#                        installed and stop
#   ZFSVM_KEEP_TREES=1   keep the unpacked kernel and rootfs trees (~600 MB)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT=$(cd "$HERE/.." && pwd)
ZFSVM_DIR=${ZFSVM_DIR:-$PROJECT/build/zfsvm}
ZFS_SUITE=${ZFS_SUITE:-bookworm}
KERNEL_SUITE=${KERNEL_SUITE:-bookworm}
debian_mirror() {  # the Debian archive this machine's apt already uses
  sed -nE 's#^(URIs:[[:space:]]*|deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)(https?://[^[:space:]]+/debian)/?([[:space:]].*)?$#\3#p' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true
}
MIRROR=${ZFSVM_MIRROR:-$(debian_mirror)}
EXTRA_PACKAGES=${ZFSVM_EXTRA_PACKAGES-}
project_requirements() {  # Stratum's runtime dependencies + what tests/zfs runs with
    python3 - "$PROJECT/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    deps = tomllib.load(f)["project"]["dependencies"]
# the guest is Linux: environment markers (e.g. uvloop's "not win32") are dropped
print(" ".join([d.split(";")[0].replace(" ", "") for d in deps] + ["pytest>=8", "pytest-timeout>=2.2"]))
PY
}
PIP_PACKAGES=${ZFSVM_PIP_PACKAGES:-$(project_requirements)}
# the recipe's own files are part of the flavour: editing the guest init rebuilds
RECIPE=$(cat "$HERE/build.sh" "$HERE"/guest/* | sha1sum | cut -c1-12)
FLAVOUR="kernel=$KERNEL_SUITE zfs=$ZFS_SUITE extra=$EXTRA_PACKAGES pip=$PIP_PACKAGES recipe=$RECIPE"
OUT=$ZFSVM_DIR/out
export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -o DPkg::Lock::Timeout=1200 -y --no-install-recommends)

[ "$(id -u)" = 0 ] || { echo "build.sh must run as root" >&2; exit 1; }
mkdir -p "$ZFSVM_DIR" "$OUT"
# one build at a time per cache directory (two CI jobs on one machine wait for each other)
exec 9> "$ZFSVM_DIR/.build.lock"
flock 9
TIMES=$ZFSVM_DIR/build-times.txt
: > "$TIMES"
step_start=$(date +%s.%N)
step() {   # step NAME -- log the duration of the previous step and start NAME
    local now; now=$(date +%s.%N)
    if [ -n "${step_name:-}" ]; then
        printf '%-28s %7.1f s\n' "$step_name" "$(echo "$now - $step_start" | bc)" | tee -a "$TIMES"
    fi
    step_name=${1:-}; step_start=$now
    [ -z "$step_name" ] || echo "=== $step_name" >&2
}
total_start=$(date +%s.%N)

suite_opt() { [ "$1" = bookworm ] && return 0; echo "-t $1"; }

if [ "${ZFSVM_REUSE:-0}" = 1 ] && [ -f "$OUT/rootfs.ext4" ] && [ -f "$OUT/initrd.img" ] \
   && grep -qxF "flavour: $FLAVOUR" "$OUT/manifest.txt" 2>/dev/null; then
    command -v qemu-system-x86_64 >/dev/null || "${APT[@]}" install qemu-system-x86 >/dev/null
    echo "build.sh: reusing $OUT ($FLAVOUR)"; exit 0
fi

# ---------------------------------------------------------------- host tools
step "apt: host tools"
if [ "${ZFSVM_SKIP_APT:-0}" != 1 ]; then
    # zfs-dkms is in contrib; ZFS 2.3 and kernel 6.12 in bookworm-backports: a fresh
    # machine lists neither, so add them from the archive apt already uses.
    [ -n "$MIRROR" ] || { echo "no Debian archive found in apt sources; set ZFSVM_MIRROR" >&2; exit 1; }
    printf 'Types: deb\nURIs: %s\nSuites: bookworm\nComponents: contrib\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main contrib\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$MIRROR" "$MIRROR" > /etc/apt/sources.list.d/zfsvm.sources
    apt-get update -qq
    "${APT[@]}" install qemu-system-x86 mmdebstrap busybox-static dkms cpio \
        e2fsprogs kmod bc xz-utils zstd python3 >/dev/null
fi

# kernel ABI name, e.g. 6.1.0-56-amd64 or 6.12.95+deb12-amd64
# shellcheck disable=SC2046
KVER=$(apt-cache depends $(suite_opt "$KERNEL_SUITE") linux-image-amd64 \
        | awk '/Depends: linux-image-/{sub("linux-image-","",$2); print $2; exit}')
[ -n "$KVER" ] || { echo "cannot resolve kernel version" >&2; exit 1; }
echo "kernel: $KVER (from $KERNEL_SUITE), zfs from $ZFS_SUITE" >&2

step "apt: headers + zfs-dkms"
if [ "${ZFSVM_SKIP_APT:-0}" != 1 ]; then
    "${APT[@]}" install "linux-headers-$KVER" >/dev/null
    # the zfs-dkms postinst builds the module for every kernel whose headers
    # are installed (the running kernel's headers are not needed)
    # shellcheck disable=SC2046
    "${APT[@]}" --allow-downgrades $(suite_opt "$ZFS_SUITE") install "zfs-dkms/$ZFS_SUITE" \
        > "$ZFSVM_DIR/apt-zfs-dkms.log" 2>&1 || { tail -40 "$ZFSVM_DIR/apt-zfs-dkms.log"; exit 1; }
fi
ZVER=$(dpkg-query -W -f='${Version}' zfs-dkms | sed 's/-[^-]*$//')
ZPKGVER=$(dpkg-query -W -f='${Version}' zfs-dkms)

step "dkms build zfs $ZVER"
if ! dkms status -m zfs -v "$ZVER" -k "$KVER" | grep -q installed; then
    dkms install -m zfs -v "$ZVER" -k "$KVER"
fi
MODSRC=/lib/modules/$KVER/updates/dkms
ls "$MODSRC"/zfs.ko* "$MODSRC"/spl.ko* >/dev/null

# ------------------------------------------------------------------ kernel
step "kernel image"
rm -rf "$ZFSVM_DIR/kernel" "$ZFSVM_DIR/debs"
mkdir -p "$ZFSVM_DIR/kernel" "$ZFSVM_DIR/debs"
(cd "$ZFSVM_DIR/debs" && apt-get download "linux-image-$KVER" 2>/dev/null)
dpkg-deb -x "$ZFSVM_DIR"/debs/linux-image-"$KVER"_*.deb "$ZFSVM_DIR/kernel"
K=$ZFSVM_DIR/kernel
mkdir -p "$K/lib/modules/$KVER/updates/dkms"
cp "$MODSRC"/*.ko* "$K/lib/modules/$KVER/updates/dkms/"
depmod -b "$K" "$KVER"
cp "$K/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
# Uncompressed ELF vmlinux: qemu boots it through the PVH entry point, which
# skips the BIOS bzImage path and the in-guest xz decompression (~7 s under TCG).
python3 - "$OUT/vmlinuz" "$OUT/vmlinux" <<'PY' || rm -f "$OUT/vmlinux"
import lzma, struct, subprocess, sys, zlib
data = open(sys.argv[1], "rb").read()
# bzImage setup header: payload_offset (0x248) / payload_length (0x24c) are
# relative to the protected-mode code that follows (setup_sects+1)*512 bytes.
off = ((data[0x1f1] or 4) + 1) * 512 + struct.unpack_from("<I", data, 0x248)[0]
payload = data[off:off + struct.unpack_from("<I", data, 0x24c)[0]]
if payload[:6] == b"\xfd7zXZ\x00":
    elf = lzma.LZMADecompressor().decompress(payload)
elif payload[:4] == b"\x28\xb5\x2f\xfd":          # zstd, 4-byte size appended
    elf = subprocess.run(["zstd", "-qdc"], input=payload[:-4],
                         capture_output=True, check=True).stdout
elif payload[:2] == b"\x1f\x8b":
    elf = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(payload)
else:
    sys.exit("unknown vmlinuz compression; booting the bzImage instead")
assert elf[:4] == b"\x7fELF", "payload is not an ELF image"
open(sys.argv[2], "wb").write(elf)
PY

# closure MODULE... -> module paths relative to $K, dependency order
closure() {
    local m
    for m in "$@"; do modprobe -d "$K" -S "$KVER" --show-depends "$m"; done \
        | awk '$1=="insmod"{print $2}' | sed "s|^$K/||" | awk '!seen[$0]++'
}
BOOT_MODULES=(virtio_pci virtio_blk ext4 9p 9pnet_virtio)

# --------------------------------------------------------------- initramfs
step "initramfs"
I=$ZFSVM_DIR/initramfs
rm -rf "$I"; mkdir -p "$I/bin"
cp /bin/busybox "$I/bin/busybox"
install -m 755 "$HERE/guest/initramfs-init" "$I/init"
# busybox insmod gets plain .ko files (newer Debian kernels ship .ko.xz/.ko.zst)
closure "${BOOT_MODULES[@]}" | while read -r ko; do
    mkdir -p "$I/$(dirname "$ko")"
    case $ko in
        *.ko.xz)  xz -dc "$K/$ko" > "$I/${ko%.xz}"; echo "${ko%.xz}" ;;
        *.ko.zst) zstd -qdc "$K/$ko" > "$I/${ko%.zst}"; echo "${ko%.zst}" ;;
        *)        cp "$K/$ko" "$I/$ko"; echo "$ko" ;;
    esac
done > "$I/modules.list"
(cd "$I" && find . | cpio -o -H newc -R 0:0 --quiet) | gzip -1 > "$OUT/initrd.img"

# ------------------------------------------------------------------ rootfs
step "rootfs (mmdebstrap)"
R=$ZFSVM_DIR/rootfs
rm -rf "$R"
# iproute2: the guest init brings up lo (Stratum's tests talk to 127.0.0.1)
PKGS="zfsutils-linux,python3-pyzfs,kmod,udev,procps,iproute2${EXTRA_PACKAGES:+,${EXTRA_PACKAGES// /,}}"
MM=(mmdebstrap --variant=minbase --components=main,contrib --include="$PKGS"
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*')
SOURCES=("deb $MIRROR bookworm main contrib")
if [ "$ZFS_SUITE" != bookworm ]; then
    SOURCES+=("deb $MIRROR $ZFS_SUITE main contrib")
    MM+=(--setup-hook="mkdir -p \"\$1/etc/apt/preferences.d\"; printf 'Package: *zfs* *nvpair* *uutil* *zpool*\nPin: release n=$ZFS_SUITE\nPin-Priority: 990\n' > \"\$1/etc/apt/preferences.d/zfs\"")
fi
"${MM[@]}" bookworm "$R" "${SOURCES[@]}" > "$ZFSVM_DIR/mmdebstrap.log" 2>&1 \
    || { tail -40 "$ZFSVM_DIR/mmdebstrap.log"; exit 1; }
if [ -n "$PIP_PACKAGES" ]; then
    step "rootfs: pip packages"
    PIP_PY=${ZFSVM_PIP_PYTHON:-python3}
    if ! "$PIP_PY" -m pip --version >/dev/null 2>&1; then
        "${APT[@]}" install python3-pip >/dev/null; PIP_PY=/usr/bin/python3
    fi
    # wheels for the guest's interpreter (Debian 12: CPython 3.11, glibc 2.36), whatever
    # python runs pip on the host; --target skips Debian's externally-managed check
    # shellcheck disable=SC2086
    "$PIP_PY" -m pip install -q --no-cache-dir --disable-pip-version-check \
        --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 \
        --platform manylinux_2_36_x86_64 --platform manylinux2014_x86_64 \
        --target "$R/usr/local/lib/python3.11/dist-packages" $PIP_PACKAGES
fi
GUEST_ZVER=$(chroot "$R" dpkg-query -W -f='${Version}' zfsutils-linux)
[ "${GUEST_ZVER%-*}" = "${ZPKGVER%-*}" ] || echo "WARNING: guest zfsutils $GUEST_ZVER != zfs-dkms $ZPKGVER" >&2

step "rootfs: modules + ext4"
mkdir -p "$R/lib/modules/$KVER"
cp "$K/lib/modules/$KVER"/modules.order "$K/lib/modules/$KVER"/modules.builtin* "$R/lib/modules/$KVER/"
# stored uncompressed: saves seconds of in-guest xz decompression under TCG
closure "${BOOT_MODULES[@]}" zfs | while read -r ko; do
    mkdir -p "$R/$(dirname "$ko")"
    case $ko in
        *.ko.xz)  xz -dc "$K/$ko" > "$R/${ko%.xz}" ;;
        *.ko.zst) zstd -qdc "$K/$ko" > "$R/${ko%.zst}" ;;
        *)        cp "$K/$ko" "$R/$ko" ;;
    esac
done
depmod -b "$R" "$KVER"
install -m 755 "$HERE/guest/zfsvm-init" "$R/sbin/zfsvm-init"
rm -rf "$R"/var/cache/apt/*.bin "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/*
chroot "$R" zgenhostid -f 2>/dev/null || true
size_mb=$(( $(du -sm "$R" | cut -f1) * 5 / 4 + 128 ))
rm -f "$OUT/rootfs.ext4"
mkfs.ext4 -q -F -L zfsvm-root -d "$R" "$OUT/rootfs.ext4" "${size_mb}M"

GUEST_PY=$(chroot "$R" dpkg-query -W -f='${Version}' python3)
GUEST_PYZFS=$(chroot "$R" dpkg-query -W -f='${Version}' python3-pyzfs)
if [ "${ZFSVM_KEEP_TREES:-0}" != 1 ]; then   # only out/ is needed from here on
    rm -rf "$R" "$K" "$ZFSVM_DIR/debs"
fi

step ""
total=$(echo "$(date +%s.%N) - $total_start" | bc)
printf '%-28s %7.1f s\n' "TOTAL" "$total" | tee -a "$TIMES"
{
    echo "flavour: $FLAVOUR"
    echo "kernel=$KVER ($KERNEL_SUITE)"
    echo "zfs-dkms=$ZPKGVER ($ZFS_SUITE)"
    echo "guest zfsutils-linux=$GUEST_ZVER"
    echo "guest python3=$GUEST_PY"
    echo "guest python3-pyzfs=$GUEST_PYZFS"
    echo "sizes:"; (cd "$OUT" && du -sh --apparent-size vmlinu[xz] initrd.img rootfs.ext4 && du -sh rootfs.ext4 | sed 's/^/allocated: /')
    echo "build times:"; cat "$TIMES"
} > "$OUT/manifest.txt"
cat "$OUT/manifest.txt"

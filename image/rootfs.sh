#!/usr/bin/env bash
# The arm64 Debian root filesystem of the Pi 4 image, as a directory ($WORK/rootfs), built with
# mmdebstrap from Debian's packages; maintainer scripts run under qemu-user (binfmt_misc).
#   INITRD_MODULES=most (default: Debian's, what the image ships) | list (faster, less tested)
# The boot partition's content (firmware, config.txt, cmdline.txt, kernel, initrd, DTBs, as
# Debian's raspi-firmware hooks write them) is moved to $WORK/bootfs.
#
# Two programs are replaced by no-ops while packages install, and run once at the end:
# - update-initramfs: it would run twice (kernel postinst, then the trigger), ~11 min EACH under
#   emulation with MODULES=most (65 s with list);
# - dkms: zfs-dkms would compile ZFS for the image's kernel, gcc under qemu-user: far too slow.
#   The module is built on the Pi itself at first boot instead (stratum-appliance, with progress
#   on the console); the image carries the source (zfs-dkms) and the kernel headers for it.
. "$(dirname "$0")/lib.sh"
need_root
INITRD_MODULES=${INITRD_MODULES:-most}
ROOTFS=$WORK/rootfs
rm -rf "$ROOTFS" "$WORK/bootfs"
PACKAGES=(
  systemd-sysv udev kmod dbus systemd-resolved systemd-timesyncd
  linux-image-arm64 raspi-firmware initramfs-tools zstd
  e2fsprogs dosfstools fdisk util-linux cloud-guest-utils iproute2 netbase ca-certificates openssl
  python3 avahi-daemon libnss-mdns openssh-server less nano procps
  zfsutils-linux python3-pyzfs zfs-dkms dkms linux-headers-arm64
)
divert='d() { chroot "$1" dpkg-divert --quiet --local --rename --add "$2"; printf "#!/bin/sh\necho \"$2: deferred (image build)\"\n" > "$1$2"; chmod +x "$1$2"; }'
undivert='u() { rm -f "$1$2"; chroot "$1" dpkg-divert --quiet --local --rename --remove "$2"; }'
T0=$(date +%s)
mmdebstrap --architectures=arm64 --variant=minbase \
  --components="main contrib non-free-firmware" \
  --aptopt='Acquire::Retries "3"' \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='force-unsafe-io' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --include="$(IFS=,; echo "${PACKAGES[*]}")" \
  --essential-hook="$divert; d \"\$1\" /usr/sbin/update-initramfs; d \"\$1\" /usr/sbin/dkms" \
  --customize-hook='echo stratum > "$1/etc/hostname"; printf "127.0.0.1\tlocalhost\n127.0.1.1\tstratum\n::1\tlocalhost ip6-localhost ip6-loopback\n" > "$1/etc/hosts"' \
  --customize-hook='printf "LABEL=RASPIROOT\t/\text4\trw,noatime\t0\t1\nLABEL=RASPIFIRM\t/boot/firmware\tvfat\trw,nofail,umask=0077\t0\t2\n" > "$1/etc/fstab"' \
  --customize-hook='printf "\n# Stratum image: root by label (SD card or USB boot alike); CMA=0: no cma= (a chroot is\n# not recognised as a Pi 4, and cma=64M makes a Pi 4 unbootable); /dev/console = HDMI (last).\nROOTPART=LABEL=RASPIROOT\nCMA=0\nCONSOLES=\"ttyS1,115200 tty0\"\n" >> "$1/etc/default/raspi-firmware"' \
  --customize-hook="if [ $INITRD_MODULES = list ]; then echo MODULES=list > \"\$1/etc/initramfs-tools/conf.d/modules-list\"; cp $IMAGE_DIR/initramfs/modules \"\$1/etc/initramfs-tools/modules\"; install -m 755 $IMAGE_DIR/initramfs/hook-pi-storage \"\$1/etc/initramfs-tools/hooks/pi-storage\"; fi" \
  --customize-hook="$undivert; u \"\$1\" /usr/sbin/update-initramfs; u \"\$1\" /usr/sbin/dkms" \
  --customize-hook='T=$(date +%s); chroot "$1" update-initramfs -c -k all; echo "I: update-initramfs took $(( $(date +%s)-T )) s"' \
  --customize-hook='v=$(ls "$1/usr/src" | sed -n "s/^zfs-//p" | head -1); chroot "$1" dkms add -m zfs -v "$v" >/dev/null; echo "I: dkms: zfs $v added (built at first boot)"' \
  --customize-hook='sed -i "/^force-unsafe-io/d" "$1/etc/dpkg/dpkg.cfg.d/99mmdebstrap"' \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*; chroot "$1" passwd -d root >/dev/null; rm -f "$1/etc/machine-id" "$1/var/lib/dbus/machine-id"; touch "$1/etc/machine-id"; rm -f "$1/etc/hostid"' \
  --customize-hook='chroot "$1" apt-get clean; rm -rf "$1"/var/lib/apt/lists/*' \
  "$SUITE" "$ROOTFS" "$MIRROR"
log "mmdebstrap: $(( $(date +%s)-T0 )) s"
mv "$ROOTFS/boot/firmware" "$WORK/bootfs" && mkdir "$ROOTFS/boot/firmware"
log "rootfs $(du -sh "$ROOTFS" | cut -f1), bootfs $(du -sh "$WORK/bootfs" | cut -f1); cmdline.txt: $(cat "$WORK/bootfs/cmdline.txt")"

#!/usr/bin/env bash
# Pack $WORK/bootfs + $WORK/rootfs into a flashable MBR disk image WITHOUT mounting anything:
# FAT32 "RASPIFIRM" with mkfs.vfat + mcopy (mtools), ext4 "RASPIROOT" with mkfs.ext4 -d, the
# partition table with sfdisk on the image file, the partitions dd'ed in at their offsets.
# The root filesystem gets little headroom: the first boot grows it to the whole card.
. "$(dirname "$0")/lib.sh"
BOOT_MB=${BOOT_MB:-256}
ROOTFS=$WORK/rootfs
no_mounts_under "$ROOTFS"
W=$WORK/img; rm -rf "$W"; mkdir -p "$W"
T0=$(date +%s)
mkfs.vfat -F 32 -n RASPIFIRM -C "$W/boot.vfat" $((BOOT_MB*1024)) >/dev/null
mcopy -s -p -m -i "$W/boot.vfat" "$WORK"/bootfs/* ::/
USED_MB=$(du -sm "$ROOTFS" | cut -f1); ROOT_MB=$(( USED_MB*115/100 + 200 ))
truncate -s "${ROOT_MB}M" "$W/root.ext4"
mkfs.ext4 -q -F -L RASPIROOT -E root_owner=0:0 -d "$ROOTFS" "$W/root.ext4" "${ROOT_MB}M"
e2fsck -fn "$W/root.ext4" >/dev/null 2>&1 || die "the root filesystem image does not check clean"
START1=$((4*2048)); SIZE1=$((BOOT_MB*2048)); START2=$((START1+SIZE1)); SIZE2=$((ROOT_MB*2048))
rm -f "$IMG"; truncate -s $(( (START2+SIZE2)*512 )) "$IMG"
sfdisk -q "$IMG" <<SF
label: dos
start=$START1, size=$SIZE1, type=c, bootable
start=$START2, size=$SIZE2, type=83
SF
dd if="$W/boot.vfat" of="$IMG" bs=1M seek=$((START1/2048)) conv=notrunc,sparse status=none
dd if="$W/root.ext4" of="$IMG" bs=1M seek=$((START2/2048)) conv=notrunc,sparse status=none
rm -rf "$W"
log "$(basename "$IMG") in $(( $(date +%s)-T0 )) s: $(du -h --apparent-size "$IMG" | cut -f1) ($(du -h "$IMG" | cut -f1) allocated; root $ROOT_MB MiB, of it $USED_MB MiB used)"

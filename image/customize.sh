#!/usr/bin/env bash
# Put Stratum into the root filesystem built by rootfs.sh (fast; run again after changing the
# appliance without rebuilding the rootfs): the aarch64 pyz and its unit via `stratum install
# --root`, the appliance (a stdlib-only zipapp), the overlay, enabled services, and the pyz
# unpacked once under qemu-user (its smoke test, and a faster first start on the Pi).
. "$(dirname "$0")/lib.sh"
need_root
ROOTFS=$WORK/rootfs
[ -d "$ROOTFS/usr" ] || die "no $ROOTFS (run image/rootfs.sh)"
[ -f "$PYZ_ARM" ] || die "no $PYZ_ARM (build it: packaging/build-pyz.py --arch aarch64)"
T0=$(date +%s)
"$ROOT/.venv/bin/python" -m stratum install --root "$ROOTFS" --no-start --pyz "$PYZ_ARM" >/dev/null
cp -r --preserve=mode "$IMAGE_DIR/overlay/." "$ROOTFS/"
mkdir -p "$ROOTFS/srv/stratum" "$ROOTFS/var/lib/stratum-appliance"
# the appliance: one file, Debian's python3 and its standard library only
Z=$WORK/appliance-zipapp; rm -rf "$Z"; mkdir -p "$Z"
cp -r "$ROOT/appliance" "$Z/"; find "$Z" -name __pycache__ -prune -exec rm -rf {} +
python3 -m zipapp "$Z" -m appliance.cli:main -p /usr/bin/python3 -o "$ROOTFS/usr/local/sbin/stratum-appliance"
chmod 755 "$ROOTFS/usr/local/sbin/stratum-appliance"; rm -rf "$Z"
# the example appliance file, editable on the boot partition before the first boot
PYTHONPATH=$ROOT python3 -c 'from appliance.settings import EXAMPLE; print(EXAMPLE, end="")' \
  > "$WORK/bootfs/stratum-appliance.toml"
trap 'chroot_umounts "$ROOTFS"' EXIT
chroot_mounts "$ROOTFS"
chroot "$ROOTFS" systemctl enable --quiet systemd-networkd.service systemd-resolved.service \
  systemd-timesyncd.service avahi-daemon.service ssh.service stratum-firstboot.service
# stratum.service is enabled by the first boot, once its disks are ready; DKMS builds ZFS
# then too, driven by stratum-appliance (not at every boot by dkms.service)
chroot "$ROOTFS" systemctl disable --quiet stratum.service 2>/dev/null || true
if [ -e "$ROOTFS/lib/systemd/system/dkms.service" ]; then chroot "$ROOTFS" systemctl disable --quiet dkms.service; fi
T1=$(date +%s)
rm -rf "$ROOTFS/var/cache/stratum"; mkdir -p "$ROOTFS/var/cache/stratum"
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/bin:/bin SHIV_ROOT=/var/cache/stratum \
  /usr/bin/python3 /usr/local/bin/stratum.pyz --version
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/bin:/bin /usr/bin/python3 \
  /usr/local/sbin/stratum-appliance --help >/dev/null
log "aarch64 pyz unpacked and run under qemu-user in $(( $(date +%s)-T1 )) s"
chroot_umounts "$ROOTFS"; trap - EXIT
log "customized in $(( $(date +%s)-T0 )) s"

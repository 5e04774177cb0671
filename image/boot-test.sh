#!/usr/bin/env bash
# Boot the image under qemu-system-aarch64 -M virt (TCG: no KVM for arm64 here) with the image's
# own kernel, initrd and root filesystem, plus four disks, and check that the first boot
# provisions them and Stratum answers SIGNED S3 requests on a loopback port forward:
#   scsi-hd "SSD"  (virtio-scsi, rotation_rate=1)    named in the appliance file -> hot
#   scsi-hd "HDD"  (virtio-scsi, rotation_rate=7200) named in the appliance file -> warm
#   USB blank disk (usb-storage)                      found by itself            -> warm
#   USB disk with an ext4 filesystem and a file       found, holds data          -> left alone
# virtio disks are not USB: the appliance file names them (its test mode), by /dev/disk/by-id.
# ZFS is not exercised here: its module would be compiled by DKMS under TCG (far too slow), so
# the file says filesystem = "ext4". Then a second boot checks that everything comes back.
#   BOOTS=2 (default) | 1    PORT=19000    TIMEOUT=900 (seconds per boot)
#   APPLIANCE_FS=ext4 (default) | zfs | auto   (zfs: for an image whose rootfs has the module)
. "$(dirname "$0")/lib.sh"
need_root
WITH_QEMU_SYSTEM=1 bash "$IMAGE_DIR/host-setup.sh"
command -v debugfs >/dev/null || die "debugfs (e2fsprogs) missing"
PORT=${PORT:-19000}; TIMEOUT=${TIMEOUT:-900}; BOOTS=${BOOTS:-2}; SMP=${SMP:-2}
[ -f "$IMG" ] || die "no $IMG (image/build.sh)"
B=$WORK/boot-test; rm -rf "$B"; mkdir -p "$B"
PY=$ROOT/.venv/bin/python
T0=$(date +%s)
# a sparse copy of the image, grown: the first boot grows the root partition into it
cp --sparse=always "$IMG" "$B/sd.img"; truncate -s 4G "$B/sd.img"
OFF=$(( $(sfdisk -J "$IMG" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][0]["start"])') * 512 ))
FAT="$B/sd.img@@$OFF"
K=$(mdir -b -i "$FAT" ::/ | grep -m1 '/vmlinuz-'); I=$(mdir -b -i "$FAT" ::/ | grep -m1 '/initrd.img-')
mcopy -i "$FAT" "$K" "$B/vmlinuz"; mcopy -i "$FAT" "$I" "$B/initrd.img"
cat > "$B/stratum-appliance.toml" <<'TOML'
# boot-test.sh: the emulated SCSI disks are not USB, so they are named (by /dev/disk/by-id).
hostname = "stratum"
filesystem = "@FS@"
disks = ["scsi-0QEMU_QEMU_HARDDISK_STRATUMSSD1", "scsi-0QEMU_QEMU_HARDDISK_STRATUMHDD1"]
TOML
sed -i "s/@FS@/${APPLIANCE_FS:-ext4}/" "$B/stratum-appliance.toml"
mcopy -o -i "$FAT" "$B/stratum-appliance.toml" ::/stratum-appliance.toml
for d in ssd hdd usbblank; do truncate -s 2G "$B/$d.img"; done
mkdir -p "$B/precious"; echo "family photos: do not format" > "$B/precious/README.txt"
truncate -s 1G "$B/usbdata.img"
mkfs.ext4 -q -F -L PRECIOUS -d "$B/precious" "$B/usbdata.img" 1G
DATA_SUM=$(sha256sum "$B/usbdata.img" | cut -d' ' -f1)
log "test disks ready in $(( $(date +%s)-T0 )) s (kernel $(basename "$K"))"

QPID=""
trap '[ -n "$QPID" ] && kill "$QPID" 2>/dev/null; true' EXIT
mon() { "$PY" - "$B/mon.sock" "$1" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); time.sleep(0.2); s.recv(4096)
s.sendall((sys.argv[2] + "\n").encode()); time.sleep(0.5); s.close()
PY
}
boot() {  # boot N: start qemu, console to $B/console-N.log
  C=$B/console-$1.log; : > "$C"
  qemu-system-aarch64 -M virt -cpu cortex-a72 -smp "$SMP" -m 2048 -display none \
    -kernel "$B/vmlinuz" -initrd "$B/initrd.img" \
    -append "root=LABEL=RASPIROOT rw rootwait console=ttyAMA0 systemd.show_status=1" \
    -drive file="$B/sd.img",format=raw,if=none,id=sd -device virtio-blk-pci,drive=sd \
    -device virtio-scsi-pci,id=scsi0 \
    -drive file="$B/ssd.img",format=raw,if=none,id=ssd \
    -device scsi-hd,bus=scsi0.0,drive=ssd,serial=STRATUMSSD1,rotation_rate=1 \
    -drive file="$B/hdd.img",format=raw,if=none,id=hdd \
    -device scsi-hd,bus=scsi0.0,drive=hdd,serial=STRATUMHDD1,rotation_rate=7200 \
    -device qemu-xhci,id=xhci \
    -drive file="$B/usbblank.img",format=raw,if=none,id=ub \
    -device usb-storage,bus=xhci.0,drive=ub,serial=USBBLANK1 \
    -drive file="$B/usbdata.img",format=raw,if=none,id=ud \
    -device usb-storage,bus=xhci.0,drive=ud,serial=USBDATA1 \
    -netdev user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$PORT-:9000 -device virtio-net-pci,netdev=n0 \
    -device virtio-rng-pci -serial file:"$C" -monitor unix:"$B/mon.sock",server,nowait &
  QPID=$!
}
poweroff() {
  local t=$(date +%s)
  mon system_powerdown
  for _ in $(seq 180); do kill -0 "$QPID" 2>/dev/null || break; sleep 1; done
  if kill -0 "$QPID" 2>/dev/null; then log "no clean poweroff: killing qemu"; kill "$QPID"; fi
  wait "$QPID" 2>/dev/null || true; QPID=""
  log "powered off in $(( $(date +%s)-t )) s"
}
journal() {  # the guest's journal for the appliance and Stratum, read from the image (no mount)
  command -v journalctl >/dev/null || return 0
  local off j
  off=$(( $(sfdisk -J "$B/sd.img" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][1]["start"])') * 512 ))
  j=$B/journal; rm -rf "$j"; mkdir -p "$j"
  debugfs -c -R "rdump /var/log/journal $j" "$B/sd.img?offset=$off" >/dev/null 2>&1 || return 0
  journalctl -D "$j/journal" --no-pager -o short-monotonic -u stratum-firstboot -u stratum \
    -u 'srv-stratum-*.mount' 2>/dev/null | tail -80 | sed 's/^/  journal| /' >&2 || true
}
fail() {
  log "FAILED: $*"
  tail -40 "$C" | tr -d '\r' | sed 's/^/  console| /' >&2
  if [ -n "$QPID" ]; then poweroff; fi
  journal
  exit 1
}

for n in $(seq "$BOOTS"); do
  TB=$(date +%s)
  boot "$n"
  phase=again; [ "$n" = 1 ] && phase=first
  # the keys: printed on the console by the first boot; from the boot partition's copy after
  keys=$C; [ "$n" = 1 ] || keys=$B/stratum-credentials.txt
  if ! "$PY" "$IMAGE_DIR/s3check.py" "$phase" --endpoint "https://127.0.0.1:$PORT" \
       --keys-from "$keys" --timeout "$TIMEOUT" --hot 1 --warm 2; then
    fail "boot $n: no signed S3 answer with the provisioned disks"
  fi
  log "boot $n: Stratum answered signed requests $(( $(date +%s)-TB )) s after qemu started"
  grep -a -E 'stratum-appliance: (hot|warm|skip|first boot done|root filesystem)' "$C" | tr -d '\r' | sed 's/^/  console| /' >&2 || true
  grep -a -E 'Failed to start|FAILED' "$C" | tr -d '\r' | sed 's/^/  console| /' >&2 || true
  poweroff
  if [ "$n" = 1 ]; then
    mcopy -o -i "$FAT" ::/stratum-credentials.txt "$B/stratum-credentials.txt" \
      || fail "no stratum-credentials.txt on the boot partition"
    mcopy -o -i "$FAT" ::/stratum-report.txt "$B/stratum-report.txt" || fail "no stratum-report.txt"
    mcopy -o -i "$FAT" ::/stratum-cert.pem "$B/stratum-cert.pem" || fail "no stratum-cert.pem"
    [ "$("$PY" -c "import sys; sys.path.insert(0, '$ROOT'); from appliance.render import fingerprint, parse_fingerprint as p; print(fingerprint(open('$B/stratum-cert.pem').read()) == p(open('$B/stratum-credentials.txt').read()))")" = True ] \
      || fail "stratum-cert.pem is not the certificate the credentials name"
    sed 's/^/  stratum-report.txt| /' "$B/stratum-report.txt" >&2
    [ "$("$PY" -c "import sys; sys.path.insert(0, '$ROOT'); from appliance.render import parse_credentials_note as p; print(p(open('$B/stratum-credentials.txt').read())[0])")" \
      = "$(grep -a -o -m1 'access_key = [A-Z0-9]*' "$C" | cut -d' ' -f3)" ] || fail "the keys on the boot partition differ from the console's"
    grep -q 'skip usb-QEMU_QEMU_HARDDISK_USBDATA1.*holds data' "$B/stratum-report.txt" || fail "the data disk is not reported as left alone"
    for d in ssd hdd usbblank; do
      label=$(sfdisk -J "$B/$d.img" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][0].get("name",""))')
      log "$d.img: GPT partition $label"
      case "$label" in stratum-hot-*|stratum-warm-*) ;; *) fail "$d.img is not a Stratum pool" ;; esac
    done
  fi
done
[ "$(sha256sum "$B/usbdata.img" | cut -d' ' -f1)" = "$DATA_SUM" ] || fail "the USB disk with data was changed"
log "the USB disk with data is untouched (same sha256)"
log "boot test passed in $(( $(date +%s)-T0 )) s"

#!/bin/bash
# usage: run-in-vm.sh CMD [ARGS...]
#
# Boots the VM prepared by build.sh (Debian kernel + real ZFS module), shares
# the current directory into it at the same absolute path (9p, read-write),
# runs CMD there as root with zfs/spl loaded, streams CMD's stdout+stderr to
# this script's stdout and exits with CMD's exit code.
#
# Inside the VM: ZFSVM=1, ZFSVM_DISKS="/dev/vdb /dev/vdc ..." (empty sparse
# disks, discarded afterwards), zpool/zfs/python3 with libzfs_core (pyzfs).
# The root filesystem is a throw-away snapshot: every run starts clean.
#
# Exit codes besides CMD's own: 124 timeout, 125 VM/setup failure,
# 126 zfs module failed to load.
#
# Knobs (environment):
#   ZFSVM_DIR        where build.sh put out/ (default build/zfsvm in this clone)
#   ZFSVM_ACCEL      auto | kvm | tcg (auto: kvm only if the CPU has vmx/svm)
#   ZFSVM_CPUS       vCPUs (default 2)        ZFSVM_MEM   MiB (default 2048)
#   ZFSVM_NDISKS     number of data disks (default 2)
#   ZFSVM_DISK_SIZE  size of each sparse data disk (default 1G)
#   ZFSVM_TIMEOUT    seconds before the VM is killed (default 1800)
#   ZFSVM_PASS_ENV   names of host env vars to export inside the VM
#   ZFSVM_ZFS_PARAMS zfs module parameters, e.g. "zfs_arc_max=268435456"
#   ZFSVM_VERBOSE=1  print the VM console (kernel + init log) afterwards
set -u
ZFSVM_DIR=${ZFSVM_DIR:-$(cd "$(dirname "$0")/.." && pwd)/build/zfsvm}
OUT=$ZFSVM_DIR/out
if [ $# -lt 1 ]; then sed -n '2,12p' "$0"; exit 2; fi
for f in vmlinuz initrd.img rootfs.ext4; do
    [ -f "$OUT/$f" ] || { echo "run-in-vm.sh: $OUT/$f missing, run build.sh" >&2; exit 125; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "run-in-vm.sh: qemu-system-x86_64 missing" >&2; exit 125; }

accel=${ZFSVM_ACCEL:-auto}
if [ "$accel" = auto ]; then
    accel=tcg
    # /dev/kvm alone is not enough: under PVM-style nested "KVM" (no vmx/svm
    # in the CPU flags) a stock kernel runs ~1000x slower than native.
    if [ -w /dev/kvm ] && grep -qw -E 'vmx|svm' /proc/cpuinfo; then accel=kvm; fi
fi
case $accel in
    kvm) ACCEL=(-accel kvm -cpu host) ;;
    tcg) ACCEL=(-accel tcg,thread=multi -cpu "${ZFSVM_CPU_MODEL:-max}") ;;
    *) echo "run-in-vm.sh: ZFSVM_ACCEL must be auto, kvm or tcg" >&2; exit 2 ;;
esac

workdir=$(pwd -P)
[ "$workdir" != / ] || { echo "run-in-vm.sh: run it from a project directory, not /" >&2; exit 2; }
ctl=$(mktemp -d "${TMPDIR:-/tmp}/zfsvm.XXXXXX")
qpid=
cleanup() {
    [ -n "$qpid" ] && kill "$qpid" 2>/dev/null
    [ "${ZFSVM_KEEP:-0}" = 1 ] || rm -rf "$ctl"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{
    printf 'ZFSVM_WORKDIR=%q\n' "$workdir"
    printf 'ZFSVM_ZFS_PARAMS=%q\n' "${ZFSVM_ZFS_PARAMS:-}"
} > "$ctl/env"
{
    echo 'set -e'
    for v in ${ZFSVM_PASS_ENV:-}; do printf 'export %s=%q\n' "$v" "${!v-}"; done
    printf 'cd %q\n' "$workdir"
    printf 'exec'; printf ' %q' "$@"; echo
} > "$ctl/cmd.sh"

DISKS=()
mkdir -p "$ctl/disks"
for i in $(seq 1 "${ZFSVM_NDISKS:-2}"); do
    truncate -s "${ZFSVM_DISK_SIZE:-1G}" "$ctl/disks/disk$i.img"
    DISKS+=(-drive "file=${ctl//,/,,}/disks/disk$i.img,if=virtio,format=raw,cache=unsafe,discard=unmap")
done

kernel=$OUT/vmlinuz
[ -f "$OUT/vmlinux" ] && kernel=$OUT/vmlinux   # PVH direct boot, much faster

start=$(date +%s.%N)
timeout --kill-after=10 "${ZFSVM_TIMEOUT:-1800}" qemu-system-x86_64 \
    "${ACCEL[@]}" -m "${ZFSVM_MEM:-2048}" -smp "${ZFSVM_CPUS:-2}" \
    -nodefaults -no-user-config -display none -nic none -no-reboot \
    -kernel "$kernel" -initrd "$OUT/initrd.img" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 ${ZFSVM_APPEND:-}" \
    -drive "file=$OUT/rootfs.ext4,if=virtio,format=raw,snapshot=on" \
    "${DISKS[@]}" \
    -virtfs "local,path=${ctl//,/,,},mount_tag=zfsvmctl,security_model=none" \
    -virtfs "local,path=${workdir//,/,,},mount_tag=zfsvmwork,security_model=none" \
    -serial "file:$ctl/console.log" \
    -chardev stdio,id=cmdout,signal=off -serial chardev:cmdout \
    < /dev/null &
qpid=$!
wait "$qpid"; qrc=$?; qpid=
elapsed=$(echo "$(date +%s.%N) - $start" | bc)

if [ -f "$ctl/rc" ]; then
    rc=$(cat "$ctl/rc")
elif [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
    echo "run-in-vm.sh: VM timed out after ${ZFSVM_TIMEOUT:-1800}s" >&2; rc=124
else
    echo "run-in-vm.sh: VM ended (qemu rc=$qrc) without a result" >&2; rc=125
fi
if [ "${ZFSVM_VERBOSE:-0}" = 1 ] || [ "$rc" -ge 124 ]; then
    echo "---- VM console ($accel) ----" >&2; tail -n 60 "$ctl/console.log" >&2
fi
printf 'run-in-vm.sh: rc=%s, %.1fs wall (%s)\n' "$rc" "$elapsed" "$accel" >&2
exit "$rc"

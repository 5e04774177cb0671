#!/usr/bin/env bash
# CI stage: Stratum against a real ZFS (kernel module, zpool/zfs, libzfs_core) in a qemu VM.
#
#   .ci/zfs.sh            build the VM image if this machine has none, run tests/zfs in it
#
# The image (Debian kernel + dkms-built zfs module + a rootfs with Stratum's dependencies) is
# cached in $ZFSVM_DIR (default build/zfsvm in this clone, like build/image) and rebuilt only when the recipe in zfs/
# or pyproject.toml's dependencies change: ~5-10 minutes on a fresh machine, seconds after.
# The tests run in ONE VM boot. Needs root (or sudo) for the build, apt access to Debian's
# archive, and no KVM (qemu's TCG emulator is used when there is no usable KVM).
# Exits non-zero when the build, the VM or any test fails; prints the time of each part.
set -euo pipefail
cd "$(dirname "$0")/.."
export ZFSVM_DIR=${ZFSVM_DIR:-$(pwd)/build/zfsvm}
as_root=()
[ "$(id -u)" = 0 ] || as_root=(sudo --preserve-env=ZFSVM_DIR,ZFS_SUITE,KERNEL_SUITE,ZFSVM_MIRROR)

start=$(date +%s)
ZFSVM_REUSE=1 "${as_root[@]}" zfs/build.sh
built=$(date +%s)
echo "zfs stage: VM image ready in $((built - start)) s" >&2

# The guest's CPU is emulated (~20x slower than the host): generous timeouts.
rc=0
ZFSVM_TIMEOUT=${ZFSVM_TIMEOUT:-1200} zfs/run-in-vm.sh \
    env PYTHONDONTWRITEBYTECODE=1 python3 -m pytest -q -rs -p no:cacheprovider \
    -W ignore::pytest.PytestConfigWarning -o timeout=600 --durations=5 tests/zfs || rc=$?
done_at=$(date +%s)
echo "zfs stage: boot + tests $((done_at - built)) s, total $((done_at - start)) s, rc=$rc" >&2
exit "$rc"

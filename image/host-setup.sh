#!/usr/bin/env bash
# Host tools for the image build (Debian/Ubuntu x86_64 or arm64, as root), and binfmt_misc so
# arm64 programs run under qemu-user, inside chroots too (flag F).
. "$(dirname "$0")/lib.sh"
need_root
[ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
tools=(mmdebstrap:mmdebstrap qemu-aarch64-static:qemu-user-static update-binfmts:binfmt-support
  mcopy:mtools mkfs.vfat:dosfstools mkfs.ext4:e2fsprogs sfdisk:fdisk xz:xz-utils zstd:zstd
  arch-test:arch-test)
if [ "${WITH_QEMU_SYSTEM:-0}" = 1 ]; then
  tools+=(qemu-system-aarch64:qemu-system-arm qemu-img:qemu-utils /usr/lib/ipxe/qemu:ipxe-qemu)
fi
missing=()
for pair in "${tools[@]}"; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  if [ "${cmd#/}" != "$cmd" ]; then [ -e "$cmd" ] || missing+=("$pkg")
  else command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get -o DPkg::Lock::Timeout=1200 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$(uname -m)" != aarch64 ]; then
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 || true
  grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
    || die "qemu-aarch64 binfmt handler missing or without flag F (apt-get install qemu-user-static)"
fi

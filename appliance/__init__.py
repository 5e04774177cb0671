"""Stratum on a Raspberry Pi 4: first-boot provisioning of the appliance image.

``stratum-appliance firstboot`` (run once by ``stratum-firstboot.service``) grows the root
filesystem, sets the hostname, generates the S3 keys and shows them, finds the attached disks,
builds one pool per disk (ZFS, or ext4 where ZFS is unavailable), writes
``/etc/stratum/stratum.toml`` and starts ``stratum.service``.

The decisions are pure functions, tested in ``tests/appliance``:

- :mod:`appliance.settings`: the optional ``stratum-appliance.toml`` on the boot partition;
- :mod:`appliance.disks`: which disks to use, in which tier, and never a disk that holds data
  unless the user named it;
- :mod:`appliance.render`: the generated files (``stratum.toml``, the environment file with the
  keys, ``fstab`` lines, the credentials note).

:mod:`appliance.system` runs the commands (lsblk, wipefs, zpool, mkfs.ext4, systemctl, ...)
and :mod:`appliance.cli` puts it together. Only the standard library is used: this runs with
Debian's ``/usr/bin/python3`` on the Pi, outside the zipapp.
"""

__version__ = "1"

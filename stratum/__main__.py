"""``python -m stratum`` is the same as the ``stratum`` command."""

from stratum.cli import main

raise SystemExit(main())

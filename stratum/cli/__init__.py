"""The ``stratum`` command line; see :func:`stratum.cli.main.main`."""

from stratum.cli.main import main

__all__ = ["main"]

"""Multipart uploads (filled in by the multipart work)."""

from __future__ import annotations

from collections.abc import Mapping

from stratum.s3.context import Handler

HANDLERS: Mapping[str, Handler] = {}

"""Stratum: a self-hosted S3-compatible object store with erasure coding and tiering."""

__version__ = "0.1.0"

"""Keeping data whole: scrub and heal, metadata backups, and offline recovery."""

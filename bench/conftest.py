"""Benchmarks are not tests: ``./dev bench`` runs them (pytest-benchmark)."""

"""Benchmarks of Stratum.

* ``python -m bench``: Stratum side by side with peer S3 servers (moto, Ceph radosgw when
  installed), one real server at a time on loopback, driven by a lean asyncio client
  (``loadgen``, requests signed by ``signer``; see ``__main__``).
* ``test_bench_*.py``: pytest-benchmark micro-benchmarks of single components.

Neither runs in the test command: the suite's ``testpaths`` is ``tests/``.
"""

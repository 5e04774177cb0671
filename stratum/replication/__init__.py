"""Multi-site replication: every new version of a replicated bucket copied to other sites.

- :mod:`~stratum.replication.queue`: the durable queue (LMDB ``replq``), written in the
  transaction that writes the version, and the version's replication status.
- :mod:`~stratum.replication.client`: the S3 client that talks to a target.
- :mod:`~stratum.replication.pusher`: one background loop per target, pushing the queue.
- :mod:`~stratum.replication.replicator`: all of it for a node, built from the configuration.

The receiving side is the S3 layer's (:mod:`stratum.s3.replica_ops`) and the object
service's (:mod:`stratum.service.replicas`): a replica keeps its source's version id, order
and time, so two sites replicating to each other hold the same versions and agree on the
current one, the greatest order.
"""

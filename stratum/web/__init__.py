"""HTTP beside the S3 API: the application that routes requests (:mod:`stratum.web.app`),
metrics and health checks (:mod:`~stratum.web.observe`), the admin API
(:mod:`~stratum.web.admin`) and the worker processes' forwarding to the primary
(:mod:`~stratum.web.forward`). The S3 layer below imports nothing from here."""

"""The web console: a browser's view of Stratum on a port of its own (``[console] listen``).

Users log in with their S3 keys; every bucket and object action is an S3 request to the
server's own port signed with those keys (:mod:`stratum.console.signing`), so the console can
do exactly what that user's S3 clients can. The root user also sees the operator's pages
(overview, tiers, users), built from the admin API and the console's own records. See
docs/console.md.

The primary server process starts it (:func:`stratum.console.server.start_console`); this
package's modules are imported only there, so worker processes never load Jinja2.
"""

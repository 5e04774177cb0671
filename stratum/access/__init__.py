"""Access control: who may do what to a bucket or an object (pure: no I/O, no HTTP).

- :mod:`stratum.access.acl`: access control lists (canned ACLs, ``x-amz-grant-*``
  headers, grants to users and to the AllUsers / AuthenticatedUsers groups);
- :mod:`stratum.access.policy` and :mod:`stratum.access.conditions`: bucket policies,
  parsed and checked once (``MalformedPolicy``), evaluated in memory;
- :mod:`stratum.access.actions`: the IAM action and ACL permission of each S3 operation;
- :mod:`stratum.access.decide`: the decision, from the bucket record's settings (owner,
  ACL, policy, public access block, object ownership), the request's facts and, where it
  matters, the object's owner, ACL and tags.

The S3 layer calls :func:`stratum.access.decide.decide` after authentication, for signed
and anonymous requests alike.
"""

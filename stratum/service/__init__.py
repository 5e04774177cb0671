"""The object service: buckets, objects, multipart uploads and users over metadata and storage."""

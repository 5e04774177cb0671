"""Get/Put/DeleteBucketReplication: a bucket's replication rules in AWS's XML.

The rules are those of :mod:`stratum.replication.rules`: the configuration file's targets
that list the bucket, and the rules stored with PutBucketReplication. A stored rule's ``ID``
names a ``[replication.<name>]`` target (S3's XML has no place for an endpoint or keys) and
its destination must be the bucket that target writes to; PUT replaces the stored rules,
DELETE removes them (the configuration file's stay). As AWS, the bucket's versioning must be
Enabled, and a GET with no rule at all is 404 ReplicationConfigurationNotFoundError.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiohttp import web

from stratum.replication import rules
from stratum.s3.bucket_ops import read_document, xml_response
from stratum.s3.context import Handler, ReqCtx
from stratum.s3.errors import S3Error
from stratum.s3.xml import XmlWriter
from stratum.s3.xml_requests import parse_document

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

MAX_REPLICATION_BODY = 256 * 1024
MAX_RULES = 1000


async def get_bucket_replication(ctx: ReqCtx) -> web.StreamResponse:
    record = ctx.service.get_bucket(ctx.bucket, ctx.user.canonical_id)
    found = rules.all_rules(record, ctx.settings.replication_targets)
    if not found:
        raise S3Error("ReplicationConfigurationNotFoundError", extra={"BucketName": ctx.bucket})
    w = XmlWriter("ReplicationConfiguration")
    w.leaf("Role", rules.role(record))
    for rule in found:
        w.start("Rule")
        w.leaf("ID", rule.id)
        w.leaf("Priority", rule.priority)
        w.leaf("Status", rule.status)
        w.start("Filter")
        w.leaf("Prefix", rule.prefix)
        w.end()
        w.start("DeleteMarkerReplication")
        w.leaf("Status", "Enabled" if rule.delete_markers else "Disabled")
        w.end()
        w.start("Destination")
        w.leaf("Bucket", rule.bucket)
        w.end()
        w.end()
    return xml_response(w.finish())


async def put_bucket_replication(ctx: ReqCtx) -> web.StreamResponse:
    root = parse_document(await read_document(ctx, MAX_REPLICATION_BODY), MAX_REPLICATION_BODY)
    if root.tag != "ReplicationConfiguration":
        raise S3Error("MalformedXML")
    record = ctx.service.get_bucket(ctx.bucket, ctx.user.canonical_id)
    if record.versioning != "Enabled":
        raise S3Error(
            "InvalidRequest",
            "Versioning must be 'Enabled' on the bucket to apply a replication configuration",
        )
    parsed = [_rule(element) for element in root if element.tag == "Rule"]
    if not parsed or len(parsed) > MAX_RULES:
        raise S3Error("MalformedXML")
    if len({rule.id for rule in parsed}) != len(parsed):
        raise S3Error("InvalidArgument", "Rule Id must be unique")
    for rule in parsed:
        why = rules.refusal(ctx.bucket, rule, ctx.settings.replication_targets)
        if why is not None:
            raise S3Error("InvalidRequest", why)
    role = _text(root, "Role")
    value = {"role": role, "rules": [rule.stored() for rule in parsed]}
    await ctx.service.set_bucket_setting(ctx.bucket, ctx.user.canonical_id, rules.SETTING, value)
    return web.Response(status=200)


async def delete_bucket_replication(ctx: ReqCtx) -> web.StreamResponse:
    await ctx.service.set_bucket_setting(ctx.bucket, ctx.user.canonical_id, rules.SETTING, None)
    return web.Response(status=204)


def _rule(element: ET.Element) -> rules.Rule:
    prefix = _text(element, "Prefix")  # the legacy form, outside a Filter
    for child in element:
        if child.tag == "Filter":
            prefix = _text(child, "Prefix")
            if any(grand.tag in ("Tag", "And") for grand in child):
                raise S3Error("NotImplemented", "Replication rules filter by prefix only")
    markers = True
    for child in element:
        if child.tag == "DeleteMarkerReplication":
            markers = _text(child, "Status") == "Enabled"
    destination = [child for child in element if child.tag == "Destination"]
    if len(destination) != 1:
        raise S3Error("MalformedXML")
    priority = _text(element, "Priority") or "0"
    if not priority.isdigit():
        raise S3Error("MalformedXML")
    return rules.Rule(
        id=_text(element, "ID"),
        priority=int(priority),
        status=_text(element, "Status"),
        prefix=prefix,
        delete_markers=markers,
        bucket=_text(destination[0], "Bucket"),
    )


def _text(element: ET.Element, name: str) -> str:
    for child in element:
        if child.tag == name:
            return (child.text or "").strip()
    return ""


HANDLERS: Mapping[str, Handler] = {
    "GetBucketReplication": get_bucket_replication,
    "PutBucketReplication": put_bucket_replication,
    "DeleteBucketReplication": delete_bucket_replication,
}

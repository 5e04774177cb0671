"""S3 request bodies: small XML documents parsed defensively into plain values.

Parsing uses expat directly (through :class:`xml.etree.ElementTree.TreeBuilder`) with a
document type declaration, an entity declaration or an external entity reference being an
immediate error, so entity expansion ("billion laughs") and external entities cannot
happen; S3 request documents never need a DTD. Every function checks the body size first
(``MaxMessageLengthExceeded``), then answers ``MalformedXML`` for anything that is not
well-formed or does not have the expected shape. Elements are matched by local name:
the S3 namespace may be present, absent (most SDKs send it; s3cmd, curl users do not) or,
leniently, any other namespace. Unknown child elements are ignored, as AWS does.

Text is taken verbatim (no stripping) where it is data (object keys, tag keys and
values); markers and numbers are stripped of surrounding whitespace.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn
from xml.parsers import expat

from stratum.access import acl as acls
from stratum.s3.errors import ERROR_CODES, S3Error

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

# Size limits for buffered request documents; the server should stop reading at these.
MAX_CREATE_BUCKET_BODY = 64 * 1024
MAX_DELETE_OBJECTS_BODY = 2 * 1024 * 1024  # 1000 keys of 1024 bytes, escaped and wrapped
MAX_COMPLETE_MULTIPART_BODY = 4 * 1024 * 1024  # 10,000 parts with checksums
MAX_TAGGING_BODY = 64 * 1024
MAX_VERSIONING_BODY = 64 * 1024

MAX_DELETE_KEYS = 1000
MAX_PARTS = 10_000
MAX_OBJECT_TAGS = 10
MAX_BUCKET_TAGS = 50
MAX_TAG_KEY_CHARS = 128
MAX_TAG_VALUE_CHARS = 256

CHECKSUM_ELEMENTS = (
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumCRC64NVME",
    "ChecksumSHA1",
    "ChecksumSHA256",
)


class _Forbidden(Exception):
    """Raised from expat handlers to abort on DTDs and entities."""


def _forbid(*_args: object) -> NoReturn:
    raise _Forbidden


def parse_document(body: bytes, limit: int) -> ET.Element:
    """Parse ``body`` into an element tree with namespaces stripped from tags.

    Raises ``MaxMessageLengthExceeded`` above ``limit`` bytes and ``MalformedXML`` for
    anything that is not a well-formed document free of DTDs and entities.
    """
    if len(body) > limit:
        raise S3Error("MaxMessageLengthExceeded")
    import xml.etree.ElementTree as ET  # on the first XML body, not in every server process

    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    parser.StartDoctypeDeclHandler = _forbid
    parser.EntityDeclHandler = _forbid
    parser.UnparsedEntityDeclHandler = _forbid
    parser.ExternalEntityRefHandler = _forbid
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = lambda tag, attrs: builder.start(_local(tag), attrs)
    parser.EndElementHandler = lambda tag: builder.end(_local(tag))
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(body, True)
        return builder.close()
    except (expat.ExpatError, _Forbidden, AssertionError):
        raise S3Error("MalformedXML") from None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _malformed(detail: str) -> S3Error:
    """AWS's fixed MalformedXML message, plus what was wrong (AWS says nothing more)."""
    return S3Error("MalformedXML", f"{ERROR_CODES['MalformedXML'][1]} ({detail})")


def _root(body: bytes, limit: int, name: str) -> ET.Element:
    root = parse_document(body, limit)
    if root.tag != name:
        raise _malformed(f"expected a {name} document, got {root.tag}")
    return root


# For the parsers of other modules (CORS): the same checks, the same answers.
malformed = _malformed
document_root = _root


def _children(element: ET.Element, name: str) -> Iterator[ET.Element]:
    return (child for child in element if child.tag == name)


def _one(element: ET.Element, name: str, *, required: bool = True) -> ET.Element | None:
    found = list(_children(element, name))
    if len(found) > 1:
        raise _malformed(f"{element.tag} has more than one {name}")
    if not found:
        if required:
            raise _malformed(f"{element.tag} has no {name}")
        return None
    if len(found[0]):
        raise _malformed(f"{name} must hold text only")
    return found[0]


def _text(element: ET.Element, name: str) -> str:
    child = _one(element, name)
    assert child is not None
    return child.text or ""


def _optional_text(element: ET.Element, name: str) -> str | None:
    child = _one(element, name, required=False)
    return None if child is None else (child.text or "")


def _boolean(element: ET.Element, name: str) -> bool:
    value = _optional_text(element, name)
    if value is None:
        return False
    value = value.strip().lower()
    if value not in ("true", "false"):
        raise _malformed(f"{name} must be true or false")
    return value == "true"


def parse_create_bucket_configuration(body: bytes) -> str | None:
    """The ``LocationConstraint`` of a CreateBucket body; ``None`` for an empty body or
    an absent/empty constraint."""
    if not body.strip():
        return None
    root = _root(body, MAX_CREATE_BUCKET_BODY, "CreateBucketConfiguration")
    location = _optional_text(root, "LocationConstraint")
    return location.strip() or None if location is not None else None


def parse_delete_objects(body: bytes) -> tuple[bool, list[tuple[str, str | None]]]:
    """DeleteObjects: ``(quiet, [(key, version_id), ...])`` in request order.

    One to 1000 ``Object`` entries (more or none is ``MalformedXML``, as AWS). Keys are
    returned verbatim, even empty or too long: AWS reports those per key in the result.
    """
    root = _root(body, MAX_DELETE_OBJECTS_BODY, "Delete")
    quiet = _boolean(root, "Quiet")
    objects: list[tuple[str, str | None]] = []
    for obj in _children(root, "Object"):
        if len(objects) == MAX_DELETE_KEYS:
            raise _malformed(f"more than {MAX_DELETE_KEYS} objects")
        version = _optional_text(obj, "VersionId")
        objects.append((_text(obj, "Key"), version.strip() if version is not None else None))
    if not objects:
        raise _malformed("no Object to delete")
    return quiet, objects


@dataclass(frozen=True, slots=True)
class VersioningConfiguration:
    """PutBucketVersioning's document: ``status`` Enabled / Suspended, or None to leave it;
    ``mfa_delete`` Enabled / Disabled, or None when absent."""

    status: str | None
    mfa_delete: str | None


def parse_versioning_configuration(body: bytes) -> VersioningConfiguration:
    """PutBucketVersioning: ``Status`` and ``MfaDelete``, each optional; any value but the
    two S3 defines for each is ``MalformedXML``, as AWS answers."""
    root = _root(body, MAX_VERSIONING_BODY, "VersioningConfiguration")
    status = _optional_text(root, "Status")
    mfa = _optional_text(root, "MfaDelete")
    if status is not None and status.strip() not in ("Enabled", "Suspended"):
        raise _malformed("Status must be Enabled or Suspended")
    if mfa is not None and mfa.strip() not in ("Enabled", "Disabled"):
        raise _malformed("MfaDelete must be Enabled or Disabled")
    return VersioningConfiguration(
        status.strip() if status is not None else None,
        mfa.strip() if mfa is not None else None,
    )


@dataclass(frozen=True, slots=True)
class CompletedPart:
    """One ``Part`` of CompleteMultipartUpload; ``etag`` without surrounding quotes,
    ``checksums`` keyed by element name (``ChecksumCRC32``...)."""

    part_number: int
    etag: str
    checksums: dict[str, str] = field(default_factory=dict)


def parse_complete_multipart(body: bytes) -> list[CompletedPart]:
    """CompleteMultipartUpload: the parts in request order.

    Raises ``MalformedXML`` for no parts, more than 10,000, or a part number that is not an
    integer; ``InvalidArgument`` for a part number outside 1..10000; ``InvalidPartOrder``
    when a part number is below the one before it. A part number listed twice in a row (a
    part re-sent while its first upload was still running, both ETags listed) is accepted
    as AWS accepts it: the later entry stands for the part.
    """
    root = _root(body, MAX_COMPLETE_MULTIPART_BODY, "CompleteMultipartUpload")
    parts: list[CompletedPart] = []
    for part in _children(root, "Part"):
        if len(parts) == MAX_PARTS:
            raise _malformed(f"more than {MAX_PARTS} parts")
        raw_number = _text(part, "PartNumber").strip()
        if not (raw_number.isascii() and raw_number.isdigit() and len(raw_number) <= 9):
            raise _malformed("PartNumber must be an integer")
        number = int(raw_number)
        if not 1 <= number <= MAX_PARTS:
            raise S3Error(
                "InvalidArgument",
                f"Part number must be an integer between 1 and {MAX_PARTS}, inclusive",
                extra={"ArgumentName": "PartNumber", "ArgumentValue": raw_number},
            )
        if parts and number < parts[-1].part_number:
            raise S3Error("InvalidPartOrder")
        etag = _text(part, "ETag").strip().strip('"')
        checksums = {
            name: value.strip()
            for name in CHECKSUM_ELEMENTS
            if (value := _optional_text(part, name)) is not None
        }
        if parts and number == parts[-1].part_number:
            parts.pop()
        parts.append(CompletedPart(number, etag, checksums))
    if not parts:
        raise _malformed("no Part in CompleteMultipartUpload")
    return parts


def parse_tagging(body: bytes, *, max_tags: int = MAX_OBJECT_TAGS) -> list[tuple[str, str]]:
    """PutObjectTagging / PutBucketTagging: ``[(key, value), ...]`` in request order.

    Pass ``max_tags=MAX_BUCKET_TAGS`` for buckets; the tags are checked by :func:`check_tags`.
    """
    root = _root(body, MAX_TAGGING_BODY, "Tagging")
    tag_set = _one_container(root, "TagSet")
    tags = [
        (_text(tag, "Key"), _optional_text(tag, "Value") or "") for tag in _children(tag_set, "Tag")
    ]
    return check_tags(tags, max_tags=max_tags)


def check_tags(tags: list[tuple[str, str]], *, max_tags: int) -> list[tuple[str, str]]:
    """AWS's limits on a tag set, whichever way it came (a document, ``x-amz-tagging``, a
    form): at most ``max_tags`` tags, keys of 1-128 characters not beginning with ``aws:``
    (reserved for AWS's own tags), values of at most 256, no key twice; else ``InvalidTag``."""
    if len(tags) > max_tags:
        raise _invalid_tag(f"Object tags cannot be greater than {max_tags}")
    seen: set[str] = set()
    for key, value in tags:
        if not key or len(key) > MAX_TAG_KEY_CHARS:
            raise _invalid_tag("The TagKey you have provided is invalid")
        if key.startswith("aws:"):
            raise _invalid_tag("Your TagKey cannot be prefixed with aws:")
        if len(value) > MAX_TAG_VALUE_CHARS:
            raise _invalid_tag("The TagValue you have provided is invalid")
        if key in seen:
            raise _invalid_tag("Cannot provide multiple Tags with the same key")
        seen.add(key)
    return tags


def _one_container(element: ET.Element, name: str) -> ET.Element:
    found = list(_children(element, name))
    if len(found) != 1:
        raise _malformed(f"{element.tag} must hold exactly one {name}")
    return found[0]


def _invalid_tag(message: str) -> S3Error:
    return S3Error("InvalidTag", message)


MAX_ACL_BODY = 64 * 1024
_GRANTEE_TYPES = ("CanonicalUser", "Group", "AmazonCustomerByEmail")


def parse_access_control_policy(body: bytes) -> tuple[str | None, list[acls.Grant]]:
    """PutBucketAcl / PutObjectAcl: ``(owner id or None, grants)`` in request order.

    A grantee is typed by its ``xsi:type`` attribute (or, without one, by the element it
    holds: ``ID``, ``URI``, ``EmailAddress``). Raises ``MalformedACLError`` for an unknown
    type or permission, and :class:`~stratum.access.acl.AclError` for a group Stratum does
    not know or any e-mail grantee (Stratum has no e-mail addresses).
    """
    root = _root(body, MAX_ACL_BODY, "AccessControlPolicy")
    owner_element = _one_container_optional(root, "Owner")
    owner = None if owner_element is None else _optional_text(owner_element, "ID")
    grants: list[acls.Grant] = []
    acl_list = _one_container_optional(root, "AccessControlList")
    for grant in [] if acl_list is None else _children(acl_list, "Grant"):
        grantee = _one_container(grant, "Grantee")
        permission = _text(grant, "Permission").strip()
        if permission not in acls.PERMISSIONS:
            raise S3Error("MalformedACLError", f"Unknown permission {permission}")
        kind = next((v for k, v in grantee.attrib.items() if k.rpartition("}")[2] == "type"), "")
        if not kind:
            present = [
                t
                for t, n in zip(_GRANTEE_TYPES, ("ID", "URI", "EmailAddress"), strict=True)
                if _optional_text(grantee, n) is not None
            ]
            kind = present[0] if len(present) == 1 else ""
        if kind == "CanonicalUser":
            who = acls.Grantee("id", _text(grantee, "ID").strip())
        elif kind == "Group":
            uri = _text(grantee, "URI").strip()
            if uri not in acls.GROUPS:
                raise acls.AclError("InvalidArgument", f"Invalid group uri: {uri}")
            who = acls.Grantee("group", uri)
        elif kind == "AmazonCustomerByEmail":
            raise acls.AclError(
                "UnresolvableGrantByEmailAddress",
                "The e-mail address you provided does not match any account on record.",
            )
        else:
            raise S3Error("MalformedACLError", "The grantee type is missing or unknown")
        grants.append(acls.Grant(who, permission))
    return owner, grants


def _one_container_optional(element: ET.Element, name: str) -> ET.Element | None:
    found = list(_children(element, name))
    if len(found) > 1:
        raise _malformed(f"{element.tag} has more than one {name}")
    return found[0] if found else None


MAX_CONTROLS_BODY = 64 * 1024
PUBLIC_ACCESS_BLOCK_FIELDS = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)
OBJECT_OWNERSHIPS = ("BucketOwnerPreferred", "ObjectWriter", "BucketOwnerEnforced")


def parse_public_access_block(body: bytes) -> dict[str, bool]:
    """PutPublicAccessBlock: the four flags by element name, an absent one false."""
    root = _root(body, MAX_CONTROLS_BODY, "PublicAccessBlockConfiguration")
    return {name: _boolean(root, name) for name in PUBLIC_ACCESS_BLOCK_FIELDS}


def parse_ownership_controls(body: bytes) -> str:
    """PutBucketOwnershipControls: the one rule's ``ObjectOwnership``."""
    root = _root(body, MAX_CONTROLS_BODY, "OwnershipControls")
    rules = list(_children(root, "Rule"))
    if len(rules) != 1:
        raise _malformed("OwnershipControls must hold exactly one Rule")
    value = _text(rules[0], "ObjectOwnership").strip()
    if value not in OBJECT_OWNERSHIPS:
        raise _malformed(f"ObjectOwnership must be one of {', '.join(OBJECT_OWNERSHIPS)}")
    return value

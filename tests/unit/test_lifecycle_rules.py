"""Lifecycle rules evaluated: AWS's rounding to the next day boundary, the earliest of several
rules, NewerNoncurrentVersions, the coldest due transition, and a stored configuration read
back through the parser and renderer unchanged."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from stratum.meta.records import ObjectRecord
from stratum.s3.lifecycle_ops import lifecycle_document, parse_lifecycle
from stratum.service import lifecycle
from stratum.service.lifecycle import DAY, due_after

MIDNIGHT = 1_800_057_600.0  # 2027-01-16T00:00:00Z
assert MIDNIGHT % DAY == 0


def record(key: str = "k", at: float = MIDNIGHT + 3600, size: int = 5, **tags: str) -> ObjectRecord:
    return ObjectRecord(key=key, volume_id="v", size=size, etag="", last_modified=at, tags=tags)


def rules(xml: str) -> tuple[lifecycle.Rule, ...]:
    return lifecycle.compile_rules(
        parse_lifecycle(f"<LifecycleConfiguration>{xml}</LifecycleConfiguration>".encode())
    )


def test_due_dates_round_up_to_the_next_day_boundary() -> None:
    assert due_after(MIDNIGHT, 1) == MIDNIGHT + DAY  # already on a boundary
    assert due_after(MIDNIGHT + 1, 1) == MIDNIGHT + 2 * DAY
    assert due_after(MIDNIGHT + DAY - 1, 30) == MIDNIGHT + 31 * DAY
    assert due_after(105.0, 1, day=10.0) == 120.0  # a shortened day rounds the same way


@given(st.floats(1.0, 4e9), st.integers(0, 3650))  # epoch times, not subnormal floats
def test_due_is_the_first_boundary_at_or_after_the_days(start: float, days: int) -> None:
    due = due_after(start, days)
    assert due % DAY == 0 and start + days * DAY <= due <= start + (days + 1) * DAY


def test_the_earliest_matching_rule_wins() -> None:
    found = rules(
        "<Rule><ID>late</ID><Prefix></Prefix><Status>Enabled</Status>"
        "<Expiration><Days>30</Days></Expiration></Rule>"
        "<Rule><ID>soon</ID><Filter><Prefix>tmp/</Prefix></Filter><Status>Enabled</Status>"
        "<Expiration><Days>2</Days></Expiration></Rule>"
        "<Rule><ID>off</ID><Prefix></Prefix><Status>Disabled</Status>"
        "<Expiration><Days>1</Days></Expiration></Rule>"
    )
    assert [r.id for r in found] == ["late", "soon"]
    assert lifecycle.expiry_of(found, record("tmp/x")) == (MIDNIGHT + 3 * DAY, "soon")
    assert lifecycle.expiry_of(found, record("x")) == (MIDNIGHT + 31 * DAY, "late")
    assert lifecycle.expiry_of((), record()) == (math.inf, "")


def test_newer_noncurrent_versions_are_kept() -> None:
    found = rules(
        "<Rule><ID>nc</ID><Prefix></Prefix><Status>Enabled</Status>"
        "<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays>"
        "<NewerNoncurrentVersions>2</NewerNoncurrentVersions></NoncurrentVersionExpiration></Rule>"
    )
    later = MIDNIGHT + 5 * DAY
    assert lifecycle.noncurrent_expires(found, record(), MIDNIGHT, 1, later) is None
    assert lifecycle.noncurrent_expires(found, record(), MIDNIGHT, 2, later) == "nc"
    assert lifecycle.noncurrent_expires(found, record(), later - 1, 5, later) is None


def test_the_coldest_due_transition_is_chosen() -> None:
    found = rules(
        "<Rule><ID>t</ID><Prefix></Prefix><Status>Enabled</Status>"
        "<Transition><Days>1</Days><StorageClass>STANDARD_IA</StorageClass></Transition>"
        "<Transition><Days>10</Days><StorageClass>GLACIER</StorageClass></Transition>"
        "<NoncurrentVersionTransition><NoncurrentDays>0</NoncurrentDays>"
        "<StorageClass>DEEP_ARCHIVE</StorageClass></NoncurrentVersionTransition></Rule>"
    )
    obj = record(at=MIDNIGHT)
    assert lifecycle.transition_of(found, obj, MIDNIGHT) is None
    assert lifecycle.transition_of(found, obj, MIDNIGHT + DAY) == ("warm", "t")
    assert lifecycle.transition_of(found, obj, MIDNIGHT + 10 * DAY) == ("cold", "t")
    assert lifecycle.transition_of(found, obj, MIDNIGHT, noncurrent_since=MIDNIGHT) == ("cold", "t")


def test_abort_applies_by_prefix() -> None:
    found = rules(
        "<Rule><ID>a</ID><Prefix>up/</Prefix><Status>Enabled</Status>"
        "<AbortIncompleteMultipartUpload><DaysAfterInitiation>3</DaysAfterInitiation>"
        "</AbortIncompleteMultipartUpload></Rule>"
    )
    assert lifecycle.abort_due(found, "up/x", MIDNIGHT) == MIDNIGHT + 3 * DAY
    assert lifecycle.abort_due(found, "down/x", MIDNIGHT) == math.inf


def test_a_configuration_reads_back_as_stored() -> None:
    stored = parse_lifecycle(
        b"<LifecycleConfiguration><Rule><ID>r</ID><Filter><And><Prefix>p</Prefix>"
        b"<Tag><Key>a</Key><Value>1</Value></Tag><Tag><Key>b</Key><Value></Value></Tag>"
        b"<ObjectSizeLessThan>9</ObjectSizeLessThan></And></Filter><Status>Enabled</Status>"
        b"<Expiration><Date>2030-01-01T00:00:00Z</Date></Expiration>"
        b"<Transition><Date>2029-01-01</Date><StorageClass>GLACIER_IR</StorageClass></Transition>"
        b"</Rule></LifecycleConfiguration>"
    )
    assert parse_lifecycle(lifecycle_document(stored)) == stored


def test_a_filter_of_several_conditions_without_and_means_all_of_them() -> None:
    found = rules(
        "<Rule><ID>r</ID><Filter><Prefix>days1/</Prefix><Tag><Key>t</Key><Value>v</Value></Tag>"
        "</Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>"
    )
    assert lifecycle.expiry_of(found, record("days1/a", t="v"))[1] == "r"
    assert lifecycle.expiry_of(found, record("days1/a"))[1] == ""
    assert lifecycle.expiry_of(found, record("other", t="v"))[1] == ""

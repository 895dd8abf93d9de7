"""The durable record's tag encoding: round trips, AWS tag rules, corruption, requests and the marker.

Property-based: hypothesis builds records with every field set (long histories, odd version strings,
any Unicode in texts) and the tests check that what comes back is exactly what ``fit_record`` says is
stored, and that every tag written obeys AWS's rules even next to ten foreign tags.
"""

from __future__ import annotations

import base64
import dataclasses
import typing
import zlib
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from controller.core import codec
from controller.core.announce import OUTBOX_LIMIT
from controller.core.codec import (
    CHUNK_SIZE,
    MANAGED_KEY,
    MAX_CHUNKS,
    MAX_HISTORY,
    CodecError,
    decode_managed,
    decode_record,
    decode_request,
    encode_managed,
    encode_record,
    encode_request,
    fit_record,
    is_valid_tag_key,
    is_valid_tag_value,
    record_key,
    request_key,
    stale_record_keys,
)
from controller.core.sequential import Look, SequentialSettings, SequentialState, fold
from controller.core.types import (
    AliasRouting,
    AliasWrite,
    Announcement,
    FailedVersion,
    HistoryEntry,
    HookRun,
    MetricState,
    Phase,
    Record,
    Request,
    SequentialRun,
    Trigger,
    Verb,
    Verdict,
)

# ---- strategies ------------------------------------------------------------------------------------

aliases = st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True).filter(lambda a: not a.isdigit())
# Versions are digits in AWS, but the record must not care: odd strings too (spaces, braces, Unicode).
versions = st.one_of(st.integers(1, 10**9).map(str), st.text(max_size=30))
texts = st.text(max_size=300)
times = st.floats(min_value=0, max_value=4e9, allow_nan=False, allow_infinity=False)
weights = st.floats(min_value=0, max_value=1, allow_nan=False)

routings = st.builds(AliasRouting, primary=versions, additional=st.none() | versions, weight=weights)
writes = st.builds(AliasWrite, alias=aliases, routing=routings, previous=st.none() | routings)
failed_versions = st.builds(FailedVersion, version=versions, spec_hash=st.text(max_size=64), reason=texts)
history_entries = st.builds(
    HistoryEntry,
    version=versions,
    outcome=st.sampled_from(["Promoted", "RolledBack", "Aborted", "Superseded", "Undone", "Degraded"]),
    reason=texts,
    at=times,
    by=st.text(max_size=100),
)
hook_runs = st.builds(
    HookRun,
    name=st.sampled_from(["beforeAllowTraffic", "afterAllowTraffic"]),
    outcome=st.sampled_from(list(Verdict)),
    reason=st.text(max_size=200),
    at=times,
)
measured = st.none() | st.floats(allow_nan=False, allow_infinity=False)
metric_states = st.builds(
    MetricState,
    name=st.text(max_size=63),
    outcome=st.sampled_from(list(Verdict)),
    failures=st.integers(0, 100),
    no_data=st.integers(0, 100),
    value=measured,
    stable=measured,
    at=times,
)
announcements = st.builds(
    Announcement,
    id=st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
    trigger=st.sampled_from(list(Trigger)),
    attempt=texts,
    at=times,
    version=st.none() | versions,
    stable=st.none() | versions,
    weight=st.integers(0, 100),
    step=st.integers(0, 20),
    steps=st.integers(0, 20),
    phase=st.none() | st.sampled_from(list(Phase)),
    reason=texts,
    message=st.text(max_size=240),
    by=texts,
    discriminator=texts,
)
counts = st.integers(0, 10**12)
sequential_states = st.builds(
    SequentialState,
    name=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", fullmatch=True),
    looks=st.integers(0, 10**6),
    canary_requests=counts,
    canary_failures=counts,
    stable_requests=counts,
    stable_failures=counts,
    compensators=st.lists(st.integers(-(10**12), 10**12), min_size=10, max_size=10).map(tuple),
    through=st.none() | times,
    seen=st.none() | times,
)
sequential_settings = st.builds(
    SequentialSettings,
    max_increase=st.floats(0, 100),
    confidence=st.floats(0.5, 0.9999),
    negligible_rate=st.none() | st.floats(0.0001, 0.5),
)
sequential_runs = st.builds(
    SequentialRun,
    test=st.text(alphabet="0123456789abcdef", min_size=8, max_size=8),
    state=sequential_states,
    settings=sequential_settings,
)
RECORD_FIELDS: dict[str, st.SearchStrategy[Any]] = dict(
    spec_hash=st.text(alphabet="0123456789abcdef", max_size=64),
    phase=st.sampled_from(list(Phase)),
    stable=st.none() | versions,
    canary=st.none() | versions,
    previous_stable=st.none() | versions,
    step_index=st.integers(0, 1000),
    step_started_at=st.none() | times,
    started_at=st.none() | times,
    weight=st.integers(0, 100),
    pending=st.none() | writes,
    paused_by_request=st.booleans(),
    last_request=st.none() | st.text(max_size=40),
    failed=st.lists(failed_versions, max_size=12).map(tuple),
    history=st.lists(history_entries, max_size=20).map(tuple),
    reason=texts,
    message=st.text(max_size=2000),
    hooks=st.lists(hook_runs, max_size=2).map(tuple),
    weight_at=st.none() | times,
    metrics=st.lists(metric_states, max_size=5).map(tuple),
    sequential=st.lists(sequential_runs, max_size=5).map(tuple),
    bypass=st.booleans(),
    request_ignored=st.text(max_size=200),
    steps=st.integers(0, 1000),
    outbox=st.lists(announcements, max_size=3).map(tuple),
)
records = st.builds(Record, **RECORD_FIELDS)

FOREIGN_TAGS = {f"team:tag-{i}": f"value {i}" for i in range(10)}


def _reachable_dataclasses(cls: type) -> set[type]:
    seen: set[type] = set()

    def walk(tp: Any) -> None:
        for arg in typing.get_args(tp):
            walk(arg)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp) and tp not in seen:
            seen.add(tp)
            for hint in typing.get_type_hints(tp).values():
                walk(hint)

    walk(cls)
    return seen


# ---- the short-name table ----------------------------------------------------------------------------------


def test_every_record_field_has_a_short_name() -> None:
    """Fails when someone adds a field to Record (or to a struct it holds) without a short name."""
    for cls in _reachable_dataclasses(Record):
        table = codec.SHORT_NAMES.get(cls)
        assert table is not None, f"{cls.__name__} has no entry in codec.SHORT_NAMES"
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - set(table)
        assert not missing, f"{cls.__name__} fields without a short name in codec.SHORT_NAMES: {sorted(missing)}"
        assert not set(table) - names, f"{cls.__name__}: short names for fields that do not exist"
        assert len(set(table.values())) == len(table), f"{cls.__name__}: duplicate short names"


def test_strategy_sets_every_record_field() -> None:
    """The hypothesis strategy must vary every field, including ones added later."""
    assert set(RECORD_FIELDS) == {f.name for f in dataclasses.fields(Record)}


# ---- round trips and tag rules ------------------------------------------------------------------------------


def _assert_valid_tags(tags: dict[str, str]) -> None:
    for key, value in tags.items():
        assert len(key) <= 128, key
        assert is_valid_tag_key(key), key
        assert not key.lower().startswith("aws:")
        assert len(value) <= 256, (key, len(value))
        assert is_valid_tag_value(value), (key, value)
        assert all(c.isascii() and (c.isalnum() or c in " _.:/=+-@") for c in value), value


def can_fit(record: Record) -> bool:
    """Whether trimming can make ``record`` fit: the generator also reaches records whose parts that
    are never dropped (sequential tests, metrics, waiting notifications, all of random text) cannot
    fit at all, which ``fit_record`` refuses (``CodecError``); the realistic worst case fits, below."""
    smallest = [*codec._shrinking(record)][-1]
    return len(codec._payload(smallest)) <= MAX_CHUNKS * CHUNK_SIZE


@settings(max_examples=300, deadline=None)
@given(alias=aliases, record=records)
def test_record_round_trip_obeys_tag_rules(alias: str, record: Record) -> None:
    assume(can_fit(record))
    tags = encode_record(alias, record)
    _assert_valid_tags(tags)
    assert 1 <= len(tags) <= MAX_CHUNKS
    stored = fit_record(record)
    assert decode_record(alias, tags) == stored
    # With ten foreign tags, a request and the marker, the function stays within AWS's 50.
    all_tags = {
        **FOREIGN_TAGS,
        **tags,
        request_key(alias): encode_request(Request(id="r1", verb=Verb.PROMOTE, at=1.0, by="arn:aws:iam::1:user/x")),
        MANAGED_KEY: encode_managed({alias: "payments/brand-api"}),
    }
    _assert_valid_tags(all_tags)
    assert len(all_tags) <= 50
    # Foreign tags do not disturb decoding.
    assert decode_record(alias, all_tags) == stored


@settings(max_examples=200, deadline=None)
@given(record=records)
def test_fit_only_drops_what_it_may(record: Record) -> None:
    assume(can_fit(record))
    stored = fit_record(record)
    # Everything but history, failed versions and long texts survives untouched.
    for f in dataclasses.fields(Record):
        if f.name not in {"history", "failed", "message", "reason", "outbox"}:
            assert getattr(stored, f.name) == getattr(record, f.name), f.name
    # Every waiting notification is kept; only its message may be cut.
    assert [dataclasses.replace(e, message="") for e in stored.outbox] == [
        dataclasses.replace(e, message="") for e in record.outbox
    ]
    for kept, entry in zip(stored.outbox, record.outbox, strict=True):
        assert kept.message == entry.message or entry.message.startswith(kept.message.removesuffix("..."))
    assert len(stored.history) <= MAX_HISTORY
    # Trimming keeps the newest entries (tuples are oldest first).
    if stored.history:
        assert record.history[-len(stored.history) :] == stored.history
    if stored.failed:
        assert [f.version for f in record.failed[-len(stored.failed) :]] == [f.version for f in stored.failed]
    assert fit_record(stored) == stored


def test_small_record_round_trips_exactly() -> None:
    record = Record(
        spec_hash="0f" * 32,
        phase=Phase.PAUSED,
        stable="42",
        canary="43",
        previous_stable="41",
        step_index=3,
        step_started_at=1_700_000_000.123,
        started_at=1_700_000_000.0,
        weight=25,
        pending=AliasWrite("prod", AliasRouting("42", "43", 0.25), previous=AliasRouting("42", "43", 0.1)),
        paused_by_request=True,
        last_request="req-7",
        failed=(FailedVersion("40", "ab", "alarm brand-api-errors in ALARM"),),
        history=(HistoryEntry("41", "Promoted", "", 1_699_000_000.5, "arn:aws:iam::123456789012:user/ann"),),
        reason="Paused",
        message="paused by request req-7",
    )
    tags = encode_record("prod", record)
    # A typical mid-rollout record takes one or two tags.
    assert set(tags) <= {"lambda-rollouts/record.prod", "lambda-rollouts/record.prod.1"}
    assert tags["lambda-rollouts/record.prod"].startswith(f"v1 {len(tags)} ")
    assert decode_record("prod", tags) == record


def test_default_record_is_tiny() -> None:
    tags = encode_record("prod", Record())
    assert decode_record("prod", tags) == Record()
    assert len(tags[record_key("prod")]) < 30


def test_long_history_is_trimmed_to_newest() -> None:
    history = tuple(HistoryEntry(str(i), "Promoted", "fine", float(i)) for i in range(30))
    decoded = decode_record("prod", encode_record("prod", Record(history=history)))
    assert decoded is not None
    assert decoded.history == history[-MAX_HISTORY:]


def test_huge_record_spreads_over_chunks_and_drops_history_first() -> None:
    # Incompressible texts: forces several chunks, then trimming.
    import random

    rng = random.Random(7)

    def noise(n: int) -> str:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(n))

    record = Record(
        stable="1",
        failed=tuple(FailedVersion(str(i), noise(64), noise(100)) for i in range(6)),
        history=tuple(HistoryEntry(str(i), "RolledBack", noise(250), float(i)) for i in range(5)),
        message=noise(500),
    )
    tags = encode_record("prod", record)
    _assert_valid_tags(tags)
    assert 2 <= len(tags) <= MAX_CHUNKS
    head = tags[record_key("prod")]
    assert head.startswith(f"v1 {len(tags)} ")
    assert all(len(v) <= CHUNK_SIZE for k, v in tags.items() if k != record_key("prod"))
    decoded = decode_record("prod", tags)
    assert decoded == fit_record(record)
    assert decoded is not None
    assert decoded.stable == "1"
    assert len(decoded.history) < len(record.history)
    assert decoded.failed == record.failed  # failed versions outlive history


def test_long_alias_keys_fit_and_stay_distinct() -> None:
    a = "a" * 128
    b = "a" * 127 + "b"
    for alias in (a, b):
        for key in (record_key(alias), request_key(alias), record_key(alias) + ".7"):
            assert len(key) <= 128
            assert is_valid_tag_key(key)
    assert record_key(a) != record_key(b)
    assert record_key("prod") == "lambda-rollouts/record.prod"
    assert request_key("prod") == "lambda-rollouts/request.prod"


def test_records_of_two_aliases_do_not_mix() -> None:
    tags = {**encode_record("prod", Record(stable="1")), **encode_record("prod-eu", Record(stable="2"))}
    assert decode_record("prod", tags) == Record(stable="1")
    assert decode_record("prod-eu", tags) == Record(stable="2")
    assert decode_record("staging", tags) is None


@pytest.mark.parametrize("alias", ["", "has space", "brace{", "dot.ted"])
def test_invalid_alias_names_are_refused(alias: str) -> None:
    with pytest.raises(CodecError):
        record_key(alias)


# ---- corruption ------------------------------------------------------------------------------------------------


def _big_tags() -> dict[str, str]:
    record = Record(message="".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(600)))
    tags = encode_record("prod", record)
    assert len(tags) >= 3
    return tags


def _encoded(payload: bytes) -> dict[str, str]:
    return {record_key("prod"): "v1 1 " + base64.b64encode(payload).decode()}


@pytest.mark.parametrize(
    "tags",
    [
        {"lambda-rollouts/record.prod": "v1"},
        {"lambda-rollouts/record.prod": "v1 1"},
        {"lambda-rollouts/record.prod": "v2 1 eNqrrgUAAXUA+Q=="},
        {"lambda-rollouts/record.prod": "V1 1 eNqrrgUAAXUA+Q=="},
        {"lambda-rollouts/record.prod": "v1 0 eNqrrgUAAXUA+Q=="},
        {"lambda-rollouts/record.prod": "v1 x eNqrrgUAAXUA+Q=="},
        {"lambda-rollouts/record.prod": "v1 1 not base64!"},
        {"lambda-rollouts/record.prod": "v1 1 eNqrrgUAAXUA"},  # truncated base64
        {"lambda-rollouts/record.prod": "v1 1 aGVsbG8="},  # base64 but not zlib
        {"lambda-rollouts/record.prod": "v1 2 eNqrrgUAAXUA+Q=="},  # chunk 1 missing
        _encoded(zlib.compress(b"[1,2]")),  # not an object
        _encoded(zlib.compress(b"{not json")),
        _encoded(zlib.compress(b'{"p":"Exploded"}')),  # unknown phase
        _encoded(zlib.compress(b'{"i":"three"}')),  # wrong type
        _encoded(zlib.compress(b'{"w":true}')),  # bool is not an int
        _encoded(zlib.compress(b'{"pr":1}')),  # int is not a bool
        _encoded(zlib.compress(b'{"pw":{"a":"prod"}}')),  # nested required field missing
        _encoded(zlib.compress(b'{"f":[{"v":"1"}]}')),
        _encoded(zlib.compress(b'{"hi":{"v":"1"}}')),
        _encoded(zlib.compress(b'{"s":null,"h":null}')),  # null where a string is required
        _encoded(zlib.compress(b"\xff\xfe")),  # not UTF-8
    ],
)
def test_corrupt_records_raise_codec_error(tags: dict[str, str]) -> None:
    with pytest.raises(CodecError):
        decode_record("prod", tags)


def test_truncated_multi_chunk_record_raises() -> None:
    tags = _big_tags()
    last = max(tags, key=len)
    del tags[last]
    with pytest.raises(CodecError, match="missing"):
        decode_record("prod", tags)


def test_shortened_chunk_raises() -> None:
    tags = _big_tags()
    key = record_key("prod") + ".1"
    tags[key] = tags[key][:-10]
    with pytest.raises(CodecError):
        decode_record("prod", tags)


def test_unknown_fields_from_a_newer_controller_are_ignored() -> None:
    assert decode_record("prod", _encoded(zlib.compress(b'{"s":"7","zz":1}'))) == Record(stable="7")


def test_reader_trusts_only_the_chunk_count() -> None:
    big = _big_tags()
    small = encode_record("prod", Record(stable="9"))
    mixed = {**big, **small}  # leftovers of the longer record are still there
    assert decode_record("prod", mixed) == Record(stable="9")
    stale = stale_record_keys("prod", mixed, small)
    assert stale == sorted(set(big) - set(small))
    assert record_key("prod") not in stale


def test_stale_keys_ignore_other_aliases_and_foreign_tags() -> None:
    tags = {**FOREIGN_TAGS, **_big_tags(), **encode_record("prod-eu", Record(message="x" * 5))}
    new = encode_record("prod", Record())
    stale = stale_record_keys("prod", tags, new)
    assert all(k.startswith(record_key("prod") + ".") for k in stale)
    assert stale_record_keys("prod", tags, tags) == []


# ---- requests --------------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    verb=st.sampled_from(list(Verb)),
    request_id=st.from_regex(r"[A-Za-z0-9_.:/=+@-]{1,64}", fullmatch=True),
    at=times,
    by=st.sampled_from(["", "arn:aws:iam::123456789012:user/ann", "arn:aws:sts::123456789012:assumed-role/Dev/ann@x"]),
)
def test_request_round_trip(verb: Verb, request_id: str, at: float, by: str) -> None:
    request = Request(id=request_id, verb=verb, at=at, by=by)
    value = encode_request(request)
    assert is_valid_tag_value(value)
    assert decode_request(value) == request


def test_request_caller_with_forbidden_characters_is_sanitised() -> None:
    value = encode_request(Request(id="1", verb=Verb.ABORT, at=5.0, by="arn:aws:sts::1:assumed-role/R/a,b"))
    assert is_valid_tag_value(value)
    decoded = decode_request(value)
    assert decoded is not None
    assert decoded.by == "arn:aws:sts::1:assumed-role/R/a_b"


@pytest.mark.parametrize("request_id", ["", "two words", "brace{"])
def test_invalid_request_ids_are_refused(request_id: str) -> None:
    with pytest.raises(CodecError):
        encode_request(Request(id=request_id, verb=Verb.ABORT, at=1.0))


@pytest.mark.parametrize("value", ["", "promote", "promote id", "explode id 1", "promote id soon", "promote id nan"])
def test_garbled_requests_are_ignored(value: str) -> None:
    assert decode_request(value) is None


def test_request_literal_format() -> None:
    value = encode_request(Request(id="abc", verb=Verb.PROMOTE_FULL, at=1700000000.5, by="arn:aws:iam::1:user/a"))
    assert value == "promote-full abc 1700000000.5 arn:aws:iam::1:user/a"


# ---- the managed marker ------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    entries=st.dictionaries(
        st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True),
        st.from_regex(r"[a-z0-9-]{1,20}/[a-z0-9.-]{1,30}", fullmatch=True),
        max_size=4,
    )
)
def test_managed_round_trip(entries: dict[str, str]) -> None:
    value = encode_managed(entries)
    assert is_valid_tag_value(value)
    assert decode_managed(value) == entries


def test_managed_literal_and_leniency() -> None:
    assert encode_managed({"prod": "payments/brand-api", "green": "payments/brand-api-bg"}) == (
        "green=payments/brand-api-bg prod=payments/brand-api"
    )
    assert decode_managed("prod=a/b garbage =x/y ok=c/d") == {"prod": "a/b", "ok": "c/d"}


def test_managed_refuses_what_a_tag_cannot_hold() -> None:
    with pytest.raises(CodecError):
        encode_managed({"prod": "name with space"})
    with pytest.raises(CodecError):
        encode_managed({f"alias{i}": "n" * 60 + "/" + "x" * 60 for i in range(3)})


def test_five_sequential_tests_fit_beside_a_full_record() -> None:
    """The evidence of five tests of a day of traffic (10^7 requests a period) is never trimmed."""
    import random

    rng = random.Random(15)
    settings_ = SequentialSettings(max_increase=0.25, confidence=0.995, negligible_rate=0.001)

    def evidence(name: str) -> SequentialRun:
        state = SequentialState(name)
        for k in range(1440):
            n_c, n_s = rng.randint(0, 10**7), rng.randint(0, 10**7)
            look = Look(k * 60.0, (k + 1) * 60.0, n_c, rng.randint(0, 500), n_s, rng.randint(0, 500))
            state = fold(state, look, settings=settings_)
        return SequentialRun(f"{rng.getrandbits(32):08x}", state, settings_)

    record = Record(
        spec_hash="0123456789",
        phase=Phase.PROGRESSING,
        stable="1041",
        canary="1042",
        step_index=7,
        step_started_at=1_700_000_000.25,
        started_at=1_700_000_000.0,
        weight=40,
        weight_at=1_700_000_100.5,
        pending=AliasWrite("prod", AliasRouting("1041", "1042", 0.5), previous=AliasRouting("1041", "1042", 0.4)),
        failed=(FailedVersion("1040", "9876543210", "RegressionDetected"),),
        history=tuple(
            HistoryEntry(str(1035 + i), "Promoted", "Promoted", 1.69e9 + i, "arn:aws:iam::1:user/ops") for i in range(5)
        ),
        reason="Baking",
        message="version 1042 at 40%: baking for 1800s (step 8 of 12)",
        hooks=(HookRun("beforeAllowTraffic", Verdict.SUCCESSFUL, "ok", 1.7e9),),
        metrics=tuple(MetricState(f"metric-{i}", Verdict.SUCCESSFUL, 0, 0, 0.5, 0.4, 1.7e9) for i in range(10)),
        sequential=tuple(evidence(f"sequential-test-{i}") for i in range(5)),
        steps=12,
    )
    tags = encode_record("prod", record)
    assert len(tags) <= MAX_CHUNKS - 2, len(tags)  # 5 of 8 tags measured: room for longer texts
    assert fit_record(record) == record
    assert decode_record("prod", tags) == record
    # With as many notifications as may wait for a target that is down (``OUTBOX_LIMIT``), it still
    # fits whole (all 8 tags measured).
    outbox = tuple(
        Announcement(
            id=f"{rng.getrandbits(128):032x}",
            trigger=Trigger.ANALYSIS_INCONCLUSIVE,
            attempt="1042-0123456789",
            at=1_700_000_000.0 + i,
            version="1042",
            stable="1041",
            weight=40,
            step=8,
            steps=12,
            phase=Phase.PROGRESSING,
            reason="AnalysisInconclusive",
            message=f"analysis metric-{i} inconclusive: no data for 3 of 3 measurements at 40%, step 8 of 12; "
            "the rollout waits for `promote` or `abort` (a metric of the canary needs traffic to be judged)",
        )
        for i in range(OUTBOX_LIMIT)
    )
    full = dataclasses.replace(record, outbox=outbox)
    assert fit_record(full) == full
    assert decode_record("prod", encode_record("prod", full)) == full


def test_a_record_that_cannot_fit_even_trimmed_is_refused() -> None:
    import random

    rng = random.Random(7)
    noise = ["".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(100)) for _ in range(10)]
    record = Record(metrics=tuple(MetricState(name, Verdict.SUCCESSFUL, 0, 0, 0.5, 0.4, 1.7e9) for name in noise))
    with pytest.raises(CodecError, match="does not fit in 8 tags even after trimming"):
        fit_record(record)

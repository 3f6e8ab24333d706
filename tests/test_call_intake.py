"""Call intake: every payload becomes a call, malformed ones flagged for a human; valid calls round-trip exactly."""

from __future__ import annotations

import hashlib
import json
import math
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alkomd.daemon.calls.fields import MAX_ACCURACY_M
from alkomd.daemon.calls.intake import (
    CALL_ID_PATTERN,
    MAX_PAYLOAD,
    RESERVED_CALL_IDS,
    Problem,
    parse_aml,
    parse_call,
)
from alkomd.daemon.calls.types import CallRequest, Location

CONTRACT = Path(__file__).resolve().parents[1] / "docs" / "contract"
NOW = datetime(2025, 3, 14, 2, 21, 0, tzinfo=UTC)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------
# guarantees every result keeps, whatever the input


def check_invariants(req: CallRequest, now: datetime = NOW) -> None:
    assert isinstance(req, CallRequest)
    assert CALL_ID_PATTERN.fullmatch(req.call_id) and req.call_id not in RESERVED_CALL_IDS
    loc = req.location
    if loc is not None:
        assert math.isfinite(loc.lat) and math.isfinite(loc.lon)
        assert -90 <= loc.lat <= 90 and -180 <= loc.lon <= 180
        assert (loc.lat, loc.lon) != (0.0, 0.0)
        assert loc.accuracy_m is None or (math.isfinite(loc.accuracy_m) and 0 < loc.accuracy_m <= MAX_ACCURACY_M)
    assert req.received_at.tzinfo is UTC and req.received_at - now <= timedelta(minutes=5)
    assert re.fullmatch(r"(\+?[0-9]{3,20})?", req.caller)
    assert 1 <= len(req.category) <= 64 and len(req.note) <= 500
    assert req.source in ("mqtt", "aml-sms", "els-https")
    assert re.fullmatch("[0-9a-f]{64}", req.raw_sha256)
    strings = [req.call_id, req.caller, req.category, req.source, req.note, req.raw_sha256, *req.problems]
    if req.escalated_from is not None:
        assert "+" not in req.escalated_from and "#" not in req.escalated_from and "\0" not in req.escalated_from
        strings.append(req.escalated_from)
    for s in strings:
        s.encode("utf-8")  # no lone surrogates: the SQLite insert later must not fail
    for p in req.problems:
        assert p.isascii() and p.split(":", 1)[0] in set(Problem)


def store(req: CallRequest) -> None:
    """The strings go into SQLite (the place lone surrogates used to crash)."""
    db = sqlite3.connect(":memory:")
    db.execute("create table calls (call_id, caller, category, note, escalated_from, problems, raw_sha256)")
    db.execute(
        "insert into calls values (?, ?, ?, ?, ?, ?, ?)",
        (req.call_id, req.caller, req.category, req.note, req.escalated_from, "\n".join(req.problems), req.raw_sha256),
    )
    db.close()


def derived(payload: bytes) -> str:
    return "x" + hashlib.sha256(payload).hexdigest()[:24]


# ---------------------------------------------------------------------------------------------
# the corpus: one row per class of bad (and good) input on <node>/call/new


@dataclass(frozen=True)
class Raw:
    """A JSON fragment written as is (NaN, 1e999, huge integers: json.dumps cannot write them)."""

    text: str


DROP = object()
BASE: dict[str, object] = {
    "call_id": "GTO-20250314-000123",
    "caller": "+6281234500000",
    "lat": 0.5568,
    "lon": 123.0702,
    "accuracy_m": 25,
    "received_at": "2025-03-14T02:20:58.120Z",
    "category": "kecelakaan",
}
GOOD = Location(0.5568, 123.0702, 25.0)
NO_ACC = Location(0.5568, 123.0702, None)


def pairs_json(pairs: list[tuple[str, object]]) -> bytes:
    parts = [f"{json.dumps(k)}:{v.text if isinstance(v, Raw) else json.dumps(v)}" for k, v in pairs]
    return ("{" + ",".join(parts) + "}").encode()


def call(**over: object) -> bytes:
    fields = {**BASE, **over}
    return pairs_json([(k, v) for k, v in fields.items() if v is not DROP])


@dataclass(frozen=True)
class Row:
    name: str
    payload: bytes
    call_id: str | None  # None: derived from the payload
    location: Location | None
    problem: str | None  # a substring of one problem; None: no problem at all


DERIVED = None
ID = "GTO-20250314-000123"
DEEP = b'{"call_id":"A","x":' + b"[" * 4000 + b"]" * 4000 + b"}"
EXAMPLE = json.loads((CONTRACT / "examples" / "call-new.json").read_text())  # the example station's real call

CORPUS = [
    # valid
    Row("contract example", call(**{k: v for k, v in EXAMPLE.items() if k != "received_at"}), EXAMPLE["call_id"],
        Location(EXAMPLE["lat"], EXAMPLE["lon"], float(EXAMPLE["accuracy_m"])), None),
    Row("escalated", call(escalated_from="polri110/gorontalo/bone-bolango"), ID, GOOD, None),
    Row("no location (nulls)", call(lat=None, lon=None, accuracy_m=None), ID, None, None),
    Row("accuracy unknown", call(accuracy_m=None), ID, NO_ACC, None),
    Row("integer coordinates", call(lat=-6, lon=107, accuracy_m=3.5), ID, Location(-6.0, 107.0, 3.5), None),
    Row("poles and antimeridian", call(lat=-90, lon=180), ID, Location(-90.0, 180.0, 25.0), None),
    Row("offset time", call(received_at="2025-03-14T10:20:58+08:00"), ID, GOOD, None),
    Row("unknown fields ignored", call(msg_id="m-1", extra={"lat": 1}, station="x"), ID, GOOD, None),
    Row("caller separators", call(caller=" +62 (812) 3450-0000 "), ID, GOOD, None),
    Row("caller withheld", call(caller="anonymous"), ID, GOOD, None),
    Row("note", call(caller_note="Korban dua orang"), ID, GOOD, None),
    Row("whitespace around JSON", b"\n " + call() + b" \r\n", ID, GOOD, None),
    # size and parse
    Row("oversized", call(caller_note="x" * MAX_PAYLOAD), DERIVED, None, "payload too large"),
    Row("empty", b"", DERIVED, None, "empty payload"),
    Row("blank", b" \n\t", DERIVED, None, "empty payload"),
    Row("not UTF-8", b"\xff\xfe{", DERIVED, None, "not UTF-8"),
    Row("UTF-8 encoded surrogate", b'{"call_id":"A","caller":"\xed\xa0\x80"}', DERIVED, None, "not UTF-8"),
    Row("truncated JSON", b'{"call_id": "A", "lat":', DERIVED, None, "invalid JSON"),
    Row("trailing garbage", call() + b" x", DERIVED, None, "Extra data"),
    Row("two objects", call() + call(), DERIVED, None, "invalid JSON"),
    Row("single quotes", b"{'call_id': 'A'}", DERIVED, None, "invalid JSON"),
    Row("deep nesting", DEEP, DERIVED, None, "nested too deeply"),
    Row("BOM", b"\xef\xbb\xbf" + call(), ID, GOOD, "byte order mark"),
    # shape
    Row("array", b"[1, 2]", DERIVED, None, "is an array"),
    Row("string", b'"call"', DERIVED, None, "is a string"),
    Row("number", b"110", DERIVED, None, "is a number"),
    Row("null", b"null", DERIVED, None, "is null"),
    Row("NaN document", b"NaN", DERIVED, None, "non-finite"),
    # call_id
    Row("call_id missing", call(call_id=DROP), DERIVED, GOOD, "call_id is missing"),
    Row("call_id number", call(call_id=123), DERIVED, GOOD, "must be a string"),
    Row("call_id null", call(call_id=None), DERIVED, GOOD, "must be a string"),
    Row("call_id new", call(call_id="new"), DERIVED, GOOD, "reserved"),
    Row("call_id aml", call(call_id="aml"), DERIVED, GOOD, "reserved"),
    Row("call_id dots", call(call_id=".."), DERIVED, GOOD, "reserved"),
    Row("call_id empty", call(call_id=""), DERIVED, GOOD, "reserved"),
    Row("call_id slash", call(call_id="a/b"), DERIVED, GOOD, "is not 1..64"),
    Row("call_id plus", call(call_id="a+"), DERIVED, GOOD, "is not 1..64"),
    Row("call_id hash", call(call_id="#"), DERIVED, GOOD, "is not 1..64"),
    Row("call_id NUL", call(call_id="a\0"), DERIVED, GOOD, "is not 1..64"),
    Row("call_id space", call(call_id=" A1"), DERIVED, GOOD, "is not 1..64"),
    Row("call_id newline", call(call_id="A1\n"), DERIVED, GOOD, "is not 1..64"),
    Row("call_id non-ASCII", call(call_id="panggilan-\u0661"), DERIVED, GOOD, "is not 1..64"),
    Row("call_id 65 chars", call(call_id="a" * 65), DERIVED, GOOD, "is not 1..64"),
    Row("call_id 64 chars", call(call_id="a" * 64), "a" * 64, GOOD, None),
    Row("call_id duplicated", pairs_json([*BASE.items(), ("call_id", "OTHER")]), DERIVED, GOOD, "'call_id' x2"),
    # numbers
    Row("lat NaN", call(lat=Raw("NaN")), ID, None, "lat is NaN"),
    Row("lon Infinity", call(lon=Raw("Infinity")), ID, None, "lon is Infinity"),
    Row("lat -Infinity", call(lat=Raw("-Infinity")), ID, None, "lat is -Infinity"),
    Row("lat 1e999", call(lat=Raw("1e999")), ID, None, "not a finite number"),
    Row("lat huge integer", call(lat=Raw("9" * 5000)), ID, None, "not a finite number"),
    Row("huge integer elsewhere", call(serial=Raw("9" * 5000)), ID, GOOD, None),
    Row("lat string", call(lat="-6.2"), ID, None, "lat must be a number, got '-6.2'"),
    Row("lat true", call(lat=True), ID, None, "lat must be a number, got true"),
    Row("lon false", call(lon=False), ID, None, "lon must be a number, got false"),
    Row("lat object", call(lat={"v": 1}), ID, None, "got an object"),
    Row("lat array", call(lat=[0.5, 123.0]), ID, None, "got an array"),
    # coordinates
    Row("lat 91", call(lat=91), ID, None, "lat 91.0 is outside -90..90"),
    Row("lat -90.0001", call(lat=-90.0001), ID, None, "outside -90..90"),
    Row("lon 181", call(lon=181), ID, None, "lon 181.0 is outside -180..180"),
    Row("lon -180.5", call(lon=-180.5), ID, None, "outside -180..180"),
    Row("swapped", call(lat=123.0702, lon=0.5568), ID, None, "swapped?"),
    Row("Null Island", call(lat=0, lon=0), ID, None, "Null Island"),
    Row("Null Island floats", call(lat=0.0, lon=-0.0), ID, None, "Null Island"),
    Row("lat missing", call(lat=DROP), ID, None, "lat is missing"),
    Row("lon missing", call(lon=DROP), ID, None, "lon is missing"),
    Row("lat null, lon given", call(lat=None), ID, None, "lat is null"),
    Row("lat duplicated", pairs_json([*BASE.items(), ("lat", -6.2)]), ID, None, "'lat' x2"),
    Row("lon duplicated same value", pairs_json([*BASE.items(), ("lon", 123.0702)]), ID, None, "lon duplicated; location unusable"),
    Row("unknown key duplicated", pairs_json([*BASE.items(), ("x", 1), ("x", 2)]), ID, GOOD, "'x' x2"),
    # accuracy
    Row("accuracy 0", call(accuracy_m=0), ID, NO_ACC, "accuracy_m 0.0 must be > 0"),
    Row("accuracy negative", call(accuracy_m=-5), ID, NO_ACC, "must be > 0"),
    Row("accuracy string", call(accuracy_m="25"), ID, NO_ACC, "accuracy_m must be a number"),
    Row("accuracy NaN", call(accuracy_m=Raw("NaN")), ID, NO_ACC, "accuracy_m is NaN"),
    Row("accuracy 1e999", call(accuracy_m=Raw("1e999")), ID, NO_ACC, "not a finite number"),
    Row("accuracy missing", call(accuracy_m=DROP), ID, NO_ACC, "accuracy_m is missing"),
    Row("accuracy 100 km", call(accuracy_m=100_000), ID, Location(0.5568, 123.0702, 100_000.0), None),
    Row("accuracy over 100 km", call(accuracy_m=100_001), ID, None, "location unusable"),
    # time
    Row("received_at future", call(received_at="2025-03-14T03:21:00Z"), ID, GOOD, "in the future"),
    Row("received_at no timezone", call(received_at="2025-03-14T02:20:58"), ID, GOOD, "has no timezone"),
    Row("received_at epoch s", call(received_at=1741918858), ID, GOOD, "must be an ISO 8601 string"),
    Row("received_at epoch ms", call(received_at=1741918858120), ID, GOOD, "must be an ISO 8601 string"),
    Row("received_at words", call(received_at="yesterday"), ID, GOOD, "is not an ISO 8601 time"),
    Row("received_at date only", call(received_at="2025-03-14"), ID, GOOD, "is not an ISO 8601 time"),
    Row("received_at Feb 30", call(received_at="2025-02-30T00:00:00Z"), ID, GOOD, "not a valid date"),
    Row("received_at offset 25 h", call(received_at="2025-03-14T02:20:58+25:00"), ID, GOOD, "impossible UTC offset"),
    Row("received_at 1980", call(received_at="1980-01-06T00:00:00Z"), ID, GOOD, "before 2000"),
    Row("received_at 3 days old", call(received_at="2025-03-11T02:21:00Z"), ID, GOOD, "72 h before intake (kept)"),
    Row("received_at missing", call(received_at=DROP), ID, GOOD, "received_at is missing"),
    Row("received_at year 1 offset", call(received_at="0001-01-01T00:00:00+01:00"), ID, GOOD, "not a valid date"),
    # strings
    Row("caller letters", call(caller="call me"), ID, GOOD, "is not a phone number"),
    Row("caller number type", call(caller=6281234500000), ID, GOOD, "caller must be a string, got 6281234500000"),
    Row("caller missing", call(caller=DROP), ID, GOOD, "caller is missing"),
    Row("caller too long", call(caller="+" + "1" * 40), ID, GOOD, "is not a phone number"),
    Row("caller RTL override", call(caller="+62812\u202e34500000"), ID, GOOD, "caller: 1 control/format"),
    Row("caller lone surrogate", call(caller="+62812\ud80034500000"), ID, GOOD, "caller: 1 control/format"),
    Row("caller Arabic-Indic digits", call(caller="\u0660\u0668\u0661\u0662"), ID, GOOD, "is not a phone number"),
    Row("caller plus inside", call(caller="62+812345"), ID, GOOD, "is not a phone number"),
    Row("category missing", call(category=DROP), ID, GOOD, "category is missing"),
    Row("category null", call(category=None), ID, GOOD, "category is null"),
    Row("category empty", call(category=" "), ID, GOOD, "category is empty"),
    Row("category number", call(category=5), ID, GOOD, "category must be a string"),
    Row("category too long", call(category="k" * 65), ID, GOOD, "truncated from 65 to 64"),
    Row("category ANSI and NUL", call(category="\x1b[31mbegal\x00"), ID, GOOD, "category: 2 control/format"),
    Row("category lone surrogate", call(category="begal\udfff"), ID, GOOD, "category: 1 control/format"),
    Row("note too long", call(note="n" * 600), ID, GOOD, "note truncated from 600 to 500"),
    Row("note wrong type", call(caller_note=["a"]), ID, GOOD, "caller_note must be a string"),
    Row("escalated_from plus", call(escalated_from="polri110/+"), ID, GOOD, "not a node path"),
    Row("escalated_from hash", call(escalated_from="polri110/#"), ID, GOOD, "not a node path"),
    Row("escalated_from empty level", call(escalated_from="polri110//x"), ID, GOOD, "not a node path"),
    Row("escalated_from empty", call(escalated_from=""), ID, GOOD, "not a node path"),
    Row("escalated_from NUL", call(escalated_from="polri110\0"), ID, GOOD, "not a node path"),
    Row("escalated_from bidi", call(escalated_from="polri110/\u202egorontalo"), ID, GOOD, "not a node path"),
    Row("escalated_from number", call(escalated_from=1), ID, GOOD, "escalated_from must be a string"),
]


@pytest.mark.parametrize("row", CORPUS, ids=[r.name for r in CORPUS])
def test_corpus(row: Row) -> None:
    req = parse_call(row.payload, NOW)
    check_invariants(req)
    store(req)
    assert req.call_id == (derived(row.payload) if row.call_id is None else row.call_id)
    assert req.location == row.location
    assert req.source == "mqtt"
    assert req.raw_sha256 == hashlib.sha256(row.payload).hexdigest()
    if row.problem is None:
        assert req.problems == ()
    else:
        assert any(row.problem in p for p in req.problems), req.problems
    if row.call_id is None:
        assert any(p.startswith("E_CALL_ID") and req.call_id in p for p in req.problems)


def test_valid_call_fields() -> None:
    req = parse_call(call(escalated_from="polri110/gorontalo/bone-bolango", caller_note="dekat masjid"), NOW)
    assert req == CallRequest(
        call_id=ID,
        caller="+6281234500000",
        location=GOOD,
        received_at=datetime(2025, 3, 14, 2, 20, 58, 120000, tzinfo=UTC),
        category="kecelakaan",
        source="mqtt",
        problems=(),
        escalated_from="polri110/gorontalo/bone-bolango",
        note="dekat masjid",
        raw_sha256=req.raw_sha256,
    )


def test_offset_time_is_converted_to_utc() -> None:
    req = parse_call(call(received_at="2025-03-14T10:20:58.5+08:00"), NOW)
    assert req.received_at == datetime(2025, 3, 14, 2, 20, 58, 500000, tzinfo=UTC) and req.received_at.tzinfo is UTC


def test_bad_time_uses_now() -> None:
    for bad in ("2025-03-14T03:21:00Z", "2025-03-14T02:20:58", 1741918858):
        assert parse_call(call(received_at=bad), NOW).received_at == NOW
    assert parse_call(call(received_at="2025-03-14T02:25:59Z"), NOW).received_at == datetime(2025, 3, 14, 2, 25, 59, tzinfo=UTC)


def test_texts_are_cleaned_not_dropped() -> None:
    req = parse_call(call(category="\u202ebegal\u200b  motor\n", note="a\tb\r\nc", caller="+62\u202e812-3450-0000"), NOW)
    assert (req.category, req.note, req.caller) == ("begal motor", "a b c", "+6281234500000")
    assert parse_call(call(category="k" * 65), NOW).category == "k" * 64
    assert parse_call(call(category=DROP), NOW).category == "unknown"
    assert len(parse_call(call(note="n" * 600), NOW).note) == 500


def test_both_notes_are_kept() -> None:
    assert parse_call(call(caller_note="korban 2", note="pelaku kabur"), NOW).note == "korban 2 / pelaku kabur"


def test_unknown_topic_kind_is_read_as_new() -> None:
    req = parse_call(call(), NOW, topic_kind="bogus")
    assert req.call_id == ID and req.location == GOOD and "unknown topic kind" in req.problems[0]


def test_naive_now_is_taken_as_utc() -> None:
    req = parse_call(b"", NOW.replace(tzinfo=None))
    assert req.received_at == NOW and req.received_at.tzinfo is UTC


def test_problems_are_capped() -> None:
    body = 'A"ML=1;' + ";".join(f"junk{i}" for i in range(100))
    req = parse_aml(body.encode(), NOW)
    assert len(req.problems) == 20 and req.problems[-1].endswith("more problems")


def test_many_duplicates_named_in_one_problem() -> None:
    pairs: list[tuple[str, object]] = [*BASE.items(), *[(f"k{i}", 1) for i in range(30)] * 2]
    req = parse_call(pairs_json(pairs), NOW)
    dup = [p for p in req.problems if p.startswith("E_DUPLICATE")]
    assert len(dup) == 1 and "'k0' x2" in dup[0] and "and 20 more" in dup[0]
    assert req.location == GOOD


# ---------------------------------------------------------------------------------------------
# idempotency


def test_same_payload_same_call() -> None:
    for payload in (call(), b"{broken", call(call_id="new"), b"x" * (MAX_PAYLOAD + 1)):
        assert parse_call(payload, NOW) == parse_call(payload, NOW)


def test_same_call_id_is_the_same_call_whatever_else_changes() -> None:
    a = parse_call(call(), NOW)
    b = parse_call(call(lat=-6.2, lon=106.8, category="lain"), NOW + timedelta(seconds=5))
    assert a.call_id == b.call_id == ID and a.raw_sha256 != b.raw_sha256


def test_derived_ids_differ_for_different_payloads() -> None:
    a, b = parse_call(b"{broken", NOW), parse_call(b"{broken!", NOW)
    assert a.call_id != b.call_id and a.call_id == derived(b"{broken")


def test_resent_aml_is_the_same_call() -> None:
    sms = (CONTRACT / "examples" / "call-aml.txt").read_bytes().strip()
    ids = {parse_aml(p, NOW).call_id for p in (sms, sms + b"\r\n", b"  " + sms)}
    assert ids == {"aml-" + hashlib.sha256(sms).hexdigest()[:20]}
    assert parse_aml(sms.replace(b"lc=68", b"lc=67"), NOW).call_id not in ids


# ---------------------------------------------------------------------------------------------
# <node>/call/aml

SMS_EXAMPLE = (CONTRACT / "examples" / "call-aml.txt").read_bytes()
# mission-anchors.md 4.5, verbatim: its ml (126) is one less than its length (127)
SMS_ANCHOR = (
    b'A"ML=1;lt=+51.53321;lg=-0.12601;rd=14;top=20220131171748;lc=68;pm=W;si=234159000000000;ei=123456789012345;mcc=234;mnc=15;ml=126'
)
# the anchors' no-fix form, with its elided si/ei filled in and ml set to the length
SMS_NO_FIX = (
    b'A"ML=1;lt=+00.00000;lg=+000.00000;rd=N;top=20220131173734;lc=0;pm=N;si=234159000000000;ei=123456789012345;mcc=234;mnc=15;ml=127'
)
# cpilatre/aml-lib's 7-bit data SMS test vector, unpacked: a message from a real handset
SMS_REAL = b'A"ML=1;lt=37.42175;lg=-122.08461;rd=20;top=20150613010948;lc=68;pm=G;si=987654231;ei=358239059042542;mcc=310;mnc=260;ml=123'
SMS_V2 = (
    b'A"ML=2;en=+15555555555;et=1593187189;lo=-37.42175,-122.08461,2000.1;lt=-9999;lc=68;lz=-100.1,100.1;ls=G;'
    b"ei=358239059042542;nc=310260;hc=310260;lg=en-US"
)
# cpilatre/aml-lib's ELS HTTPS test body
ELS = (
    b"v=1&device_number=%2B447477593102&location_latitude=55.85732&location_longitude=-4.26325&location_time=1476189444435"
    b"&location_accuracy=10.4&location_source=GPS&location_certainty=83&location_altitude=0.0&location_floor=5"
    b"&device_model=ABC+ABC+Detente+530&device_imei=354773072099116&device_imsi=234159176307582&device_os=AOS&cell_carrier="
    b"&cell_home_mcc=234&cell_home_mnc=15&cell_network_mcc=234&cell_network_mnc=15&cell_id=0213454321"
)


def els(**fields: str) -> bytes:
    return urlencode(fields).encode()


@dataclass(frozen=True)
class AmlRow:
    name: str
    payload: bytes
    now: datetime
    location: Location | None
    source: str
    problem: str | None
    note: str = ""


T_ANCHOR = datetime(2022, 1, 31, 17, 18, tzinfo=UTC)
T_REAL = datetime(2015, 6, 13, 1, 10, tzinfo=UTC)
T_ELS = datetime(2016, 10, 11, 12, 38, tzinfo=UTC)
V1 = 'A"ML=1;lt=-6.20000;lg=+106.81666;rd=30;top=20250314022000;lc=68;pm=G'

AML_CORPUS = [
    AmlRow("contract example", SMS_EXAMPLE, NOW, Location(0.5568, 123.0702, 25.0), "aml-sms", None, "IMEI 356938035643809"),
    AmlRow("anchor example", SMS_ANCHOR, T_ANCHOR, Location(51.53321, -0.12601, 14.0), "aml-sms", "ml=126 but the message has 127"),
    AmlRow("anchor no-fix form", SMS_NO_FIX, T_ANCHOR + timedelta(minutes=20), None, "aml-sms", None, "no fix (pm=N)"),
    AmlRow("real handset", SMS_REAL, T_REAL, Location(37.42175, -122.08461, 20.0), "aml-sms", None, "method G (GNSS)"),
    AmlRow("stale fix", SMS_REAL, T_REAL + timedelta(hours=2), Location(37.42175, -122.08461, 20.0), "aml-sms", "min old"),
    AmlRow("future fix", SMS_REAL, T_REAL - timedelta(hours=2), Location(37.42175, -122.08461, 20.0), "aml-sms", "in the future"),
    AmlRow("V2", SMS_V2, NOW, Location(-37.42175, -122.08461, 2000.1), "aml-sms", None, "call started 2020-06-26T15:59:49"),
    AmlRow("V2 no lo", b'A"ML=2;en=112;et=1741918800;ls=U', NOW, None, "aml-sms", None, "no location"),
    AmlRow("V2 bad lo", b'A"ML=2;lo=1;2', NOW, None, "aml-sms", "is not lat,lon"),
    AmlRow("V2 et in ms", b'A"ML=2;et=1741918800000;lo=-6.2,106.8,10', NOW, Location(-6.2, 106.8, 10.0), "aml-sms", "read as ms, not s"),
    AmlRow("V9", b'A"ML=9;lt=1;lg=2', NOW, None, "aml-sms", "version '9' is not supported"),
    AmlRow("rd N", (V1 + ";rd=N").replace(";rd=30", "").encode(), NOW, Location(-6.2, 106.81666, None), "aml-sms", None),
    AmlRow("rd 0 means unknown", V1.replace("rd=30", "rd=0").encode(), NOW, Location(-6.2, 106.81666, None), "aml-sms", None),
    AmlRow("rd 200 km", V1.replace("rd=30", "rd=200000").encode(), NOW, None, "aml-sms", "location unusable"),
    AmlRow("lt out of range", V1.replace("lt=-6.20000", "lt=+95.00000").encode(), NOW, None, "aml-sms", "lt 95.0 is outside"),
    AmlRow("lt nan", V1.replace("lt=-6.20000", "lt=nan").encode(), NOW, None, "aml-sms", "lt 'nan' is not a decimal"),
    AmlRow("lt inf", V1.replace("lt=-6.20000", "lt=inf").encode(), NOW, None, "aml-sms", "is not a decimal"),
    AmlRow("lt fullwidth digits", V1.replace("lt=-6.20000", "lt=-\uff16.2").encode(), NOW, None, "aml-sms", "is not a decimal"),
    AmlRow("lt missing", V1.replace("lt=-6.20000;", "").encode(), NOW, None, "aml-sms", "lt is missing"),
    AmlRow("lt duplicated", (V1 + ";lt=-7.0").encode(), NOW, None, "aml-sms", "lt duplicated; location unusable"),
    AmlRow("zeros with pm=G", V1.replace("lt=-6.20000;lg=+106.81666", "lt=0;lg=0").encode(), NOW, None, "aml-sms", "Null Island"),
    AmlRow("pm=N with coordinates", V1.replace("pm=G", "pm=N").encode(), NOW, None, "aml-sms", "pm=N (no fix) but lt/lg"),
    AmlRow("pm unknown letter", V1.replace("pm=G", "pm=Q").encode(), NOW, Location(-6.2, 106.81666, 30.0), "aml-sms", "pm 'Q'"),
    AmlRow(
        "top invalid",
        V1.replace("top=20250314022000", "top=20251399000000").encode(),
        NOW,
        Location(-6.2, 106.81666, 30.0),
        "aml-sms",
        "top '20251399000000' is not",
    ),
    AmlRow("field without =", (V1 + ";garbage").encode(), NOW, Location(-6.2, 106.81666, 30.0), "aml-sms", "has no '='"),
    AmlRow("IMEI letters", (V1 + ";ei=35693803564380X").encode(), NOW, Location(-6.2, 106.81666, 30.0), "aml-sms", "ei '35693803564380X'"),
    AmlRow("lc over 100", V1.replace("lc=68", "lc=680").encode(), NOW, Location(-6.2, 106.81666, 30.0), "aml-sms", "not a percentage"),
    AmlRow("ELS example", ELS, T_ELS, Location(55.85732, -4.26325, 10.4), "els-https", None, "confidence 83%"),
    AmlRow("ELS stale", ELS, NOW, Location(55.85732, -4.26325, 10.4), "els-https", "min old"),
    AmlRow(
        "ELS confidence 0-1",
        els(location_latitude="-6.2", location_longitude="106.8", location_confidence="0.6827"),
        NOW,
        Location(-6.2, 106.8, None),
        "els-https",
        None,
        "confidence 68.27%",
    ),
    AmlRow(
        "ELS exponent",
        els(location_latitude="-1.0E-5", location_longitude="106.8", location_accuracy="12"),
        NOW,
        Location(-1e-05, 106.8, 12.0),
        "els-https",
        None,
    ),
    AmlRow("ELS no location", els(device_number="+6281234500000", v="1"), NOW, None, "els-https", None, "no location"),
    AmlRow("ELS only latitude", els(location_latitude="-6.2"), NOW, None, "els-https", "location_longitude is missing"),
    AmlRow("ELS latitude nan", els(location_latitude="nan", location_longitude="106.8"), NOW, None, "els-https", "is not a decimal"),
    AmlRow("ELS latitude 1e999", els(location_latitude="1e999", location_longitude="106.8"), NOW, None, "els-https", "not a finite"),
    AmlRow("ELS latitude underscore", els(location_latitude="-6_2", location_longitude="106.8"), NOW, None, "els-https", "not a decimal"),
    AmlRow(
        "ELS duplicated latitude",
        els(location_latitude="-6.2", location_longitude="106.8") + b"&location_latitude=-7",
        NOW,
        None,
        "els-https",
        "location_latitude duplicated",
    ),
    AmlRow(
        "ELS accuracy negative",
        els(location_latitude="-6.2", location_longitude="106.8", location_accuracy="-1"),
        NOW,
        Location(-6.2, 106.8, None),
        "els-https",
        "must be > 0",
    ),
    AmlRow(
        "ELS time in seconds",
        els(location_latitude="-6.2", location_longitude="106.8", location_time="1741918800"),
        NOW,
        Location(-6.2, 106.8, None),
        "els-https",
        "read as s, not ms",
    ),
    AmlRow(
        "ELS time 7 digits",
        els(location_latitude="-6.2", location_longitude="106.8", location_time="1234567"),
        NOW,
        Location(-6.2, 106.8, None),
        "els-https",
        "neither 10-digit",
    ),
    AmlRow(
        "ELS confidence over 1",
        els(location_latitude="-6.2", location_longitude="106.8", location_confidence="68"),
        NOW,
        Location(-6.2, 106.8, None),
        "els-https",
        "not within 0..1",
    ),
    AmlRow(
        "ELS caller letters",
        els(device_number="abc", location_latitude="-6.2", location_longitude="106.8"),
        NOW,
        Location(-6.2, 106.8, None),
        "els-https",
        "device_number 'abc' is not a phone number",
    ),
    AmlRow("ELS too many fields", b"&".join(b"location_x%d=1" % i for i in range(200)), NOW, None, "aml-sms", "more than 100 form"),
    AmlRow("garbage text", b"hello dispatcher", NOW, None, "aml-sms", "neither an AML SMS"),
    AmlRow("unrelated form", b"a=1&b=2", NOW, None, "aml-sms", "neither an AML SMS"),
    AmlRow("JSON on call/aml", call(), NOW, None, "aml-sms", "neither an AML SMS"),
    AmlRow("binary", b"\x00\xff\xfe\x80", NOW, None, "aml-sms", "not UTF-8"),
    AmlRow("empty", b"", NOW, None, "aml-sms", "empty payload"),
    AmlRow("oversized", SMS_EXAMPLE + b";" * MAX_PAYLOAD, NOW, None, "aml-sms", "payload too large"),
]


@pytest.mark.parametrize("row", AML_CORPUS, ids=[r.name for r in AML_CORPUS])
def test_aml_corpus(row: AmlRow) -> None:
    req = parse_aml(row.payload, row.now)
    check_invariants(req, row.now)
    store(req)
    assert req.call_id == "aml-" + hashlib.sha256(row.payload.strip()).hexdigest()[:20]
    assert req.location == row.location
    assert req.source == row.source
    assert req.received_at == row.now and req.category == "unknown"
    if row.problem is None:
        assert req.problems == ()
    else:
        assert any(row.problem in p for p in req.problems), req.problems
    assert row.note in req.note


def test_els_caller_is_device_number() -> None:
    assert parse_aml(ELS, T_ELS).caller == "+447477593102"
    assert parse_aml(SMS_EXAMPLE, NOW).caller == ""  # the SMS text carries no number


def test_aml_note_lists_what_the_handset_said() -> None:
    assert parse_aml(SMS_EXAMPLE, NOW).note == (
        "AML SMS V1; method G (GNSS); positioned 2025-03-14T02:20:55.000Z; confidence 68%; IMEI 356938035643809; "
        "IMSI 510100000000000; network 510-10"
    )


def test_call_topic_kind_aml_delegates() -> None:
    assert parse_call(SMS_EXAMPLE, NOW, topic_kind="aml") == parse_aml(SMS_EXAMPLE, NOW)


# ---------------------------------------------------------------------------------------------
# fuzzing: any input gives a call that keeps the guarantees

KNOWN = ["call_id", "caller", "lat", "lon", "accuracy_m", "received_at", "category", "escalated_from", "note", "caller_note"]
SPECIAL = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "9" * 5000, "[" * 3000 + "]" * 3000, "-0.0", "1E-400", '"\\ud800"']


@given(st.one_of(
    st.binary(max_size=400),
    st.binary(max_size=200).map(lambda b: b'A"ML=1;' + b),
    st.binary(max_size=200).map(lambda b: b'A"ML=2;' + b),
    st.binary(max_size=200).map(lambda b: b'{"call_id":"A","lat":' + b),
    st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
))
@FUZZ
def test_any_bytes_give_a_call(payload: bytes) -> None:
    for req in (parse_call(payload, NOW), parse_aml(payload, NOW)):
        check_invariants(req)
        assert req.raw_sha256 == hashlib.sha256(payload).hexdigest()


AML_KEYS = ["lt", "lg", "rd", "top", "lc", "pm", "si", "ei", "mcc", "mnc", "ml", "en", "et", "lo", "ls", "nc"]
ELS_KEYS = ["location_latitude", "location_longitude", "location_accuracy", "location_time", "location_confidence",
            "location_source", "device_number", "device_imei", "time", "emergency_number"]
AML_VALUES = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["N", "0", "+00.00000", "-0", "1e999", "nan", "-inf", "99999999999999", "G", "N", "1,2,3", "", "9" * 30]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers().map(str),
)


@given(st.sampled_from(['A"ML=1', 'A"ML=2']), st.lists(st.tuples(st.sampled_from(AML_KEYS), AML_VALUES), max_size=15))
@FUZZ
def test_any_aml_fields_give_a_call(header: str, fields: list[tuple[str, str]]) -> None:
    text = ";".join([header, *(f"{k}={v}" for k, v in fields)])
    check_invariants(parse_aml(text.encode("utf-8", "surrogatepass"), NOW))


@given(st.lists(st.tuples(st.sampled_from(ELS_KEYS), AML_VALUES), max_size=15))
@FUZZ
def test_any_els_fields_give_a_call(fields: list[tuple[str, str]]) -> None:
    body = urlencode([(k, v.encode("utf-8", "surrogatepass")) for k, v in fields])
    check_invariants(parse_aml(body.encode(), NOW))


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["new", "aml", "+6281234500000", "2025-03-14T02:20:58Z", "polri110/gorontalo", "\u202e", "\ud800"]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12
)
FRAGMENTS = st.one_of(JSON_VALUES.map(lambda v: json.dumps(v, allow_nan=True)), st.sampled_from(SPECIAL))


@given(
    st.lists(st.tuples(st.one_of(st.sampled_from(KNOWN), st.text(max_size=10)), FRAGMENTS), max_size=12),
    st.booleans(),
)
@FUZZ
def test_any_json_object_gives_a_call(pairs: list[tuple[str, str]], ascii_only: bool) -> None:
    text = "{" + ",".join(f"{json.dumps(k, ensure_ascii=ascii_only)}:{v}" for k, v in pairs) + "}"
    payload = text.encode("utf-8", "surrogatepass")
    req = parse_call(payload, NOW)
    check_invariants(req)
    keys = [k for k, _ in pairs]
    if "call_id" not in keys or keys.count("call_id") > 1:
        assert req.call_id == derived(payload)


@given(st.dictionaries(st.sampled_from(KNOWN), JSON_VALUES, max_size=10))
@FUZZ
def test_any_json_values_for_known_fields_give_a_call(fields: dict[str, object]) -> None:
    payload = json.dumps({**BASE, **fields}, allow_nan=True).encode()
    check_invariants(parse_call(payload, NOW))


# valid calls round-trip their fields exactly
CALL_IDS = st.from_regex(CALL_ID_PATTERN, fullmatch=True).filter(lambda s: s not in RESERVED_CALL_IDS and s.strip(".") != "")
WORDS = st.text(st.characters(exclude_categories=("Cc", "Cf", "Cs", "Zs", "Zl", "Zp")), min_size=1, max_size=10)
PHRASES = st.lists(WORDS, min_size=1, max_size=6).map(" ".join)
LEVEL = st.text(st.characters(exclude_categories=("Cc", "Cf", "Cs", "Zs", "Zl", "Zp"), exclude_characters="+#/"), min_size=1, max_size=12)


@st.composite
def valid_calls(draw: st.DrawFn) -> tuple[dict[str, object], datetime, Location | None]:
    lat = draw(st.floats(-90, 90))
    lon = draw(st.floats(-180, 180))
    if lat == 0 and lon == 0:
        lon = 1.0
    acc = draw(st.none() | st.floats(min_value=0, max_value=MAX_ACCURACY_M, exclude_min=True))
    t = NOW + timedelta(microseconds=draw(st.integers(-86_400_000_000, 300_000_000)))
    offset = timedelta(minutes=draw(st.integers(-12 * 60, 14 * 60)))
    local = t.astimezone(timezone(offset)).isoformat().replace("+00:00", "Z")
    fields: dict[str, object] = {
        "call_id": draw(CALL_IDS),
        "caller": draw(st.sampled_from(["", "+62", "0", "+1"])) + draw(st.text("0123456789", min_size=3, max_size=15)),
        "lat": lat,
        "lon": lon,
        "accuracy_m": acc,
        "received_at": local,
        "category": draw(PHRASES.filter(lambda s: len(s) <= 64)),
    }
    if draw(st.booleans()):
        fields["escalated_from"] = "/".join(draw(st.lists(LEVEL, min_size=1, max_size=4)))
    if draw(st.booleans()):
        fields["caller_note"] = draw(PHRASES)
    if draw(st.booleans()):  # no location is a valid call too
        fields["lat"] = fields["lon"] = None
        return fields, t, None
    return fields, t, Location(lat, lon, acc)


@given(valid_calls(), st.booleans())
@FUZZ
def test_valid_calls_round_trip(generated: tuple[dict[str, object], datetime, Location | None], ascii_only: bool) -> None:
    fields, t, location = generated
    payload = json.dumps(fields, ensure_ascii=ascii_only).encode()
    req = parse_call(payload, NOW)
    check_invariants(req)
    assert req.problems == ()
    assert req == CallRequest(
        call_id=str(fields["call_id"]),
        caller=str(fields["caller"]),
        location=location,
        received_at=t,
        category=str(fields["category"]),
        source="mqtt",
        escalated_from=escalated if isinstance(escalated := fields.get("escalated_from"), str) else None,
        note=str(fields.get("caller_note", "")),
        raw_sha256=hashlib.sha256(payload).hexdigest(),
    )

"""OwnTracks reports: published payloads (tests/captures/owntracks/), topics, HTTP identity, gates, fuzzing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alkomd.drivers import owntracks as ot
from alkomd.drivers.owntracks import Location, Other, OwnTracksError, Reject

CAPTURES = Path(__file__).parent / "captures" / "owntracks"
RECEIVED = datetime(2026, 3, 10, 8, 0, 0, tzinfo=UTC)


def _samples() -> list[tuple[str, str, str | None, dict[str, str] | None, dict[str, str]]]:
    out = []
    for path in sorted(CAPTURES.glob("*.jsonl")):
        topic: str | None = None
        headers: dict[str, str] | None = None
        expect: dict[str, str] = {}
        for line in path.read_text().splitlines():
            if line.startswith("# topic:"):
                topic = line[len("# topic:") :].strip()
            elif line.startswith("# headers:"):
                headers = dict(h.strip().split("=", 1) for h in line[len("# headers:") :].split(";"))
            elif line.startswith("# expect:"):
                expect = dict(kv.split("=", 1) for kv in line[len("# expect:") :].split())
            elif line.strip() and not line.startswith("#"):
                out.append((path.name, line, topic, headers, expect))
                topic, headers, expect = None, None, {}
    return out


SAMPLES = _samples()


def test_capture_files_name_their_sources() -> None:
    files = sorted(CAPTURES.glob("*.jsonl"))
    assert len(files) >= 2 and len(SAMPLES) >= 15
    for f in files:
        text = f.read_text()
        assert "Source:" in text and "Licence:" in text, f.name


@pytest.mark.parametrize(("name", "line", "topic", "headers", "expect"), SAMPLES, ids=[f"{s[0]}:{i}" for i, s in enumerate(SAMPLES)])
def test_published_payloads(name: str, line: str, topic: str | None, headers: dict[str, str] | None, expect: dict[str, str]) -> None:
    assert expect, f"{name}: no expect line for {line[:60]}"
    if expect.get("error") == "OwnTracksError":
        with pytest.raises(OwnTracksError):
            ot.decode(line, topic=topic, headers=headers)
        return
    msg = ot.decode(line.encode(), topic=topic, headers=headers)
    assert msg.radio == expect["radio"]
    if expect["kind"] != "location":
        assert isinstance(msg, Other) and msg.kind == expect["kind"]
        return
    assert isinstance(msg, Location)
    for key, attr in (("lat", "lat"), ("lon", "lon"), ("acc", "acc"), ("alt", "alt"), ("vel", "vel"), ("cog", "cog"), ("batt", "batt")):
        if key in expect:
            value = getattr(msg, attr)
            assert (value is None) if expect[key] == "none" else value == pytest.approx(float(expect[key])), (key, value)
    if "tst" in expect:
        assert (msg.tst is None) if expect["tst"] == "none" else msg.tst == datetime.fromtimestamp(int(expect["tst"]), UTC)
    fix, reject = ot.to_fix(msg, device="phones", received=RECEIVED, received_mono=4.0)
    if expect.get("fix") == "yes":
        assert fix is not None and reject is None
        assert fix.radio == expect["radio"] and fix.device == "phones" and fix.accuracy_m == msg.acc
        assert fix.time == msg.tst and fix.speed_kmh == msg.vel and fix.alt == msg.alt
        if "mode" in expect:
            assert fix.mode == int(expect["mode"])
    elif "fix" in expect:
        assert fix is None and reject is Reject[expect["fix"].split(":")[1]]


def test_topics() -> None:
    assert ot.split_topic("owntracks/jane/phone") == ("jane", "phone", "")
    assert ot.split_topic("owntracks/jane/phone/event") == ("jane", "phone", "event")
    assert ot.split_topic("polri/gorontalo/owntracks/jane/phone", base="polri/gorontalo/owntracks") == ("jane", "phone", "")
    for bad in ("owntracks/jane", "owntracks//phone", "other/jane/phone", "owntracks/ja+ne/phone", "owntracks/jane/#", "owntracks"):
        with pytest.raises(OwnTracksError):
            ot.split_topic(bad)


def test_http_identity_headers_are_case_insensitive_and_precede_the_body_topic() -> None:
    body = '{"_type":"location","lat":0.5435,"lon":123.0568,"tst":1773129600,"topic":"owntracks/jane/phone"}'
    assert ot.decode(body, headers={"x-limit-u": "bripka", "X-LIMIT-D": "hp1"}).radio == "bripka/hp1"
    assert ot.decode(body, headers={"X-Limit-U": "bripka"}).radio == "jane/phone"  # a device header is missing
    assert ot.decode(body, topic="owntracks/a/b", headers={"X-Limit-U": "u", "X-Limit-D": "d"}).radio == "a/b"
    with pytest.raises(OwnTracksError):
        ot.decode(body, headers={"X-Limit-U": "u/x", "X-Limit-D": "d"})


def test_gates() -> None:
    def fix_of(**kw: Any) -> tuple[Any, Reject | None]:
        obj = {"_type": "location", "lat": 0.5435, "lon": 123.0568, "tst": int(RECEIVED.timestamp()), **kw}
        msg = ot.decode(json.dumps(obj), topic="owntracks/u/d")
        assert isinstance(msg, Location)
        return ot.to_fix(msg, device="d", received=RECEIVED, received_mono=0.0)

    assert fix_of()[1] is None
    assert fix_of(lat=0, lon=0)[1] is Reject.ZERO
    assert fix_of(lat=91)[1] is Reject.OUT_OF_RANGE
    assert fix_of(lon=-180.5)[1] is Reject.OUT_OF_RANGE
    assert fix_of(lat=None)[1] is Reject.NO_POSITION
    assert fix_of(lat=True)[1] is Reject.NO_POSITION
    assert fix_of(tst="soon")[1] is Reject.NO_TIME
    assert fix_of(tst=-5)[1] is Reject.NO_TIME
    assert fix_of(tst=int((RECEIVED + timedelta(minutes=11)).timestamp()))[1] is Reject.FUTURE
    assert fix_of(tst=int((RECEIVED + timedelta(minutes=9)).timestamp()))[1] is None
    fix, _ = fix_of(tst="1773129600", acc=12, cog=360, vel=3000, batt=150)
    assert fix is not None and fix.time == datetime(2026, 3, 10, 8, 0, tzinfo=UTC) and fix.accuracy_m == 12.0
    assert fix.course == 0.0 and fix.speed_kmh is None and fix.mode == 2


@pytest.mark.parametrize(
    "payload",
    [b"", b"[]", b"null", b"{}", b'{"_type": 5}', b'{"_type":"nonsense"}', b"\xff\xfe\x00", b"{" * 100000, b"[" * 5000 + b"]" * 5000,
     b"x" * (ot.MAX_PAYLOAD + 1), b'{"_type":"location","lat":' + b"9" * 5000 + b"}"],
)
def test_bad_payloads_are_typed_errors(payload: bytes) -> None:
    with pytest.raises(OwnTracksError):
        ot.decode(payload, topic="owntracks/u/d")


def test_nan_and_huge_numbers_are_not_known() -> None:
    payload = '{"_type":"location","lat":NaN,"lon":1e999,"tst":1e300,"acc":-1,"alt":123456789012345678901234567890}'
    msg = ot.decode(payload, topic="owntracks/u/d")
    assert isinstance(msg, Location) and msg.lat is None and msg.lon is None and msg.tst is None and msg.acc is None and msg.alt is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)
FIELDS = st.fixed_dictionaries(
    {"_type": st.sampled_from(["location", "lwt", "transition", "card", "x"])},
    optional={k: JSON | st.floats(min_value=-200, max_value=200) | st.integers(min_value=-10**12, max_value=10**12)
              for k in ("lat", "lon", "tst", "acc", "alt", "vel", "cog", "batt", "tid", "t", "topic", "created_at")},
)


@settings(max_examples=500, deadline=None)
@given(FIELDS, st.sampled_from([None, "owntracks/u/d", "owntracks/u", "x/u/d"]),
       st.none() | st.dictionaries(st.text(max_size=10), st.text(max_size=10)))
def test_fuzz_structured_never_escapes(obj: dict[str, Any], topic: str | None, headers: dict[str, str] | None) -> None:
    try:
        msg = ot.decode(json.dumps(obj), topic=topic, headers=headers)
    except OwnTracksError:
        return
    if isinstance(msg, Location):
        fix, reject = ot.to_fix(msg, device="d", received=RECEIVED, received_mono=0.0)
        assert (fix is None) != (reject is None)
        if fix is not None:
            assert not (fix.lat == 0.0 and fix.lon == 0.0) and -90 <= fix.lat <= 90 and -180 <= fix.lon <= 180
            assert fix.time <= RECEIVED + ot.FUTURE_TOLERANCE and (fix.accuracy_m is None or fix.accuracy_m > 0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_fuzz_random_payloads_never_escape(payload: bytes | str) -> None:
    try:
        ot.decode(payload, topic="owntracks/u/d")
    except OwnTracksError:
        pass

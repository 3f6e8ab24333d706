"""MOTOTRBO LRRP and ARS decoders against published packets, the encoders, the gates, and fuzzing.

(a) every packet in tests/captures/lrrp/*.hex decodes to the values its source states (TRBO-NET's
    Wireshark captures, ok-dmrlib's examples and samples, the RadioReference packet);
(b) the encoders reproduce the captured requests and the ARS acknowledgement byte for byte, and
    what they write decodes back (hypothesis), southern hemisphere included;
(c) reports map to `Fix` records through the shared gates (radius kept as `accuracy_m`);
(d) random bytes never raise anything but the typed errors and never give a fix at 0,0 or out of range.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alkomd.daemon.config import RadioStatusConfig
from alkomd.daemon.records import Fix
from alkomd.drivers import location_gate, lrrp, lrrp_ars, lrrp_build
from alkomd.drivers.location_gate import EMERGENCY_CODE, Reject, to_records
from alkomd.drivers.lrrp import LocationReport, LocationRequest, LrrpError, MessageType, Shape

CAPTURES = Path(__file__).parent / "captures"
RECEIVED = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Sample:
    source: str  # file:line, for test ids
    packet: bytes
    expect: dict[str, str]


def samples(folder: str) -> list[Sample]:
    """The packets of captures/<folder>/*.hex, each with the `# expect: k=v ...` line before it."""
    out: list[Sample] = []
    for path in sorted((CAPTURES / folder).glob("*.hex")):
        expect: dict[str, str] = {}
        for n, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.strip()
            if line.startswith("# expect:"):
                expect = dict(item.split("=", 1) for item in line[len("# expect:") :].split())
            elif line and not line.startswith("#"):
                out.append(Sample(f"{path.name}:{n}", bytes.fromhex(line), expect))
                expect = {}
    return out


LRRP_SAMPLES = samples("lrrp")


def test_every_capture_states_what_it_expects() -> None:
    assert len(LRRP_SAMPLES) >= 37
    assert all(s.expect for s in LRRP_SAMPLES), [s.source for s in LRRP_SAMPLES if not s.expect]


def _check_lrrp(s: Sample) -> None:
    e = s.expect
    msg = lrrp.decode(s.packet)
    assert msg.kind == int(e["type"], 16)
    if "request_id" in e:
        assert msg.request_id == bytes.fromhex(e["request_id"])
    if "interval_s" in e:
        assert isinstance(msg, LocationRequest) and msg.interval_s == int(e["interval_s"])
    if isinstance(msg, LocationRequest):
        return
    if "result" in e:
        assert msg.result == int(e["result"])
    if e.get("complete") == "yes":
        assert msg.unknown_token is None
    tol = float(e.get("tol", "0"))
    if "lat" in e:
        assert msg.lat == pytest.approx(float(e["lat"]), abs=tol)
        assert msg.lon == pytest.approx(float(e["lon"]), abs=tol)
    if "radius" in e:
        assert msg.radius_m == float(e["radius"])
    if "speed" in e:
        assert msg.speed_kmh == float(e["speed"])
    if "time" in e:
        assert msg.time == datetime.fromisoformat(e["time"]).replace(tzinfo=UTC)
    if "fix" in e:
        mapped = to_records(msg.position(RECEIVED), "trbo", "1234", RECEIVED, 1.0)
        if e["fix"] == "yes":
            assert mapped.fix is not None and mapped.fix.radio == "1234"
            assert mapped.fix.accuracy_m == msg.radius_m
            assert mapped.fix.time == (msg.time or RECEIVED)
        else:
            assert mapped.fix is None and mapped.reject is not None


def _check_ars(s: Sample) -> None:
    e = s.expect
    ev = lrrp_ars.decode(s.packet)
    assert ev.kind == e["event"]
    if "radio" in e:
        assert ev.radio_id == e["radio"]
    if "refresh_30min" in e:
        assert ev.detail == int(e["refresh_30min"]) and not ev.acknowledged


@pytest.mark.parametrize("sample", LRRP_SAMPLES, ids=[s.source for s in LRRP_SAMPLES])
def test_published_packets(sample: Sample) -> None:
    if sample.expect["kind"] == "ars":
        _check_ars(sample)
    else:
        _check_lrrp(sample)


# (b) encoders


def test_triggered_start_is_byte_for_byte_the_captured_request() -> None:
    # TRBO-NET t/20loc-decode.t: "start sending every 30 seconds"
    assert lrrp.triggered_start(bytes.fromhex("37271707"), 30) == bytes.fromhex("090a2204372717075034311e")


def test_triggered_start_with_speed_and_direction_is_what_trbo_net_sends() -> None:
    # TRBO-NET LOC.pm request_locs: 2204 37271707, 5074 6934, 31, interval
    got = lrrp.triggered_start(bytes.fromhex("37271707"), 60, speed_direction=True)
    assert got == bytes.fromhex("090c220437271707507469343 13c".replace(" ", ""))
    req = lrrp.decode(got)
    assert isinstance(req, LocationRequest)
    assert (req.interval_s, req.speed, req.direction, req.ret_info) == (60, True, True, 0x50)


def test_stop_request_and_ars_answers_match_the_published_bytes() -> None:
    assert lrrp.triggered_stop(bytes.fromhex("2468ACE0")) == bytes.fromhex("0F0622042468ACE0")  # ok-dmrlib
    assert lrrp_ars.ack() == bytes.fromhex("0002BF01")  # TRBO-NET ARS.pm, ok-dmrlib test_ars_response
    assert lrrp_ars.encode_registration(1234567) == bytes.fromhex("000cf02007313233343536370000")  # TRBO-NET
    assert lrrp_ars.query() == bytes.fromhex("000174")
    assert lrrp_ars.decode(lrrp_ars.encode_registration(2301001, refresh=True)).refresh


@given(st.binary(min_size=1, max_size=16), st.integers(1, 86400), st.booleans(), st.booleans())
def test_requests_round_trip(rid: bytes, interval: int, sd: bool, with_time: bool) -> None:
    start = lrrp.decode(lrrp.triggered_start(rid, interval, speed_direction=sd, info_time=with_time))
    assert isinstance(start, LocationRequest) and start.kind is MessageType.TRIGGERED_START_REQUEST
    assert (start.request_id, start.interval_s, start.speed, start.direction) == (rid, interval, sd, sd)
    assert start.ret_info == (0x51 if with_time else 0x50)
    stop = lrrp.decode(lrrp.triggered_stop(rid))
    assert isinstance(stop, LocationRequest) and (stop.kind, stop.request_id) == (MessageType.TRIGGERED_STOP_REQUEST, rid)
    now = lrrp.decode(lrrp.immediate_request(rid, speed_direction=sd))
    assert isinstance(now, LocationRequest) and (now.kind, now.request_id, now.speed) == (MessageType.IMMEDIATE_REQUEST, rid, sd)


def test_encoders_refuse_nonsense() -> None:
    for bad in (lambda: lrrp.triggered_start(b"", 30), lambda: lrrp.triggered_start(b"\x01", 0), lambda: lrrp_ars.ack(0)):
        with pytest.raises(ValueError):
            bad()


times = st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)).map(lambda t: t.replace(microsecond=0, tzinfo=UTC))


@given(
    st.sampled_from([MessageType.IMMEDIATE_REPORT, MessageType.TRIGGERED_REPORT, MessageType.UNSOLICITED_REPORT]),
    st.sampled_from(list(Shape)),
    st.floats(-90, 90),
    st.floats(-180, 180, exclude_max=True),
    times,
    st.integers(0, 2000).map(lambda v: v / 8),
    st.integers(0, 179).map(lambda v: float(v * 2)),
    st.integers(-500, 5000),
)
def test_reports_round_trip(kind: MessageType, shape: Shape, lat: float, lon: float, t: datetime, speed: float,
                            course: float, alt: int) -> None:
    rep = LocationReport(kind, b"\x01\x02", 0, shape=shape, lat=lat, lon=lon, radius_m=12.5, alt_m=float(alt),
                         alt_accuracy_m=3.0, time=t, speed_kmh=speed, course=course)
    back = lrrp.decode(lrrp_build.encode_report(rep))
    assert isinstance(back, LocationReport) and back.unknown_token is None
    assert back.lat == pytest.approx(lat, abs=1e-7) and back.lon == pytest.approx(lon, abs=1e-7)
    assert (back.kind, back.shape, back.time, back.speed_kmh, back.course, back.result) == (kind, shape, t, speed, course, 0)
    if shape in (Shape.CIRCLE_2D, Shape.CIRCLE_3D):
        assert back.radius_m == 12.5
    if shape in (Shape.POINT_3D, Shape.CIRCLE_3D):
        assert back.alt_m == alt


def test_southern_hemisphere_uses_the_hemisphere_bit() -> None:
    # Polres Kupang, about 10.16 S 123.6 E (built: no real southern sample was found, see no-real-sample.md)
    raw = lrrp_build.encode_lat(-10.1632) + lrrp_build.encode_lon(123.6015)
    assert raw[0] & 0x80 and (raw[0] & 0x7F) == lrrp_build.encode_lat(10.1632)[0]
    rep = lrrp.decode(bytes([0x0D, 12, 0x22, 1, 7, 0x66]) + raw)
    assert isinstance(rep, LocationReport)
    assert rep.lat == pytest.approx(-10.1632, abs=1e-7) and rep.lon == pytest.approx(123.6015, abs=1e-7)
    west = lrrp.decode(bytes([0x0D, 12, 0x22, 1, 7, 0x66]) + lrrp_build.encode_lat(1.0) + lrrp_build.encode_lon(-77.0))
    assert isinstance(west, LocationReport) and west.lon == pytest.approx(-77.0)


def test_radio_addressing() -> None:
    assert lrrp.radio_ip(1234567) == "12.18.214.135"
    assert lrrp.radio_id_from_ip("12.18.214.135") == 1234567
    assert lrrp.radio_ip(9, lrrp.GROUP_NETWORK) == "225.0.0.9"
    assert lrrp.radio_id_from_ip("225.0.0.9") is None
    assert lrrp.radio_id_from_ip("225.0.0.9", (lrrp.GROUP_NETWORK,)) == 9
    assert lrrp.radio_id_from_ip("13.0.0.1") is None and lrrp.radio_id_from_ip("not an address") is None
    with pytest.raises(ValueError):
        lrrp.radio_ip(2**24)


# (c) gates and records


def _point(lat: float, lon: float, t: datetime | None = None, result: int | None = None) -> LocationReport:
    return LocationReport(MessageType.TRIGGERED_REPORT, b"\x01", result, shape=Shape.CIRCLE_2D, lat=lat, lon=lon, radius_m=20.0, time=t)


def test_gates() -> None:
    def reject(rep: LocationReport) -> Reject | None:
        return to_records(rep.position(RECEIVED), "trbo", "7", RECEIVED, 1.0).reject

    assert reject(_point(-6.2, 106.8)) is None
    assert reject(_point(0.0, 0.0)) is Reject.ZERO
    assert reject(_point(91.0, 10.0)) is Reject.OUT_OF_RANGE
    assert reject(_point(-6.2, 106.8, RECEIVED + timedelta(days=2))) is Reject.FUTURE
    assert reject(_point(-6.2, 106.8, RECEIVED + timedelta(hours=2))) is None  # a fast clock is tolerated
    assert reject(_point(-6.2, 106.8, result=lrrp.Result.NO_GPS)) is Reject.NOT_VALID
    no_date = LocationReport(MessageType.TRIGGERED_REPORT, shape=Shape.POINT_2D, lat=1.0, lon=2.0, time_invalid=True)
    assert reject(no_date) is Reject.NO_TIME
    answer = LocationReport(MessageType.TRIGGERED_START_ANSWER, result=0)
    assert to_records(answer.position(RECEIVED), "trbo", "7", RECEIVED, 1.0).reject is Reject.NOT_A_REPORT


def test_fix_record() -> None:
    t = RECEIVED - timedelta(seconds=5)
    rep = LocationReport(MessageType.TRIGGERED_REPORT, b"\x01", shape=Shape.CIRCLE_3D, lat=-6.2, lon=106.8, radius_m=20.0,
                         alt_m=12.0, time=t, speed_kmh=30.0, course=90.0)
    m = to_records(rep.position(RECEIVED), "trbo", "1234567", RECEIVED, 5.0)
    assert m.fix == Fix("trbo", t, -6.2, 106.8, 3, RECEIVED, 5.0, alt=12.0, speed_kmh=30.0, course=90.0, radio="1234567",
                        accuracy_m=20.0)
    assert m.status is None


def test_emergency_status_matches_the_default_config() -> None:
    m = to_records(_point(-6.2, 106.8).position(RECEIVED), "trbo", "7", RECEIVED, 1.0, emergency=True)
    assert m.status is not None and m.status.code == EMERGENCY_CODE and m.status.radio == "7"
    assert EMERGENCY_CODE in RadioStatusConfig().emergency


def test_malformed_documents_raise_the_typed_error() -> None:
    for bad in ("", "0d", "0d05220437", "0d0322", "4201ff", "0d0422012a22", "0d0666118ECD8D11", "0d0722ffffffffff7f"):
        with pytest.raises(LrrpError):
            lrrp.decode(bytes.fromhex(bad))
    unknown = lrrp.decode(bytes.fromhex("0d02ff01"))  # an unknown first token: a report without a position
    assert isinstance(unknown, LocationReport) and unknown.unknown_token == 0xFF and unknown.position(RECEIVED) is not None
    assert to_records(unknown.position(RECEIVED), "trbo", "7", RECEIVED, 1.0).reject is Reject.NOT_VALID
    for bad in ("", "0001", "00014a", "0004f0200141", "0003f02000", "0005f020ff0000"):
        with pytest.raises(lrrp_ars.ArsError):
            lrrp_ars.decode(bytes.fromhex(bad))


# (d) fuzzing


def _assert_safe(msg: LocationReport | LocationRequest) -> None:
    if isinstance(msg, LocationReport):
        m = to_records(msg.position(RECEIVED), "trbo", "7", RECEIVED, 1.0, emergency=msg.unsolicited)
        if m.fix is not None:
            assert -90 <= m.fix.lat <= 90 and -180 <= m.fix.lon <= 180
            assert (m.fix.lat, m.fix.lon) != (0.0, 0.0)
            assert m.fix.time - RECEIVED <= location_gate.FUTURE_TOLERANCE


@settings(max_examples=400)
@given(st.binary(max_size=80))
def test_random_bytes(data: bytes) -> None:
    try:
        msg = lrrp.decode(data)
    except LrrpError:
        return
    _assert_safe(msg)


@settings(max_examples=400)
@given(st.sampled_from([int(k) for k in MessageType]), st.binary(max_size=60))
def test_random_tokens_in_a_valid_header(kind: int, body: bytes) -> None:
    try:
        msg = lrrp.decode(bytes([kind]) + lrrp.uintvar(len(body)) + body)
    except LrrpError:
        return
    _assert_safe(msg)


@settings(max_examples=300)
@given(st.binary(max_size=40))
def test_random_ars(body: bytes) -> None:
    for data in (body, len(body).to_bytes(2, "big") + body):
        try:
            ev = lrrp_ars.decode(data)
        except lrrp_ars.ArsError:
            continue
        assert ev.radio_id is None or ev.radio_id.isprintable()

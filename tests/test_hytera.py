"""Hytera LP decoder against published packets, the encoders, emergency and triggered reports, and fuzzing.

(a) every packet in tests/captures/hytera/*.hex decodes to the values its source states (ok-dmrlib's
    two standard reports; dmr-kaitai's captured requests and reports); a bad checksum is a typed error;
(b) the request encoders write what the decoder reads back (hypothesis), with valid checksums;
(c) emergency (B003) and triggered (C003) reports, built from dmr-kaitai's layout (no real sample),
    give a `Fix` and, for the emergency, a `RadioStatus` with the emergency code;
(d) random bytes, and random payloads in valid framing, raise only `HyteraError` and never give a
    fix at 0,0 or out of range.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_lrrp import RECEIVED, Sample, samples

from alkomd.drivers import hytera
from alkomd.drivers.hytera import HyteraError, LpMessage, Opcode
from alkomd.drivers.location_gate import EMERGENCY_CODE, FUTURE_TOLERANCE, Reject, to_records

HYTERA_SAMPLES = samples("hytera")


def test_every_capture_states_what_it_expects() -> None:
    assert len(HYTERA_SAMPLES) >= 7
    assert all(s.expect for s in HYTERA_SAMPLES)


@pytest.mark.parametrize("sample", HYTERA_SAMPLES, ids=[s.source for s in HYTERA_SAMPLES])
def test_published_packets(sample: Sample) -> None:
    e = sample.expect
    if "error" in e:
        with pytest.raises(HyteraError, match=e["error"]):
            hytera.decode(sample.packet)
        return
    m = hytera.decode(sample.packet)
    assert m.opcode == int(e["opcode"], 16)
    assert m.request_id == int(e["request_id"])
    assert m.radio_ip == e["radio_ip"]
    assert m.radio_id == int.from_bytes(bytes(int(x) for x in e["radio_ip"].split(".")[1:]), "big")
    if "result" in e:
        assert m.result == int(e["result"])
    if "lat" not in e:
        return
    assert m.gps is not None
    assert m.gps.valid == (e["valid"] == "A")
    tol = float(e["tol"])
    assert m.gps.lat == pytest.approx(float(e["lat"]), abs=tol) and m.gps.lon == pytest.approx(float(e["lon"]), abs=tol)
    if "speed" in e:
        assert m.gps.speed_kmh == pytest.approx(float(e["speed"]))
    if "course" in e:
        assert m.gps.course == float(e["course"])
    if "time" in e:
        assert m.gps.time == datetime.fromisoformat(e["time"]).replace(tzinfo=UTC)
    mapped = to_records(m.position(), "hytera", m.radio, RECEIVED, 1.0, emergency=m.emergency)
    if e["fix"] == "yes":
        assert mapped.fix is not None and mapped.fix.radio == m.radio and mapped.fix.time == m.gps.time
    else:
        assert mapped.fix is None and mapped.reject is Reject[e["reject"].upper()]


def test_the_request_in_the_capture_is_what_the_encoder_writes_less_its_extra_byte() -> None:
    # dmr-kaitai's captured A001 carries one byte (0x01) more than the layout; the rest is ours byte for byte.
    ours = hytera.standard_request(0x20000003, 222222, subnet=10)
    assert ours == bytes.fromhex("08a0010008200000030a03640e") + bytes([hytera.checksum(ours[1:-2]), 3])
    assert hytera.decode(ours).request_id == 0x20000003


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**24 - 1), st.integers(1, 99 * 86400))
def test_requests_round_trip(request_id: int, radio_id: int, interval: int) -> None:
    start = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)
    stop = start + timedelta(hours=12)
    m = hytera.decode(hytera.triggered_request(request_id, radio_id, interval, start, stop))
    assert (m.opcode, m.request_id, m.radio_id, m.radio_ip.split(".")[0]) == (Opcode.TRIGGERED_REQUEST, request_id, radio_id, "10")
    assert (m.start, m.stop) == ("20261207040000", "20261207160000")
    assert m.interval is not None
    d, h, mi, s = (int(m.interval[i : i + 2]) for i in range(0, 8, 2))
    assert ((d * 24 + h) * 60 + mi) * 60 + s == interval
    m = hytera.decode(hytera.triggered_stop(request_id, radio_id))
    assert (m.opcode, m.request_id, m.radio_id) == (Opcode.TRIGGERED_STOP_REQUEST, request_id, radio_id)
    m = hytera.decode(hytera.standard_request(request_id, radio_id))
    assert (m.opcode, m.request_id, m.radio_id) == (Opcode.STANDARD_REQUEST, request_id, radio_id)


def test_encoders_refuse_nonsense() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    for bad in (
        lambda: hytera.standard_request(-1, 1),
        lambda: hytera.standard_request(1, 2**24),
        lambda: hytera.triggered_request(1, 1, 0, t, t + timedelta(1)),
        lambda: hytera.triggered_request(1, 1, 60, t, t),
    ):
        with pytest.raises(ValueError):
            bad()


# (c) emergency and triggered reports (built from dmr-kaitai's layout: no real sample)

WHEN = datetime(2026, 12, 7, 3, 59, 30, tzinfo=UTC)


def test_emergency_report_gives_a_fix_and_the_emergency_status() -> None:
    # Polres Gorontalo, 0.5412 N 123.0595 E
    gps = hytera.gps_block(True, WHEN, 0.5412, 123.0595, knots=12.0, course=270)
    m = hytera.decode(hytera.encode_report(Opcode.EMERGENCY_REPORT, 0, 2301001, gps, emergency_type=1))
    assert m.emergency and m.emergency_type == 1 and m.radio == "2301001" and m.request_id is None
    mapped = to_records(m.position(), "hytera", m.radio, RECEIVED, 1.0, emergency=m.emergency)
    assert mapped.status is not None and mapped.status.code == EMERGENCY_CODE and mapped.status.radio == "2301001"
    assert mapped.fix is not None
    assert mapped.fix.lat == pytest.approx(0.5412, abs=1e-6) and mapped.fix.lon == pytest.approx(123.0595, abs=1e-6)
    assert (mapped.fix.time, mapped.fix.course, mapped.fix.mode) == (WHEN, 270.0, 2)
    assert mapped.fix.speed_kmh == pytest.approx(12.0 * 1.852)


def test_emergency_without_a_fix_still_signals() -> None:
    gps = hytera.gps_block(False, None, 0.0, 0.0)
    m = hytera.decode(hytera.encode_report(Opcode.EMERGENCY_REPORT, 0, 7, gps))
    mapped = to_records(m.position(), "hytera", m.radio, RECEIVED, 1.0, emergency=m.emergency)
    assert mapped.fix is None and mapped.reject is Reject.NOT_VALID
    assert mapped.status is not None and mapped.status.code == EMERGENCY_CODE


def test_triggered_report_southern_and_western_hemispheres() -> None:
    for lat, lon in ((-6.1754, 106.8272), (-10.1632, -77.5)):
        gps = hytera.gps_block(True, WHEN, lat, lon, knots=0.5, course=5)
        m = hytera.decode(hytera.encode_report(Opcode.TRIGGERED_REPORT, 42, 1001, gps, remaining=timedelta(hours=1)))
        assert (m.opcode, m.request_id, m.radio_ip, m.interval) == (Opcode.TRIGGERED_REPORT, 42, "10.0.3.233", "00010000")
        fix = to_records(m.position(), "hytera", m.radio, RECEIVED, 1.0).fix
        assert fix is not None and fix.lat == pytest.approx(lat, abs=1e-6) and fix.lon == pytest.approx(lon, abs=1e-6)


def test_gates_on_the_gps_block() -> None:
    def reject(lat: float, lon: float, valid: bool = True, when: datetime | None = WHEN) -> Reject | None:
        m = hytera.decode(hytera.encode_report(Opcode.STANDARD_REPORT, 1, 1001, hytera.gps_block(valid, when, lat, lon)))
        return to_records(m.position(), "hytera", m.radio, RECEIVED, 1.0).reject

    assert reject(-6.2, 106.8) is None
    assert reject(-6.2, 106.8, valid=False) is Reject.NOT_VALID
    assert reject(0.0, 0.0) is Reject.ZERO
    assert reject(-6.2, 106.8, when=None) is Reject.NO_TIME
    assert reject(-6.2, 106.8, when=RECEIVED + timedelta(days=3)) is Reject.FUTURE
    block = bytearray(hytera.gps_block(True, WHEN, 1.0, 2.0))
    block[14:23] = b"9100.0000"  # 91 degrees north
    m = hytera.decode(hytera.encode_report(Opcode.STANDARD_REPORT, 1, 1001, bytes(block)))
    assert to_records(m.position(), "hytera", m.radio, RECEIVED, 1.0).reject is Reject.OUT_OF_RANGE
    block[14:23] = b"01xx.0000"
    assert hytera.read_gps(bytes(block)).lat is None


def test_malformed_messages_raise_the_typed_error() -> None:
    good = hytera.standard_request(1, 1001)
    broken = {
        "short": good[:6],
        "service": b"\x09" + good[1:],
        "end": good[:-1] + b"\x04",
        "length": good[:3] + b"\x00\x09" + good[5:],
        "checksum": good[:-2] + bytes([good[-2] ^ 1]) + b"\x03",
    }
    for data in broken.values():
        with pytest.raises(HyteraError):
            hytera.decode(data)
    unknown = b"\x08\xa0\x09\x00\x00"
    with pytest.raises(HyteraError, match="opcode"):
        hytera.decode(unknown + bytes([hytera.checksum(unknown[1:]), 3]))
    short = b"\x08\xa0\x02\x00\x08" + bytes(8)
    with pytest.raises(HyteraError, match="needed"):
        hytera.decode(short + bytes([hytera.checksum(short[1:]), 3]))
    assert hytera.decode(b"\x88" + good[1:]).reliable


# (d) fuzzing


def _assert_safe(m: LpMessage) -> None:
    mapped = to_records(m.position(), "hytera", m.radio, RECEIVED, 1.0, emergency=m.emergency)
    if mapped.fix is not None:
        assert -90 <= mapped.fix.lat <= 90 and -180 <= mapped.fix.lon <= 180
        assert (mapped.fix.lat, mapped.fix.lon) != (0.0, 0.0)
        assert mapped.fix.time - RECEIVED <= FUTURE_TOLERANCE


@settings(max_examples=400)
@given(st.binary(max_size=80))
def test_random_bytes(data: bytes) -> None:
    try:
        m = hytera.decode(data)
    except HyteraError:
        return
    _assert_safe(m)


gps_chars = st.sampled_from(list(b"0123456789.NSEWAV \x00x"))


@settings(max_examples=400)
@given(st.sampled_from(list(Opcode)), st.binary(max_size=70), st.lists(gps_chars, min_size=40, max_size=40), st.booleans())
def test_random_payloads_in_valid_framing(op: Opcode, payload: bytes, gps: list[int], plausible: bool) -> None:
    if plausible:  # a payload whose GPS block is made of the characters a real one has
        payload = payload[:10].ljust(10, b"\x00") + bytes(gps) + payload[10:]
    checked = op.to_bytes(2, "big") + len(payload).to_bytes(2, "big") + payload
    try:
        m = hytera.decode(b"\x08" + checked + bytes([hytera.checksum(checked), 3]))
    except HyteraError:
        return
    _assert_safe(m)

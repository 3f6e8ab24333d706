"""TETRA LIP decoder: published payloads (tests/captures/lip/), standard-built packets, gates, fuzzing."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alkomd.drivers import tetra_lip as lip
from alkomd.drivers.tetra_lip import LipError, LocationReport, NotLip, Reject, Shape

CAPTURES = Path(__file__).parent / "captures" / "lip"
RECEIVED = datetime(2026, 3, 10, 8, 0, 0, tzinfo=UTC)
ERRORS: dict[str, type[LipError]] = {"NotLip": NotLip, "LipError": LipError, "LipUnsupported": lip.LipUnsupported}


def _samples() -> list[tuple[str, str, int | None, dict[str, str], dict[str, str], bool]]:
    """(file, hex, bits, expect, decoded-here, bare) for every payload line of every capture file."""
    out = []
    for path in sorted(CAPTURES.glob("*.hex")):
        bare = False
        expect: dict[str, str] = {}
        here: dict[str, str] = {}
        for line in path.read_text().splitlines():
            if line.startswith("# format: bare-lip"):
                bare = True
            elif line.startswith("# expect:"):
                expect = dict(kv.split("=", 1) for kv in line[len("# expect:") :].split())
            elif line.startswith("# decoded-here:"):
                here = dict(kv.split("=", 1) for kv in line[len("# decoded-here:") :].split())
            elif line.strip() and not line.startswith("#"):
                parts = line.split()
                bits = int(parts[1]) if len(parts) > 1 else None
                out.append((path.name, parts[0], bits, expect, here, bare))
                expect, here = {}, {}
    return out


SAMPLES = _samples()


def _decode(hexstr: str, bits: int | None, bare: bool) -> LocationReport:
    if bits is None:
        bits = len(hexstr) * 4
    data = bytes.fromhex(hexstr + "0" * (len(hexstr) % 2))
    return lip.decode_lip(data, bits) if bare else lip.decode_sds(data, bits)


def _close(actual: float | None, expected: str, tol: float) -> bool:
    if expected == "none":
        return actual is None
    return actual is not None and abs(actual - float(expected)) <= tol


def _check(report: LocationReport, keys: dict[str, str]) -> None:
    tol = float(keys.get("tol", "1e-6"))
    for key, value in keys.items():
        if key == "kind":
            assert report.long == (value == "long")
        elif key in ("lat", "lon"):
            assert _close(getattr(report, key), value, tol), (key, getattr(report, key), value)
        elif key == "speed":
            assert _close(report.speed_kmh, value, 0.5), (report.speed_kmh, value)
        elif key == "course":
            assert _close(report.course, value, 1e-6), (report.course, value)
        elif key == "acc":
            assert _close(report.accuracy_m, value, 1e-3), (report.accuracy_m, value)
        elif key == "alt":
            assert _close(report.altitude_m, value, 1e-6), (report.altitude_m, value)
        elif key == "reason":
            assert report.reason == int(value)
        elif key == "user":
            assert report.user_data == int(value)
        elif key == "ack":
            assert report.ack_requested == (value == "1")
        elif key == "elapsed":
            assert report.time_elapsed == int(value)
        elif key == "tpos":
            assert report.time_of_position == tuple(int(v) for v in value.split(","))
        elif key == "emergency":
            assert report.emergency == (value == "1")
        elif key == "region":
            la0, la1, lo0, lo1 = (float(v) for v in value.split(","))
            assert report.lat is not None and report.lon is not None
            assert la0 <= report.lat <= la1 and lo0 <= report.lon <= lo1, (report.lat, report.lon)
        elif key == "fix":
            mapped = lip.to_records(report, device="pei", radio="1", received=RECEIVED, received_mono=1.0)
            if value == "yes":
                assert mapped.fix is not None and mapped.reject is None
            else:
                assert mapped.fix is None and mapped.reject is Reject[value.split(":")[1]]
        elif key != "tol":
            raise AssertionError(f"unknown key {key}")


def test_every_capture_file_has_samples_and_sources() -> None:
    files = sorted(CAPTURES.glob("*.hex"))
    assert len(files) >= 4 and len(SAMPLES) >= 20
    for f in files:
        text = f.read_text()
        assert "Source:" in text and "Licence:" in text, f.name


@pytest.mark.parametrize(("name", "hexstr", "bits", "expect", "here", "bare"), SAMPLES, ids=[f"{s[0]}:{s[1][:14]}" for s in SAMPLES])
def test_published_payloads(name: str, hexstr: str, bits: int | None, expect: dict[str, str], here: dict[str, str], bare: bool) -> None:
    assert expect, f"{name} {hexstr}: no expect line"
    if "error" in expect:
        with pytest.raises(ERRORS[expect["error"]]):
            _decode(hexstr, bits, bare)
        return
    report = _decode(hexstr, bits, bare)
    _check(report, expect)
    _check(report, here)


def _fields() -> list[tuple[str, str, str]]:
    lines = (CAPTURES / "fields.txt").read_text().splitlines()
    return [(p[0], p[1], p[2]) for p in (ln.split() for ln in lines if ln.strip() and not ln.startswith("#"))]


@pytest.mark.parametrize(("field", "hexval", "expected"), _fields())
def test_published_field_values(field: str, hexval: str, expected: str) -> None:
    v = int(hexval, 16)
    if field == "latitude":
        assert lip.latitude(v - (1 << 24) if v >> 23 else v) == pytest.approx(float(expected), abs=1e-6)
    elif field == "longitude":
        assert lip.longitude(v - (1 << 25) if v >> 24 else v) == pytest.approx(float(expected), abs=1e-6)
    elif field == "altitude":
        assert _close(lip.altitude(v), expected, 1e-9)
    elif field == "velocity":
        kmh = lip.horizontal_velocity(v)
        assert (kmh is None) if expected == "none" else (kmh is not None and round(kmh) == int(expected))
    elif field == "uncertainty":
        r = lip.position_uncertainty(v)
        assert (r is None) if expected == "none" else (r is not None and abs(r - float(expected)) <= 0.06)
    else:
        raise AssertionError(field)


# Packets built from the standard's layout (ETSI TS 100 392-18-1 as read for this module), for what no
# published sample covers: the shapes other than point and circle-with-altitude, velocity types, time
# elapsed in a long report, the >200 km position error, the emergency reason. Not independent evidence.


class Bits:
    def __init__(self) -> None:
        self.value = 0
        self.n = 0

    def put(self, v: int, n: int) -> Bits:
        assert 0 <= v < (1 << n) or -(1 << (n - 1)) <= v < 0
        self.value = (self.value << n) | (v & ((1 << n) - 1))
        self.n += n
        return self

    def lonlat(self, lat: float, lon: float) -> Bits:
        return self.put(round(lon * (1 << 25) / 360.0), 25).put(round(lat * (1 << 24) / 180.0), 24)

    def sds(self) -> tuple[bytes, int]:
        n = self.n + 8
        pad = -self.n % 8
        return bytes([0x0A]) + ((self.value << pad).to_bytes((self.n + pad) // 8, "big")), n


GORONTALO = (0.5435, 123.0568)


def _long(shape: int, location: Bits | None, velocity: tuple[int, list[tuple[int, int]]] = (0, []), reason: int = 0,
          time: tuple[int, list[tuple[int, int]]] = (0, [])) -> tuple[bytes, int]:
    b = Bits().put(1, 2).put(3, 4).put(time[0], 2)
    for v, n in time[1]:
        b.put(v, n)
    b.put(shape, 4)
    if location is not None:
        b.put(location.value, location.n)
    b.put(velocity[0], 3)
    for v, n in velocity[1]:
        b.put(v, n)
    return b.put(0, 1).put(0, 1).put(reason, 8).sds()


@pytest.mark.parametrize(
    ("shape", "extra", "acc", "alt"),
    [
        (Shape.POINT, [], None, None),
        (Shape.CIRCLE, [(10, 6)], 26.8, None),
        (Shape.ELLIPSE, [(12, 6), (5, 6), (90, 8), (3, 3)], 40.4, None),
        (Shape.POINT_ALTITUDE, [(201 + 25, 12)], None, 25.0),
        (Shape.ELLIPSE_ALTITUDE, [(12, 6), (5, 6), (90, 8), (201 + 25, 12), (3, 3)], 40.4, 25.0),
        (Shape.CIRCLE_ALTITUDE_UNCERTAINTY, [(10, 6), (201 + 25, 12), (2, 3)], 26.8, 25.0),
        (Shape.ELLIPSE_ALTITUDE_UNCERTAINTY, [(12, 6), (5, 6), (90, 8), (201 + 25, 12), (2, 3), (3, 3)], 40.4, 25.0),
        (Shape.POINT_POSITION_ERROR, [(1, 3)], 20.0, None),
    ],
)
def test_built_shapes(shape: Shape, extra: list[tuple[int, int]], acc: float | None, alt: float | None) -> None:
    loc = Bits().lonlat(*GORONTALO)
    for v, n in extra:
        loc.put(v, n)
    data, bits = _long(shape, loc, velocity=(5, [(40, 7), (64, 8)]), reason=129)
    r = lip.decode_sds(data, bits)
    assert r.shape is shape and r.reason == 129
    assert r.lat == pytest.approx(GORONTALO[0], abs=1e-5) and r.lon == pytest.approx(GORONTALO[1], abs=1e-5)
    assert _close(r.accuracy_m, "none" if acc is None else str(acc), 0.06)
    assert r.altitude_m == alt
    assert r.speed_kmh == pytest.approx(16 * 1.038**27) and r.course == 90.0
    mapped = lip.to_records(r, device="pei", radio="2269001", received=RECEIVED, received_mono=5.0)
    assert mapped.fix is not None and mapped.fix.mode == (2 if alt is None else 3)
    assert mapped.fix.accuracy_m == r.accuracy_m and mapped.fix.radio == "2269001" and mapped.status is None


@pytest.mark.parametrize(
    ("kind", "data", "course"),
    [
        (1, [(20, 7)], None),
        (2, [(20, 7), (1, 3)], None),
        (3, [(20, 7), (0x85, 8)], None),
        (4, [(20, 7), (1, 3), (0x85, 8), (1, 3)], None),
        (5, [(20, 7), (128, 8)], 180.0),
        (6, [(20, 7), (1, 3), (128, 8), (1, 3)], 180.0),
        (7, [(20, 7), (1, 3), (0x85, 8), (1, 3), (128, 8), (1, 3)], 180.0),
    ],
)
def test_built_velocity_types(kind: int, data: list[tuple[int, int]], course: float | None) -> None:
    raw, bits = _long(Shape.POINT, Bits().lonlat(*GORONTALO), velocity=(kind, data), reason=12)
    r = lip.decode_sds(raw, bits)
    assert r.speed_kmh == 20.0 and r.course == course and r.reason == 12


def test_arc_is_never_a_fix() -> None:
    loc = Bits().lonlat(*GORONTALO).put(500, 16).put(50, 16).put(10, 8).put(20, 8).put(3, 3)
    r = lip.decode_sds(*_long(Shape.ARC, loc))
    assert r.shape is Shape.ARC
    assert lip.to_records(r, device="pei", radio="1", received=RECEIVED, received_mono=0.0).reject is Reject.ARC


def test_reserved_shape_time_type_and_other_pdus_are_typed_errors() -> None:
    with pytest.raises(lip.LipUnsupported):
        lip.decode_sds(*_long(11, Bits().lonlat(*GORONTALO)))
    with pytest.raises(lip.LipUnsupported):
        lip.decode_sds(*_long(Shape.POINT, Bits().lonlat(*GORONTALO), time=(3, [])))
    with pytest.raises(lip.LipUnsupported, match="acknowledgement"):
        lip.decode_sds(*Bits().put(1, 2).put(4, 4).put(0, 8).sds())
    with pytest.raises(lip.LipUnsupported, match="reserved"):
        lip.decode_sds(*Bits().put(2, 2).put(0, 74).sds())
    with pytest.raises(NotLip):
        lip.decode_sds(b"\x82\x04\x08\x01")
    with pytest.raises(NotLip):
        lip.decode_sds(b"")
    with pytest.raises(LipError, match="truncated"):
        lip.decode_sds(bytes.fromhex("0a010e6239b0439a"))
    with pytest.raises(LipError, match="does not fit"):
        lip.decode_sds(bytes.fromhex("0a010e"), 100)


def _short(lat: float, lon: float, *, elapsed: int = 0, error: int = 1, reason: int = 129) -> tuple[bytes, int]:
    return Bits().put(0, 2).put(elapsed, 2).lonlat(lat, lon).put(error, 3).put(36, 7).put(4, 4).put(0, 1).put(reason, 8).sds()


def test_short_report_time_elapsed_sets_the_fix_time_to_its_oldest_bound() -> None:
    for code, age in ((0, 5), (1, 300), (2, 1800), (3, 0)):
        r = lip.decode_sds(*_short(*GORONTALO, elapsed=code))
        fix = lip.to_records(r, device="pei", radio="1", received=RECEIVED, received_mono=0.0).fix
        assert fix is not None and fix.time == RECEIVED - timedelta(seconds=age)
        assert fix.accuracy_m == 20.0 and fix.course == 90.0 and fix.speed_kmh == pytest.approx(16 * 1.038**23)


def test_emergency_gives_a_radio_status_even_without_a_position() -> None:
    for lat, lon, has_fix in ((GORONTALO[0], GORONTALO[1], True), (0.0, 0.0, False)):
        r = lip.decode_sds(*_short(lat, lon, reason=lip.EMERGENCY_REASON))
        assert r.emergency and r.reason_text == "emergency condition is detected"
        m = lip.to_records(r, device="pei", radio="2269001", received=RECEIVED, received_mono=3.0)
        assert m.status is not None and m.status.code == lip.EMERGENCY_CODE == 99 and m.status.radio == "2269001"
        assert (m.fix is not None) == has_fix
    r = lip.decode_sds(*_short(*GORONTALO, reason=lip.EMERGENCY_REASON))
    assert lip.to_records(r, device="d", radio="7", received=RECEIVED, received_mono=0.0, emergency_code=900).status.code == 900  # type: ignore[union-attr]


def test_position_error_over_200_km_is_rejected() -> None:
    r = lip.decode_sds(*_short(*GORONTALO, error=lip.POSITION_ERROR_OVER_200_KM))
    assert lip.to_records(r, device="d", radio="1", received=RECEIVED, received_mono=0.0).reject is Reject.POSITION_ERROR


def test_time_of_position_resolves_to_the_latest_past_day() -> None:
    assert lip.position_time(10, 7, 59, 0, RECEIVED) == datetime(2026, 3, 10, 7, 59, tzinfo=UTC)
    assert lip.position_time(10, 8, 5, 0, RECEIVED) == datetime(2026, 3, 10, 8, 5, tzinfo=UTC)  # within tolerance
    assert lip.position_time(10, 9, 0, 0, RECEIVED) == datetime(2026, 2, 10, 9, 0, tzinfo=UTC)  # an hour ahead: last month
    assert lip.position_time(31, 23, 0, 0, RECEIVED) == datetime(2026, 1, 31, 23, 0, tzinfo=UTC)  # February has none
    assert lip.position_time(31, 23, 59, 59, datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)) == datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC)
    for bad in ((0, 1, 1, 1), (5, 24, 0, 0), (5, 1, 60, 0), (5, 1, 1, 60)):
        assert lip.position_time(*bad, RECEIVED) is None
    raw = _long(Shape.POINT, Bits().lonlat(*GORONTALO), time=(2, [(0, 5), (1, 5), (1, 6), (1, 6)]))
    r = lip.decode_sds(*raw)
    assert lip.to_records(r, device="d", radio="1", received=RECEIVED, received_mono=0.0).reject is Reject.NO_TIME


def _never_bad(report: LocationReport) -> None:
    assert report.lat is None or -90.0 <= report.lat < 90.0
    assert report.lon is None or -180.0 <= report.lon < 180.0
    assert report.accuracy_m is None or report.accuracy_m >= 0
    assert report.speed_kmh is None or 0 <= report.speed_kmh < 1100
    assert report.course is None or 0 <= report.course < 360
    m = lip.to_records(report, device="d", radio="1", received=RECEIVED, received_mono=0.0)
    assert (m.fix is None) != (m.reject is None)
    if m.fix is not None:
        assert not (m.fix.lat == 0.0 and m.fix.lon == 0.0)
        assert -90.0 <= m.fix.lat <= 90.0 and -180.0 <= m.fix.lon <= 180.0
        assert m.fix.time <= RECEIVED + lip.FUTURE_TOLERANCE and math.isfinite(m.fix.lat)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=40), st.one_of(st.none(), st.integers(min_value=-8, max_value=400)))
def test_fuzz_random_bytes_never_escape(data: bytes, bits: int | None) -> None:
    try:
        report = lip.decode_sds(data, bits)
    except LipError:
        return
    _never_bad(report)


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=10, max_size=30).map(lambda b: bytes([0x0A, b[0] & 0x3F | 0x10]) + b[1:]))
def test_fuzz_long_reports_never_escape(data: bytes) -> None:
    """Random bodies behind a long location report header: exercise every shape and velocity type."""
    data = bytes([0x0A, 0x4C | (data[1] & 0x03)]) + data[2:]
    try:
        report = lip.decode_sds(data)
    except LipError:
        return
    _never_bad(report)

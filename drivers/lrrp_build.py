"""MOTOTRBO LRRP reports as a radio writes them: for simulators and tests (the daemon only sends requests).

The inverse of `alkomd.drivers.lrrp`'s report decoding: hemisphere-bit latitude, two's-complement
longitude, 5-byte info-time, ufloatvar/sfloatvar radius, altitude and speed, 2-degree direction.
"""

from __future__ import annotations

from datetime import UTC, datetime

from alkomd.drivers.lrrp import LAT_SCALE, LON_SCALE, SPEED_HOR_TO_KMH, LocationReport, Shape, document, rid_token, uintvar


def encode_info_time(t: datetime) -> bytes:
    t = t.astimezone(UTC)
    v = t.year << 26 | t.month << 22 | t.day << 17 | t.hour << 12 | t.minute << 6 | t.second
    return v.to_bytes(5, "big")


def encode_lat(lat: float) -> bytes:
    mag = min(round(abs(lat) / LAT_SCALE), 0x7FFFFFFF)
    return ((0x80000000 if lat < 0 else 0) | mag).to_bytes(4, "big")


def encode_lon(lon: float) -> bytes:
    v = round(lon / LON_SCALE)
    return max(-(2**31), min(v, 2**31 - 1)).to_bytes(4, "big", signed=True)


def encode_report(report: LocationReport) -> bytes:
    """A report's bytes (for simulators and tests): the tokens the fields say, in the usual order."""
    body = rid_token(report.request_id) if report.request_id else b""
    if report.result is not None:
        body += b"\x38" if report.result == 0 else b"\x37" + uintvar(report.result)
    if report.time is not None:
        body += b"\x34" + encode_info_time(report.time)
    if report.shape is not None and report.lat is not None and report.lon is not None:
        ll = encode_lat(report.lat) + encode_lon(report.lon)
        body += _encode_shape(report, ll)
    if report.speed_kmh is not None:
        body += b"\x6c" + _ufloatvar(report.speed_kmh / SPEED_HOR_TO_KMH)
    if report.course is not None:
        body += b"\x56" + bytes([round(report.course / 2) % 180])
    return document(report.kind, body)


def _encode_shape(report: LocationReport, ll: bytes) -> bytes:
    alt = _sfloatvar(report.alt_m or 0.0)
    if report.shape is Shape.POINT_2D:
        return b"\x66" + ll
    if report.shape is Shape.POINT_3D:
        return b"\x69" + ll + alt
    radius = _ufloatvar(report.radius_m or 0.0)
    if report.shape is Shape.CIRCLE_2D:
        return b"\x51" + ll + radius
    return b"\x55" + ll + radius + alt + _ufloatvar(report.alt_accuracy_m or 0.0)


def _ufloatvar(v: float) -> bytes:
    whole = int(v)
    return uintvar(whole) + uintvar(min(round((v - whole) * 128), 127))


def _sfloatvar(v: float) -> bytes:
    mag = abs(v)
    whole = int(mag)
    frac = min(round((mag - whole) * 128), 127)
    head = uintvar(whole)
    if head[0] & 0x40:  # the sign bit is taken: one more leading byte
        head = b"\x80" + head
    sign = 0x40 if v < 0 else 0
    return bytes([head[0] | sign]) + head[1:] + uintvar(frac)

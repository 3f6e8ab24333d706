"""TETRA LIP location reports and PEI +CTSDSR lines as a terminal sends them: for simulators, tests and benches.

The inverse of `alkomd.drivers.tetra_lip` (ETSI TS 100 392-18-1 as read there): a short location
report (76 bits) or a long one (point with position error, or circle with altitude; time elapsed
or time of position; horizontal velocity and direction), wrapped in SDS type-4 user data
(protocol identifier 0x0A first) and in the `+CTSDSR:` header and hex line of EN 300 392-5.
"""

from __future__ import annotations

from datetime import UTC, datetime

from alkomd.drivers.tetra_lip import PROTOCOL_LIP, Shape
from alkomd.drivers.tetra_pei import AI_SDS_TYPE4

REASON_MAX_INTERVAL = 129  # maximum reporting interval exceeded since the last report (periodic)


class Bits:
    """An MSB-first bit string being built."""

    def __init__(self) -> None:
        self.value = 0
        self.n = 0

    def put(self, v: int, n: int) -> Bits:
        self.value = (self.value << n) | (v & ((1 << n) - 1))
        self.n += n
        return self

    def lonlat(self, lat: float, lon: float) -> Bits:
        lon_raw = max(-(1 << 24), min(round(lon * (1 << 25) / 360.0), (1 << 24) - 1))
        lat_raw = max(-(1 << 23), min(round(lat * (1 << 24) / 180.0), (1 << 23) - 1))
        return self.put(lon_raw, 25).put(lat_raw, 24)

    def sds(self) -> tuple[bytes, int]:
        """SDS type-4 user data: the LIP protocol identifier, then these bits padded to octets; (data, length in bits)."""
        pad = -self.n % 8
        body = (self.value << pad).to_bytes((self.n + pad) // 8, "big")
        return bytes([PROTOCOL_LIP]) + body, self.n + 8


def velocity_code(speed_kmh: float) -> int:
    """km/h to the 7-bit horizontal velocity code (the nearest step; 127 for not known)."""
    if speed_kmh < 0:
        return 127
    if speed_kmh <= 28:
        return round(speed_kmh)
    best = min(range(29, 126), key=lambda k: abs(16.0 * 1.038 ** (k - 13) - speed_kmh))
    return best


def short_report(lat: float, lon: float, *, speed_kmh: float = -1, course: float = 0.0, elapsed: int = 0,
                 error: int = 1, reason: int = REASON_MAX_INTERVAL) -> tuple[bytes, int]:
    """A short location report (PDU type 0) as SDS user data; `error` is the 3-bit position error class."""
    direction = round((course % 360.0) / 22.5) % 16
    b = Bits().put(0, 2).put(elapsed, 2).lonlat(lat, lon).put(error, 3).put(velocity_code(speed_kmh), 7).put(direction, 4)
    return b.put(0, 1).put(reason, 8).sds()


def long_report(lat: float, lon: float, *, speed_kmh: float = -1, course: float = 0.0, when: datetime | None = None,
                accuracy_code: int | None = None, altitude_m: int | None = None,
                reason: int = REASON_MAX_INTERVAL) -> tuple[bytes, int]:
    """A long location report: a circle with altitude when both are given, else a point with position error 20 m.

    `when` sends the time of position (day, hour, minute, second UTC); None sends time elapsed < 5 s.
    Velocity type 5: horizontal velocity and direction of travel (8 bits).
    """
    b = Bits().put(1, 2).put(3, 4)
    if when is None:
        b.put(1, 2).put(0, 2)
    else:
        t = when.astimezone(UTC)
        b.put(2, 2).put(t.day, 5).put(t.hour, 5).put(t.minute, 6).put(t.second, 6)
    if accuracy_code is not None and altitude_m is not None:
        b.put(Shape.CIRCLE_ALTITUDE, 4).lonlat(lat, lon).put(accuracy_code, 6).put(max(1, min(altitude_m + 201, 1201)), 12)
    else:
        b.put(Shape.POINT_POSITION_ERROR, 4).lonlat(lat, lon).put(1, 3)
    b.put(5, 3).put(velocity_code(speed_kmh), 7).put(round((course % 360.0) * 256 / 360.0) % 256, 8)
    return b.put(0, 1).put(0, 1).put(reason, 8).sds()


def ctsdsr(issi: int | str, data: bytes, bits: int, called: int | str = 9999) -> bytes:
    """The unsolicited `+CTSDSR:` header and hex user data line a terminal writes for one received SDS."""
    head = f"+CTSDSR: {AI_SDS_TYPE4},{issi},0,{called},0,{bits}"
    return f"\r\n{head}\r\n{data.hex().upper()}\r\n".encode("ascii")

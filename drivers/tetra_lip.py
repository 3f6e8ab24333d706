"""TETRA LIP (ETSI TS 100 392-18-1) location reports from SDS user data, and the records they give.

A TETRA terminal reports its position in an SDS type-4 message whose first octet, the protocol
identifier, is 0x0A (location information protocol). The rest is a LIP PDU, bits MSB first:

Short location report (PDU type 0b00, 76 bits):

    PDU type 2 | time elapsed 2 | longitude 25 | latitude 24 | position error 3 |
    horizontal velocity 7 | direction of travel 4 | type of additional data 1 | additional data 8

Long location report (PDU type 0b01 with extension 0b0011):

    PDU type 2 | extension 4 | time type 2 | time data 0, 2 or 22 | location shape 4 |
    location data (by shape) | velocity type 3 | velocity data (by type) |
    acknowledgement request 1 | type of additional data 1 | additional data 8

Values: longitude and latitude are two's complement, lon = v * 360 / 2^25, lat = v * 180 / 2^24.
Horizontal velocity: 0..28 km/h as is, 29..125 v = 16 * 1.038^(K - 13) km/h, 126 more than
1043 km/h (None here), 127 unknown. Position error classes are bounds in metres (2 m ... 200 km);
a circle's uncertainty is r = 2 * 1.2^(K + 5) - 4 m (K = 63: best effort, None). Time elapsed is
< 5 s, < 5 min, < 30 min or unknown; time of position is day of month, hour, minute, second UTC.

Shapes decoded: no shape, point, circle, ellipse, point/circle/ellipse with altitude (and
altitude uncertainty), arc, point with position error. All place longitude and latitude first;
the ellipse and arc layouts after them follow the standard as read here, with no real sample
seen (their coordinates and the fields after the location data do not depend on that order).

`decode_sds` / `decode_lip` read a payload into a `LocationReport` or raise a `LipError`;
`to_records` applies the validity gates and gives a `Fix` (with `accuracy_m`) and, for reason
for sending 2 "emergency condition detected", a `RadioStatus` with `EMERGENCY_CODE` (99, the
default `[radio_status] emergency` code), even when the report carries no usable position.
A LIP altitude is above the WGS84 ellipsoid; the fix carries it as sent (mode 3), not converted
to mean sea level (the two differ by the geoid height, tens of metres).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from alkomd.daemon.records import Fix, RadioStatus

PROTOCOL_LIP = 0x0A  # SDS type-4 protocol identifier of LIP (EN 300 392-2 29.5.12)
EMERGENCY_REASON = 2  # reason for sending: emergency condition is detected
EMERGENCY_CODE = 99  # the RadioStatus code a LIP emergency becomes (the default [radio_status] emergency)
FUTURE_TOLERANCE = timedelta(minutes=10)  # a fix later than this ahead of our clock is rejected
SHORT_REPORT_BITS = 76

TIME_ELAPSED_S: dict[int, float | None] = {0: 5.0, 1: 300.0, 2: 1800.0, 3: None}  # upper bounds; 3: not known
POSITION_ERROR_M: dict[int, float | None] = {0: 2.0, 1: 20.0, 2: 200.0, 3: 2000.0, 4: 20000.0, 5: 200000.0, 6: None, 7: None}
POSITION_ERROR_OVER_200_KM = 6
ALTITUDE_ACCURACY_M: dict[int, float | None] = {0: 1.0, 1: 2.0, 2: 5.0, 3: 15.0, 4: 50.0, 5: 150.0, 6: 300.0, 7: None}

REASONS: dict[int, str] = {
    0: "subscriber unit is powered on", 1: "subscriber unit is powered off", 2: "emergency condition is detected",
    3: "push-to-talk condition is detected", 4: "status", 5: "transmit inhibit mode on", 6: "transmit inhibit mode off",
    7: "system access (TMO on)", 8: "DMO on", 9: "enter service (after being out of service)", 10: "service loss",
    11: "cell reselection or change of serving cell", 12: "low battery", 13: "connected to a car kit",
    14: "disconnected from a car kit", 15: "asks for transfer initialization configuration", 16: "arrival at destination",
    17: "arrival at a defined location", 18: "approaching a defined location", 19: "SDS type-1 entered",
    20: "user application initiated", 21: "lost ability to determine location", 22: "regained ability to determine location",
    23: "leaving point", 24: "ambience listening call is detected", 25: "start of temporary reporting",
    26: "return to normal reporting", 27: "call setup type 1 detected", 28: "call setup type 2 detected",
    29: "positioning device in MS on", 30: "positioning device in MS off", 32: "response to an immediate location request",
    129: "maximum reporting interval exceeded since the last report",
    130: "maximum reporting distance travelled since the last report",
}

EXTENSIONS: dict[int, str] = {
    1: "immediate location report request", 3: "long location report", 4: "location report acknowledgement",
    5: "basic location parameters request/response", 6: "add/modify trigger request/response",
    7: "remove trigger request/response", 8: "report trigger request/response",
    9: "report basic location parameters request/response", 10: "location reporting enable/disable request/response",
    11: "location reporting temporary control request/response", 12: "backlog request/response",
}
EXTENSION_LONG_REPORT = 3


class Shape(enum.IntEnum):
    """Location shape of a long location report (4 bits)."""

    NONE = 0
    POINT = 1
    CIRCLE = 2
    ELLIPSE = 3
    POINT_ALTITUDE = 4
    CIRCLE_ALTITUDE = 5
    ELLIPSE_ALTITUDE = 6
    CIRCLE_ALTITUDE_UNCERTAINTY = 7
    ELLIPSE_ALTITUDE_UNCERTAINTY = 8
    ARC = 9
    POINT_POSITION_ERROR = 10


class LipError(ValueError):
    """The payload is not a LIP location report this module can read (the message says why)."""


class NotLip(LipError):
    """The SDS carries another protocol (its identifier in `protocol`)."""

    def __init__(self, protocol: int | None) -> None:
        self.protocol = protocol
        super().__init__("empty SDS user data" if protocol is None else f"SDS protocol identifier 0x{protocol:02X} is not LIP (0x0A)")


class LipUnsupported(LipError):
    """A LIP PDU that is not a location report (a request, an acknowledgement), or a reserved value."""


class Reject(enum.StrEnum):
    """Why a decoded report gave no fix."""

    NO_POSITION = "no position"
    ZERO = "position 0,0"
    OUT_OF_RANGE = "coordinates out of range"
    ARC = "location arc: the coordinates are the arc's centre, not the terminal"
    POSITION_ERROR = "position error above 200 km"
    NO_TIME = "time of position reserved or impossible"
    FUTURE = "fix time in the future"


@dataclass(frozen=True, slots=True)
class LocationReport:
    """One LIP location report as sent; None for what it does not carry.

    `accuracy_m` is the stated horizontal uncertainty (position error bound, circle radius, an
    ellipse's half major axis). `time_elapsed_s` is the
    upper bound of the time elapsed code; `time_of_position` is (day, hour, minute, second) UTC.
    `altitude_m` is above the WGS84 ellipsoid (LIP's datum), not mean sea level.
    """

    long: bool  # long location report (else short)
    shape: Shape | None  # None for a short report (always a point with a position error)
    lat: float | None
    lon: float | None
    accuracy_m: float | None = None
    position_error: int | None = None  # the 3-bit class, when the report has one
    altitude_m: float | None = None
    altitude_accuracy_m: float | None = None
    speed_kmh: float | None = None
    course: float | None = None
    time_elapsed: int | None = None  # the 2-bit code (3: not known)
    time_elapsed_s: float | None = None
    time_of_position: tuple[int, int, int, int] | None = None
    ack_requested: bool = False
    reason: int | None = None  # reason for sending, when the additional data is one
    user_data: int | None = None  # user-defined additional data, when it is

    @property
    def emergency(self) -> bool:
        return self.reason == EMERGENCY_REASON

    @property
    def reason_text(self) -> str | None:
        return None if self.reason is None else REASONS.get(self.reason, f"reserved ({self.reason})")


@dataclass(frozen=True, slots=True)
class Mapped:
    """What one report gives: a fix (or why not) and an emergency status."""

    fix: Fix | None
    status: RadioStatus | None
    reject: Reject | None


class BitReader:
    """MSB-first reader over `bits` bits of `data`; reading past the end raises `LipError`."""

    def __init__(self, data: bytes, bits: int | None = None) -> None:
        total = len(data) * 8
        if bits is None:
            bits = total
        if not 0 <= bits <= total:
            raise LipError(f"bit length {bits} does not fit {len(data)} octets")
        self._value = int.from_bytes(data, "big") >> (total - bits)
        self.bits = bits
        self.pos = 0

    def take(self, n: int) -> int:
        if self.pos + n > self.bits:
            raise LipError(f"truncated: {n} bits wanted at bit {self.pos} of {self.bits}")
        self.pos += n
        return (self._value >> (self.bits - self.pos)) & ((1 << n) - 1)

    def signed(self, n: int) -> int:
        v = self.take(n)
        return v - (1 << n) if v >> (n - 1) else v


def longitude(raw: int) -> float:
    """Signed 25-bit longitude value to degrees."""
    return raw * 360.0 / (1 << 25)


def latitude(raw: int) -> float:
    """Signed 24-bit latitude value to degrees."""
    return raw * 180.0 / (1 << 24)


def horizontal_velocity(k: int) -> float | None:
    """7-bit horizontal velocity code to km/h; None for unknown (127) and 'more than 1043 km/h' (126)."""
    if k <= 28:
        return float(k)
    if k >= 126:
        return None
    return 16.0 * 1.038 ** (k - 13)


def position_uncertainty(k: int) -> float | None:
    """6-bit horizontal position uncertainty (accuracy) code to its bound in metres; 63 best effort: None."""
    return None if k >= 63 else 2.0 * 1.2 ** (k + 5) - 4.0


def altitude(v: int) -> float | None:
    """12-bit altitude (type bit + 11-bit value) to metres above the WGS84 ellipsoid.

    None for a user-defined altitude (type bit 1) and the reserved value 0.
    """
    if v >> 11:
        return None
    k = v & 0x7FF
    if k == 0:
        return None
    if k <= 1201:
        return float(k - 201)
    if k <= 1926:
        return float(1000 + (k - 1201) * 2)
    return float(2450 + (k - 1926) * 75)


def decode_sds(data: bytes, bits: int | None = None) -> LocationReport:
    """An SDS type-4 user data (protocol identifier first) holding a LIP location report.

    `bits` is the length the terminal states (the PEI's `<length>`); None takes every octet.
    """
    if not data or (bits is not None and bits < 8):
        raise NotLip(None)
    if data[0] != PROTOCOL_LIP:
        raise NotLip(data[0])
    return decode_lip(data[1:], None if bits is None else bits - 8)


def decode_lip(pdu: bytes, bits: int | None = None) -> LocationReport:
    """A LIP PDU (without the protocol identifier) that is a short or long location report."""
    r = BitReader(pdu, bits)
    pdu_type = r.take(2)
    if pdu_type == 0:
        return _short(r)
    if pdu_type != 1:
        raise LipUnsupported(f"LIP PDU type {pdu_type} is reserved")
    ext = r.take(4)
    if ext != EXTENSION_LONG_REPORT:
        raise LipUnsupported(f"LIP {EXTENSIONS.get(ext, f'reserved extension {ext}')} is not a location report")
    return _long(r)


def _short(r: BitReader) -> LocationReport:
    elapsed = r.take(2)
    lon, lat = longitude(r.signed(25)), latitude(r.signed(24))
    error = r.take(3)
    speed = horizontal_velocity(r.take(7))
    direction = r.take(4)
    user_defined = r.take(1)
    extra = r.take(8)
    return LocationReport(
        long=False, shape=None, lat=lat, lon=lon, accuracy_m=POSITION_ERROR_M[error], position_error=error, speed_kmh=speed,
        course=None if speed is None else direction * 22.5, time_elapsed=elapsed, time_elapsed_s=TIME_ELAPSED_S[elapsed],
        reason=None if user_defined else extra, user_data=extra if user_defined else None,
    )


def _long(r: BitReader) -> LocationReport:
    time_type = r.take(2)
    elapsed: int | None = None
    tpos: tuple[int, int, int, int] | None = None
    if time_type == 1:
        elapsed = r.take(2)
    elif time_type == 2:
        tpos = (r.take(5), r.take(5), r.take(6), r.take(6))
    elif time_type == 3:
        raise LipUnsupported("LIP time type 3 is reserved")
    loc = _location(r)
    speed, course = _velocity(r)
    ack = bool(r.take(1))
    user_defined = r.take(1)
    extra = r.take(8)
    return LocationReport(
        long=True, shape=loc.shape, lat=loc.lat, lon=loc.lon, accuracy_m=loc.accuracy_m, position_error=loc.position_error,
        altitude_m=loc.altitude_m, altitude_accuracy_m=loc.altitude_accuracy_m, speed_kmh=speed, course=course,
        time_elapsed=elapsed, time_elapsed_s=None if elapsed is None else TIME_ELAPSED_S[elapsed], time_of_position=tpos,
        ack_requested=ack, reason=None if user_defined else extra, user_data=extra if user_defined else None,
    )


@dataclass(frozen=True, slots=True)
class _Location:
    shape: Shape
    lat: float | None = None
    lon: float | None = None
    accuracy_m: float | None = None
    position_error: int | None = None
    altitude_m: float | None = None
    altitude_accuracy_m: float | None = None


def _location(r: BitReader) -> _Location:
    code = r.take(4)
    try:
        shape = Shape(code)
    except ValueError:
        raise LipUnsupported(f"LIP location shape {code} is reserved or an extension") from None
    if shape is Shape.NONE:
        return _Location(shape)
    lon, lat = longitude(r.signed(25)), latitude(r.signed(24))
    acc: float | None = None
    error: int | None = None
    alt: float | None = None
    alt_acc: float | None = None
    if shape in (Shape.CIRCLE, Shape.CIRCLE_ALTITUDE, Shape.CIRCLE_ALTITUDE_UNCERTAINTY):
        acc = position_uncertainty(r.take(6))
    elif shape in (Shape.ELLIPSE, Shape.ELLIPSE_ALTITUDE, Shape.ELLIPSE_ALTITUDE_UNCERTAINTY):
        major, _minor = position_uncertainty(r.take(6)), r.take(6)
        r.take(8)  # angle of the major axis
        acc = major
    elif shape is Shape.ARC:  # never a fix (see Reject.ARC): the fields are skipped, not interpreted
        r.take(16 + 16 + 8 + 8 + 3)  # inner radius, uncertainty radius, offset angle, included angle, confidence
    elif shape is Shape.POINT_POSITION_ERROR:
        error = r.take(3)
        acc = POSITION_ERROR_M[error]
    if shape in (Shape.POINT_ALTITUDE, Shape.CIRCLE_ALTITUDE, Shape.CIRCLE_ALTITUDE_UNCERTAINTY, Shape.ELLIPSE_ALTITUDE,
                 Shape.ELLIPSE_ALTITUDE_UNCERTAINTY):
        alt = altitude(r.take(12))
    if shape in (Shape.CIRCLE_ALTITUDE_UNCERTAINTY, Shape.ELLIPSE_ALTITUDE_UNCERTAINTY):
        alt_acc = ALTITUDE_ACCURACY_M[r.take(3)]
    if shape in (Shape.ELLIPSE, Shape.ELLIPSE_ALTITUDE, Shape.ELLIPSE_ALTITUDE_UNCERTAINTY):
        r.take(3)  # confidence level
    return _Location(shape, lat, lon, acc, error, alt, alt_acc)


def _velocity(r: BitReader) -> tuple[float | None, float | None]:
    """Velocity type and data: (speed km/h, course degrees); the horizontal velocity comes first in all."""
    kind = r.take(3)
    if kind == 0:
        return None, None
    speed = horizontal_velocity(r.take(7))
    course: float | None = None
    if kind in (2, 4, 6, 7):
        r.take(3)  # horizontal velocity uncertainty
    if kind in (3, 4, 7):
        r.take(8)  # vertical velocity (direction bit + 7-bit value)
        if kind != 3:
            r.take(3)  # vertical velocity uncertainty
    if kind in (5, 6, 7):
        course = r.take(8) * 360.0 / 256
        if kind != 5:
            r.take(3)  # direction of travel uncertainty
    return speed, None if speed is None else course


def position_time(day: int, hour: int, minute: int, second: int, received: datetime) -> datetime | None:
    """The latest UTC time with this day of month and time of day not after `received` + tolerance.

    None for reserved values (day 0, hour 24+, minute or second 60+) or a day no recent month has.
    """
    if not (1 <= day <= 31 and hour < 24 and minute < 60 and second < 60):
        return None
    limit = received + FUTURE_TOLERANCE
    year, month = limit.year, limit.month
    for _ in range(3):  # this month, or the one before, or (a 31st after a short month) the one before that
        try:
            t = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:
            t = None
        if t is not None and t <= limit:
            return t
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return None


def to_records(
    report: LocationReport,
    *,
    device: str,
    radio: str,
    received: datetime,
    received_mono: float,
    emergency_code: int = EMERGENCY_CODE,
) -> Mapped:
    """The `Fix` a report gives after the gates, and a `RadioStatus` when it reports an emergency.

    The emergency status is emitted whether or not the position passes. Time: time of position
    when sent; else `received` minus the time elapsed bound (5 s, 5 min, 30 min); a report with
    no time information (or 'not known') is taken as current at receipt.
    """
    status = RadioStatus(device, radio, emergency_code, received, received_mono) if report.emergency else None
    reject: Reject | None = None
    when: datetime | None = received
    lat, lon = report.lat, report.lon
    if lat is None or lon is None:
        reject = Reject.NO_POSITION
    elif report.shape is Shape.ARC:
        reject = Reject.ARC
    elif lat == 0.0 and lon == 0.0:
        reject = Reject.ZERO
    elif not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        reject = Reject.OUT_OF_RANGE
    elif report.position_error == POSITION_ERROR_OVER_200_KM:
        reject = Reject.POSITION_ERROR
    elif report.time_of_position is not None:
        when = position_time(*report.time_of_position, received)
        reject = Reject.NO_TIME if when is None else None
    elif report.time_elapsed_s is not None:
        when = received - timedelta(seconds=report.time_elapsed_s)
    if reject is None and when is not None and when - received > FUTURE_TOLERANCE:
        reject = Reject.FUTURE
    if reject is not None or when is None or lat is None or lon is None:
        return Mapped(None, status, reject or Reject.NO_POSITION)
    alt = report.altitude_m
    fix = Fix(device, when, lat, lon, 2 if alt is None else 3, received, received_mono, alt=alt, speed_kmh=report.speed_kmh,
              course=report.course, radio=radio, accuracy_m=report.accuracy_m)
    return Mapped(fix, status, None)

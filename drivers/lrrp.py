"""MOTOTRBO LRRP (Location Request/Response Protocol, UDP 4001): decode reports, encode requests; bytes only.

An LRRP message is a Motorola binary-XML document without a constant table: a document type byte
(odd: 0x05 immediate request ... 0x13 unsolicited report), the document length as a uintvar, then
tokens. A token is one byte and a value whose form depends on the token and on whether the
document is a request or an answer/report (0x34 is `periodic-trigger` in a request, `info-time`
in a report). Sources: OK-DMR ok-dmrlib `okdmr/dmrlib/motorola/lrrp.py` and `mbxml.py` (token
tables, uintvar/ufloatvar/sfloatvar forms, info-time), sdrtrunk `module/decode/ip/mototrbo/lrrp/`
(hemisphere bit of the latitude, checked on southern-hemisphere data: sdrtrunk issue #1118;
heading x2; result codes from Moto.Net), TRBO-NET `LOC.pm` (captured requests and reports),
pboyd04/Moto.Net `Mototrbo/LRRP/` (circle-3d = lat, lon, radius, altitude, altitude accuracy; ret-info
0x50 accuracy, 0x51 accuracy and time, 0x52 time).

Values:
- latitude: bit 31 = south, bits 0-30 x 90/2^31; longitude: two's complement x 360/2^32.
- info-time: 40 bits, year 14, month 4, day 5, hour 5, minute 6, second 6 (UTC).
- radius, altitude: metres (ufloatvar / sfloatvar). direction-hor: one byte in 2-degree steps.
- speed-hor: ufloatvar, taken as km/h. The unit is **unconfirmed** (sdrtrunk's comment says km/h,
  its display says mph; no sample with a known speed was found). `SPEED_HOR_TO_KMH` is the one place
  to change it.

`decode()` returns a `LocationReport` (reports and answers) or a `LocationRequest`; anything else
raises `LrrpError`. A report that carries no position (the radio has no GPS fix: result 0x10, or
0x0F as captured by TRBO-NET) decodes with `lat`/`lon` None and `result` set. `position()` gives
what the shared gates (`alkomd.drivers.location_gate`) judge.

Radio addressing (MOTOTRBO CAI): radio id N has the address 12.x.y.z with x.y.z = N as 24 bits; a
group's is 225.x.y.z. The ARS identity (`alkomd.drivers.lrrp_ars`) is the same id in decimal.
"""

from __future__ import annotations

import enum
import ipaddress
import math
from dataclasses import dataclass
from datetime import UTC, datetime

from alkomd.drivers.location_gate import Position

PORT = 4001
CAI_NETWORK = 12
GROUP_NETWORK = 225
SPEED_HOR_TO_KMH = 1.0  # speed-hor unit taken as km/h (unconfirmed, see the module docstring)
LAT_SCALE = 90.0 / 2**31
LON_SCALE = 360.0 / 2**32
MAX_UINTVAR_BYTES = 5  # 35 bits: more than any field here needs


class LrrpError(ValueError):
    """The datagram is not a well-formed LRRP message this decoder knows."""


class MessageType(enum.IntEnum):
    """Document types (the no-constant-table forms MOTOTRBO radios use)."""

    IMMEDIATE_REQUEST = 0x05
    IMMEDIATE_REPORT = 0x07
    TRIGGERED_START_REQUEST = 0x09
    TRIGGERED_START_ANSWER = 0x0B
    TRIGGERED_REPORT = 0x0D
    TRIGGERED_STOP_REQUEST = 0x0F
    TRIGGERED_STOP_ANSWER = 0x11
    UNSOLICITED_REPORT = 0x13


REQUESTS = frozenset({MessageType.IMMEDIATE_REQUEST, MessageType.TRIGGERED_START_REQUEST, MessageType.TRIGGERED_STOP_REQUEST})


class Result(enum.IntEnum):
    """Result codes seen from MOTOTRBO radios (sdrtrunk, after Moto.Net); others are kept as ints."""

    SUCCESS = 0x00
    INVALID_COMMAND = 0x0A
    UNRECOGNIZED = 0x0F  # TRBO-NET's capture: a triggered report of a radio without a GPS fix
    NO_GPS = 0x10
    DUPLICATE_REQUEST = 0x16
    GPS_INITIALIZING = 0x200


class Shape(enum.StrEnum):
    POINT_2D = "point-2d"
    POINT_3D = "point-3d"
    CIRCLE_2D = "circle-2d"
    CIRCLE_3D = "circle-3d"


@dataclass(frozen=True, slots=True)
class LocationReport:
    """A report or answer from a radio; None for what it does not carry."""

    kind: MessageType
    request_id: bytes | None = None
    result: int | None = None  # None when the document has no result token (reports usually do not)
    result_info: bytes = b""  # the opaque text of an operation-error (0x39)
    shape: Shape | None = None
    lat: float | None = None
    lon: float | None = None
    radius_m: float | None = None
    alt_m: float | None = None
    alt_accuracy_m: float | None = None
    time: datetime | None = None
    time_invalid: bool = False  # an info-time token was present but is not a real date
    speed_kmh: float | None = None
    speed_vrt: float | None = None
    course: float | None = None
    level_of_confidence: int | None = None
    protocol_version: int | None = None
    unknown_token: int | None = None  # decoding stopped at this token; what came before stands

    @property
    def unsolicited(self) -> bool:
        return self.kind is MessageType.UNSOLICITED_REPORT

    def position(self, received: datetime) -> Position | None:
        """What the gates judge; None for a document that cannot carry a position (an answer).

        A report without info-time (radios asked without `ret-info-time` send none) is placed at
        `received`: LRRP reports are sent when the position is taken.
        """
        if self.kind in (MessageType.TRIGGERED_START_ANSWER, MessageType.TRIGGERED_STOP_ANSWER):
            return None
        ok = self.result in (None, Result.SUCCESS) and self.shape is not None
        when = None if self.time_invalid else (self.time or received)
        return Position(
            valid=ok,
            lat=self.lat,
            lon=self.lon,
            time=when,
            mode=3 if self.shape in (Shape.POINT_3D, Shape.CIRCLE_3D) else 2,
            alt=self.alt_m,
            speed_kmh=self.speed_kmh,
            course=self.course,
            accuracy_m=self.radius_m,
        )


@dataclass(frozen=True, slots=True)
class LocationRequest:
    """A request (what this side sends; decoded for round trips and captures)."""

    kind: MessageType
    request_id: bytes | None = None
    interval_s: int | None = None  # periodic-trigger interval
    ret_info: int | None = None  # the ret-info token (0x50-0x53), None if absent
    speed: bool = False  # speed-hor requested or required
    direction: bool = False  # direction-hor requested or required
    tokens: tuple[int, ...] = ()  # every token in order, for what the fields above do not say


class _Reader:
    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data, self.pos, self.end = data, pos, len(data) if end is None else end

    def more(self) -> bool:
        return self.pos < self.end

    def u8(self) -> int:
        if self.pos >= self.end:
            raise LrrpError("truncated token")
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise LrrpError("truncated token value")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def uintvar(self) -> tuple[int, int]:
        """(value, number of bytes): 7 bits a byte, most significant first, high bit = more follow."""
        value = 0
        for n in range(1, MAX_UINTVAR_BYTES + 1):
            b = self.u8()
            value = (value << 7) | (b & 0x7F)
            if not b & 0x80:
                return value, n
        raise LrrpError("uintvar too long")

    def ufloatvar(self) -> float:
        whole, _ = self.uintvar()
        frac, n = self.uintvar()
        return whole + frac / float(1 << (7 * n))

    def sfloatvar(self) -> float:
        first = self.u8()
        negative = bool(first & 0x40)
        whole, b = first & 0x3F, first
        for _ in range(MAX_UINTVAR_BYTES):
            if not b & 0x80:
                break
            b = self.u8()
            whole = (whole << 7) | (b & 0x7F)
        else:
            raise LrrpError("sfloatvar too long")
        frac, n = self.uintvar()
        v = whole + frac / float(1 << (7 * n))
        return -v if negative else v

    def latlon(self) -> tuple[float, float]:
        raw = self.take(8)
        la = int.from_bytes(raw[:4], "big")
        lat = (la & 0x7FFFFFFF) * LAT_SCALE
        lon = int.from_bytes(raw[4:], "big", signed=True) * LON_SCALE
        return (-lat if la & 0x80000000 else lat), lon


def uintvar(value: int) -> bytes:
    """The uintvar form of a non-negative integer."""
    if value < 0:
        raise ValueError("uintvar of a negative number")
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def info_time(raw: bytes) -> datetime | None:
    """The 5-byte info-time as UTC, or None if it is not a real date and time."""
    v = int.from_bytes(raw, "big")
    y, mo, d = v >> 26, (v >> 22) & 0xF, (v >> 17) & 0x1F
    h, mi, s = (v >> 12) & 0x1F, (v >> 6) & 0x3F, v & 0x3F
    try:
        return datetime(y, mo, d, h, mi, min(s, 59), tzinfo=UTC)
    except ValueError:
        return None


def _header(data: bytes) -> tuple[MessageType, _Reader]:
    if len(data) < 2:
        raise LrrpError("shorter than an LRRP header")
    try:
        kind = MessageType(data[0])
    except ValueError:
        raise LrrpError(f"unknown LRRP document type 0x{data[0]:02x}") from None
    r = _Reader(data, 1)
    length, _ = r.uintvar()
    if length != len(data) - r.pos:
        raise LrrpError(f"length byte says {length}, {len(data) - r.pos} bytes follow")
    return kind, r


def decode(data: bytes) -> LocationReport | LocationRequest:
    """One UDP payload from port 4001. Raises `LrrpError` for anything that is not LRRP."""
    kind, r = _header(data)
    return _request(kind, r) if kind in REQUESTS else _report(kind, r)


def _request_id(token: int, r: _Reader) -> bytes:
    if token == 0x22:
        n, _ = r.uintvar()
        return r.take(n)
    if token == 0x23:
        return r.take(1)
    n, _ = r.uintvar()  # 0x24: an offset into a constant table we never send
    return n.to_bytes(5, "big")


_NO_VALUE_QUERY = frozenset({0x33, 0x34, 0x50, 0x51, 0x52, 0x53, 0x54, 0x57, 0x62, 0x64, 0x66, 0x69, 0x74, 0x76})
_UINTVAR_QUERY = frozenset({0x31, 0x3F, 0x42, 0x4A, 0x55, 0x5F, 0x67, 0x71, 0x78})  # 0x78: trigger on move (Moto.Net)
_UFLOAT_QUERY = frozenset({0x56, 0x60, 0x68, 0x72})


def _request(kind: MessageType, r: _Reader) -> LocationRequest:
    rid: bytes | None = None
    interval: int | None = None
    ret_info: int | None = None
    speed = direction = False
    tokens: list[int] = []
    while r.more():
        t = r.u8()
        tokens.append(t)
        if t in (0x22, 0x23, 0x24):
            rid = _request_id(t, r)
        elif t in _UINTVAR_QUERY:
            v, _ = r.uintvar()
            if t == 0x31:
                interval = v
        elif t in _UFLOAT_QUERY:
            r.ufloatvar()
        elif t in (0x61, 0x73):
            r.u8()
        elif t in _NO_VALUE_QUERY:
            if 0x50 <= t <= 0x53:
                ret_info = t
            speed = speed or t in (0x62, 0x74)
            direction = direction or t in (0x57, 0x69)
        else:
            raise LrrpError(f"unknown request token 0x{t:02x}")
    return LocationRequest(kind, rid, interval, ret_info, speed, direction, tuple(tokens))


def _report(kind: MessageType, r: _Reader) -> LocationReport:
    f: dict[str, object] = {}
    while r.more():
        t = r.u8()
        if t in (0x22, 0x23, 0x24):
            f["request_id"] = _request_id(t, r)
        elif t in (0x34, 0x35):
            when = info_time(r.take(5))
            f["time"], f["time_invalid"] = when, when is None
        elif t == 0x36:
            f["protocol_version"] = r.uintvar()[0]
        elif t == 0x37:
            f["result"] = r.uintvar()[0]
        elif t == 0x38:
            f["result"] = Result.SUCCESS
        elif t == 0x39:
            f["result"] = r.uintvar()[0]
            n, _ = r.uintvar()
            f["result_info"] = r.take(n)
        elif t in (0x51, 0x54, 0x55, 0x66, 0x69, 0x6A):
            _shape(t, r, f)
        elif t == 0x56:
            f["course"] = float(r.u8() * 2 % 360)
        elif t in (0x65, 0x6B):
            v = r.u8()
            if t == 0x65:
                f["level_of_confidence"] = v
        elif t == 0x6C:
            f["speed_kmh"] = r.ufloatvar() * SPEED_HOR_TO_KMH
        elif t == 0x70:
            f["speed_vrt"] = r.sfloatvar()
        else:
            f["unknown_token"] = t
            break
    return LocationReport(kind, **f)  # type: ignore[arg-type]


def _shape(t: int, r: _Reader, f: dict[str, object]) -> None:
    lat, lon = r.latlon()
    f["lat"], f["lon"] = lat, lon
    if t == 0x66:
        f["shape"] = Shape.POINT_2D
    elif t in (0x69, 0x6A):
        f["shape"] = Shape.POINT_3D
        f["alt_m"] = r.sfloatvar()
        if t == 0x6A:
            f["alt_accuracy_m"] = r.ufloatvar()
    elif t == 0x51:
        f["shape"] = Shape.CIRCLE_2D
        f["radius_m"] = r.ufloatvar()
    else:  # 0x54, 0x55: circle-3d, structure from the MBXML tables (no real sample found)
        f["shape"] = Shape.CIRCLE_3D
        f["radius_m"] = r.ufloatvar()
        f["alt_m"] = r.sfloatvar()
        f["alt_accuracy_m"] = r.ufloatvar()
    if not all(math.isfinite(v) for v in (lat, lon)):
        raise LrrpError("non-finite coordinate")


# Encoders: what the driver sends to a radio's address, UDP port 4001.


def document(kind: MessageType, body: bytes) -> bytes:
    return bytes([kind]) + uintvar(len(body)) + body


def rid_token(request_id: bytes) -> bytes:
    if not 1 <= len(request_id) <= 16:
        raise ValueError("request id: 1 to 16 bytes")
    return b"\x22" + uintvar(len(request_id)) + request_id


def _query(info_time: bool, speed_direction: bool) -> bytes:
    # ret-info 0x50 asks for the accuracy (circle shapes), as the request TRBO-NET captured;
    # 0x51 also asks for info-time (ok-dmrlib's token table and Moto.Net's
    # ImmediateLocationRequestPacket agree; no capture of a radio answering it was found).
    # 0x74/0x69 require speed-hor and direction-hor, as TRBO-NET's request_locs sends.
    return (b"\x51" if info_time else b"\x50") + (b"\x74\x69" if speed_direction else b"")


def triggered_start(request_id: bytes, interval_s: int, speed_direction: bool = False, info_time: bool = False) -> bytes:
    """Triggered Location Start Request: report every `interval_s` seconds until stopped."""
    if not 1 <= interval_s <= 86400:
        raise ValueError("interval: 1 to 86400 s")
    body = rid_token(request_id) + _query(info_time, speed_direction) + b"\x34\x31" + uintvar(interval_s)
    return document(MessageType.TRIGGERED_START_REQUEST, body)


def triggered_stop(request_id: bytes) -> bytes:
    """Triggered Location Stop Request for the periodic report started with `request_id`."""
    return document(MessageType.TRIGGERED_STOP_REQUEST, rid_token(request_id))


def immediate_request(request_id: bytes, speed_direction: bool = False, info_time: bool = False) -> bytes:
    """Immediate Location Request: one report now."""
    return document(MessageType.IMMEDIATE_REQUEST, rid_token(request_id) + _query(info_time, speed_direction))


# Addressing.


def radio_ip(radio_id: int, network: int = CAI_NETWORK) -> str:
    """The radio's (or, with GROUP_NETWORK, a talkgroup's) IPv4 address: 12.x.y.z."""
    if not 0 <= radio_id < 2**24 or not 0 <= network <= 255:
        raise ValueError("radio id: 24 bits")
    return str(ipaddress.IPv4Address((network << 24) | radio_id))


def radio_id_from_ip(address: str, networks: tuple[int, ...] = (CAI_NETWORK,)) -> int | None:
    """The radio id of a source address on a CAI network (12.x.y.z -> x.y.z as 24 bits), or None."""
    try:
        ip = int(ipaddress.IPv4Address(address))
    except ValueError:
        return None
    return ip & 0xFFFFFF if ip >> 24 in networks else None

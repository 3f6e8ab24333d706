"""Hytera DMR location protocol (HDAP "LP", UDP 3003): decode reports, encode requests; bytes only.

An HDAP message (ok-dmrlib `okdmr/dmrlib/hytera/pdu/hdap.py`) is: a service byte (0x08 LP; bit 7
set = reliable), a 2-byte opcode, a 2-byte payload length, the payload, a checksum over opcode,
length and payload ((~sum + 0x33) & 0xFF), and 0x03. The payload layouts are OK-DMR dmr-kaitai
`okdmr/kaitai/hytera/location_protocol.ksy`:

    A001 standard request          request id (4), radio IP (4)
    A002 standard report           request id, radio IP, result (2), GPS block (40)
    A003 report with RSSI          ... as A002, then RSSI (2, signed)
    B003 emergency report          radio IP, emergency type (1), GPS block
    C001 triggered request         request id, radio IP, start time (14), stop time (14), interval (8)
    C002 triggered answer          request id, radio IP, result
    C003 triggered report          request id, radio IP, time remaining (8), GPS block
    C004 triggered stop request    request id, radio IP
    C005 triggered stop answer     request id, radio IP, result

The GPS block is ASCII: A|V, hhmmss, ddmmyy (UTC), N|S, ddmm.mmmm, E|W, dddmm.mmmm, speed in
knots (3), direction in degrees (3); empty fields are NUL bytes. Times are `yyyyMMddhhmmss` (UTC),
intervals `ddhhmmss`. The radio IP is the subnet byte then the 24-bit radio id (10.0.3.233 is radio 1001).

Only the C003 and B003 layouts lack a real sample (see tests/captures/hytera/).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from alkomd.drivers.location_gate import Position
from alkomd.drivers.nmea_fields import coord, date_of, tod_of

PORT = 3003
SERVICE_LP = 0x08
END = 0x03
KNOTS_TO_KMH = 1.852
GPS_LEN = 40


class HyteraError(ValueError):
    """The datagram is not a well-formed Hytera LP message this decoder knows."""


class Opcode(enum.IntEnum):
    STANDARD_REQUEST = 0xA001
    STANDARD_REPORT = 0xA002
    STANDARD_REPORT_RSSI = 0xA003
    EMERGENCY_STOP_REQUEST = 0xB001
    EMERGENCY_STOP_ANSWER = 0xB002
    EMERGENCY_REPORT = 0xB003
    TRIGGERED_REQUEST = 0xC001
    TRIGGERED_ANSWER = 0xC002
    TRIGGERED_REPORT = 0xC003
    TRIGGERED_STOP_REQUEST = 0xC004
    TRIGGERED_STOP_ANSWER = 0xC005


class Result(enum.IntEnum):
    OK = 0
    POSITION_METHOD_FAILURE = 6
    FORMAT_ERROR = 105


@dataclass(frozen=True, slots=True)
class GpsBlock:
    """The 40-byte GPS block read strictly: None for an empty or unreadable field."""

    valid: bool
    time: datetime | None  # UTC, None without both a time and a date
    lat: float | None
    lon: float | None
    speed_kmh: float | None
    course: float | None
    raw: bytes

    def position(self) -> Position:
        return Position(self.valid, self.lat, self.lon, self.time, 2, speed_kmh=self.speed_kmh, course=self.course)


@dataclass(frozen=True, slots=True)
class LpMessage:
    """One LP message; fields the opcode does not carry are None."""

    opcode: Opcode
    radio_ip: str
    radio_id: int
    reliable: bool = False
    request_id: int | None = None
    result: int | None = None
    gps: GpsBlock | None = None
    rssi: int | None = None
    emergency_type: int | None = None
    start: str | None = None  # C001: yyyyMMddhhmmss as sent
    stop: str | None = None
    interval: str | None = None  # C001: ddhhmmss; C003: the time remaining

    @property
    def emergency(self) -> bool:
        return self.opcode is Opcode.EMERGENCY_REPORT

    @property
    def radio(self) -> str:
        """The radio's identity as a `[[unit]] radio` names it: the radio id in decimal."""
        return str(self.radio_id)

    def position(self) -> Position | None:
        return None if self.gps is None else self.gps.position()


def checksum(checked: bytes) -> int:
    return ((sum(checked) & 0xFF ^ 0xFF) + 0x33) & 0xFF


def _field(raw: bytes) -> str | None:
    """An ASCII field; None when empty (NULs or spaces) or not printable ASCII."""
    s = raw.strip(b"\x00 ")
    if not s:
        return None
    try:
        text = s.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


def _number(raw: bytes, lo: float, hi: float) -> float | None:
    s = _field(raw)
    if s is None or not all(c.isdigit() or c == "." for c in s):
        return None
    try:
        v = float(s)
    except ValueError:
        return None
    return v if lo <= v <= hi else None


def read_gps(raw: bytes) -> GpsBlock:
    if len(raw) != GPS_LEN:
        raise HyteraError("GPS block is not 40 bytes")
    tod_s, day_s = _field(raw[1:7]), _field(raw[7:13])
    tod = tod_of(tod_s) if tod_s else None
    day = date_of(day_s) if day_s else None
    when = datetime.combine(day, tod) if tod is not None and day is not None else None
    lat_s, lon_s = _field(raw[14:23]), _field(raw[24:34])
    ns, ew = raw[13:14].decode("latin-1"), raw[23:24].decode("latin-1")
    lat = coord(lat_s, ns) if lat_s and ns in ("N", "S") and lat_s[0].isdigit() else None
    lon = coord(lon_s, ew) if lon_s and ew in ("E", "W") and lon_s[0].isdigit() else None
    knots = _number(raw[34:37], 0.0, 999.0)
    return GpsBlock(
        valid=raw[0:1] == b"A",
        time=when,
        lat=lat,
        lon=lon,
        speed_kmh=None if knots is None else knots * KNOTS_TO_KMH,
        course=_number(raw[37:40], 0.0, 360.0),
        raw=bytes(raw),
    )


def _ip(raw: bytes) -> tuple[str, int]:
    return ".".join(str(b) for b in raw), int.from_bytes(raw[1:], "big")


def decode(data: bytes) -> LpMessage:
    """One UDP payload from port 3003. Raises `HyteraError` for anything that is not a known LP message."""
    if len(data) < 7:
        raise HyteraError("shorter than an HDAP message")
    if data[0] & 0x7F != SERVICE_LP:
        raise HyteraError(f"not the location protocol (service 0x{data[0]:02x})")
    if data[-1] != END:
        raise HyteraError("no 0x03 at the end")
    length = int.from_bytes(data[3:5], "big")
    if length != len(data) - 7:
        raise HyteraError(f"length field says {length}, {len(data) - 7} payload bytes follow")
    if checksum(data[1:-2]) != data[-2]:
        raise HyteraError("bad checksum")
    try:
        op = Opcode(int.from_bytes(data[1:3], "big"))
    except ValueError:
        raise HyteraError(f"unknown LP opcode 0x{data[1]:02x}{data[2]:02x}") from None
    return _payload(op, data[5:-2], bool(data[0] & 0x80))


_REQ_IP = 8  # request id (4) and radio IP (4)
_SIZES = {
    Opcode.STANDARD_REQUEST: _REQ_IP,
    Opcode.STANDARD_REPORT: _REQ_IP + 2 + GPS_LEN,
    Opcode.STANDARD_REPORT_RSSI: _REQ_IP + 2 + GPS_LEN + 2,
    Opcode.EMERGENCY_STOP_REQUEST: _REQ_IP,
    Opcode.EMERGENCY_STOP_ANSWER: _REQ_IP + 2,
    Opcode.EMERGENCY_REPORT: 4 + 1 + GPS_LEN,
    Opcode.TRIGGERED_REQUEST: _REQ_IP + 14 + 14 + 8,
    Opcode.TRIGGERED_ANSWER: _REQ_IP + 2,
    Opcode.TRIGGERED_REPORT: _REQ_IP + 8 + GPS_LEN,
    Opcode.TRIGGERED_STOP_REQUEST: _REQ_IP,
    Opcode.TRIGGERED_STOP_ANSWER: _REQ_IP + 2,
}


def _payload(op: Opcode, p: bytes, reliable: bool) -> LpMessage:
    need = _SIZES[op]
    # A request captured by dmr-kaitai carries one byte more than its layout; extra bytes are ignored.
    if len(p) < need:
        raise HyteraError(f"{op.name}: {len(p)} payload bytes, {need} needed")
    if op is Opcode.EMERGENCY_REPORT:
        ip, rid = _ip(p[0:4])
        return LpMessage(op, ip, rid, reliable, emergency_type=p[4], gps=read_gps(p[5 : 5 + GPS_LEN]))
    ip, rid = _ip(p[4:8])
    m = LpMessage(op, ip, rid, reliable, request_id=int.from_bytes(p[0:4], "big"))
    if op in (Opcode.STANDARD_REPORT, Opcode.STANDARD_REPORT_RSSI):
        rssi = int.from_bytes(p[50:52], "big", signed=True) if op is Opcode.STANDARD_REPORT_RSSI else None
        return _with(m, result=int.from_bytes(p[8:10], "big"), gps=read_gps(p[10:50]), rssi=rssi)
    if op in (Opcode.EMERGENCY_STOP_ANSWER, Opcode.TRIGGERED_ANSWER, Opcode.TRIGGERED_STOP_ANSWER):
        return _with(m, result=int.from_bytes(p[8:10], "big"))
    if op is Opcode.TRIGGERED_REPORT:
        return _with(m, interval=_field(p[8:16]), gps=read_gps(p[16 : 16 + GPS_LEN]))
    if op is Opcode.TRIGGERED_REQUEST:
        return _with(m, start=_field(p[8:22]), stop=_field(p[22:36]), interval=_field(p[36:44]))
    return m


def _with(m: LpMessage, **changes: object) -> LpMessage:
    from dataclasses import replace

    return replace(m, **changes)  # type: ignore[arg-type]


# Encoders: what the driver sends to a radio, UDP port 3003.


def _message(op: Opcode, payload: bytes, reliable: bool = False) -> bytes:
    checked = op.to_bytes(2, "big") + len(payload).to_bytes(2, "big") + payload
    return bytes([SERVICE_LP | (0x80 if reliable else 0)]) + checked + bytes([checksum(checked), END])


def radio_ip_bytes(radio_id: int, subnet: int = 10) -> bytes:
    if not 0 <= radio_id < 2**24 or not 0 <= subnet <= 255:
        raise ValueError("radio id: 24 bits")
    return bytes([subnet]) + radio_id.to_bytes(3, "big")


def _head(request_id: int, radio_id: int, subnet: int) -> bytes:
    if not 0 <= request_id < 2**32:
        raise ValueError("request id: 32 bits")
    return request_id.to_bytes(4, "big") + radio_ip_bytes(radio_id, subnet)


def standard_request(request_id: int, radio_id: int, subnet: int = 10) -> bytes:
    """A001: the radio's position now."""
    return _message(Opcode.STANDARD_REQUEST, _head(request_id, radio_id, subnet))


def _stamp(t: datetime) -> bytes:
    return t.astimezone(UTC).strftime("%Y%m%d%H%M%S").encode("ascii")


def _interval(s: int) -> bytes:
    d, rest = divmod(s, 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    return f"{d:02d}{h:02d}{m:02d}{sec:02d}".encode("ascii")


def triggered_request(request_id: int, radio_id: int, interval_s: int, start: datetime, stop: datetime, subnet: int = 10) -> bytes:
    """C001: report every `interval_s` seconds from `start` to `stop` (UTC)."""
    if not 1 <= interval_s < 100 * 86400:
        raise ValueError("interval: 1 s to 99 days")
    if stop <= start:
        raise ValueError("stop before start")
    return _message(Opcode.TRIGGERED_REQUEST, _head(request_id, radio_id, subnet) + _stamp(start) + _stamp(stop) + _interval(interval_s))


def triggered_stop(request_id: int, radio_id: int, subnet: int = 10) -> bytes:
    """C004: stop the triggered reports started with `request_id`."""
    return _message(Opcode.TRIGGERED_STOP_REQUEST, _head(request_id, radio_id, subnet))


def gps_block(valid: bool, when: datetime | None, lat: float, lon: float, knots: float = 0.0, course: int = 0) -> bytes:
    """A GPS block as radios write it (for simulators and tests)."""
    t = "\0" * 12 if when is None else when.astimezone(UTC).strftime("%H%M%S%d%m%y")
    la, lo = abs(lat), abs(lon)
    lat_s = f"{int(la):02d}{(la - int(la)) * 60:07.4f}"
    lon_s = f"{int(lo):03d}{(lo - int(lo)) * 60:07.4f}"
    text = ("A" if valid else "V") + t + ("S" if lat < 0 else "N") + lat_s + ("W" if lon < 0 else "E") + lon_s
    text += f"{knots:03.1f}"[:3].rjust(3, "0") + f"{course % 360:03d}"
    return text.encode("ascii")


def encode_report(op: Opcode, request_id: int, radio_id: int, gps: bytes, result: int = 0, emergency_type: int = 0,
                  remaining: timedelta = timedelta(0), subnet: int = 10) -> bytes:
    """A report as a radio sends it (A002, B003 or C003; for simulators and tests)."""
    if op is Opcode.EMERGENCY_REPORT:
        return _message(op, radio_ip_bytes(radio_id, subnet) + bytes([emergency_type]) + gps)
    if op is Opcode.TRIGGERED_REPORT:
        return _message(op, _head(request_id, radio_id, subnet) + _interval(int(remaining.total_seconds())) + gps)
    if op is Opcode.STANDARD_REPORT:
        return _message(op, _head(request_id, radio_id, subnet) + result.to_bytes(2, "big") + gps)
    raise ValueError(f"not a report opcode: {op.name}")

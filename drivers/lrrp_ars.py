"""MOTOTRBO ARS (Automatic Registration Service, UDP 4005): registration messages in, acknowledgement out.

A radio that powers on (or refreshes, about every 30 minutes) sends a Device Registration with
its identity: the radio id in decimal ASCII. It leaves with a Device Deregistration. The server
answers a registration with an ARS response; a radio that hears none keeps asking and is not
sent location requests by the infrastructure's logic, so the driver must acknowledge.

Layout (ok-dmrlib `okdmr/dmrlib/motorola/automatic_registration_service.py`, TRBO-NET `ARS.pm`):
a 2-byte big-endian length of what follows; a header byte (bit 7 more headers, bit 6
acknowledged, bit 5 priority, bit 4 control, bits 0-3 the PDU type); for a registration with
more headers, an event byte (bits 5-6: 1 initial, 2 refresh; bits 0-4 the encoding, 0 = UTF-8);
then length-prefixed device id, user id and password. A response has one more byte: the refresh
time in 30-minute units on success, a failure reason when the acknowledged bit is set.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

PORT = 4005


class ArsError(ValueError):
    """The datagram is not a well-formed ARS message."""


class ArsType(enum.IntEnum):
    DEVICE_REGISTRATION = 0x0
    DEVICE_DEREGISTRATION = 0x1
    QUERY = 0x4
    USER_REGISTRATION = 0x5
    USER_DEREGISTRATION = 0x6
    USER_REGISTRATION_ACK = 0x7
    RESPONSE = 0xF


class ArsEventKind(enum.StrEnum):
    REGISTERED = "registered"  # the radio is on the air (initial registration or refresh)
    DEREGISTERED = "deregistered"  # the radio is leaving (powering off)
    QUERY = "query"  # "are you there?"
    RESPONSE = "response"  # an answer (to a query, or an acknowledgement)
    USER = "user"  # user (de)registration: a person logging on to a radio


@dataclass(frozen=True, slots=True)
class ArsEvent:
    """One ARS message. `radio_id` is the identity the radio sent (decimal digits), if any."""

    kind: ArsEventKind
    pdu: ArsType
    radio_id: str | None = None
    user: str | None = None
    refresh: bool = False  # a periodic re-registration, not the first after power-on
    acknowledged: bool = False  # the sender wants an answer (requests); a failure (responses)
    detail: int | None = None  # a response's refresh time (30-minute units) or failure reason


def _lv(data: bytes, pos: int) -> tuple[bytes, int]:
    if pos >= len(data):
        return b"", pos
    n = data[pos]
    if pos + 1 + n > len(data):
        raise ArsError("truncated identity")
    return data[pos + 1 : pos + 1 + n], pos + 1 + n


def _text(raw: bytes) -> str | None:
    if not raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ArsError("identity is not UTF-8") from None
    if not text.isprintable():
        raise ArsError("identity has control characters")
    return text


_KINDS = {
    ArsType.DEVICE_REGISTRATION: ArsEventKind.REGISTERED,
    ArsType.DEVICE_DEREGISTRATION: ArsEventKind.DEREGISTERED,
    ArsType.QUERY: ArsEventKind.QUERY,
    ArsType.RESPONSE: ArsEventKind.RESPONSE,
}


def decode(data: bytes) -> ArsEvent:
    """One UDP payload from port 4005. Raises `ArsError` for anything that is not ARS."""
    if len(data) < 3:
        raise ArsError("shorter than an ARS message")
    length = int.from_bytes(data[:2], "big")
    if length != len(data) - 2:
        raise ArsError(f"length field says {length}, {len(data) - 2} bytes follow")
    head = data[2]
    more, ack = bool(head & 0x80), bool(head & 0x40)
    try:
        pdu = ArsType(head & 0x0F)
    except ValueError:
        raise ArsError(f"unknown ARS PDU type {head & 0x0F}") from None
    kind = _KINDS.get(pdu, ArsEventKind.USER)
    if pdu is ArsType.RESPONSE:
        detail = data[3] & 0x7F if more and len(data) > 3 else None
        return ArsEvent(kind, pdu, acknowledged=ack, detail=detail)
    if pdu in (ArsType.DEVICE_DEREGISTRATION, ArsType.QUERY):
        return ArsEvent(kind, pdu, acknowledged=ack)
    pos, refresh = 3, False
    if more:
        if len(data) < 4:
            raise ArsError("missing registration header")
        refresh = (data[3] >> 5) & 0x3 == 2
        pos = 4
    device, pos = _lv(data, pos)
    user, pos = _lv(data, pos)
    radio = _text(device)
    if pdu is ArsType.DEVICE_REGISTRATION and (radio is None or not radio.isdigit() or len(radio) > 8):
        raise ArsError("registration without a numeric radio identity")
    return ArsEvent(kind, pdu, radio, _text(user), refresh, ack)


def encode_registration(radio_id: int, refresh: bool = False) -> bytes:
    """A Device Registration as a radio sends it (for simulators and tests)."""
    ident = str(radio_id).encode("ascii")
    body = bytes([0xF0, 0x40 if refresh else 0x20, len(ident)]) + ident + b"\x00\x00"
    return len(body).to_bytes(2, "big") + body


def ack(refresh_30min: int = 1) -> bytes:
    """The acknowledgement of a Device Registration: success, re-register every `refresh_30min` x 30 min.

    `ack(1)` is `00 02 BF 01`, the answer TRBO-NET sends and ok-dmrlib's test decodes.
    """
    if not 1 <= refresh_30min <= 127:
        raise ValueError("refresh time: 1 to 127 half-hours")
    return b"\x00\x02\xbf" + bytes([refresh_30min])


def query() -> bytes:
    """The "are you there?" query: a radio still on the air answers with a response (`00 01 3f`)."""
    return b"\x00\x01\x74"

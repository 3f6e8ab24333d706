"""Shared helpers for the NMEA decoder and capture tests: sentence builders and decode shortcuts.

The builders write one sentence with a correct checksum and let a test override any field, so a
test can say exactly which field it breaks (`gga(t, quality="6")`, `rmc(t, status="V")`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alkomd.daemon.ctl import decoding as cmd_decode
from alkomd.daemon.records import Fix, RadioStatus
from alkomd.drivers.nmea import Decoder
from alkomd.drivers.nmea_writer import lat_field as ddmm
from alkomd.drivers.nmea_writer import lon_field as dddmm
from alkomd.drivers.nmea_writer import sentence, tod

# 2024-05-14 03:15:00 UTC = 11:15 WITA; a patrol car near Jl. Nani Wartabone, Kota Gorontalo.
T0 = datetime(2024, 5, 14, 3, 15, 0, tzinfo=UTC)
LAT, LON = 0.5435, 123.0595
RECEIVED = T0 + timedelta(minutes=1)  # the wall clock the decoder is given unless a test says otherwise

TALKERS = ("GP", "GN", "GL", "GA", "GB", "BD", "GQ", "QZ")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def gga(
    t: datetime,
    lat: float | None = LAT,
    lon: float | None = LON,
    *,
    quality: str = "1",
    sats: str = "09",
    hdop: str = "0.90",
    alt: str = "25.0",
    talker: str = "GP",
    time_field: str | None = None,
) -> bytes:
    la, ns = ddmm(lat) if lat is not None else ("", "")
    lo, ew = dddmm(lon) if lon is not None else ("", "")
    tf = tod(t) if time_field is None else time_field
    return sentence(f"{talker}GGA,{tf},{la},{ns},{lo},{ew},{quality},{sats},{hdop},{alt},M,18.5,M,,")


def rmc(
    t: datetime,
    lat: float | None = LAT,
    lon: float | None = LON,
    *,
    status: str = "A",
    knots: str = "0.000",
    course: str = "0.00",
    date: str | None = None,
    mode: str = "A",
    talker: str = "GP",
) -> bytes:
    la, ns = ddmm(lat) if lat is not None else ("", "")
    lo, ew = dddmm(lon) if lon is not None else ("", "")
    d = t.strftime("%d%m%y") if date is None else date
    return sentence(f"{talker}RMC,{tod(t)},{status},{la},{ns},{lo},{ew},{knots},{course},{d},,,{mode}")


def gll(
    t: datetime,
    lat: float | None = LAT,
    lon: float | None = LON,
    *,
    status: str = "A",
    mode: str = "A",
    talker: str = "GP",
) -> bytes:
    la, ns = ddmm(lat) if lat is not None else ("", "")
    lo, ew = dddmm(lon) if lon is not None else ("", "")
    return sentence(f"{talker}GLL,{la},{ns},{lo},{ew},{tod(t)},{status},{mode}")


def gsa(fix: str = "3", *, hdop: str = "0.90", talker: str = "GP", prns: int = 9) -> bytes:
    ids = [f"{p:02d}" for p in range(1, prns + 1)] + [""] * (12 - prns)
    return sentence(f"{talker}GSA,A,{fix},{','.join(ids)},1.60,{hdop},1.20")


def vtg(course: str = "0.00", kmh: str = "0.000", *, mode: str = "A", talker: str = "GP") -> bytes:
    return sentence(f"{talker}VTG,{course},T,,M,,N,{kmh},K,{mode}")


def zda(t: datetime, *, talker: str = "GP") -> bytes:
    return sentence(f"{talker}ZDA,{tod(t)},{t:%d},{t:%m},{t:%Y},00,00")


def gsv(total: int, num: int, *, talker: str = "GP") -> bytes:
    return sentence(f"{talker}GSV,{total},{num},{total * 4:02d},01,40,083,46,02,17,308,41,12,07,344,39,14,22,228,45")


def without_eol(s: bytes) -> bytes:
    return s.rstrip(b"\r\n")


def decode(
    data: bytes | Iterable[bytes],
    received: datetime = RECEIVED,
    *,
    max_hdop: float = 20.0,
    flush: bool = True,
) -> tuple[Decoder, list[Fix]]:
    """Feed `data` (one chunk, or an iterable of chunks) to a fresh decoder, then flush it."""
    dec = Decoder("test-gps", max_hdop=max_hdop)
    chunks = [data] if isinstance(data, bytes) else list(data)
    fixes: list[Fix] = []
    for chunk in chunks:
        fixes += dec.feed(chunk, received, 1.0)
    if flush:
        fixes += dec.flush()
    return dec, fixes


# The one definition of the `alkomctl decode --json` format.
fix_dict = cmd_decode.fix_dict


def read_capture(path: Path) -> tuple[dict[str, str], bytes]:
    """A gpsd-style capture: leading `# Key: value` lines, then the raw bytes of the line."""
    meta: dict[str, str] = {}
    body: list[bytes] = []
    for line in path.read_bytes().splitlines(keepends=True):
        if line.startswith(b"#"):
            key, _, value = line[1:].decode("utf-8").partition(":")
            if value:
                meta[key.strip()] = value.strip()
            continue
        body.append(line)
    return meta, b"".join(body)


def capture_received(meta: dict[str, str]) -> datetime:
    """The wall clock the decoder is given for a capture: noon UTC of its `# Date:`.

    A capture without RMC or ZDA (GGA-only radios) takes its date from this clock.
    """
    return datetime.fromisoformat(meta["Date"][:10]).replace(hour=12, tzinfo=UTC)


def decode_capture(path: Path) -> list[dict[str, Any]]:
    """What `alkomctl decode --json` prints for a capture: fixes, relayed radios' status codes, radios heard."""
    meta, data = read_capture(path)
    _, records = decode(data, capture_received(meta))
    return [
        fix_dict(r) if isinstance(r, Fix)
        else {"radio": r.radio, "status": r.code} if isinstance(r, RadioStatus)
        else {"radio": r.radio, "heard": True}
        for r in records
    ]


def read_expected(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

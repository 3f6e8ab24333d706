"""Builds NMEA 0183 sentences with correct checksums (for the simulator, tests and benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import reduce
from operator import xor


def sentence(body: str) -> bytes:
    """`GPGGA,...` -> `$GPGGA,...*hh\\r\\n`."""
    cs = reduce(xor, body.encode("ascii"), 0)
    return f"${body}*{cs:02X}\r\n".encode("ascii")


def _deg_min(a: float) -> tuple[int, str]:
    """Whole degrees and `mm.mmmm` minutes of a non-negative angle; minutes that round to 60 carry."""
    d = int(a)
    m = f"{(a - d) * 60:07.4f}"
    return (d + 1, "00.0000") if m == "60.0000" else (d, m)


def lat_field(lat: float) -> tuple[str, str]:
    """Latitude as NMEA `ddmm.mmmm` and N/S."""
    d, m = _deg_min(abs(lat))
    return f"{d:02d}{m}", "N" if lat >= 0 else "S"


def lon_field(lon: float) -> tuple[str, str]:
    """Longitude as NMEA `dddmm.mmmm` and E/W."""
    d, m = _deg_min(abs(lon))
    return f"{d:03d}{m}", "E" if lon >= 0 else "W"


def tod(t: datetime) -> str:
    """UTC time of day as receivers write it: `hhmmss.ss`."""
    return t.strftime("%H%M%S.") + f"{t.microsecond // 10000:02d}"


@dataclass(frozen=True)
class EpochSpec:
    """One receiver epoch to write. `valid=False` writes a receiver without a fix (empty fields)."""

    time: datetime
    lat: float
    lon: float
    alt: float = 25.0
    speed_kmh: float = 0.0
    course: float = 0.0
    hdop: float = 0.9
    sats: int = 9
    valid: bool = True
    talker: str = "GP"


def epoch(e: EpochSpec, types: tuple[str, ...] = ("RMC", "VTG", "GGA", "GSA", "GSV", "GLL")) -> bytes:
    """All sentences of one epoch, in the order a u-blox receiver sends them."""
    t = e.time
    hms = tod(t)
    ddmmyy = t.strftime("%d%m%y")
    la, ns = lat_field(e.lat) if e.valid else ("", "")
    lo, ew = lon_field(e.lon) if e.valid else ("", "")
    knots = e.speed_kmh / 1.852
    tk = e.talker
    out: list[bytes] = []
    for ty in types:
        if ty == "RMC":
            st, mode = ("A", "A") if e.valid else ("V", "N")
            spd = f"{knots:.3f}" if e.valid else ""
            crs = f"{e.course:.2f}" if e.valid else ""
            out.append(sentence(f"{tk}RMC,{hms},{st},{la},{ns},{lo},{ew},{spd},{crs},{ddmmyy},,,{mode}"))
        elif ty == "VTG":
            if e.valid:
                out.append(sentence(f"{tk}VTG,{e.course:.2f},T,,M,{knots:.3f},N,{e.speed_kmh:.3f},K,A"))
            else:
                out.append(sentence(f"{tk}VTG,,T,,M,,N,,K,N"))
        elif ty == "GGA":
            q, sats = ("1", f"{e.sats:02d}") if e.valid else ("0", "00")
            hdop = f"{e.hdop:.2f}" if e.valid else "99.99"
            alt = f"{e.alt:.1f}" if e.valid else ""
            out.append(sentence(f"{tk}GGA,{hms},{la},{ns},{lo},{ew},{q},{sats},{hdop},{alt},M,18.5,M,,"))
        elif ty == "GSA":
            prns = [f"{p:02d}" for p in range(1, min(e.sats, 12) + 1)] if e.valid else []
            prns += [""] * (12 - len(prns))
            fix = "3" if e.valid else "1"
            hdop = f"{e.hdop:.2f}" if e.valid else "99.99"
            out.append(sentence(f"{tk}GSA,A,{fix},{','.join(prns)},1.60,{hdop},1.20"))
        elif ty == "GSV":
            n = max(e.sats, 1)
            parts = (n + 3) // 4
            for i in range(parts):
                block = [
                    f"{k + 1:02d},{(k * 17) % 90:02d},{(k * 43) % 360:03d},{30 + k % 15:02d}"
                    for k in range(i * 4, min(n, i * 4 + 4))
                ]
                out.append(sentence(f"{tk}GSV,{parts},{i + 1},{n:02d},{','.join(block)}"))
        elif ty == "GLL":
            st, mode = ("A", "A") if e.valid else ("V", "N")
            out.append(sentence(f"{tk}GLL,{la},{ns},{lo},{ew},{hms},{st},{mode}"))
        elif ty == "ZDA":
            out.append(sentence(f"{tk}ZDA,{hms},{t:%d},{t:%m},{t:%Y},00,00"))
        else:
            raise ValueError(f"no writer for {ty}")
    return b"".join(out)


def kenwood_ds(t: datetime, lat: float, lon: float, radio: str, status: int, *, kmh: float = 0.0, course: float = 0.0,
               valid: bool = True) -> bytes:
    """A relayed position with status: `$PKLDS` for a FleetSync radio (`100-1001`), `$PKNDS` for a U-id."""
    la, ns = lat_field(lat)
    lo, ew = lon_field(lon)
    head = f"{t:%H%M%S},{'A' if valid else 'V'},{la},{ns},{lo},{ew},{kmh / 1.852:05.1f},{course:05.1f},{t:%d%m%y},00.00,E00"
    if radio.startswith("U"):
        return sentence(f"PKNDS,{head},{radio},{status:03d},00,")
    fleet, ident = radio.split("-")
    return sentence(f"PKLDS,{head},{fleet},{ident},{status:02d},00,")


def kenwood_sh(t: datetime, lat: float, lon: float, radio: str, *, valid: bool = True) -> bytes:
    """A relayed short position: `$PKLSH` (FleetSync) or `$PKNSH` (U-id)."""
    la, ns = lat_field(lat)
    lo, ew = lon_field(lon)
    head = f"{la},{ns},{lo},{ew},{t:%H%M%S},{'A' if valid else 'V'}"
    if radio.startswith("U"):
        return sentence(f"PKNSH,{head},{radio},")
    fleet, ident = radio.split("-")
    return sentence(f"PKLSH,{head},{fleet},{ident},")


def kenwood_id(radio: str, status: int) -> bytes:
    """A relayed status without a position: `$PKLID` (FleetSync) or `$PKNID` (U-id)."""
    if radio.startswith("U"):
        return sentence(f"PKNID,00,{radio},{status:03d},00,")
    fleet, ident = radio.split("-")
    return sentence(f"PKLID,00,{fleet},{ident},{status:02d},00,")

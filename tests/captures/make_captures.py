"""Regenerates the capture corpus: `*.nmea` (gpsd-style header + raw bytes) and `*.expected.jsonl`.

    /work/venv/bin/python tests/captures/make_captures.py

The receivers are synthetic (built with alkomd.drivers.nmea_writer) but shaped after real ones:
sentence order, talkers, start-up behaviour, radio-line noise. Each builder also returns what
it *meant* to encode, one entry per epoch that should give a fix; the script checks the
decoder's output against that before writing the expected file, so the expected files are not
merely "whatever the decoder said". Review the diff of the expected files after regenerating.

The other `kenwood-*` captures (dPMR numeric id, NX-5000 relay, NEXEDGE short reports, NXDN
transmission, caller-ID frames) are not generated: they quote what real radios printed, as
other projects published it; each names its source, licence and stated values in its header.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from helpers_nmea import decode_capture  # noqa: E402

from alkomd.drivers.nmea_writer import EpochSpec, epoch, kenwood_ds, kenwood_id, kenwood_sh, sentence  # noqa: E402

M_PER_DEG = 111_320.0


@dataclass
class Intended:
    """What one epoch should decode to (None: the field must be absent)."""

    time: datetime
    lat: float
    lon: float
    mode: int
    alt: float | None
    speed_kmh: float | None
    course: float | None
    hdop: float | None
    sats: int | None


def header(name: str, device: str, place: str, date: str, notes: str) -> bytes:
    lines = [f"# Name: {name}", f"# Device: {device}", f"# Place: {place}", f"# Date: {date}", f"# Notes: {notes}"]
    return ("\n".join(lines) + "\n").encode("utf-8")


def drive(lat: float, lon: float, legs: list[tuple[float, float, int]]) -> list[tuple[float, float, float, float]]:
    """(lat, lon, speed_kmh, course) per second along legs of (speed_kmh, course, seconds)."""
    out = []
    for speed, course, seconds in legs:
        for _ in range(seconds):
            out.append((lat, lon, speed, course))
            d = speed / 3.6
            lat += d * math.cos(math.radians(course)) / M_PER_DEG
            lon += d * math.sin(math.radians(course)) / (M_PER_DEG * math.cos(math.radians(lat)))
    return out


def gsa_body(talker: str, fix: str, prns: list[int], pdop: float, hdop: float, vdop: float) -> str:
    ids = [f"{p:02d}" for p in prns[:12]] + [""] * (12 - min(len(prns), 12))
    return f"{talker}GSA,A,{fix},{','.join(ids)},{pdop:.2f},{hdop:.2f},{vdop:.2f}"


# --- 1. u-blox M8, GN talker, driving --------------------------------------------------------


def ublox_gn_drive() -> tuple[bytes, list[Intended]]:
    t0 = datetime(2024, 5, 14, 3, 15, 0, tzinfo=UTC)
    legs = [(0.0, 72.0, 3), (18.0, 72.0, 5), (36.0, 72.0, 10), (30.0, 118.0, 6), (12.0, 160.0, 4), (0.0, 160.0, 2)]
    route = drive(0.53830, 123.05870, legs)
    out = [
        header(
            "u-blox M8 receiver in a patrol car, Kota Gorontalo",
            "u-blox NEO-M8N, 9600 8N1, factory NMEA output (GNRMC GNVTG GNGGA GNGSA x2 GPGSV GLGSV GNGLL)",
            "Jl. Nani Wartabone eastbound, Kota Gorontalo, Gorontalo, Indonesia (lat 0.538, lon 123.059)",
            "2024-05-14",
            "GPS+GLONASS, 3D fix throughout; stops at a junction, turns right, stops again. Starts with the GNTXT banner.",
        ),
        sentence("GNTXT,01,01,02,u-blox AG - www.u-blox.com"),
        sentence("GNTXT,01,01,02,HW UBX-M8030 00080000"),
    ]
    intended = []
    for k, (lat, lon, speed, course) in enumerate(route):
        t = t0 + timedelta(seconds=k)
        sats, hdop = 12 + k % 3, round(0.78 + 0.02 * (k % 5), 2)
        alt = round(11.2 + 0.1 * k, 1)
        e = EpochSpec(t, lat, lon, alt=alt, speed_kmh=speed, course=course, hdop=hdop, sats=sats, talker="GN")
        out.append(epoch(e, ("RMC", "VTG", "GGA")))
        out.append(sentence(gsa_body("GN", "3", list(range(2, 2 + sats - 5)), 1.45, hdop, 1.20)))
        out.append(sentence(gsa_body("GN", "3", list(range(65, 70)), 1.45, hdop, 1.20)))
        out.append(epoch(EpochSpec(t, lat, lon, sats=sats - 5, talker="GP"), ("GSV",)))
        out.append(epoch(EpochSpec(t, lat, lon, sats=5, talker="GL"), ("GSV",)))
        out.append(epoch(e, ("GLL",)))
        intended.append(Intended(t, lat, lon, 3, alt, speed, course, hdop, sats))
    return b"".join(out), intended


# --- 2. MediaTek-style receiver: cold start, no fix, 2D, then 3D -----------------------------


def mtk_cold_start() -> tuple[bytes, list[Intended]]:
    t0 = datetime(2024, 6, 3, 22, 40, 0, tzinfo=UTC)
    lat, lon = 0.54121, 123.06234
    out = [
        header(
            "GPS receiver cold start in a station yard: no fix, 2D fix, then 3D",
            "MediaTek MT3339-based GPS mouse, 9600 8N1 (GPRMC GPVTG GPGGA GPGSA GPGSV)",
            "Vehicle yard of a police station, Kota Gorontalo, Gorontalo, Indonesia (lat 0.541, lon 123.062)",
            "2024-06-03",
            "Power-up with empty time fields, 6 s with time but no fix (RMC V, GGA 0, GSA 1), "
            "3 s of 2D fix (GSA 2, no altitude), then 3D with HDOP improving; stationary.",
        ),
        sentence("GPGGA,,,,,,0,00,99.99,,,,,,"),
        sentence("GPRMC,,V,,,,,,,,,,N"),
        sentence("GPVTG,,,,,,,,,N"),
        sentence("GPGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99"),
        sentence("GPGSV,1,1,00"),
    ]
    intended = []
    for k in range(20):
        t = t0 + timedelta(seconds=k)
        if k < 6:
            out.append(epoch(EpochSpec(t, lat, lon, sats=1 + k // 2, valid=False), ("RMC", "VTG", "GGA", "GSA", "GSV")))
        elif k < 9:
            tod = t.strftime("%H%M%S.000")
            la, lo = f"{int(lat):02d}{(lat - int(lat)) * 60:07.4f}", f"{int(lon):03d}{(lon - int(lon)) * 60:07.4f}"
            hdop = 3.40
            out += [
                sentence(f"GPRMC,{tod},A,{la},N,{lo},E,0.00,0.00,{t:%d%m%y},,,A"),
                sentence("GPVTG,0.00,T,,M,0.00,N,0.00,K,A"),
                sentence(f"GPGGA,{tod},{la},N,{lo},E,1,03,{hdop:.2f},,M,,M,,"),
                sentence(gsa_body("GP", "2", [5, 13, 15], 3.60, hdop, 1.00)),
                epoch(EpochSpec(t, lat, lon, sats=4), ("GSV",)),
            ]
            intended.append(Intended(t, lat, lon, 2, None, 0.0, 0.0, hdop, 3))
        else:
            hdop = round(max(0.8, 2.6 - 0.2 * (k - 9)), 2)
            alt = 18.0 + 0.3 * (k - 9)
            e = EpochSpec(t, lat, lon, alt=alt, speed_kmh=0.0, course=0.0, hdop=hdop, sats=4 + (k - 9) // 2)
            out.append(epoch(e, ("RMC", "VTG", "GGA", "GSA", "GSV")))
            intended.append(Intended(t, lat, lon, 3, round(alt, 1), 0.0, 0.0, hdop, e.sats))
    return b"".join(out), intended


# --- 3. Noisy radio line: STX/ETX framing, line noise, bad checksums --------------------------


def noisy_radio() -> tuple[bytes, list[Intended]]:
    t0 = datetime(2024, 7, 22, 9, 5, 30, tzinfo=UTC)
    route = drive(0.55710, 123.13380, [(22.0, 250.0, 24)])
    out = [
        header(
            "Kenwood-style radio relaying its GPS over a noisy data line (STX/ETX framing)",
            "Handheld radio with internal GPS, accessory port at 4800 8N1 (GPRMC GPGGA, each framed STX ... ETX)",
            "Jl. Trans Sulawesi westbound, Kabila, Bone Bolango, Gorontalo, Indonesia (lat 0.557, lon 123.134)",
            "2024-07-22",
            "Motorcycle patrol at 22 km/h. Line noise: NULs, binary bursts, a sentence with a flipped bit "
            "(bad checksum), a truncated sentence, a doubled $, a missing checksum, a lowercase checksum.",
        ),
    ]
    intended = []

    def framed(s: bytes) -> bytes:
        return b"\x02" + s.rstrip(b"\r\n") + b"\x03\r\n"

    def flip(s: bytes) -> bytes:
        b = bytearray(s)
        b[12] ^= 0x01  # one bit of the time field: the checksum no longer matches
        return bytes(b)

    for k, (lat, lon, speed, course) in enumerate(route):
        t = t0 + timedelta(seconds=k)
        e = EpochSpec(t, lat, lon, alt=31.0, speed_kmh=speed, course=course, hdop=1.1, sats=7)
        r, g = epoch(e, ("RMC",)), epoch(e, ("GGA",))
        full = Intended(t, lat, lon, 3, 31.0, speed, course, 1.1, 7)
        gga_only = Intended(t, lat, lon, 3, 31.0, None, None, 1.1, 7)
        if k == 3:
            out += [b"\x00\x00\x00\x00", framed(r), framed(g)]
            intended.append(full)
        elif k == 6:
            out += [bytes([0xA5, 0x5A, 0xFF, 0x81, 0x7E, 0x00, 0xC3]) + b"\r\n", framed(r), framed(g)]
            intended.append(full)
        elif k == 9:  # the RMC arrives with a flipped bit: GGA alone makes the fix
            out += [framed(flip(r)), framed(g)]
            intended.append(gga_only)
        elif k == 12:  # the radio cuts a sentence short, the next starts on the same line
            out += [b"\x02" + r[:27] + b"\x02" + r.rstrip(b"\r\n") + b"\x03\r\n", framed(g)]
            intended.append(full)
        elif k == 15:
            out += [b"\x02$" + r.rstrip(b"\r\n") + b"\x03\r\n", framed(g)]
            intended.append(full)
        elif k == 18:  # the RMC lost its checksum: again GGA alone
            out += [framed(r.rstrip(b"\r\n")[:-3] + b"\r\n"), framed(g)]
            intended.append(gga_only)
        elif k == 21:
            s = r.rstrip(b"\r\n")
            out += [framed(s[:-2] + s[-2:].lower() + b"\r\n"), b"\x03\x03 \t\r\n", framed(g)]
            intended.append(full)
        else:
            out += [framed(r), framed(g)]
            intended.append(full)
    return b"".join(out), intended


# --- 4. GGA-only radio -----------------------------------------------------------------------


def kenwood_gga_only() -> tuple[bytes, list[Intended]]:
    t0 = datetime(2024, 8, 9, 4, 30, 0, tzinfo=UTC)
    route = drive(0.52490, 123.06610, [(0.0, 0.0, 3), (4.5, 15.0, 14), (0.0, 15.0, 3)])
    out = [
        header(
            "GGA-only GPS output of a mobile radio, one sentence every 2 s",
            "Kenwood-style mobile radio GPS port, 9600 8N1, $GPGGA only (no RMC, no date)",
            "Pelabuhan Gorontalo (port) area, Kota Gorontalo, Gorontalo, Indonesia (lat 0.525, lon 123.066)",
            "2024-08-09",
            "Officer on foot. First two reports without a fix (quality 0, empty position), then quality 1 and "
            "one DGPS (quality 2). No date in the stream: it comes from the capture date.",
        ),
    ]
    intended = []
    for k, (lat, lon, _speed, _course) in enumerate(route):
        t = t0 + timedelta(seconds=2 * k)
        if k < 2:
            out.append(epoch(EpochSpec(t, lat, lon, valid=False), ("GGA",)))
            continue
        e = EpochSpec(t, lat, lon, alt=6.5, hdop=1.3 + 0.1 * (k % 3), sats=6 + k % 4)
        s = epoch(e, ("GGA",))
        if k == 10:
            body = s[1:].split(b"*")[0].decode().split(",")
            body[6] = "2"
            s = sentence(",".join(body))
        out.append(s)
        intended.append(Intended(t, lat, lon, 3, 6.5, None, None, round(e.hdop, 2), e.sats))
    return b"".join(out), intended


# --- 5. Quectel-style multi-GNSS with BeiDou: GGA first, ZDA last ---------------------------


def quectel_beidou() -> tuple[bytes, list[Intended]]:
    t0 = datetime(2024, 9, 30, 23, 59, 52, tzinfo=UTC)  # crosses midnight UTC: the date comes from RMC/ZDA
    route = drive(0.56240, 122.98500, [(48.0, 95.0, 16)])
    out = [
        header(
            "Multi-GNSS receiver (GPS+BeiDou+Galileo) across midnight UTC",
            "Quectel L76-style module, 115200 8N1 (GNGGA GNGLL GNGSA x3 GPGSV BDGSV GAGSV GNRMC GNVTG GNZDA)",
            "Jl. Trans Sulawesi eastbound, Limboto, Kabupaten Gorontalo, Indonesia (lat 0.562, lon 122.985)",
            "2024-09-30",
            "Car at 48 km/h. GGA opens the cycle and ZDA closes it; the date changes to 2024-10-01 at 00:00:00Z.",
        ),
    ]
    intended = []
    for k, (lat, lon, speed, course) in enumerate(route):
        t = t0 + timedelta(seconds=k)
        hdop = 0.7
        e = EpochSpec(t, lat, lon, alt=44.0, speed_kmh=speed, course=course, hdop=hdop, sats=16, talker="GN")
        out.append(epoch(e, ("GGA", "GLL")))
        out.append(sentence(gsa_body("GN", "3", [3, 6, 9, 17, 19, 28], 1.2, hdop, 0.9)))
        out.append(sentence(gsa_body("GN", "3", [7, 10, 21, 27, 30, 35], 1.2, hdop, 0.9)))
        out.append(sentence(gsa_body("GN", "3", [4, 11, 36, 19], 1.2, hdop, 0.9)))
        out.append(epoch(EpochSpec(t, lat, lon, sats=6, talker="GP"), ("GSV",)))
        out.append(epoch(EpochSpec(t, lat, lon, sats=6, talker="BD"), ("GSV",)))
        out.append(epoch(EpochSpec(t, lat, lon, sats=4, talker="GA"), ("GSV",)))
        out.append(epoch(e, ("RMC", "VTG", "ZDA")))
        intended.append(Intended(t, lat, lon, 3, 44.0, speed, course, hdop, 16))
    return b"".join(out), intended


# --- 6. Kenwood FleetSync/NXDN base radio relaying a fleet ------------------------------------


@dataclass
class Heard:
    """What one relayed sentence should decode to: a radio's fix (lat set) and/or its status code."""

    radio: str
    time: datetime | None = None
    lat: float | None = None
    lon: float | None = None
    speed_kmh: float | None = None
    course: float | None = None
    status: int | None = None


def fleetsync_base() -> tuple[bytes, list[Intended | Heard]]:
    t0 = datetime(2024, 10, 15, 1, 0, 0, tzinfo=UTC)
    out = [
        header(
            "Kenwood base radio relaying FleetSync and NXDN GPS reports of a Polres fleet",
            "Kenwood NX-5000-series base radio, COM port Data + GPS Data Output, MAP HEADER KW1, 9600 8N1; "
            "FleetSync $PKLDS/$PKLSH/$PKLID and NXDN $PKNDS/$PKNSH/$PKNID, each framed STX ... ETX, "
            "plus the base radio's own $GPRMC every 30 s",
            "Polres Bone Bolango radio room, Suwawa, Bone Bolango, Gorontalo, Indonesia (lat 0.546, lon 123.163)",
            "2024-10-15",
            "Handhelds 100-1001 (status 10), 100-1002 (presses emergency: 99 twice, then back to 10), 100-1003 "
            "(short $PKLSH reports), car U00017 (NXDN, status 207), an unknown radio 100-1099, a void report, a "
            "zeroed position, a report with a bad checksum, and two status-only reports.",
        ),
    ]
    want: list[Intended | Heard] = []

    def framed(s: bytes) -> bytes:
        return b"\x02" + s.rstrip(b"\r\n") + b"\x03\r\n"

    base_lat, base_lon = 0.54612, 123.16307
    walk = {
        "100-1001": drive(0.55010, 123.15020, [(4.5, 40.0, 600)]),
        "100-1002": drive(0.52230, 123.17480, [(0.0, 0.0, 600)]),
        "100-1003": drive(0.56450, 123.18010, [(5.0, 300.0, 600)]),
        "U00017": drive(0.53120, 123.12050, [(38.0, 75.0, 600)]),
        "100-1099": drive(0.57700, 123.20500, [(0.0, 0.0, 600)]),
    }
    status = {"100-1001": 10, "100-1002": 10, "100-1003": 10, "U00017": 207, "100-1099": 10}
    for k in range(0, 300, 15):  # a report every 15 s, radios take turns (FleetSync "time mark")
        t = t0 + timedelta(seconds=k)
        if k % 30 == 0:  # the base radio's own GPS, fixed at the station
            e = EpochSpec(t, base_lat, base_lon, alt=62.0, speed_kmh=0.0, course=0.0, hdop=0.9, sats=10)
            out.append(epoch(e, ("RMC",)))
            # The first epoch is closed by the second (the decoder has not yet learnt that RMC
            # alone ends this receiver's cycle); from then on each is emitted as it arrives.
            if k == 0:
                first = Intended(t, base_lat, base_lon, 2, None, 0.0, 0.0, None, None)
            else:
                want.extend([first] if k == 30 else [])
                want.append(Intended(t, base_lat, base_lon, 2, None, 0.0, 0.0, None, None))
        for j, radio in enumerate(walk):
            ts = t + timedelta(seconds=2 * j + 1)
            lat, lon, speed, course = walk[radio][k]
            code = status[radio]
            if radio == "100-1002" and k in (90, 105):
                code = 99  # the emergency button: the radio repeats it until cleared
            if radio == "100-1003":
                out.append(framed(kenwood_sh(ts, lat, lon, radio)))
                want.append(Heard(radio, ts, lat, lon))
                continue
            if radio == "100-1001" and k == 60:
                out.append(framed(kenwood_ds(ts, lat, lon, radio, code, kmh=speed, course=course, valid=False)))
                want.append(Heard(radio, status=code))  # void: no fix, the status still counts
                continue
            if radio == "U00017" and k == 120:
                out.append(framed(kenwood_ds(ts, 0.0, 0.0, radio, code)))
                want.append(Heard(radio, status=code))  # zeroed position: not a fix
                continue
            if radio == "100-1001" and k == 150:
                bad = bytearray(kenwood_ds(ts, lat, lon, radio, code, kmh=speed, course=course))
                bad[20] ^= 0x02  # a flipped bit in the latitude: checksum error, nothing decoded
                out.append(framed(bytes(bad)))
                continue
            out.append(framed(kenwood_ds(ts, lat, lon, radio, code, kmh=speed, course=course)))
            kn = round(speed / 1.852, 1)
            want.append(Heard(radio, ts, lat, lon, kn * 1.852, round(course, 1), code))
        if k == 45:
            out.append(framed(kenwood_id("100-1003", 15)))
            want.append(Heard("100-1003", status=15))
        if k == 195:
            out.append(framed(kenwood_id("U00017", 210)))
            want.append(Heard("U00017", status=210))
    return b"".join(out), want


def verify_heard(name: str, got: list[dict[str, object]], want: list[Intended | Heard]) -> None:
    expanded: list[tuple[str, Intended | Heard]] = []
    for w in want:
        if isinstance(w, Intended):
            expanded.append(("fix", w))
            continue
        if w.lat is not None:
            expanded.append(("fix", w))
        if w.status is not None:
            expanded.append(("status", w))
    assert len(got) == len(expanded), f"{name}: {len(got)} records, intended {len(expanded)}"
    for g, (kind, w) in zip(got, expanded, strict=True):
        if kind == "status":
            assert isinstance(w, Heard) and g == {"radio": w.radio, "status": w.status}, (name, g, w)
            continue
        if isinstance(w, Intended):
            verify(name, [g], [w])
            assert "radio" not in g, (name, g)
            continue
        assert w.time is not None and w.lat is not None and w.lon is not None
        assert g["radio"] == w.radio and g["time"] == w.time.strftime("%Y-%m-%dT%H:%M:%S.000Z"), (name, g, w)
        assert abs(g["lat"] - w.lat) < 2e-6 and abs(g["lon"] - w.lon) < 2e-6, (name, g, w)  # type: ignore[operator]
        assert g["mode"] == 2 and g["alt"] is None and g["hdop"] is None and g["sats"] is None, (name, g, w)
        for f in ("speed_kmh", "course"):
            want_v, have = getattr(w, f), g[f]
            assert (want_v is None) == (have is None) and (want_v is None or abs(have - want_v) < 0.01), (name, f, g, w)  # type: ignore[operator]


CAPTURES: dict[str, Callable[[], tuple[bytes, list[Any]]]] = {
    "ublox-m8-gn-gorontalo-drive": ublox_gn_drive,
    "mtk-cold-start-no-fix-2d-3d": mtk_cold_start,
    "radio-noisy-stx-etx": noisy_radio,
    "kenwood-gga-only": kenwood_gga_only,
    "quectel-beidou-midnight": quectel_beidou,
    "kenwood-fleetsync-base": fleetsync_base,
}


def verify(name: str, got: list[dict[str, object]], intended: list[Intended]) -> None:
    assert len(got) == len(intended), f"{name}: {len(got)} fixes, intended {len(intended)}"
    for g, i in zip(got, intended, strict=True):
        iso = i.time.strftime("%Y-%m-%dT%H:%M:%S.") + f"{i.time.microsecond // 1000:03d}Z"
        assert g["time"] == iso, (name, g, i)
        assert abs(g["lat"] - i.lat) < 2e-6 and abs(g["lon"] - i.lon) < 2e-6, (name, g, i)  # type: ignore[operator]
        assert g["mode"] == i.mode and g["sats"] == i.sats, (name, g, i)
        for f, tol in (("alt", 0.051), ("speed_kmh", 0.01), ("course", 0.006), ("hdop", 0.006)):
            want, have = getattr(i, f), g[f]
            assert (want is None) == (have is None), (name, f, g, i)
            assert want is None or abs(have - want) <= tol, (name, f, g, i)  # type: ignore[operator]


def main() -> None:
    for name, build in CAPTURES.items():
        data, intended = build()
        path = HERE / f"{name}.nmea"
        path.write_bytes(data)
        got = decode_capture(path)
        if name == "kenwood-fleetsync-base":
            verify_heard(name, got, intended)
        else:
            verify(name, got, intended)
        lines = [json.dumps(d, separators=(", ", ": ")) for d in got]
        (HERE / f"{name}.expected.jsonl").write_text("\n".join(lines) + "\n")
        print(f"{path.name}: {len(data)} bytes, {len(got)} fixes")


if __name__ == "__main__":
    main()

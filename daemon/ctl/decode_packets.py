"""`alkomctl decode --format lrrp|hytera|lip|owntracks`: a file of packets read with the daemon's decoders and gates.

FILE holds one packet per line: hexadecimal for the binary formats (the UDP payload for LRRP,
ARS and Hytera; the SDS user data, protocol identifier 0x0A first, for LIP), one JSON object for
OwnTracks (a `# topic: owntracks/<user>/<device>` comment names the sender of the next one, or
`# headers: X-Limit-U=<user>; X-Limit-D=<device>` as an HTTP POST does). A LIP
line may end with its length in bits, as a PEI states it; a `# format: bare-lip` line says the
file's LIP PDUs come without the protocol identifier.
Other `#` lines and blank lines are comments. Each packet that carries a position is one row:
the verdict of the daemon's gates (`ok`, or the gate that rejects it), the time where the packet
carries one, the position, the radio where the packet names one, and the protocol's extras.
Packets without a position (requests, answers, ARS registrations, a report without a GPS fix)
are one line each in the text form, and counted; packets that do not decode are reported on
standard error with their line number.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TextIO

from alkomd.daemon.exit_codes import EX_NOINPUT, EX_OK
from alkomd.daemon.records import utc_iso
from alkomd.drivers import hytera, location_gate, lrrp, lrrp_ars, owntracks, tetra_lip

FORMATS = ("nmea", "lrrp", "hytera", "lip", "owntracks")
VERDICTS = {  # each decoder's reject reasons, as the short words of `alkomctl decode`
    "the source marks the position invalid (no GPS fix)": "void",
    "position 0,0": "zero",
    "coordinates out of range": "range",
    "no or invalid fix time": "no-time",
    "time of position reserved or impossible": "no-time",
    "fix time in the future": "future",
    "location arc: the coordinates are the arc's centre, not the terminal": "arc",
    "position error above 200 km": "error",
    "no time (tst)": "no-time",
    "no-radio": "no-radio",
}


class PacketError(ValueError):
    """A line that is not a packet of the format (not hexadecimal, not JSON, not decodable)."""


@dataclass(frozen=True)
class Row:
    """One decoded packet: a position with its verdict, or (`verdict` "-") what the packet is instead."""

    verdict: str
    fields: dict[str, object] = field(default_factory=dict)  # lat, lon, time, radio, then the protocol's extras
    note: str = ""  # a packet without a position: what it is

    def json(self) -> str:
        return json.dumps({**self.fields, "verdict": self.verdict}, separators=(",", ":"))

    def line(self) -> str:
        if not self.fields:
            return f"{'-':<7} {self.note}"
        f = self.fields
        extras = "  ".join(f"{k} {v}" for k, v in f.items() if k not in ("lat", "lon", "time") and v is not None)
        return f"{self.verdict:<7} {f.get('time') or '-':<24}  {f['lat']:11.7f} {f['lon']:12.7f}  {extras}".rstrip()


def _verdict(reject: object) -> str:
    return "ok" if reject is None else VERDICTS.get(str(reject), str(reject))


def _row(reject: object, lat: float | None, lon: float | None, when: datetime | None, **extras: object) -> Row | None:
    if lat is None or lon is None:
        return None
    fields: dict[str, object] = {"lat": round(lat, 7), "lon": round(lon, 7)}
    if when is not None:
        fields["time"] = utc_iso(when)
    fields.update({k: round(v, 2) if isinstance(v, float) else v for k, v in extras.items() if v is not None})
    return Row(_verdict(reject), fields)


def lrrp_row(data: bytes, now: datetime) -> Row:
    try:
        m = lrrp.decode(data)
    except lrrp.LrrpError as exc:
        try:
            ars = lrrp_ars.decode(data)
        except lrrp_ars.ArsError:
            raise PacketError(f"neither LRRP ({exc}) nor ARS") from None
        return Row("-", note=f"ARS {ars.kind} radio {ars.radio_id or '?'}")
    kind = m.kind.name.lower().replace("_", "-")
    if isinstance(m, lrrp.LocationRequest):
        return Row("-", note=f"LRRP {kind}")
    p = m.position(now)
    reject = location_gate.judge(p, now) if p is not None else None
    row = _row(reject, m.lat, m.lon, m.time, mode=p.mode if p else None, alt=m.alt_m, speed_kmh=m.speed_kmh,
               course=m.course, radius_m=m.radius_m, result=m.result, kind=kind)
    return row or Row("-", note=f"LRRP {kind} without a position" + (f" (result {m.result:#04x})" if m.result is not None else ""))


def hytera_row(data: bytes, now: datetime) -> Row:
    try:
        m = hytera.decode(data)
    except hytera.HyteraError as exc:
        raise PacketError(str(exc)) from None
    kind = m.opcode.name.lower().replace("_", "-")
    p = m.position()
    if p is None or m.gps is None:
        return Row("-", note=f"Hytera {kind} radio {m.radio}" + (f" result {m.result}" if m.result is not None else ""))
    row = _row(location_gate.judge(p, now), p.lat, p.lon, p.time, radio=m.radio, speed_kmh=p.speed_kmh, course=p.course,
               result=m.result, rssi=m.rssi, emergency=True if m.emergency else None, kind=kind)
    return row or Row("-", note=f"Hytera {kind} radio {m.radio} without a position" + ("" if m.gps.valid else " (status V)"))


def lip_row(data: bytes, now: datetime, bits: int | None = None, bare: bool = False) -> Row:
    try:
        r = tetra_lip.decode_lip(data, bits) if bare else tetra_lip.decode_sds(data, bits)
    except tetra_lip.LipError as exc:
        raise PacketError(str(exc)) from None
    mapped = tetra_lip.to_records(r, device="capture", radio="", received=now, received_mono=0.0)
    when = mapped.fix.time if mapped.fix is not None else None
    if when is None and r.time_of_position is not None:
        when = tetra_lip.position_time(*r.time_of_position, now)
    if r.time_of_position is None:
        when = None  # placed at reception by the daemon: the packet carries no time
    row = _row(mapped.reject, r.lat, r.lon, when, accuracy_m=r.accuracy_m, alt=r.altitude_m, speed_kmh=r.speed_kmh,
               course=r.course, reason=r.reason_text, emergency=True if r.emergency else None,
               kind="long" if r.long else "short")
    return row or Row("-", note=f"LIP {'long' if r.long else 'short'} report without a position")


def owntracks_row(line: bytes, topic: str | None, now: datetime, headers: dict[str, str] | None = None) -> Row:
    try:
        m = owntracks.decode(line, topic=topic, headers=headers)
    except owntracks.OwnTracksError as exc:
        if "no user/device" not in str(exc):
            raise PacketError(str(exc)) from None
        m = owntracks.decode(line, topic="owntracks/-/-")  # no topic comment: the packet names no sender
    radio = None if m.radio == "-/-" else m.radio
    if isinstance(m, owntracks.Other):
        return Row("-", note=f"OwnTracks {m.kind}" + (f" from {radio}" if radio else ""))
    _, gate = owntracks.to_fix(m, device="capture", received=now, received_mono=0.0)
    reject: object = gate
    if radio is None:
        reject = "no-radio"  # the daemon refuses a report that names no sender: shown, not accepted
    row = _row(reject, m.lat, m.lon, m.tst, radio=radio, accuracy_m=m.acc, alt=m.alt, speed_kmh=m.vel, course=m.cog,
               batt=m.batt, tid=m.tid, trigger=m.trigger)
    return row or Row("-", note="OwnTracks location without a position" + (f" from {radio}" if radio else ""))


BINARY: dict[str, Callable[[bytes, datetime], Row]] = {"lrrp": lrrp_row, "hytera": hytera_row, "lip": lip_row}


def packet(text: bytes) -> tuple[bytes, int | None]:
    """A hexadecimal line (spaces and colons between bytes allowed) and, for LIP, the bit length a PEI states after it
    (`0A0BA7D5B95BC50AFFE16 84`: an odd digit count is padded)."""
    try:
        words = text.decode("ascii").split()
        bits = int(words.pop()) if len(words) > 1 and words[-1].isdecimal() and len(words[-1]) <= 4 else None
        digits = "".join(words).replace(":", "")
        if bits is None and len(digits) % 2:
            bits = len(digits) * 4
        return bytes.fromhex(digits + "0" * (len(digits) % 2)), bits
    except (UnicodeDecodeError, ValueError):
        raise PacketError("not hexadecimal") from None


def rows(fmt: str, lines: Iterator[bytes], now: datetime, err: TextIO) -> Iterator[Row]:
    """The rows of a packet file; a line that is not a packet is reported on `err` with its number and skipped."""
    topic: str | None = None
    headers: dict[str, str] = {}  # an HTTP POST's X-Limit-U/-D ('# headers: X-Limit-U=jjolie; X-Limit-D=myphone')
    bare = False  # LIP PDUs without the protocol identifier (a '# format: bare-lip' line)
    for n, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text:
            continue
        if text.startswith(b"#"):
            key, _, value = text[1:].decode("utf-8", "replace").partition(":")
            if fmt == "owntracks" and key.strip().lower() == "topic":
                topic = value.strip()
            if fmt == "owntracks" and key.strip().lower() == "headers":
                headers = dict(h.strip().split("=", 1) for h in value.split(";") if "=" in h)
            bare = bare or (key.strip().lower() == "format" and value.strip() == "bare-lip")
            continue
        try:
            if fmt == "owntracks":
                yield owntracks_row(text, topic, now, headers)
                topic, headers = None, {}
            else:
                data, bits = packet(text)
                yield lip_row(data, now, bits, bare) if fmt == "lip" else BINARY[fmt](data, now)
        except PacketError as exc:
            print(f"alkomctl decode: line {n}: {exc}", file=err)
            yield Row("bad", note=str(exc))


def decode_packets(path: str, fmt: str, as_json: bool, ok_only: bool, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """`alkomctl decode --format FMT`: one line (or JSON object) per packet with a position; 0, or 66 cannot read `path`."""
    try:
        src = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        print(f"alkomctl decode: cannot read {path}: {exc.strerror}", file=err)
        return EX_NOINPUT
    counts: Counter[str] = Counter()
    with src:
        for row in rows(fmt, iter(src.readline, b""), datetime.now(UTC), err):
            counts[row.verdict] += 1
            if row.verdict == "bad" or (ok_only and row.verdict != "ok") or (as_json and not row.fields):
                continue
            out.write((row.json() if as_json else row.line()) + "\n")
    fixes = {v: n for v, n in counts.most_common() if v not in ("-", "bad")}
    verdicts = ", ".join(f"{v}: {n}" for v, n in fixes.items())
    print(f"{sum(counts.values())} packets: {sum(fixes.values())} with a position" + (f" ({verdicts})" if verdicts else "")
          + f", {counts['-']} without one, {counts['bad']} not {fmt}", file=err)
    return EX_OK

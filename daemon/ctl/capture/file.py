"""The capture file format (tests/captures/, gpsd's logs): writing its header and `#t=` marks, reading it back.

A capture is the format of `tests/captures/` (gpsd's log files): `#` lines are metadata that
`alkomctl decode` skips (`# Date:` dates GGA-only radios), then the bytes exactly as read,
line by line. Capture adds `#t=SECONDS` lines, each giving the arrival time (since `# Start:`)
of the lines after it, written at the start of each burst, so that replay can keep the pace:

    # Device: R2-12 Kenwood NX-3220, GPS on the accessory port
    # Port: /dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K4Z9B-if00-port0
    # Baud: 9600 8N1
    # Date: 2024-10-15
    # Start: 2024-10-15T01:00:00.000Z
    #t=0.412
    $GPRMC,010000.00,A,...

`plan` says when replay sends each data line: at the `#t=` times, else the NMEA times of the
sentences, else at a fixed sentence rate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import BinaryIO

from alkomd.daemon import __version__
from alkomd.daemon.ctl.common import FRAMINGS
from alkomd.daemon.records import utc_iso

MARK_GAP_S = 0.1  # a burst that starts this long after the previous bytes gets a #t= line
MARK = re.compile(rb"^#t=(\d+(?:\.\d+)?)\s*$")
HEADER = re.compile(rb"^# *([A-Za-z-]+): *(.*?)\s*$")
DATE_HEADER = re.compile(rb"^# *Date: *(\d{4}-\d{2}-\d{2})", re.M)
_TIMED = re.compile(rb"\$(?:[A-Z]{2}(GGA|RMC|ZDA|GLL)|P(KLDS|KNDS|KLSH|KNSH)),([^*\r\n]*)")
_TOD = re.compile(rb"^(\d{2})(\d{2})(\d{2}(?:\.\d+)?)$")
DEFAULT_RATE = 10.0  # lines per second when a capture has neither #t= lines nor NMEA times
MAX_GAP_S = 60.0


# --- writing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptureInfo:
    """What goes into a capture's header."""

    port: str
    baud: int
    framing: str
    seconds: float
    device: str = ""
    place: str = ""
    notes: str = ""
    name: str = ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def header(info: CaptureInfo, start: datetime) -> bytes:
    """The metadata header (tests/captures format, plus Port, Baud, Start and how it was made)."""
    lines = [
        f"# Name: {_one_line(info.name) or 'capture of ' + (_one_line(info.device) or info.port)}",
        f"# Device: {_one_line(info.device) or 'unknown (describe it with --device)'}",
        f"# Port: {info.port}",
        f"# Baud: {info.baud} {info.framing}",
        f"# Place: {_one_line(info.place) or 'unknown (say where with --place)'}",
        f"# Date: {start.date().isoformat()}",
        f"# Start: {utc_iso(start)}",
        f"# Notes: {_one_line(info.notes) or '-'}",
        f"# Captured-with: alkomctl {__version__} capture, {info.seconds:g} s",
        "# Timing: a '#t=SECONDS' line gives the arrival time, since Start, of the lines after it",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


class CaptureWriter:
    """Writes chunks as read, with a `#t=` line before each burst that starts at a line start."""

    def __init__(self, out: BinaryIO, start_mono: float) -> None:
        self.out = out
        self.start_mono = start_mono
        self.bytes = 0
        self.lines = 0
        self.marks = 0
        self._at_line_start = True
        self._last = -1.0  # mono of the previous chunk

    def chunk(self, data: bytes, mono: float) -> None:
        if not data:
            return
        if self._at_line_start and (self._last < 0 or mono - self._last >= MARK_GAP_S):
            self.out.write(f"#t={max(0.0, mono - self.start_mono):.3f}\n".encode())
            self.marks += 1
        self.out.write(data)
        self.out.flush()
        self.bytes += len(data)
        self.lines += data.count(b"\n")
        self._at_line_start = data.endswith(b"\n")
        self._last = mono

    def end(self, trailer: str) -> None:
        if not self._at_line_start:
            self.out.write(b"\n")
        self.out.write(f"# End: {_one_line(trailer)}\n".encode())
        self.out.flush()


# --- reading -------------------------------------------------------------------------------------


def strip_comments(chunk: bytes) -> bytes:
    """Drop lines that start with `#` (capture metadata headers and notes)."""
    if b"#" not in chunk:
        return chunk
    return b"\n".join(line for line in chunk.split(b"\n") if not line.startswith(b"#"))


def capture_day(head: bytes) -> date | None:
    """The `# Date: YYYY-MM-DD` of a capture's metadata header, if it has one."""
    m = DATE_HEADER.search(head)
    if m is None:
        return None
    try:
        return date.fromisoformat(m.group(1).decode())
    except ValueError:
        return None


@dataclass(frozen=True)
class Line:
    offset_s: float  # when to send it, at speed 1, since the start
    data: bytes


@dataclass(frozen=True)
class Plan:
    lines: tuple[Line, ...]
    pace: str  # how the offsets were found
    baud: int | None  # from the `# Baud:` header
    framing: str | None

    @property
    def duration_s(self) -> float:
        return self.lines[-1].offset_s if self.lines else 0.0


def _tod_s(field: bytes) -> float | None:
    m = _TOD.match(field)
    if m is None:
        return None
    h, mi, s = int(m.group(1)), int(m.group(2)), float(m.group(3))
    if h > 23 or mi > 59 or s >= 61:
        return None
    return h * 3600 + mi * 60 + s


def line_time(data: bytes) -> float | None:
    """Seconds of the day of the first timed sentence in a line (GGA, RMC, GLL, ZDA, Kenwood), or None."""
    for m in _TIMED.finditer(data):
        fields = m.group(3).split(b",")
        index = 4 if (m.group(1) or m.group(2)) in (b"GLL", b"KLSH", b"KNSH") else 0  # the others: the first field
        if index < len(fields):
            t = _tod_s(fields[index])
            if t is not None:
                return t
    return None


def plan(data: bytes, rate: float = DEFAULT_RATE, max_gap_s: float = MAX_GAP_S) -> Plan:
    """When to send each data line of a capture (see the module docstring)."""
    marks: list[float | None] = []
    lines: list[bytes] = []
    current: float | None = None
    baud: int | None = None
    framing: str | None = None
    raw_lines = data.split(b"\n")
    for i, raw in enumerate(raw_lines):
        if i == len(raw_lines) - 1 and not raw:
            break
        full = raw + b"\n" if i < len(raw_lines) - 1 else raw
        m = MARK.match(raw)
        if m is not None:
            current = float(m.group(1))
            continue
        if raw.startswith(b"#"):
            h = HEADER.match(raw)
            if h is not None and h.group(1).lower() == b"baud":
                parts = h.group(2).split()
                if parts and parts[0].isdigit():
                    baud = int(parts[0])
                if len(parts) > 1 and parts[1].decode("ascii", "replace") in FRAMINGS:
                    framing = parts[1].decode()
            continue
        marks.append(current)
        lines.append(full)
    if any(m is not None for m in marks):
        offsets: list[float] = []
        offset, prev_mark = 0.0, None
        for mark in marks:
            if mark is not None:
                if prev_mark is not None:
                    offset += min(max(0.0, mark - prev_mark), max_gap_s)
                prev_mark = mark
            offsets.append(offset)
        return Plan(tuple(Line(o, d) for o, d in zip(offsets, lines, strict=True)), "the capture's #t= times", baud, framing)
    times = [line_time(d) for d in lines]
    if any(t is not None for t in times):
        offsets = []
        offset, prev_t = 0.0, None
        for t in times:
            if t is not None:
                if prev_t is not None:
                    delta = (t - prev_t) % 86400
                    offset += 0.0 if delta > 43200 else min(delta, max_gap_s)  # a jump back: no wait
                prev_t = t
            offsets.append(offset)
        return Plan(tuple(Line(o, d) for o, d in zip(offsets, lines, strict=True)), "the NMEA times", baud, framing)
    return Plan(tuple(Line(i / rate, d) for i, d in enumerate(lines)), f"a rate of {rate:g} lines/s", baud, framing)

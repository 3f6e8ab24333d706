"""`alkomctl capture` and `alkomctl replay`: record a port's raw bytes with a metadata header, and play them back.

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

Replay writes the data lines to a pty it creates (`pty:PATH`, like gpsfake: point a daemon's
`url` at PATH), a serial port, or a `socket://` URL, at the recorded pace: the `#t=` times,
else the NMEA times of the sentences, else a fixed sentence rate; `--speed` multiplies it
(`--speed 0`: as fast as the reader takes it).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol, TextIO

import serial
from rich.console import Console
from rich.text import Text

from alkomd.daemon import __version__
from alkomd.daemon.ctl.serial_port import PortError, close_quietly, open_for_tool, printable, stop_on_signals
from alkomd.daemon.exit_codes import EX_CANTCREAT, EX_NOINPUT, EX_OK, EX_PROBLEM, EX_UNAVAILABLE
from alkomd.daemon.records import utc_iso, utc_now
from alkomd.drivers.nmea import Decoder
from alkomd.drivers.nmea_serial import FRAMINGS, open_port, port_hint
from alkomd.drivers.simulator import PtyGps

MARK_GAP_S = 0.1  # a burst that starts this long after the previous bytes gets a #t= line
MARK = re.compile(rb"^#t=(\d+(?:\.\d+)?)\s*$")
HEADER = re.compile(rb"^# *([A-Za-z-]+): *(.*?)\s*$")
_TIMED = re.compile(rb"\$(?:[A-Z]{2}(GGA|RMC|ZDA|GLL)|P(KLDS|KNDS|KLSH|KNSH)),([^*\r\n]*)")
_TOD = re.compile(rb"^(\d{2})(\d{2})(\d{2}(?:\.\d+)?)$")
DEFAULT_RATE = 10.0  # lines per second when a capture has neither #t= lines nor NMEA times
MAX_GAP_S = 60.0
WAIT_FOR_READER_S = 60.0
SETTLE_S = 0.5  # after a reader opened our pty: pyserial flushes its input right after opening
HOLD_S = 1.0


# --- capture -------------------------------------------------------------------------------------


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


def capture(
    info: CaptureInfo,
    path: Path,
    force: bool = False,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """`alkomctl capture`: 0 valid sentences captured, 1 none, 73 cannot create FILE, 66/69/75/77 port problems.

    The port is opened first, so a port that cannot be read leaves FILE as it was (with --force too).
    """
    exists = f"alkomctl capture: {path} exists; choose another name or add --force"
    if os.path.lexists(path) and not force:
        print(exists, file=err)
        return EX_CANTCREAT
    try:
        port = open_for_tool(info.port, info.baud, info.framing)
    except PortError as exc:
        print(f"alkomctl capture: {exc}", file=err)
        return exc.code
    try:
        fh = path.open("wb" if force else "xb")
    except OSError as exc:
        close_quietly(port)
        print(exists if isinstance(exc, FileExistsError) else f"alkomctl capture: cannot create {path}: {exc.strerror}", file=err)
        return EX_CANTCREAT
    with fh:
        decoder = Decoder("capture")
        start = utc_now()
        start_mono = time.monotonic()
        fh.write(header(info, start))
        writer = CaptureWriter(fh, start_mono)
        stop = threading.Event()
        lost = ""
        print(f"alkomctl capture: recording {info.port} at {info.baud} {info.framing} for {info.seconds:g} s into {path} "
              "(Ctrl-C stops early)", file=err, flush=True)  # fmt: skip
        with stop_on_signals(stop):
            try:
                while not stop.is_set():
                    now = time.monotonic()
                    if now - start_mono >= info.seconds:
                        break
                    try:
                        data = port.read(port.in_waiting or 1)
                    except (serial.SerialException, OSError) as exc:
                        lost = port_hint(exc)
                        break
                    if data:
                        now = time.monotonic()
                        writer.chunk(data, now)
                        decoder.feed(data, utc_now(), now)
            finally:
                close_quietly(port)
        decoder.flush()
        elapsed = time.monotonic() - start_mono
        summary = (
            f"{elapsed:.1f} s, {writer.bytes} bytes, {writer.lines} lines, {decoder.sentences} valid sentences, "
            f"{decoder.checksum_errors} bad checksums, {decoder.garbage_bytes} garbage bytes, {decoder.fixes} fixes"
        )
        writer.end(summary + (f"; port lost: {lost}" if lost else ""))
    if as_json:
        result = {"file": str(path), "port": info.port, "baud": info.baud, "framing": info.framing,
                  "seconds": round(elapsed, 2), "bytes": writer.bytes, "lines": writer.lines, "sentences": decoder.sentences,
                  "checksum_errors": decoder.checksum_errors, "garbage_bytes": decoder.garbage_bytes, "fixes": decoder.fixes,
                  "lost": lost}  # fmt: skip
        out.write(json.dumps(result) + "\n")
    else:
        console = Console(file=out, highlight=False, soft_wrap=True, markup=False)
        line = Text(f"{path}", style="bold")
        line.append(f": {summary}", style="" if decoder.sentences else "red")
        console.print(line)
    if lost:
        print(f"alkomctl capture: lost {info.port}: {lost} (what came before is kept)", file=err)
        return EX_UNAVAILABLE
    if decoder.sentences == 0:
        hint = (
            "no byte at all: is the device on, its output enabled, the cable right?"
            if writer.bytes == 0
            else f"no valid sentence at {info.baud} baud: try alkomctl baud {info.port}"
        )
        print(f"hint: {hint}", file=err)
        return EX_PROBLEM
    return EX_OK


# --- replay --------------------------------------------------------------------------------------


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


class Sink(Protocol):
    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class PtySink:
    """Replay into a pty we create (like gpsfake): waits for a reader, writes everything it takes."""

    def __init__(self, link: Path, wait_s: float, stop: threading.Event, err: TextIO) -> None:
        try:
            self.pty = PtyGps(link)
        except OSError as exc:  # a file that is not a symlink there, a folder we may not write
            raise PortError(f"cannot create {link}: {exc.strerror or exc}", EX_CANTCREAT) from exc
        self.stop = stop
        self.wait_s = wait_s
        print(f"alkomctl replay: {link} -> {self.pty.slave_name}; waiting up to {wait_s:g} s for a program to open it "
              f'(e.g. alkomd with url = "{link}")', file=err, flush=True)  # fmt: skip
        end = time.monotonic() + wait_s
        while self.pty.write(b"\n") == 0:  # a lone newline is nothing to any NMEA reader
            if stop.is_set() or time.monotonic() > end:
                self.pty.close()
                raise PortError(f"nobody opened {link} within {wait_s:g} s", EX_UNAVAILABLE)
            stop.wait(0.05)
        stop.wait(SETTLE_S)

    def write(self, data: bytes) -> None:
        end = time.monotonic() + self.wait_s
        while data and not self.stop.is_set():
            n = self.pty.write(data)
            data = data[n:]
            if data:
                if time.monotonic() > end:
                    raise PortError("the reader stopped reading (closed the port?)", EX_UNAVAILABLE)
                time.sleep(0.005)

    def close(self) -> None:
        self.pty.close()


class SerialSink:
    def __init__(self, port: serial.SerialBase) -> None:
        self.port = port

    def write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise PortError(f"writing failed: {port_hint(exc)}", EX_UNAVAILABLE) from exc

    def close(self) -> None:
        try:
            self.port.flush()
        except (serial.SerialException, OSError):
            pass
        close_quietly(self.port)


def open_sink(target: str, baud: int, framing: str, wait_s: float, stop: threading.Event, err: TextIO) -> Sink:
    if target.startswith("pty:"):
        return PtySink(Path(target[4:]), wait_s, stop, err)
    if "://" in target:
        try:
            return SerialSink(open_port(target, baud, framing, exclusive=False, timeout=1.0))
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortError(f"{target}: {port_hint(exc)}", EX_UNAVAILABLE) from exc
    return SerialSink(open_for_tool(target, baud, framing, timeout=1.0))


def _shown(line: bytes) -> str:
    return printable(line.rstrip(b"\r\n"))


def replay(
    path: Path,
    target: str,
    speed: float = 1.0,
    rate: float = DEFAULT_RATE,
    max_gap_s: float = MAX_GAP_S,
    baud: int | None = None,
    framing: str | None = None,
    wait_s: float = WAIT_FOR_READER_S,
    hold_s: float = HOLD_S,
    dry_run: bool = False,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """`alkomctl replay`: 0 played, 66 no FILE, 69 nobody read it or the target failed, 73 cannot create the pty's
    link, 75/77 target busy/denied."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"alkomctl replay: cannot read {path}: {exc.strerror}", file=err)
        return EX_NOINPUT
    p = plan(data, rate, max_gap_s)
    scale = 0.0 if speed == 0 else 1.0 / speed
    pace = "as fast as possible" if speed == 0 else f"{p.duration_s * scale:.1f} s at x{speed:g}, paced by {p.pace}"
    if dry_run:
        if as_json:
            for ln in p.lines:
                out.write(json.dumps({"at_s": round(ln.offset_s * scale, 3), "line": _shown(ln.data)}) + "\n")
        else:
            print(f"{len(p.lines)} lines, {pace}", file=out)
            for ln in p.lines:
                out.write(f"{ln.offset_s * scale:9.3f}  {_shown(ln.data)}\n")
        return EX_OK
    line_baud = baud or p.baud or 9600
    line_framing = framing or p.framing or "8N1"
    stop = threading.Event()
    sent = nbytes = 0
    with stop_on_signals(stop):
        try:
            sink = open_sink(target, line_baud, line_framing, wait_s, stop, err)
        except PortError as exc:
            print(f"alkomctl replay: {exc}", file=err)
            return exc.code
        print(f"alkomctl replay: {path}: {len(p.lines)} lines to {target}, {pace}", file=err, flush=True)
        start = time.monotonic()
        try:
            for ln in p.lines:
                if stop.is_set():
                    break
                delay = start + ln.offset_s * scale - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    break
                sink.write(ln.data)
                sent += 1
                nbytes += len(ln.data)
            if not stop.is_set() and target.startswith("pty:"):
                stop.wait(hold_s)  # let the reader take the last lines before the port vanishes
        except PortError as exc:
            print(f"alkomctl replay: {exc} after {sent} lines", file=err)
            return exc.code
        finally:
            sink.close()
    elapsed = time.monotonic() - start
    result = {"file": str(path), "target": target, "lines": sent, "of": len(p.lines), "bytes": nbytes,
              "seconds": round(elapsed, 2), "pace": p.pace, "speed": speed, "interrupted": stop.is_set()}  # fmt: skip
    if as_json:
        out.write(json.dumps(result) + "\n")
    else:
        style = "yellow" if sent < len(p.lines) else "green"
        Console(file=out, highlight=False, soft_wrap=True, markup=False).print(
            Text(f"sent {sent} of {len(p.lines)} lines ({nbytes} bytes) to {target} in {elapsed:.1f} s", style=style)
        )
    return EX_OK

"""`alkomctl replay`: play a capture into a pty, a serial port or a socket:// URL at its recorded pace.

Replay writes the data lines to a pty it creates (`pty:PATH`, like gpsfake: point a daemon's
`url` at PATH), a serial port, or a `socket://` URL, at the pace `file.plan` finds; `--speed`
multiplies it (`--speed 0`: as fast as the reader takes it).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Protocol, TextIO

import serial
from rich.console import Console
from rich.text import Text

from alkomd.daemon.ctl.capture.file import DEFAULT_RATE, MAX_GAP_S, capture_day, plan
from alkomd.daemon.ctl.capture.retime import Retimer
from alkomd.daemon.ctl.serial_port import PortError, close_quietly, open_for_tool, printable, stop_on_signals
from alkomd.daemon.exit_codes import EX_CANTCREAT, EX_NOINPUT, EX_OK, EX_UNAVAILABLE
from alkomd.daemon.records import utc_now
from alkomd.drivers.nmea_serial import open_port, port_hint
from alkomd.drivers.simulator import PtyGps

WAIT_FOR_READER_S = 60.0
SETTLE_S = 0.5  # after a reader opened our pty: pyserial flushes its input right after opening
HOLD_S = 1.0


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
              f'(e.g. alkomd with url = "{link}")', file=err, flush=True)
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
    retime: bool = False,
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
    retimer = Retimer(data, utc_now(), capture_day(data[:4096]) or utc_now().date()) if retime else None

    def moved(line: bytes) -> bytes:
        return retimer.line(line) if retimer is not None else line

    pace = "as fast as possible" if speed == 0 else f"{p.duration_s * scale:.1f} s at x{speed:g}, paced by {p.pace}"
    if dry_run:
        if as_json:
            for ln in p.lines:
                out.write(json.dumps({"at_s": round(ln.offset_s * scale, 3), "line": _shown(moved(ln.data))}) + "\n")
        else:
            print(f"{len(p.lines)} lines, {pace}", file=out)
            for ln in p.lines:
                out.write(f"{ln.offset_s * scale:9.3f}  {_shown(moved(ln.data))}\n")
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
        if retime:  # the first fix becomes now, when it is sent
            retimer = Retimer(data, utc_now(), capture_day(data[:4096]) or utc_now().date())
        start = time.monotonic()
        try:
            for ln in p.lines:
                if stop.is_set():
                    break
                delay = start + ln.offset_s * scale - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    break
                sink.write(moved(ln.data))
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
              "seconds": round(elapsed, 2), "pace": p.pace, "speed": speed, "interrupted": stop.is_set()}
    if as_json:
        out.write(json.dumps(result) + "\n")
    else:
        style = "yellow" if sent < len(p.lines) else "green"
        Console(file=out, highlight=False, soft_wrap=True, markup=False).print(
            Text(f"sent {sent} of {len(p.lines)} lines ({nbytes} bytes) to {target} in {elapsed:.1f} s", style=style)
        )
    return EX_OK

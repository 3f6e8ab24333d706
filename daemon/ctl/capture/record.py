"""`alkomctl capture`: record what a port says, as read, into a capture file."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

import serial
from rich.console import Console
from rich.text import Text

from alkomd.daemon.ctl.capture.file import CaptureInfo, CaptureWriter, header
from alkomd.daemon.ctl.serial_port import PortError, close_quietly, open_for_tool, stop_on_signals
from alkomd.daemon.exit_codes import EX_CANTCREAT, EX_OK, EX_PROBLEM, EX_UNAVAILABLE
from alkomd.daemon.records import utc_now
from alkomd.drivers.nmea import Decoder
from alkomd.drivers.nmea_serial import port_hint


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
              "(Ctrl-C stops early)", file=err, flush=True)
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
                  "lost": lost}
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

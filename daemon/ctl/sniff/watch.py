"""`alkomctl sniff`'s loop: read the port as the daemon would open it, feed the sniffer, show it until Ctrl-C."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

import serial
from rich.console import Console
from rich.live import Live

from alkomd.daemon.ctl.serial_port import PortError, close_quietly, open_for_tool, stop_on_signals
from alkomd.daemon.ctl.sniff.sniffer import Heard, Sniffer
from alkomd.daemon.ctl.sniff.view import SniffSetup, hint, json_objects, plain_line, render, summary, summary_line
from alkomd.daemon.exit_codes import EX_OK, EX_PROBLEM, EX_UNAVAILABLE
from alkomd.daemon.records import Fix, RadioStatus, utc_now
from alkomd.drivers.nmea_serial import port_hint

REFRESH_S = 0.25


def sniff(
    port: str,
    baud: int = 9600,
    framing: str = "8N1",
    raw: bool = False,
    seconds: float | None = None,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """`alkomctl sniff`: 0 valid sentences seen, 1 none, 66/69/75/77 the port could not be read."""
    setup = SniffSetup(port, baud, framing, raw, seconds)
    try:
        ser = open_for_tool(port, baud, framing)
    except PortError as exc:
        print(f"alkomctl sniff: {exc}", file=err)
        return exc.code
    sn = Sniffer()
    stop = threading.Event()
    started = time.monotonic()
    lost = ""
    live_view = not as_json and out.isatty()
    console = Console(file=out, highlight=False, markup=False)

    def emit(items: list[Heard | Fix | RadioStatus]) -> None:
        if as_json:
            for item in items:
                for o in json_objects(item, raw):
                    out.write(json.dumps(o, separators=(",", ":")) + "\n")
            out.flush()
        elif not live_view:
            for item in items:
                out.write(plain_line(item, raw) + "\n")
            out.flush()

    hinted = False

    def step(update: Callable[[], None] | None) -> None:
        nonlocal lost, hinted
        next_draw = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if seconds is not None and now - started >= seconds:
                break
            try:
                chunk = ser.read(ser.in_waiting or 1)
            except (serial.SerialException, OSError) as exc:
                lost = port_hint(exc)
                break
            now = time.monotonic()
            emit(sn.feed(chunk, utc_now(), now) if chunk else sn.idle(now))
            if update is not None and now >= next_draw:
                update()
                next_draw = now + REFRESH_S
            if not live_view and not as_json and not hinted:
                text = hint(sn, setup, now - started)
                if text:
                    hinted = True
                    print(f"hint: {text}", file=err, flush=True)

    with stop_on_signals(stop):
        try:
            if live_view:
                with Live(console=console, refresh_per_second=1 / REFRESH_S, transient=False, redirect_stderr=False) as live:

                    def update() -> None:
                        now = time.monotonic()
                        live.update(render(sn, setup, now - started, now, console.size.height))

                    update()
                    step(update)
                    emit(sn.finish(time.monotonic()))
                    update()
            else:
                step(None)
                emit(sn.finish(time.monotonic()))
        finally:
            close_quietly(ser)
    elapsed = time.monotonic() - started
    if as_json:
        out.write(json.dumps(summary(sn, elapsed), separators=(",", ":")) + "\n")
        out.flush()
    print(f"alkomctl sniff: {summary_line(sn, elapsed)}", file=err)
    if lost:
        print(f"alkomctl sniff: lost {port}: {lost}", file=err)
        return EX_UNAVAILABLE
    text = hint(sn, setup, elapsed, final=True)
    if text and (live_view or as_json or not hinted):
        print(f"hint: {text}", file=err)
    return EX_OK if sn.valid else EX_PROBLEM

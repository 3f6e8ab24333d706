"""A simulated TETRA terminal on a pseudo-terminal: answers AT commands, relays its radios' LIP reports.

It stands in for a terminal wired to the station by its PEI cable: every `AT...` command it is
sent (ended by CR) is answered `OK` (the registration `AT+CTSP=1,3,10` is remembered: until it
comes, no report is relayed, as a real terminal keeps LIP SDS to itself), then every
`interval_s` each radio (an ISSI) sends an unsolicited `+CTSDSR:` LIP report built per the
standard (drivers/tetra_lip_build.py), alternately short and long, moving along a route of
drivers/sim_routes.py; `emergency_at_s` makes the first radio send an emergency report once.
Standalone, for technicians and the demo::

    python -m alkomd.drivers.sim_tetra --link /tmp/ttyTETRA0 --radios 2269001 2269002 --emergency-at 30
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from alkomd.drivers.sim_pty import PtyGps
from alkomd.drivers.sim_routes import ROUTES, position_at
from alkomd.drivers.tetra_lip import EMERGENCY_REASON
from alkomd.drivers.tetra_lip_build import ctsdsr, long_report, short_report

REGISTRATION = b"AT+CTSP=1,3,10"


class PtyTerminal(PtyGps):
    """A `PtyGps` that also reads what the program on the port writes (the terminal's side of the PEI)."""

    def read(self, limit: int = 4096) -> bytes:
        """What the port's user wrote since the last call (never blocks; b'' when nothing or nobody)."""
        with self._lock:
            fd = self._master
            if fd is None:
                return b""
            try:
                return os.read(fd, limit)
            except BlockingIOError:
                return b""
            except OSError as exc:  # EIO: no program has the slave open
                if exc.errno != errno.EIO:
                    raise
                return b""


class SimulatedTerminal:
    """The terminal's behaviour; `step(now)` does what is due (tests drive it, `run` loops it)."""

    def __init__(self, pty: PtyTerminal, radios: Sequence[int], *, route: str = "kota-gorontalo-loop", speed_kmh: float = 40.0,
                 interval_s: float = 2.0, emergency_at_s: float | None = None, registered: bool = False) -> None:
        self.pty = pty
        self.radios = list(radios)
        self.route = ROUTES[route]
        self.speed_kmh = speed_kmh
        self.interval_s = interval_s
        self.emergency_at_s = emergency_at_s
        self.registered = registered
        self.commands: list[bytes] = []
        self.reports = 0
        self.emergencies = 0
        self._cmd = b""
        self._start: float | None = None
        self._next = 0.0

    def answer(self) -> None:
        """Read the commands the port's user sent and answer each `OK` (echo off, as the PEI is set)."""
        data = self.pty.read()
        if not data:
            return
        self._cmd += data
        *lines, self._cmd = self._cmd.replace(b"\n", b"\r").split(b"\r")
        for line in lines:
            cmd = line.strip()
            if not cmd:
                continue
            self.commands.append(cmd)
            if cmd.upper() == REGISTRATION:
                self.registered = True
            self.pty.write(b"\r\nOK\r\n" if cmd.upper().startswith(b"AT") else b"\r\nERROR\r\n")

    def step(self, now: float) -> None:
        self.answer()
        if self._start is None:
            self._start = self._next = now
        if not self.registered or now < self._next:
            return
        self._next = now + self.interval_s
        t = now - self._start
        emergency = self.emergency_at_s is not None and t >= self.emergency_at_s and self.emergencies == 0
        for i, issi in enumerate(self.radios):
            self.pty.write(self.report(issi, t + i * 120.0, emergency=emergency and i == 0))
        if emergency:
            self.emergencies += 1

    def report(self, issi: int, t: float, *, emergency: bool = False) -> bytes:
        """One radio's report at `t` seconds along the route: short and long by turns."""
        p = position_at(self.route, self.speed_kmh, t)
        reason = EMERGENCY_REASON if emergency else 129
        if self.reports % 2:
            data, bits = long_report(p.lat, p.lon, speed_kmh=self.speed_kmh, course=p.course, when=datetime.now(UTC),
                                     accuracy_code=10, altitude_m=25, reason=reason)
        else:
            data, bits = short_report(p.lat, p.lon, speed_kmh=self.speed_kmh, course=p.course, reason=reason)
        self.reports += 1
        return ctsdsr(issi, data, bits)

    def run(self, stop: threading.Event, tick_s: float = 0.05) -> None:
        while not stop.is_set():
            self.step(time.monotonic())
            stop.wait(tick_s)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alkomd.drivers.sim_tetra", description=__doc__.splitlines()[0])
    ap.add_argument("--link", type=Path, required=True, help="symlink to create for the simulated PEI port")
    ap.add_argument("--radios", type=int, nargs="+", default=[2269001], help="ISSIs of the radios the terminal hears")
    ap.add_argument("--route", choices=sorted(ROUTES), default="kota-gorontalo-loop")
    ap.add_argument("--speed", type=float, default=40.0, help="km/h along the route")
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between each radio's reports")
    ap.add_argument("--emergency-at", type=float, default=None, help="seconds after the start: the first radio's emergency")
    args = ap.parse_args(argv)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    with PtyTerminal(args.link) as pty:
        print(f"simulated TETRA terminal on {args.link} -> {pty.slave_name}; radios {args.radios}", file=sys.stderr)
        SimulatedTerminal(pty, args.radios, route=args.route, speed_kmh=args.speed, interval_s=args.interval,
                          emergency_at_s=args.emergency_at).run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())

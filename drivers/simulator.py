"""The `simulator` driver: a simulated receiver on a pseudo-terminal, read by the real `nmea` driver.

The receiver (drivers/sim_receiver.py) drives a route (drivers/sim_routes.py) and writes real
NMEA into a `PtyGps` (drivers/sim_pty.py), a pseudo-terminal reached through a stable symlink,
misbehaving as scripted (`unplug`, `noise`, `bad_checksum`, `no_fix`, `emergency`). The driver
runs that receiver *and* the real `nmea` driver on its symlink, so the whole serial path
(pyserial open and flock, chunked reads, decoder, reconnect with backoff) is exercised.
Standalone, for technicians and tests::

    python -m alkomd.drivers.simulator --route kota-gorontalo-loop --link /tmp/ttyGPS0 \\
        --faults 30+10:unplug 60+10:noise
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from alkomd.daemon.records import Counters
from alkomd.daemon.schema import spec
from alkomd.drivers.base import DriverSpec, Emit, StateTracker
from alkomd.drivers.nmea_serial import NmeaOptions, NmeaSerial
from alkomd.drivers.sim_pty import PtyGps
from alkomd.drivers.sim_receiver import FAULT_FORMAT, FAULT_KINDS, TALKERS, SimulatedReceiver, parse_faults, validate_faults
from alkomd.drivers.sim_routes import ROUTES

# PtyGps too: alkomctl capture and the tests take the simulated port from here.
__all__ = ["DRIVER", "PtyGps", "SimulatorDriver", "SimulatorOptions", "main"]

log = logging.getLogger(__name__)

RADIO_PATTERN = r"[0-9]{3}-[0-9]{4}|U[0-9]{5}|U[0-9]{8}"
INNER_RECONNECT_MAX_S = 2.0  # a replugged simulated port is found again within about this long


def _like_nmea(name: str) -> Any:
    """The same field (default, bounds, doc) as NmeaOptions.<name>."""
    f = {f.name: f for f in dataclasses.fields(NmeaOptions)}[name]
    return dataclasses.field(default=f.default, metadata=f.metadata)


@dataclass(frozen=True)
class SimulatorOptions:
    route: str = spec("kota-gorontalo-loop", choices=tuple(ROUTES), doc="Built-in route the unit drives.")
    speed_kmh: float = spec(40.0, min=0, max=200, doc="Speed along the route (0: parked at its start).")
    interval_s: float = spec(1.0, min=0.05, max=60, doc="Seconds between epochs (a receiver's output rate).")
    talker: str = spec("GP", choices=TALKERS, doc="NMEA talker id of the sentences.")
    faults: tuple[str, ...] = spec(
        (),
        pattern=r"\d+(\.\d+)?\+\d+(\.\d+)?:(" + "|".join(FAULT_KINDS) + ")",
        doc=f"Scripted faults, {FAULT_FORMAT}; kinds: {', '.join(FAULT_KINDS)}.",
    )
    link: str = spec("", doc="Path of the simulated port's symlink; default: a private temporary directory.")
    start_offset_s: float = spec(0.0, min=0, max=86400, doc="Seconds of driving already done at start (so units do not overlap).")
    radios: tuple[str, ...] = spec(
        (), pattern=RADIO_PATTERN, doc="Simulate a Kenwood base radio relaying these radios (100-1001, U00017) instead of one receiver."
    )
    max_hdop: float = _like_nmea("max_hdop")
    silent_after_s: float = _like_nmea("silent_after_s")
    no_fix_after_s: float = _like_nmea("no_fix_after_s")

    def __post_init__(self) -> None:
        validate_faults(self.faults)
        if self.route not in ROUTES:
            raise ValueError(f"route {self.route!r} unknown (routes: {', '.join(ROUTES)})")
        if self.talker not in TALKERS:
            raise ValueError(f"talker {self.talker!r} unknown (talkers: {', '.join(TALKERS)})")


class _SimulatedSerial(NmeaSerial):
    """The real NMEA serial driver, reporting itself as the simulator."""

    driver_name = "simulator"


class SimulatorDriver:
    """The `simulator` driver: a simulated receiver on a pty, read by the real NMEA serial driver."""

    driver_name = "simulator"

    def __init__(self, device: str, opts: SimulatorOptions) -> None:
        self.device = device
        self.opts = opts
        self.link: Path | None = Path(opts.link) if opts.link else None
        self.receiver: SimulatedReceiver | None = None
        self._tmpdir: Path | None = None
        self._inner: _SimulatedSerial | None = None

    def counters(self) -> Counters:
        return self._inner.counters() if self._inner is not None else Counters()

    def last_data(self) -> float | None:
        return self._inner.last_data() if self._inner is not None else None

    def _resolve_link(self) -> Path:
        if self.link is None:
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.device)
            self._tmpdir = Path(tempfile.mkdtemp(prefix=f"alkomd-sim-{safe}-"))
            self.link = self._tmpdir / "tty"
        elif self._tmpdir is not None:
            self._tmpdir.mkdir(mode=0o700, exist_ok=True)  # run again after a crash
        return self.link

    def run(self, stop: threading.Event, emit: Emit) -> None:
        o = self.opts
        link = self._resolve_link()
        if self._inner is None:
            self._inner = _SimulatedSerial(
                self.device,
                NmeaOptions(
                    url=str(link),
                    baud=9600,
                    exclusive=True,
                    max_hdop=o.max_hdop,
                    silent_after_s=o.silent_after_s,
                    no_fix_after_s=o.no_fix_after_s,
                    reconnect_max_s=INNER_RECONNECT_MAX_S,
                ),
            )
        inner = self._inner
        try:
            pty = PtyGps(link)
        except OSError as exc:
            log.error("%s: cannot create the simulated port %s: %s", self.device, link, exc)
            tracker = StateTracker(self.device, self.driver_name, emit, o.silent_after_s, o.no_fix_after_s, self.counters)
            tracker.closed(f"cannot create the simulated port {link}: {exc}")
            stop.wait()
            self._cleanup(None)
            return
        self.receiver = SimulatedReceiver(
            pty,
            ROUTES[o.route],
            speed_kmh=o.speed_kmh,
            interval_s=o.interval_s,
            talker=o.talker,
            faults=parse_faults(o.faults),
            start_offset_s=o.start_offset_s,
            name=self.device,
            radios=o.radios,
        )
        what = f"base radio relaying {', '.join(o.radios)}" if o.radios else f"{o.talker} receiver"
        log.info("%s: simulated %s on route %s at %s", self.device, what, o.route, link)
        self.receiver.start()
        try:
            inner.run(stop, emit)
        finally:
            self.receiver.stop()
            self._cleanup(pty)

    def _cleanup(self, pty: PtyGps | None) -> None:
        if pty is not None:
            pty.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)


DRIVER = DriverSpec(
    name="simulator",
    options=SimulatorOptions,
    create=SimulatorDriver,
    summary="Simulated NMEA receiver driving a route in Gorontalo, read through a real pseudo-terminal (demo, tests)",
)


# --- standalone -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m alkomd.drivers.simulator`: one simulated receiver on a pty symlink until Ctrl-C."""
    p = argparse.ArgumentParser(
        prog="python -m alkomd.drivers.simulator",
        description="Simulate a GPS receiver writing NMEA into a pseudo-terminal reached through --link.",
    )
    p.add_argument("--route", choices=tuple(ROUTES), default="kota-gorontalo-loop", help="built-in route")
    p.add_argument("--link", default="/tmp/ttyGPS0", help="symlink to create for the port (default %(default)s)")
    p.add_argument("--faults", nargs="*", default=[], metavar="START+DUR:KIND", help=f"scripted faults ({', '.join(FAULT_KINDS)})")
    p.add_argument("--speed", type=float, default=40.0, help="km/h (default %(default)s)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between epochs (default %(default)s)")
    p.add_argument("--talker", choices=TALKERS, default="GP")
    p.add_argument("--start-offset", type=float, default=0.0, help="seconds of driving already done")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--list-routes", action="store_true", help="list the built-in routes and exit")
    args = p.parse_args(argv)
    if args.list_routes:
        for r in ROUTES.values():
            kind = "loop" if r.loop else "there and back"
            print(f"{r.name:22} {r.length_m / 1000:5.1f} km  {kind:14} {r.summary}")
        return 0
    try:
        faults = parse_faults(args.faults)
    except ValueError as exc:
        p.error(str(exc))
    if not 0.05 <= args.interval <= 60:
        p.error("--interval must be between 0.05 and 60 seconds")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        pty = PtyGps(args.link)
    except OSError as exc:
        print(f"cannot create {args.link}: {exc}", file=sys.stderr)
        return 1
    with pty:
        rx = SimulatedReceiver(
            pty, ROUTES[args.route], args.speed, args.interval, args.talker, faults, args.start_offset, name=Path(args.link).name
        )
        print(f"{pty.link} -> {pty.slave_name}: route {args.route}, {args.speed:g} km/h, every {args.interval:g} s"
              + (f", faults {' '.join(map(str, faults))}" if faults else "") + "; Ctrl-C stops", flush=True)
        timer = threading.Timer(args.duration, stop.set) if args.duration is not None else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        rx.run_for(stop)
        if timer is not None:
            timer.cancel()
    print(f"stopped after {rx.epochs} epochs ({pty.written_bytes} bytes written, {pty.dropped_bytes} dropped)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

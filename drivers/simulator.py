"""Simulated GPS receivers: units move along routes in Gorontalo and write real NMEA into pseudo-terminals.

A `SimulatedReceiver` writes one epoch per interval (RMC, VTG, GGA, GSA, GSV, GLL, with correct
checksums and the real UTC time) into a `PtyGps`: a pseudo-terminal whose slave side is exposed
through a stable symlink, like `socat pty,link=/tmp/ttyGPS0`. Scripted faults make it misbehave
the way field hardware does: `unplug` (the USB cable pulled and plugged back: the port vanishes
and comes back as a new tty), `noise` (garbage between sentences), `bad_checksum` and `no_fix`.

With `radios`, the simulated device is a Kenwood base radio instead: every interval it relays one
`$PKLDS` (FleetSync `fleet-id`) or `$PKNDS` (NXDN `U`-id) report per radio, framed STX/ETX, the
radios spread along the route; the `emergency` fault makes the first radio send status 99.

The `simulator` driver runs a receiver *and* the real `nmea` driver on its symlink, so the whole
serial path (pyserial open and flock, chunked reads, decoder, reconnect with backoff) is
exercised. Standalone, for technicians and tests::

    python -m alkomd.drivers.simulator --route kota-gorontalo-loop --link /tmp/ttyGPS0 \\
        --faults 30+10:unplug 60+10:noise
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import math
import os
import random
import re
import select
import shutil
import signal
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NamedTuple, Self

from alkomd.daemon.geodesy import haversine_m
from alkomd.daemon.records import Counters, utc_now
from alkomd.daemon.schema import spec
from alkomd.drivers.base import DriverSpec, Emit, StateTracker
from alkomd.drivers.nmea_serial import NmeaOptions, NmeaSerial
from alkomd.drivers.nmea_writer import EpochSpec, epoch, kenwood_ds

log = logging.getLogger(__name__)

TALKERS = ("GP", "GN", "GL", "GA", "GB", "BD")
FAULT_KINDS = ("unplug", "noise", "bad_checksum", "no_fix", "emergency")
RADIO_PATTERN = r"[0-9]{3}-[0-9]{4}|U[0-9]{5}|U[0-9]{8}"
RADIO_SPACING_S = 97.0  # seconds of travel between consecutive relayed radios on the route
RADIO_AVAILABLE, RADIO_EMERGENCY = 10, 99
FAULT_FORMAT = "START+DURATION:KIND in seconds, e.g. '120+30:unplug'"
_FAULT_RE = re.compile(r"(\d+(?:\.\d+)?)\+(\d+(?:\.\d+)?):([a-z_]+)")
INNER_RECONNECT_MAX_S = 2.0  # a replugged simulated port is found again within about this long


# --- routes -----------------------------------------------------------------------------------


class Position(NamedTuple):
    """Where a simulated unit is: degrees, and course over ground in degrees from true north."""

    lat: float
    lon: float
    course: float


def bearing_deg(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Initial bearing from a to b, degrees in [0, 360)."""
    la1, lo1, la2, lo2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    y = math.sin(lo2 - lo1) * math.cos(la2)
    x = math.cos(la1) * math.sin(la2) - math.sin(la1) * math.cos(la2) * math.cos(lo2 - lo1)
    return math.degrees(math.atan2(y, x)) % 360.0


@dataclass(frozen=True)
class Route:
    """A polyline of (lat, lon) waypoints. Closed (first == last) routes loop; open ones go back and forth."""

    name: str
    summary: str
    waypoints: tuple[tuple[float, float], ...]
    cumulative_m: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.waypoints) < 2:
            raise ValueError(f"route {self.name!r}: needs at least two waypoints")
        cum = [0.0]
        for a, b in zip(self.waypoints, self.waypoints[1:], strict=False):
            cum.append(cum[-1] + haversine_m(*a, *b))
        object.__setattr__(self, "cumulative_m", tuple(cum))

    @property
    def loop(self) -> bool:
        return self.waypoints[0] == self.waypoints[-1]

    @property
    def length_m(self) -> float:
        return self.cumulative_m[-1]


def _route(name: str, summary: str, *points: tuple[float, float]) -> Route:
    return Route(name, summary, tuple(points))


# Waypoints follow the main roads roughly (from general knowledge, checked to fall inside the
# right regency of the real polygons in shared/data/gorontalo-adm2.geojson).
ROUTES: dict[str, Route] = {
    r.name: r
    for r in (
        _route(
            "kota-gorontalo-loop",
            "A patrol loop through the centre of Kota Gorontalo.",
            (0.5436, 123.0573), (0.5478, 123.0625), (0.5523, 123.0688), (0.5468, 123.0742),
            (0.5402, 123.0716), (0.5351, 123.0660), (0.5332, 123.0590), (0.5381, 123.0541),
            (0.5436, 123.0573),
        ),
        _route(
            "limboto-gorontalo",
            "Limboto (Kab. Gorontalo) to Kota Gorontalo and back, north of Lake Limboto.",
            (0.6235, 122.9795), (0.6130, 122.9950), (0.6000, 123.0120), (0.5850, 123.0270),
            (0.5700, 123.0400), (0.5560, 123.0520), (0.5450, 123.0590),
        ),
        _route(
            "bone-bolango-coast",
            "Kota Gorontalo harbour east along the Bone Bolango coast road and back.",
            (0.5120, 123.0640), (0.5050, 123.0900), (0.4960, 123.1200), (0.4890, 123.1500),
            (0.4790, 123.1800), (0.4650, 123.2100), (0.4500, 123.2400),
        ),
        _route(
            "gorontalo-kwandang",
            "Kota Gorontalo through Limboto and Isimu north to Kwandang (Gorontalo Utara) and back.",
            (0.5560, 123.0520), (0.5850, 123.0270), (0.6235, 122.9795), (0.6400, 122.9300),
            (0.6530, 122.8800), (0.7000, 122.8700), (0.7500, 122.8800), (0.8000, 122.9000),
            (0.8390, 122.9150),
        ),
        _route(
            "marisa-town",
            "A loop through Marisa, the seat of Kab. Pohuwato.",
            (0.4700, 121.9300), (0.4740, 121.9400), (0.4700, 121.9500), (0.4630, 121.9450),
            (0.4640, 121.9340), (0.4700, 121.9300),
        ),
        _route(
            "tilamuta-town",
            "A loop through Tilamuta, the seat of Kab. Boalemo.",
            (0.5150, 122.3360), (0.5190, 122.3450), (0.5160, 122.3550), (0.5115, 122.3500),
            (0.5110, 122.3400), (0.5150, 122.3360),
        ),
    )
}


def position_at(route: Route, speed_kmh: float, t_s: float) -> Position:
    """Where a unit that left the route's start `t_s` seconds ago at `speed_kmh` is now.

    Closed routes loop; open routes are driven to the end and back. Distances are great-circle;
    between two waypoints the position is interpolated linearly (segments are short).
    """
    total = route.length_m
    pts, cum = route.waypoints, route.cumulative_m
    if total <= 0 or speed_kmh <= 0:
        return Position(pts[0][0], pts[0][1], 0.0)
    d = speed_kmh / 3.6 * max(t_s, 0.0)
    forward = True
    if route.loop:
        d %= total
    else:
        d %= 2 * total
        if d > total:
            d, forward = 2 * total - d, False
    i = 0
    while i < len(pts) - 2 and (cum[i + 1] <= d or cum[i + 1] == cum[i]):
        i += 1
    a, b = pts[i], pts[i + 1]
    seg = cum[i + 1] - cum[i]
    f = min(max((d - cum[i]) / seg, 0.0), 1.0) if seg > 0 else 0.0
    lat = a[0] + (b[0] - a[0]) * f
    lon = a[1] + (b[1] - a[1]) * f
    course = bearing_deg(a, b) if forward else bearing_deg(b, a)
    return Position(lat, lon, course)


# --- faults -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """A scripted fault: `kind` is active from `start_s` for `duration_s` seconds after the receiver starts."""

    start_s: float
    duration_s: float
    kind: str

    def active(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.start_s + self.duration_s

    def __str__(self) -> str:
        return f"{self.start_s:g}+{self.duration_s:g}:{self.kind}"


def parse_fault(text: str) -> Fault:
    """`"120+30:unplug"` -> Fault(120, 30, "unplug"); raises ValueError with the expected form."""
    m = _FAULT_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"fault {text!r}: expected {FAULT_FORMAT}; kinds: {', '.join(FAULT_KINDS)}")
    start, duration, kind = float(m[1]), float(m[2]), m[3]
    if kind not in FAULT_KINDS:
        raise ValueError(f"fault {text!r}: unknown kind {kind!r} (kinds: {', '.join(FAULT_KINDS)})")
    if duration <= 0:
        raise ValueError(f"fault {text!r}: the duration must be more than 0 seconds")
    return Fault(start, duration, kind)


def parse_faults(faults: Iterable[str]) -> tuple[Fault, ...]:
    """Parse a fault script (see `parse_fault`)."""
    if isinstance(faults, str):
        raise TypeError(f"faults must be a list of strings like '120+30:unplug', got the string {faults!r}")
    return tuple(parse_fault(f) for f in faults)


def validate_faults(faults: Iterable[str]) -> None:
    """Raise ValueError naming the first malformed fault string."""
    parse_faults(faults)


def corrupt_checksums(data: bytes, rng: random.Random) -> bytes:
    """Give every `$...*hh` sentence in `data` a wrong checksum."""

    def bad(m: re.Match[bytes]) -> bytes:
        good = int(m[1], 16)
        return b"*%02X" % (good ^ rng.randint(1, 255))

    return re.sub(rb"\*([0-9A-Fa-f]{2})(?=\r?\n)", bad, data)


_NOISE = (b"\x00", b"\x00\x00\x00", b"\x02", b"\x03", b"$$", b"\xff\xfe", b"\x1b[0m")


def add_noise(data: bytes, rng: random.Random) -> bytes:
    """Interleave line noise between sentences: random binary, NUL, STX/ETX, `$$`."""
    out: list[bytes] = []
    for line in data.splitlines(keepends=True):
        if rng.random() < 0.6:
            if rng.random() < 0.5:
                out.append(rng.choice(_NOISE))
            else:
                out.append(rng.randbytes(rng.randint(1, 24)))
        out.append(line)
    return b"".join(out)


# --- the pseudo-terminal ----------------------------------------------------------------------


class PtyGps:
    """A pseudo-terminal standing in for a USB GPS: the slave is reached through a stable symlink.

    `write` never blocks: the master is non-blocking, and bytes are dropped (and counted) when no
    program has the port open or its buffer is full, as a real receiver's bytes are lost then.
    """

    def __init__(self, link: Path | str) -> None:
        self.link = Path(link)
        self.slave_name = ""
        self.written_bytes = 0
        self.dropped_bytes = 0
        self.plugs = 0
        self._master: int | None = None
        self._poll: Any = None
        self._lock = threading.Lock()
        if self.link.exists() and not self.link.is_symlink():
            raise FileExistsError(errno.EEXIST, "refusing to replace a file that is not a symlink", str(self.link))
        self.link.parent.mkdir(parents=True, exist_ok=True)
        self.replug()

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def replug(self) -> None:
        """Create a new pty pair and point the symlink at its slave (atomically)."""
        with self._lock:
            self._close_master()
            master, slave = os.openpty()
            try:
                tty.setraw(slave)
                name = os.ttyname(slave)
            finally:
                os.close(slave)  # the reader opens it by path; no open slave means "nobody listens"
            os.set_blocking(master, False)
            poll = select.poll()
            poll.register(master, select.POLLOUT | select.POLLHUP | select.POLLERR)
            tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            try:
                if tmp.is_symlink():
                    tmp.unlink()
                os.symlink(name, tmp)
                os.replace(tmp, self.link)
            except OSError:
                os.close(master)
                raise
            self._master, self._poll, self.slave_name = master, poll, name
            self.plugs += 1

    def unplug(self) -> None:
        """Close the master (readers get an error) and remove the symlink (opening it fails)."""
        with self._lock:
            self._close_master()
            if self.link.is_symlink():
                try:
                    self.link.unlink()
                except FileNotFoundError:
                    pass

    close = unplug

    def _close_master(self) -> None:
        if self._master is not None:
            try:
                os.close(self._master)
            except OSError:
                pass
            self._master = self._poll = None

    def write(self, data: bytes) -> int:
        """Write what the port accepts now; drop and count the rest. Returns bytes written."""
        with self._lock:
            fd = self._master
            if fd is None:
                self.dropped_bytes += len(data)
                return 0
            events = self._poll.poll(0)
            if any(ev & (select.POLLHUP | select.POLLERR) for _, ev in events):
                self.dropped_bytes += len(data)  # no program has the port open
                return 0
            done = 0
            while done < len(data):
                try:
                    n = os.write(fd, data[done:])
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # EIO: the slave side went away
                    break
                if n <= 0:
                    break
                done += n
            self.written_bytes += done
            self.dropped_bytes += len(data) - done
            return done

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


# --- the receiver -----------------------------------------------------------------------------


class SimulatedReceiver:
    """Writes one NMEA epoch per interval into a `PtyGps` from its own thread, applying faults.

    Fault times count from `start()`; the route position from `start_offset_s` seconds of driving.
    """

    def __init__(
        self,
        pty: PtyGps,
        route: Route,
        speed_kmh: float = 40.0,
        interval_s: float = 1.0,
        talker: str = "GP",
        faults: Sequence[Fault] = (),
        start_offset_s: float = 0.0,
        name: str = "sim",
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        radios: Sequence[str] = (),
    ) -> None:
        if talker not in TALKERS:
            raise ValueError(f"talker must be one of {', '.join(TALKERS)}, got {talker!r}")
        if interval_s <= 0:
            raise ValueError("interval_s must be more than 0")
        self.pty = pty
        self.route = route
        self.speed_kmh = speed_kmh
        self.interval_s = interval_s
        self.talker = talker
        self.faults = tuple(faults)
        self.start_offset_s = start_offset_s
        self.name = name
        self.radios = tuple(radios)
        self.epochs = 0
        self._rng = rng or random.Random(name)
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = clock()
        self._sats = 9
        self._hdop = 0.9

    def active(self, t_s: float) -> frozenset[str]:
        """The fault kinds active `t_s` seconds after start."""
        return frozenset(f.kind for f in self.faults if f.active(t_s))

    def epoch_bytes(self, t_s: float, now: datetime, kinds: frozenset[str] = frozenset()) -> bytes:
        """The bytes of the epoch at `t_s` seconds after start, UTC time `now`, with faults `kinds`."""
        data = self._relayed_bytes(t_s, now, kinds) if self.radios else self._own_epoch(t_s, now, kinds)
        if "bad_checksum" in kinds:
            data = corrupt_checksums(data, self._rng)
        if "noise" in kinds:
            data = add_noise(data, self._rng)
        return data

    def _own_epoch(self, t_s: float, now: datetime, kinds: frozenset[str]) -> bytes:
        """A receiver's own epoch: RMC, VTG, GGA, GSA, GSV, GLL."""
        pos = position_at(self.route, self.speed_kmh, t_s + self.start_offset_s)
        rng = self._rng
        if rng.random() < 0.1:  # satellites come and go slowly
            self._sats = min(12, max(6, self._sats + rng.choice((-1, 1))))
        self._hdop = min(1.8, max(0.6, round(self._hdop + rng.uniform(-0.05, 0.05), 2)))
        spec_ = EpochSpec(
            time=now,
            lat=pos.lat,
            lon=pos.lon,
            alt=25.0 + 10 * math.sin(t_s / 60),
            speed_kmh=self.speed_kmh,
            course=pos.course,
            hdop=self._hdop,
            sats=self._sats,
            valid="no_fix" not in kinds,
            talker=self.talker,
        )
        return epoch(spec_)

    def _relayed_bytes(self, t_s: float, now: datetime, kinds: frozenset[str]) -> bytes:
        """A base radio's output: one report per relayed radio, framed STX ... ETX."""
        out = []
        for i, radio in enumerate(self.radios):
            pos = position_at(self.route, self.speed_kmh, t_s + self.start_offset_s + i * RADIO_SPACING_S)
            code = RADIO_EMERGENCY if i == 0 and "emergency" in kinds else RADIO_AVAILABLE
            s = kenwood_ds(now, pos.lat, pos.lon, radio, code, kmh=self.speed_kmh, course=pos.course, valid="no_fix" not in kinds)
            out.append(b"\x02" + s.rstrip(b"\r\n") + b"\x03\r\n")
        return b"".join(out)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("receiver already started")
        self._t0 = self._clock()
        self._thread = threading.Thread(target=self._run, name=f"sim-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop writing; returns once the thread ended (within one write, not one interval)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_for(self, stop: threading.Event) -> None:
        """Run in the calling thread until `stop` is set (the standalone mode)."""
        self._t0 = self._clock()
        self._stop = stop
        self._run()

    def _run(self) -> None:
        clock, stop = self._clock, self._stop
        next_at = self._t0
        while not stop.is_set():
            now = clock()
            t = now - self._t0
            kinds = self.active(t)
            if "unplug" in kinds:
                if self.pty.plugged:
                    log.info("%s: simulated unplug of %s", self.name, self.pty.link)
                    self.pty.unplug()
            elif not self.pty.plugged:
                try:
                    self.pty.replug()
                    log.info("%s: simulated replug of %s (now %s)", self.name, self.pty.link, self.pty.slave_name)
                except OSError as exc:
                    log.warning("%s: cannot replug %s: %s", self.name, self.pty.link, exc)
            if self.pty.plugged:
                self.pty.write(self.epoch_bytes(t, utc_now(), kinds))
            self.epochs += 1
            next_at += self.interval_s
            if next_at < now - self.interval_s:  # fell behind (suspended): do not burst to catch up
                next_at = now + self.interval_s
            stop.wait(max(0.0, next_at - clock()))


# --- the driver -------------------------------------------------------------------------------


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

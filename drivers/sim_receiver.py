"""A simulated GPS receiver or Kenwood base radio: one epoch per interval into a `PtyGps`, with scripted faults.

A `SimulatedReceiver` writes one epoch per interval (RMC, VTG, GGA, GSA, GSV, GLL, with correct
checksums and the real UTC time) for a unit driving a route. With `radios` it is a Kenwood base
radio instead: every interval it relays one `$PKLDS` (FleetSync `fleet-id`) or `$PKNDS` (NXDN
`U`-id) report per radio, framed STX/ETX, the radios spread along the route, each inside the
radio's caller-ID frames as real radios print them (documented in ncssar/radiolog and its issue
#628): FleetSync key-up, unkey, then the report; NXDN key-up, the report, unkey.

Scripted faults (`"START+DURATION:KIND"`) make it misbehave the way field hardware does:
`unplug` (the USB cable pulled and plugged back: the port vanishes and comes back as a new tty),
`noise` (garbage between sentences), `bad_checksum`, `no_fix`, and `emergency` (the first relayed
radio sends status 99).
"""

from __future__ import annotations

import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from alkomd.daemon.records import utc_now
from alkomd.drivers.kenwood import caller_id_frame
from alkomd.drivers.nmea_writer import EpochSpec, epoch, kenwood_ds
from alkomd.drivers.sim_pty import PtyGps
from alkomd.drivers.sim_routes import Route, position_at

log = logging.getLogger(__name__)

TALKERS = ("GP", "GN", "GL", "GA", "GB", "BD")
FAULT_KINDS = ("unplug", "noise", "bad_checksum", "no_fix", "emergency")
RADIO_SPACING_S = 97.0  # seconds of travel between consecutive relayed radios on the route
RADIO_AVAILABLE, RADIO_EMERGENCY = 10, 99
FAULT_FORMAT = "START+DURATION:KIND in seconds, e.g. '120+30:unplug'"
_FAULT_RE = re.compile(r"(\d+(?:\.\d+)?)\+(\d+(?:\.\d+)?):([a-z_]+)")


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
            report = b"\x02" + s.rstrip(b"\r\n") + b"\x03\r\n"
            up, down = caller_id_frame(radio, True) or b"", caller_id_frame(radio, False) or b""
            out.append(up + report + down if radio[:1] == "U" else up + down + report)
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

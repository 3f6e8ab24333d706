"""Modbus modems (Teltonika RUT and others by register map): polls GPS and modem health, emits fixes and states.

Each poll reads the device's register map (drivers/modbus_map.py) in as few requests as it can,
over Modbus TCP (`tcp://host:port`, one connection per poll) or Modbus RTU (a serial port or
pyserial URL, shared with the other devices on the same line). A position that passes the
validity gates becomes a `Fix` stamped with the time it was read (the modem's GPS time register
is not documented well enough to trust); the modem's own health goes into the device status,
re-published only when it changes notably. Exception replies, timeouts and a closed port are
counted and change the state; the driver never crashes on them and stops within about a second.

Counters (the contract's names): `sentences` = replies with data, `parse_errors` = exception
replies, `checksum_errors` = requests without a valid reply in time (pymodbus drops a frame with a
bad CRC, so a garbled reply counts here), `fixes` / `rejected_fixes` = polls whose position
passed / failed the gates, `reconnects` = the link came back after a failure, `bytes` = bytes
received.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from alkomd.daemon.records import Counters, DeviceState, Fix, utc_now
from alkomd.daemon.schema import spec
from alkomd.drivers.base import Backoff, DriverSpec, Emit, Link, LinkError, StateTracker
from alkomd.drivers.modbus_link import (
    Bus,
    LinkDown,
    PollResult,
    Stopped,
    Target,
    acquire_bus,
    exception_text,
    parse_url,
    read_blocks,
    release_bus,
)
from alkomd.drivers.modbus_map import (
    GPS_MEANINGS,
    LAT,
    LON,
    WORD_ORDERS,
    RegisterMap,
    detect_word_order,
    fix_problem,
    gps_reading,
    modem_health,
    plan_reads,
    resolve_map,
)
from alkomd.drivers.nmea_serial import FRAMINGS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModbusOptions:
    url: str = spec(
        doc="tcp://host:port for Modbus TCP (port 502 if omitted), or a serial port or pyserial URL for Modbus RTU: "
        "/dev/serial/by-id/..., rfc2217://host:port, socket://host:port (RTU over TCP)."
    )
    unit_id: int = spec(1, min=0, max=255, doc="Modbus unit (device/slave) id; Teltonika: 1, or 0 if the router answers any id.")
    map: Path = spec(
        Path("teltonika-rut"), doc="Register map: teltonika-rut (built in), or a map file ending in .toml (relative to this file)."
    )
    word_order: str = spec(
        "auto", choices=("auto", *WORD_ORDERS), doc="Byte layout of 32-bit values; auto finds it from the coordinates."
    )
    poll_interval_s: float = spec(5.0, min=0.2, max=3600, doc="Seconds between polls of the whole map.")
    timeout_s: float = spec(2.0, min=0.05, max=30, doc="How long to wait for each reply.")
    retries: int = spec(1, min=0, max=5, doc="Requests repeated after a timeout before the poll gives up.")
    baud: int = spec(9600, min=50, max=4_000_000, doc="RTU: baud rate (Teltonika's serial Modbus: 9600).")
    framing: str = spec("8N1", choices=FRAMINGS, doc="RTU: data bits, parity, stop bits.")
    silent_after_s: float = spec(15.0, min=1, max=86400, doc="No reply for this long: state silent.")
    no_fix_after_s: float = spec(30.0, min=1, max=86400, doc="Replies but no valid GPS fix for this long: state no_fix.")
    reconnect_max_s: float = spec(30.0, min=0.5, max=600, doc="Upper bound of the delay between attempts to reach a lost device.")

    def __post_init__(self) -> None:
        # ValueError becomes a config error naming this [[device]] and the file.
        try:
            parse_url(self.url)
        except ValueError as exc:
            raise ValueError(f"url: {exc}") from None
        try:
            resolve_map(self.map)
        except ValueError as exc:
            raise ValueError(f"map: {exc}") from None


class ModbusTracker(StateTracker):
    """The device state, with Modbus reasons: silent (no reply), degraded (exception at the GPS registers), no_fix."""

    silence = ""  # the last no-reply text
    problem = ""  # an exception reply at the GPS registers
    no_fix_reason = ""  # why the last poll's position was not a fix

    def judge(self, now: float, opened_at: float) -> tuple[DeviceState, str]:
        heard = self.last_sentence if self.last_sentence is not None else opened_at
        if now - heard > self.silent_after_s:
            return DeviceState.SILENT, self.silence or f"no reply for {self.silent_after_s:g} s"
        if self.problem:
            return DeviceState.DEGRADED, self.problem
        if self.last_fix is not None and now - self.last_fix <= self.no_fix_after_s:
            return DeviceState.CONNECTED, ""
        if self.last_fix is None and now - opened_at <= self.no_fix_after_s:
            return DeviceState.WAITING, "modem answers, waiting for the first GPS fix"
        reason = f": {self.no_fix_reason}" if self.no_fix_reason else ""
        return DeviceState.NO_FIX, f"no valid GPS fix for {self.no_fix_after_s:g} s{reason}"


class ModbusModem:
    """Driver instance for one configured Modbus device.

    It polls: every poll connects (TCP) or takes the shared port (RTU), reads the map and lets go,
    so there is no connection to hold and lose. The link is judged per poll: a poll that cannot
    reach the device is a failure, the next one that can is the recovery (`Link` logs, reports
    and counts them as for the drivers that hold a connection); the backoff stretches the polls.
    """

    driver_name = "modbus"

    def __init__(self, device: str, opts: ModbusOptions) -> None:
        self.device = device
        self.opts = opts
        self.target: Target = parse_url(opts.url)
        self.map: RegisterMap = resolve_map(opts.map)
        self.blocks = plan_reads(self.map.fields, self.map.max_gap)
        gps_fields = {f.name for f in self.map.fields if f.meaning in (LAT, LON)}
        self.gps_blocks = {b.start for b in self.blocks if any(f.name in gps_fields for f in b.fields)}
        self.order: str | None = None if opts.word_order == "auto" else opts.word_order
        backoff = Backoff(min(1.0, opts.poll_interval_s), max(opts.reconnect_max_s, opts.poll_interval_s))
        self.link = Link(device, log, backoff)
        self._tracker: ModbusTracker | None = None
        self._replies = self._exceptions = self._timeouts = self._bytes = 0
        self._fixes = self._rejected = 0
        self._logged_exceptions: frozenset[tuple[int, int]] = frozenset()

    def last_data(self) -> float | None:
        return self._tracker.last_sentence if self._tracker else None

    def counters(self) -> Counters:
        return Counters(
            bytes=self._bytes,
            sentences=self._replies,
            checksum_errors=self._timeouts,
            parse_errors=self._exceptions,
            fixes=self._fixes,
            rejected_fixes=self._rejected,
            reconnects=self.link.reconnects,
        )

    def run(self, stop: threading.Event, emit: Emit) -> None:
        o = self.opts
        tracker = ModbusTracker(self.device, self.driver_name, emit, o.silent_after_s, o.no_fix_after_s, self.counters)
        self._tracker = tracker
        self.link.start()
        try:
            bus = acquire_bus(self.target, o.baud, o.framing, o.timeout_s)
        except LinkDown as exc:
            log.error("%s: %s", self.device, exc)
            tracker.closed(str(exc))
            stop.wait()  # a configuration clash: nothing to retry until restarted
            return
        log.info(
            "%s: polling unit %d at %s every %g s (map %s, word order %s)",
            self.device,
            o.unit_id,
            self.target,
            o.poll_interval_s,
            self.map.name,
            o.word_order,
        )
        backoff = self.link.backoff
        try:
            next_poll = time.monotonic()
            while not stop.is_set():
                if self.poll_once(bus, stop, emit, tracker):
                    backoff.reset()
                    next_poll = max(next_poll + o.poll_interval_s, time.monotonic())  # no catching up after a stall
                else:
                    next_poll = time.monotonic() + max(o.poll_interval_s, backoff.next_delay())
                stop.wait(max(0.0, next_poll - time.monotonic()))
        finally:
            release_bus(bus)
        log.debug("%s: stopped", self.device)

    def poll_once(self, bus: Bus, stop: threading.Event, emit: Emit, tracker: ModbusTracker) -> bool:
        """One poll of the whole map: False when the device could not be reached (then back off)."""
        o = self.opts
        try:
            with bus.session(stop, o.timeout_s) as s:
                try:
                    result = read_blocks(s, self.blocks, o.unit_id, self.map.registers, o.retries)
                finally:
                    self._bytes += s.rx_bytes
        except Stopped:
            return True
        except LinkDown as exc:
            self.link.down(tracker, LinkError(str(exc)))
            return False
        # No evaluation yet: this poll evaluates once it is digested, so the first status
        # already carries the modem's health and whether there is a fix.
        self.link.up(tracker, again=f"{self.target} reachable again", evaluate=False)
        self._digest(result, emit, tracker)
        return True

    def _digest(self, r: PollResult, emit: Emit, tracker: ModbusTracker) -> None:
        """Count, decode, gate and emit what one poll read; then re-evaluate the state."""
        self._replies += r.replies - len(r.exceptions)
        self._exceptions += len(r.exceptions)
        if r.replies:
            tracker.saw_sentence()
        if r.no_reply is not None:
            self._timeouts += 1
            # Debug only: a flaky link would log every flip; the state (silent, with this detail) is logged on change.
            if tracker.silence != str(r.no_reply):
                log.debug("%s: %s", self.device, r.no_reply)
            tracker.silence = str(r.no_reply)
        elif tracker.silence:
            log.debug("%s: unit %d answers again", self.device, self.opts.unit_id)
            tracker.silence = ""
        seen = frozenset((e.address, e.code) for e in r.exceptions)
        if seen != self._logged_exceptions:
            for e in r.exceptions:
                log.warning("%s: %s (%d registers): register map %s", self.device, e, e.count, self.map.name)
            self._logged_exceptions = seen
        gps_exc = [e for e in r.exceptions if e.address in self.gps_blocks]
        tracker.problem = (
            f"{exception_text(gps_exc[0].code)} at register {gps_exc[0].address}: wrong register map, or no GPS in this modem?"
            if gps_exc
            else ""
        )
        health = modem_health(self.map, r.registers)
        if health is not None:
            tracker.modem(health)
        if any(f.meaning in GPS_MEANINGS and f.address in r.registers for f in self.map.fields):
            self._gps(r.registers, emit, tracker)
        tracker.evaluate()

    def _gps(self, registers: dict[int, int], emit: Emit, tracker: ModbusTracker) -> None:
        order = self.order
        g = gps_reading(self.map, registers, order) if order is not None else None
        problem = fix_problem(g) if g is not None else "word order not known yet: no plausible position in any order (no GPS fix?)"
        if problem and self.opts.word_order == "auto":
            # Not found yet, or the order found before stopped making sense (firmware upgrade?).
            guess = detect_word_order(self.map, registers)
            if guess.order is not None and guess.order != order and (order is None or guess.in_indonesia):
                log.info("%s: word order %s (%s)", self.device, guess.order, guess.reason)
                self.order = order = guess.order
                g = gps_reading(self.map, registers, order)
                problem = fix_problem(g)
        if problem or g is None:
            self._rejected += 1
            tracker.no_fix_reason = problem
            return
        assert g.lat is not None and g.lon is not None
        now, mono = utc_now(), time.monotonic()
        sats = g.sats
        fix = Fix(
            device=self.device, time=now, lat=g.lat, lon=g.lon, mode=3 if sats is not None and sats >= 4 else 2,
            received=now, received_mono=mono, speed_kmh=g.speed_kmh, hdop=g.hdop, sats=sats,
        )
        self._fixes += 1
        tracker.no_fix_reason = ""
        tracker.saw_fix()
        emit(fix)


DRIVER = DriverSpec(
    name="modbus",
    options=ModbusOptions,
    create=ModbusModem,
    summary="Modbus TCP/RTU modem (Teltonika RUT or a register map file): GPS position and modem health",
)

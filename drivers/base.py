"""The driver contract: how a driver is declared, started, and reports records and device state.

A driver turns bytes from a transport into records (`Fix`, `DeviceStatus`). It knows nothing of
MQTT or SQLite: the runtime gives it an `emit` callback (thread-safe) and a stop event, and runs
`Driver.run` in a thread of its own. A driver owns its short retries and its reconnect backoff;
the runtime only supervises (restarts a driver that crashed, with a traceback in the log).

A driver that opens something (a port, a connection, a listening socket) subclasses
`Reconnecting` and writes only how to open, read and close it: the reconnect loop is here. A
driver that polls (Modbus) keeps its own schedule and reports its link through the same `Link`.

Third-party drivers register a `DriverSpec` under the `alkomd.drivers` entry-point group.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from alkomd.daemon.records import Counters, DeviceState, DeviceStatus, ModemHealth, Record, utc_now

Emit = Callable[[Record], None]
ERROR_WINDOW_S = 10.0  # corrupt vs valid sentences are compared over this window (degraded)


class Driver(Protocol):
    """A running device: `run` blocks until `stop` is set, emitting records as they come."""

    device: str

    def run(self, stop: threading.Event, emit: Emit) -> None: ...

    def counters(self) -> Counters: ...

    def last_data(self) -> float | None:
        """time.monotonic() of the last valid data from the device, or None."""
        ...


@dataclass(frozen=True)
class DriverSpec:
    """How the config loader and the runtime know a driver.

    `options` is a frozen dataclass type describing the driver's keys in a `[[device]]` table
    (validated strictly by the config loader); `create(device_id, options)` builds the driver.
    """

    name: str
    options: type[Any]
    create: Callable[[str, Any], Driver]
    summary: str = ""


class Backoff:
    """Capped exponential backoff with full jitter; `reset()` after a real success."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 30.0, rng: random.Random | None = None):
        self.initial_s = initial_s
        self.max_s = max_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        cap = min(self.max_s, self.initial_s * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        # Full jitter, but never below a tenth of the cap so a flapping port cannot spin.
        return self._rng.uniform(cap / 10, cap)

    def reset(self) -> None:
        self.attempt = 0


class StateTracker:
    """Derives a device's state from what it has seen, and reports only changes.

    The states of the link and the data: `waiting` (open, no fix yet, for at most `no_fix_after_s`),
    `connected`, `no_fix`, `silent`, `degraded`, `disconnected`. Whether the station accepts the
    fixes is the station's to say (`positions/batch.py`: a device whose fixes are all refused).

    Thread-confined to the driver's thread; `counters` returns the driver's current counters.
    """

    def __init__(
        self,
        device: str,
        driver: str,
        emit: Emit,
        silent_after_s: float,
        no_fix_after_s: float,
        counters: Callable[[], Counters],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.device = device
        self.driver = driver
        self._emit = emit
        self.silent_after_s = silent_after_s
        self.no_fix_after_s = no_fix_after_s
        self._clock = clock
        self.counters = counters
        self.state: DeviceState | None = None
        self._detail = ""
        self.since: datetime = utc_now()
        self._open_at: float | None = None
        self.last_sentence: float | None = None
        self.last_fix: float | None = None
        self._window: deque[tuple[float, int, int]] = deque()  # (time, good, bad) cumulative
        self._modem: ModemHealth | None = None

    def opened(self, evaluate: bool = True) -> None:
        """The transport is open; `evaluate=False` leaves the first status to the caller's `evaluate()`."""
        self._open_at = self._clock()
        self.last_sentence = self.last_fix = None
        if evaluate:
            self.evaluate()

    def closed(self, detail: str) -> None:
        self._open_at = None
        self._set(DeviceState.DISCONNECTED, detail)

    def saw_sentence(self) -> None:
        self.last_sentence = self._clock()

    def saw_fix(self) -> None:
        self.last_fix = self._clock()

    def modem(self, health: ModemHealth) -> None:
        """A modem's own health was read: re-publish the status only if it changed notably."""
        before, self._modem = self._modem, health
        if self.state is not None and (before is None or _notable(before, health)):
            self._emit(DeviceStatus(self.device, self.driver, self.state, self.since, self.counters(), self._detail, health))

    def evaluate(self) -> None:
        """Recompute the state from the clock and counters; emit a DeviceStatus if it changed."""
        if self._open_at is None:
            return
        self._set(*self.judge(self._clock(), self._open_at))

    def judge(self, now: float, opened_at: float) -> tuple[DeviceState, str]:
        """The state and its detail at `now` for a transport open since `opened_at` (both monotonic).

        Drivers with other reasons for a state (a modem's exception replies) override this.
        """
        c = self.counters()
        good, bad = c.sentences, c.checksum_errors + c.parse_errors
        win = self._window
        win.append((now, good, bad))
        while len(win) > 1 and now - win[0][0] > ERROR_WINDOW_S:
            win.popleft()
        w_good, w_bad = good - win[0][1], bad - win[0][2]
        heard = self.last_sentence if self.last_sentence is not None else opened_at
        if now - heard > self.silent_after_s:
            return DeviceState.SILENT, f"no valid sentence for {self.silent_after_s:g} s"
        if w_bad >= 5 and w_bad > w_good:
            return DeviceState.DEGRADED, f"more corrupt than valid sentences in {ERROR_WINDOW_S:g} s: check baud rate and wiring"
        if self.last_fix is not None and now - self.last_fix <= self.no_fix_after_s:
            return DeviceState.CONNECTED, ""
        if self.last_fix is None and now - opened_at <= self.no_fix_after_s:
            return DeviceState.WAITING, "port open, waiting for the first fix"
        return DeviceState.NO_FIX, f"no valid fix for {self.no_fix_after_s:g} s"

    def _set(self, state: DeviceState, detail: str) -> None:
        if state is self.state and detail == self._detail:
            return
        self.state, self._detail = state, detail
        self.since = utc_now()
        self._emit(DeviceStatus(self.device, self.driver, state, self.since, self.counters(), detail, self._modem))


SIGNAL_BAND_DB = 10  # a modem's signal is re-published when it moves to another 10 dB band
TEMPERATURE_STEP_C = 5.0


def _notable(a: ModemHealth, b: ModemHealth) -> bool:
    """Whether a modem's health changed enough to publish (not every poll's uptime tick)."""
    if (a.network, a.operator, a.sim) != (b.network, b.operator, b.sim):
        return True
    if (a.signal_dbm is None) != (b.signal_dbm is None) or (
        a.signal_dbm is not None and b.signal_dbm is not None and a.signal_dbm // SIGNAL_BAND_DB != b.signal_dbm // SIGNAL_BAND_DB
    ):
        return True
    if (a.temperature_c is None) != (b.temperature_c is None) or (
        a.temperature_c is not None and b.temperature_c is not None and abs(a.temperature_c - b.temperature_c) >= TEMPERATURE_STEP_C
    ):
        return True
    # A reboot shows as uptime going backwards.
    return a.uptime_s is not None and b.uptime_s is not None and b.uptime_s < a.uptime_s


# --- the link and the reconnect loop -----------------------------------------------------------

RECONNECT_INITIAL_S = 0.5  # first delay before opening again; doubles up to the driver's reconnect_max_s


class LinkError(Exception):
    """The transport could not be opened, or an open one was lost.

    `detail` goes into the device status (`disconnected`), `message` into the log after the
    device id (by default the detail). Drivers raise it for expected failures, never other errors.
    """

    def __init__(self, detail: str, message: str = "") -> None:
        super().__init__(message or detail)
        self.detail = detail
        self.message = message or detail


class Link:
    """A driver's link to its device as the log and the device state tell it (driver thread only).

    `down` reports `disconnected` every time but logs a failure only when it differs from the one
    logged before (a port that stays missing is logged once, not at every attempt); `up` reports the
    open state and logs the recovery once. `reconnects` counts the times the link came up after it
    was down (a failed open or a lost connection). `backoff` paces the attempts.
    """

    def __init__(self, device: str, log: logging.Logger, backoff: Backoff) -> None:
        self.device = device
        self.backoff = backoff
        self.reconnects = 0
        self._log = log
        self._up: bool | None = None  # None: not tried yet in this run
        self._failure = ""  # the failure last logged, until the link is up again

    @property
    def is_up(self) -> bool:
        return self._up is True

    def start(self) -> None:
        """A run of the driver begins (again, after a crash): the link is neither up nor down yet."""
        self._up, self._failure = None, ""

    def up(self, tracker: StateTracker, opened: str = "", again: str = "", evaluate: bool = True) -> None:
        """The link is up: count a reconnect if it was down, log it, report the open state.

        The log says `opened`, or `again` (when given) if the link was down before; `evaluate` is
        passed to `StateTracker.opened`. Nothing happens when the link is up already, so a driver
        that polls may call this after every good poll.
        """
        if self._up is True:
            return
        recovered = self._up is False
        if recovered:
            self.reconnects += 1  # before the status, which carries the counters
        self._up, self._failure = True, ""
        text = again if recovered and again else opened
        if text:
            self._log.info("%s: %s", self.device, text)
        tracker.opened(evaluate)

    def down(self, tracker: StateTracker, error: LinkError) -> None:
        """Opening failed or the open link was lost: log it unless it repeats the last failure; report `disconnected`."""
        if error.message != self._failure:
            self._log.warning("%s: %s", self.device, error.message)
            self._failure = error.message
        self._up = False
        tracker.closed(error.detail)


class LinkOptions(Protocol):
    """The keys of a driver's options that `Reconnecting` reads."""

    @property
    def silent_after_s(self) -> float: ...

    @property
    def no_fix_after_s(self) -> float: ...

    @property
    def reconnect_max_s(self) -> float: ...


C = TypeVar("C")  # what `open` returns: a port, a socket


class Reconnecting(ABC, Generic[C]):
    """A driver that opens something (a port, a connection, a socket) and reads it until it is lost.

    A subclass writes only how: `open`, `read`, `close`, `opened_text` and `counters` (with
    `link.reconnects`). `run` is the loop: open (a failure is reported as `disconnected`, logged
    once, and retried after a capped, jittered backoff), report the open state, read until `stop`
    or a `LinkError`, close, report `disconnected` and open again. After a connection that carried
    data the backoff starts over from its smallest delay.
    """

    driver_name: ClassVar[str]

    def __init__(self, device: str, opts: LinkOptions, log: logging.Logger) -> None:
        self.device = device
        self.link = Link(device, log, Backoff(RECONNECT_INITIAL_S, opts.reconnect_max_s))
        self._log = log
        self._silent_after_s = opts.silent_after_s
        self._no_fix_after_s = opts.no_fix_after_s
        self._tracker: StateTracker | None = None

    @abstractmethod
    def open(self, stop: threading.Event) -> C | None:
        """Open the transport; None when `stop` was set meanwhile. Raises LinkError when it cannot."""

    @abstractmethod
    def opened_text(self) -> str:
        """What the log says each time the transport opens (after the device id)."""

    @abstractmethod
    def read(self, conn: C, stop: threading.Event, emit: Emit, tracker: StateTracker) -> None:
        """Read and emit until `stop` is set; raise LinkError when the connection is lost."""

    @abstractmethod
    def close(self, conn: C) -> None:
        """Close the transport; never raises."""

    @abstractmethod
    def counters(self) -> Counters: ...

    def last_data(self) -> float | None:
        """time.monotonic() of the last valid data from the device, or None."""
        tracker = self._tracker
        return tracker.last_sentence if tracker is not None else None

    def stopped(self, emit: Emit) -> None:
        """Called once as `run` returns: hand on what is still held. By default it only logs."""
        self._log.debug("%s: stopped", self.device)

    def run(self, stop: threading.Event, emit: Emit) -> None:
        tracker = StateTracker(self.device, self.driver_name, emit, self._silent_after_s, self._no_fix_after_s, self.counters)
        self._tracker = tracker
        link = self.link
        link.start()
        while not stop.is_set():
            try:
                conn = self.open(stop)
            except LinkError as exc:
                link.down(tracker, exc)
                stop.wait(link.backoff.next_delay())
                continue
            if conn is None:
                break
            link.up(tracker, self.opened_text())
            try:
                self.read(conn, stop, emit, tracker)
                lost = LinkError("the connection ended")  # `read` returns only when stopped
            except LinkError as exc:
                lost = exc
            finally:
                self.close(conn)
            if stop.is_set():
                break
            link.down(tracker, lost)
            if tracker.last_sentence is not None:  # the connection carried data
                link.backoff.reset()
            stop.wait(link.backoff.next_delay())
        self.stopped(emit)

"""The driver contract: how a driver is declared, started, and reports records and device state.

A driver turns bytes from a transport into records (`Fix`, `DeviceStatus`). It knows nothing of
MQTT or SQLite: the runtime gives it an `emit` callback (thread-safe) and a stop event, and runs
`Driver.run` in a thread of its own. A driver owns its short retries and its reconnect backoff;
the runtime only supervises (restarts a driver that crashed, with a traceback in the log).

Third-party drivers register a `DriverSpec` under the `alkomd.drivers` entry-point group.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

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
            return DeviceState.CONNECTED, "port open, waiting for the first fix"
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

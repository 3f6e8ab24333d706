"""Driver threads: one per enabled device, started and stopped by id, a crashed driver restarted with its traceback logged."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from alkomd.daemon.config import DeviceConfig
from alkomd.daemon.records import Record
from alkomd.drivers import registry
from alkomd.drivers.base import Backoff, Driver

log = logging.getLogger(__name__)

DRIVER_JOIN_S = 2.0


@dataclass(frozen=True)
class RunningDriver:
    device: str
    driver_name: str
    driver: Driver
    thread: threading.Thread
    stop: threading.Event


def _supervise(d: Driver, stop: threading.Event, emit: Callable[[Record], None]) -> None:
    """A driver thread's top: restart a crashed driver (with its traceback logged) until stopped."""
    backoff = Backoff(1.0, 60.0)
    while not stop.is_set():
        try:
            d.run(stop, emit)
        except Exception:  # supervision boundary: a driver bug must not end the device's thread
            delay = backoff.next_delay()
            log.exception("%s: driver crashed; restarting in %.1f s", d.device, delay)
            stop.wait(delay)


class Supervisor:
    """The running drivers, in start order. `emit` is called on the drivers' threads (it must be thread-safe)."""

    def __init__(self, emit: Callable[[Record], None]) -> None:
        self._emit = emit
        self.running: list[RunningDriver] = []

    def get(self, device: str) -> RunningDriver | None:
        return next((rd for rd in self.running if rd.device == device), None)

    def start(self, dev: DeviceConfig) -> None:
        spec = registry.get(dev.driver)
        assert spec is not None  # the config loader checked the name
        drv = spec.create(dev.id, dev.options)
        stop = threading.Event()
        t = threading.Thread(target=_supervise, args=(drv, stop, self._emit), name=f"driver-{dev.id}", daemon=True)
        self.running.append(RunningDriver(dev.id, dev.driver, drv, t, stop))
        t.start()

    async def stop(self, rd: RunningDriver) -> None:
        """Stop one driver and wait (off the loop) for its thread, so its port is free again."""
        rd.stop.set()
        await asyncio.get_running_loop().run_in_executor(None, rd.thread.join, DRIVER_JOIN_S)
        if rd.thread.is_alive():
            log.warning("%s: driver did not stop in time", rd.device)
        self.running.remove(rd)

    def stop_all(self) -> None:
        """Stop every driver, waiting at most DRIVER_JOIN_S in all (shutdown: the loop has nothing else to do)."""
        for rd in self.running:
            rd.stop.set()
        deadline = time.monotonic() + DRIVER_JOIN_S
        for rd in self.running:
            rd.thread.join(max(0.0, deadline - time.monotonic()))
            if rd.thread.is_alive():
                log.warning("%s: driver did not stop in time", rd.device)

"""Test helpers for the UDP radio drivers (lrrp, hytera): a driver in a thread, free loopback ports."""

from __future__ import annotations

import itertools
import socket
import threading

from alkomd.daemon.records import DeviceState, DeviceStatus, Fix, RadioStatus, Record
from alkomd.drivers.base import Driver


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class Run:
    """A driver in its own thread, as the runtime runs it."""

    def __init__(self, driver: Driver) -> None:
        self.records: list[Record] = []
        self.driver = driver
        self.stop = threading.Event()
        self.thread = threading.Thread(target=driver.run, args=(self.stop, self.records.append), daemon=True)
        self.thread.start()

    def statuses(self) -> list[DeviceStatus]:
        return [r for r in self.records if isinstance(r, DeviceStatus)]

    def states(self) -> list[DeviceState]:
        return [s.state for s in self.statuses()]

    def fixes(self, radio: str | None = None) -> list[Fix]:
        return [r for r in self.records if isinstance(r, Fix) and (radio is None or r.radio == radio)]

    def emergencies(self) -> list[RadioStatus]:
        return [r for r in self.records if isinstance(r, RadioStatus)]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(3)
        assert not self.thread.is_alive(), "the driver must stop within about a second"
        seen = [(s.state, s.detail) for s in self.statuses()]
        assert all(a != b for a, b in itertools.pairwise(seen)), "a state is reported on change only"

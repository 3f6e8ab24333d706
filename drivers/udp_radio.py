"""What the UDP radio-location drivers (MOTOTRBO LRRP, Hytera LP) share: sockets, the radio table, counts, records.

A control station or repeater with an IP interface puts the radios on a network of their own
(MOTOTRBO: 12.x.y.z, Hytera: 10.x.y.z, the low 24 bits being the radio id). The drivers listen on
one or two UDP ports, send requests to a radio's address, and turn its reports into `Fix` and
`RadioStatus` records through the shared gates (`alkomd.drivers.location_gate`).
"""

from __future__ import annotations

import ipaddress
import logging
import selectors
import socket
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from alkomd.daemon.records import Counters
from alkomd.drivers.base import Emit, LinkError
from alkomd.drivers.location_gate import EmergencyLatch, Position, Reject, to_records
from alkomd.drivers.nmea_udp import bind_udp, sender_address

TICK_S = 0.1  # select timeout: how often the state is judged, timers run and a stop request is seen
MAX_DATAGRAM = 65535
MAX_LOGGED = 64  # distinct problems logged once each, up to this many

T = TypeVar("T")


class Sockets:
    """The bound sockets of one driver run, by name ("lrrp", "ars", "lp"), and a selector over them."""

    def __init__(self, bind: str, ports: dict[str, int]) -> None:
        self.by_name: dict[str, socket.socket] = {}
        self._sel = selectors.DefaultSelector()
        try:
            for name, port in ports.items():
                sock = bind_udp(bind, port)
                self.by_name[name] = sock
                self._sel.register(sock, selectors.EVENT_READ, name)
        except BaseException:
            self.close()
            raise

    def receive(self, timeout: float = TICK_S) -> Iterator[tuple[str, bytes, tuple[str, int]]]:
        """(socket name, datagram, (source address, port)) for what is waiting, after at most `timeout`."""
        for key, _ in self._sel.select(timeout):
            sock, name = key.fileobj, key.data
            assert isinstance(sock, socket.socket) and isinstance(name, str)
            for _ in range(64):  # drain a burst, but let the timers run between bursts
                try:
                    data, addr = sock.recvfrom(MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    break
                except ConnectionRefusedError:  # an earlier send got ICMP port unreachable
                    continue
                except OSError as exc:
                    raise LinkError(f"udp socket failed: {exc}") from exc
                yield name, data, (sender_address(addr[0]), int(addr[1]))

    def close(self) -> None:
        self._sel.close()
        for sock in self.by_name.values():
            sock.close()


class Sender:
    """Sends requests from a socket; a failure (no route to the radios' network) is counted and logged once per reason."""

    def __init__(self, device: str, log: logging.Logger) -> None:
        self.device = device
        self.sent = self.failed = 0
        self._log = log
        self._logged: set[str] = set()

    def send(self, sock: socket.socket, data: bytes, to: tuple[str, int], what: str) -> bool:
        if sock.family == socket.AF_INET6 and ":" not in to[0]:
            to = (f"::ffff:{to[0]}", to[1])  # bind = "::": IPv4 radios through the dual-stack socket
        try:
            sock.sendto(data, to)
        except OSError as exc:
            self.failed += 1
            why = exc.strerror or str(exc)
            if why not in self._logged and len(self._logged) < MAX_LOGGED:
                self._logged.add(why)
                self._log.warning(
                    "%s: cannot send %s to %s:%d: %s (is the control station's network up, with a route to the radios?)",
                    self.device, what, to[0], to[1], why,
                )
            return False
        self.sent += 1
        return True


class Radios(Generic[T]):
    """The radios a driver knows, least recently heard first, at most `limit` (the longest quiet is forgotten)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.evicted = 0
        self._d: OrderedDict[str, T] = OrderedDict()

    def get(self, radio: str) -> T | None:
        return self._d.get(radio)

    def touch(self, radio: str) -> None:
        if radio in self._d:
            self._d.move_to_end(radio)

    def put(self, radio: str, value: T) -> T | None:
        """Add or replace; returns the forgotten entry's value when the table was full (else None)."""
        old = None
        if radio not in self._d and len(self._d) >= self.limit:
            _, old = self._d.popitem(last=False)
            self.evicted += 1
        self._d[radio] = value
        self._d.move_to_end(radio)
        return old

    def pop(self, radio: str) -> T | None:
        return self._d.pop(radio, None)

    def items(self) -> list[tuple[str, T]]:
        return list(self._d.items())

    def __contains__(self, radio: object) -> bool:
        return radio in self._d

    def __len__(self) -> int:
        return len(self._d)


@dataclass
class Tally:
    """A driver's counts since it was made (never reset on reconnect)."""

    received_bytes: int = 0
    messages: int = 0
    checksum_errors: int = 0
    parse_errors: int = 0
    garbage_bytes: int = 0
    fixes: int = 0
    rejected: int = 0
    emergencies: int = 0
    rejects: dict[str, int] = field(default_factory=dict)

    def counters(self, reconnects: int) -> Counters:
        return Counters(
            bytes=self.received_bytes,
            sentences=self.messages,
            checksum_errors=self.checksum_errors,
            parse_errors=self.parse_errors,
            garbage_bytes=self.garbage_bytes,
            fixes=self.fixes,
            rejected_fixes=self.rejected,
            reconnects=reconnects,
        )

    def bad(self, data: bytes, checksum: bool = False) -> None:
        if checksum:
            self.checksum_errors += 1
        else:
            self.parse_errors += 1
        self.garbage_bytes += len(data)


def emit_report(
    p: Position | None, device: str, radio: str, received: datetime, mono: float, emergency: bool, emit: Emit, tally: Tally,
    latch: EmergencyLatch,
) -> bool:
    """Emit a report's fix and emergency status (or the end of one: `latch`) through the shared gates; True if it gave a fix."""
    m = to_records(p, device, radio, received, mono, emergency=emergency)
    status = latch.status(radio, m.status, received, mono)
    if status is not None:
        if m.status is not None:
            tally.emergencies += 1
        emit(status)
    if m.fix is not None:
        tally.fixes += 1
        emit(m.fix)
        return True
    if m.reject is not None and m.reject is not Reject.NOT_A_REPORT:
        tally.rejected += 1
        tally.rejects[m.reject.value] = tally.rejects.get(m.reject.value, 0) + 1
    return False


def radio_of_address(address: str, network: int) -> str | None:
    """The radio id (decimal) of a source address on the radios' network (`network`.x.y.z), or None."""
    try:
        ip = int(ipaddress.IPv4Address(address))
    except ValueError:
        return None
    return str(ip & 0xFFFFFF) if ip >> 24 == network else None


def radio_address(radio: str, network: int) -> str | None:
    """A radio's IPv4 address on its network, or None when the id does not fit in 24 bits."""
    if not radio.isdigit() or int(radio) >= 2**24:
        return None
    return str(ipaddress.IPv4Address((network << 24) | int(radio)))


class OnceLog:
    """Logs a warning once per key (a source, a reason), up to MAX_LOGGED keys."""

    def __init__(self, device: str, log: logging.Logger) -> None:
        self.device = device
        self._log = log
        self._seen: set[str] = set()

    def warn(self, key: str, text: str) -> None:
        if key not in self._seen and len(self._seen) < MAX_LOGGED:
            self._seen.add(key)
            self._log.warning("%s: %s (logged once)", self.device, text)

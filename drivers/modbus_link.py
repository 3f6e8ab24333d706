"""Modbus transport shared by the driver and alkomctl: one client and one lock per bus, stoppable waits, typed errors.

A *bus* is one Modbus TCP endpoint (`tcp://host:port`) or one serial port (Modbus RTU on a path
or pyserial URL). Devices on the same bus (an RS-485 line with several unit ids, or a TCP gateway)
share its client and its lock, so exactly one request is in flight per bus and nothing piles up.

TCP connections are opened for one poll and closed after it (`Bus.keep_open` False): routers
allow few Modbus sessions (Teltonika: a handful), a technician's `alkomctl modbus probe` must
still get in while the daemon polls, and a router set to close after each reply ("keep
persistent connection" off) works the same. The cost is one TCP handshake per poll (see
bench/bench_modbus.py). A serial port stays open (and locked) while the driver runs.

Every wait (connect, reply, the bus lock) is cut into short slices that check the stop event, so
a driver stops within about a tenth of a second whatever the timeout.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import serial
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.framer import FramerType

from alkomd.drivers.modbus_map import Block
from alkomd.drivers.net import connect_tcp
from alkomd.drivers.nmea_serial import open_port, port_hint

log = logging.getLogger(__name__)

# pymodbus logs every failed connect and every timeout at ERROR; the driver reports them itself,
# once per change, in the device state.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

SLICE_S = 0.1  # longest uninterruptible wait
TCP_PORT = 502
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
REFUSED_HINT = "is the modem's Modbus TCP server enabled? It is off by default on Teltonika (Services > Modbus)"


class ModbusError(Exception):
    """Base of the transport's errors; str() is the one line a technician needs."""


class LinkDown(ModbusError):
    """The bus cannot be opened, or was lost (connection refused, port missing, peer closed)."""


class NoReply(ModbusError):
    """The unit did not answer within the timeout (after the retries)."""


class ExceptionReply(ModbusError):
    """The unit answered with a Modbus exception."""

    def __init__(self, code: int, address: int, count: int) -> None:
        self.code, self.address, self.count = code, address, count
        super().__init__(f"{exception_text(code)} at register {address}")


class Stopped(ModbusError):
    """The stop event was set while waiting."""


def exception_text(code: int) -> str:
    return f"modbus exception {code} ({EXCEPTION_NAMES.get(code, 'unknown code')})"


@dataclass(frozen=True)
class Target:
    """Where a bus is: a TCP endpoint (`host`, `port`) or a serial port (`port_url`)."""

    kind: str  # "tcp" or "rtu"
    host: str = ""
    port: int = TCP_PORT
    port_url: str = ""

    @property
    def key(self) -> tuple[str, str, int]:
        if self.kind == "tcp":
            return ("tcp", self.host.lower(), self.port)
        path = self.port_url
        if "://" not in path:
            path = os.path.realpath(path)  # /dev/serial/by-id/... and /dev/ttyUSB0 are one bus
        return ("rtu", path, 0)

    def __str__(self) -> str:
        if self.kind == "rtu":
            return self.port_url
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_url(url: str) -> Target:
    """`tcp://host[:port]` is Modbus TCP; anything else is a serial port or pyserial URL (RTU)."""
    if not url:
        raise ValueError("empty url")
    if url.lower().startswith("tcp://"):
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"bad port in {url!r}") from None
        if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.username:
            raise ValueError(f"expected tcp://host:port, got {url!r}")
        return Target("tcp", host=parts.hostname, port=port or TCP_PORT)
    if "://" in url and url.split("://", 1)[0].lower() in ("udp", "http", "https", "mqtt"):
        raise ValueError(f"unsupported scheme in {url!r}: tcp://host:port for Modbus TCP, a serial port for RTU")
    return Target("rtu", port_url=url)


def connect_hint(exc: BaseException, target: Target, timeout_s: float) -> str:
    """A one-line, technician-facing reason for a failed connection."""
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
        return f"connection refused by {target}: {REFUSED_HINT}"
    if isinstance(exc, TimeoutError):
        return f"no answer to connect within {timeout_s:g} s from {target}: modem off, out of coverage, or wrong address?"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {target.host}: {exc.strerror or exc}"
    if getattr(exc, "errno", None) in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return f"{target} unreachable ({os.strerror(exc.errno)}): network, VPN or address?"  # type: ignore[attr-defined]
    if isinstance(exc, serial.SerialException | OSError) and target.kind == "rtu":
        return port_hint(exc)
    return f"{target}: {exc}"


class _TcpClient(ModbusTcpClient):
    """pymodbus's sync TCP client with a stoppable connect and receive, and byte counting."""

    def __init__(self, target: Target, timeout_s: float) -> None:
        super().__init__(target.host, port=target.port, timeout=timeout_s, retries=0)
        self.target = target
        self.stop = threading.Event()
        self.last_error: BaseException | None = None
        self.rx_bytes = 0

    def connect(self) -> bool:
        if self.socket is not None:
            return True
        try:
            sock = connect_tcp(self.target.host, self.target.port, self.comm_params.timeout_connect or 1.0, self.stop, SLICE_S)
        except OSError as exc:
            self.last_error = exc
            return False
        if sock is None:
            raise Stopped("stopped while connecting")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.comm_params.timeout_connect or 1.0)  # for send(); receiving is sliced in recv()
        self.socket = sock
        self.last_error = None
        return True

    def close(self) -> None:
        super().close()  # type: ignore[no-untyped-call]

    def recv(self, size: int | None) -> bytes:
        sock = self.socket
        if sock is None:
            raise ConnectionException(str(self))
        end = time.monotonic() + (self.comm_params.timeout_connect or 1.0)
        while True:
            if self.stop.is_set():
                raise Stopped("stopped while waiting for a reply")
            left = end - time.monotonic()
            if left <= 0:
                return b""  # pymodbus reads this as a timeout
            readable, _, _ = select.select([sock], [], [], min(left, SLICE_S))
            if readable:
                try:
                    data = sock.recv(size or 4096)
                except OSError as exc:
                    self.close()
                    raise ConnectionException(f"connection lost: {exc}") from None
                if not data:
                    self.close()
                    raise ConnectionException("the modem closed the connection")
                self.rx_bytes += len(data)
                return data


class _SerialClient(ModbusSerialClient):
    """pymodbus's sync RTU client with the port opened like the NMEA driver's, a stoppable receive, byte counting."""

    def __init__(self, target: Target, baud: int, framing: str, timeout_s: float) -> None:
        bits, parity, stop_bits = int(framing[0]), framing[1], int(framing[2])
        super().__init__(
            target.port_url, framer=FramerType.RTU, baudrate=baud, bytesize=bits, parity=parity, stopbits=stop_bits,
            timeout=timeout_s, retries=0,
        )
        self.target = target
        self.framing = framing
        self.poll_s = max(0.001, 4 * (1 + bits + stop_bits + (parity != "N")) / baud)  # 4 characters' time
        self.stop = threading.Event()
        self.last_error: BaseException | None = None
        self.rx_bytes = 0

    def connect(self) -> bool:
        if self.socket is not None:
            return True
        p = self.comm_params
        try:
            port = open_port(p.host, p.baudrate or 9600, self.framing, exclusive=True, timeout=p.timeout_connect or 1.0)
        except (serial.SerialException, OSError, ValueError) as exc:
            self.last_error = exc
            return False
        port.inter_byte_timeout = self.inter_byte_timeout or None
        self.socket = port
        self.last_error = None
        return True

    def close(self) -> None:
        super().close()  # type: ignore[no-untyped-call]

    def recv(self, size: int | None) -> bytes:
        port = self.socket
        if port is None:
            raise ConnectionException(str(self))
        end = time.monotonic() + (self.comm_params.timeout_connect or 1.0)
        fd = _fileno(port)
        try:
            while not port.in_waiting:
                if self.stop.is_set():
                    raise Stopped("stopped while waiting for a reply")
                left = end - time.monotonic()
                if left <= 0:
                    return b""  # pymodbus reads this as a timeout
                if fd is None:  # rfc2217:// and other URLs without a descriptor: poll
                    self.stop.wait(min(left, self.poll_s))
                else:
                    select.select([fd], [], [], min(left, SLICE_S))
        except OSError as exc:
            self.close()
            raise ConnectionException(f"port lost: {exc}") from None
        data = super().recv(size)
        self.rx_bytes += len(data)
        return data


def _fileno(port: object) -> int | None:
    """The descriptor to wait on for a pyserial port (device paths and socket:// have one)."""
    try:
        fd = port.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError, serial.SerialException):
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


Client = _TcpClient | _SerialClient


class Bus:
    """One transport and its lock: at most one request in flight, whoever asks."""

    def __init__(self, target: Target, baud: int = 9600, framing: str = "8N1", timeout_s: float = 2.0, keep_open: bool | None = None):
        self.target = target
        self.baud, self.framing = baud, framing
        self.keep_open = target.kind == "rtu" if keep_open is None else keep_open
        self.client: Client = (
            _TcpClient(target, timeout_s) if target.kind == "tcp" else _SerialClient(target, baud, framing, timeout_s)
        )
        self._lock = threading.Lock()
        self.users = 0

    @contextmanager
    def session(self, stop: threading.Event, timeout_s: float) -> Iterator[Session]:
        """Hold the bus for one poll: connected on entry (LinkDown if not), closed on exit unless kept open."""
        while not self._lock.acquire(timeout=SLICE_S):
            if stop.is_set():
                raise Stopped("stopped while waiting for the bus")
        try:
            c = self.client
            c.stop = stop
            c.comm_params.timeout_connect = timeout_s
            if not c.connect():
                if stop.is_set():
                    raise Stopped("stopped while connecting")
                err = c.last_error or OSError("cannot connect")
                raise LinkDown(connect_hint(err, self.target, timeout_s))
            s = Session(self, stop, timeout_s)
            try:
                yield s
            finally:
                if not self.keep_open:
                    c.close()
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            self.client.close()


class Session:
    """Reads on a held bus (see `Bus.session`)."""

    def __init__(self, bus: Bus, stop: threading.Event, timeout_s: float) -> None:
        self.bus = bus
        self.stop = stop
        self.timeout_s = timeout_s
        self.replies = 0  # on this connection
        self._rx_start = bus.client.rx_bytes

    @property
    def rx_bytes(self) -> int:
        """Bytes received in this session."""
        return self.bus.client.rx_bytes - self._rx_start

    def read(self, address: int, count: int, unit: int, registers: str = "holding", retries: int = 1) -> list[int]:
        """Read `count` registers; raises ExceptionReply, NoReply, LinkDown or Stopped."""
        c = self.bus.client
        target = self.bus.target
        reconnected = False
        attempt = 0
        while True:
            if self.stop.is_set():
                raise Stopped("stopped")
            if not c.connect():
                raise LinkDown(connect_hint(c.last_error or OSError("cannot connect"), target, self.timeout_s))
            try:
                if registers == "input":
                    rr = c.read_input_registers(address, count=count, device_id=unit)
                else:
                    rr = c.read_holding_registers(address, count=count, device_id=unit)
            except ConnectionException as exc:
                c.close()
                if target.kind == "tcp" and self.replies and not reconnected:
                    # A router with "keep persistent connection" off closes after each reply.
                    reconnected, self.replies = True, 0
                    continue
                raise LinkDown(f"{target}: {_clean(exc)}") from None
            except ModbusException:  # no (valid) reply within the timeout
                if target.kind == "tcp":
                    c.close()  # a late reply must not be taken for the next request's
                attempt += 1
                if attempt > retries:
                    raise NoReply(f"no reply within {self.timeout_s:g} s from unit {unit} at {target}") from None
                continue
            if rr.isError():
                code = int(getattr(rr, "exception_code", 0) or 0)
                raise ExceptionReply(code, address, count)
            regs = list(rr.registers)
            if len(regs) != count:
                raise NoReply(f"short reply from unit {unit} at {target}: {len(regs)} of {count} registers")
            self.replies += 1
            return regs


def _clean(exc: BaseException) -> str:
    text = str(exc)
    return text.removeprefix("Modbus Error: ").strip("[] ") or type(exc).__name__


@dataclass(frozen=True)
class PollResult:
    """What one pass over a map's blocks got: registers by address, and what went wrong."""

    registers: dict[int, int]
    exceptions: tuple[ExceptionReply, ...]
    replies: int
    no_reply: NoReply | None = None


def read_blocks(s: Session, blocks: tuple[Block, ...], unit: int, registers: str = "holding", retries: int = 1) -> PollResult:
    """Read every block; an exception reply skips its block, no reply ends the pass (the rest would wait too)."""
    regs: dict[int, int] = {}
    exceptions: list[ExceptionReply] = []
    replies = 0
    for b in blocks:
        try:
            values = s.read(b.start, b.count, unit, registers, retries)
        except ExceptionReply as exc:
            exceptions.append(exc)
            replies += 1
            continue
        except NoReply as exc:
            return PollResult(regs, tuple(exceptions), replies, exc)
        replies += 1
        regs.update(zip(range(b.start, b.start + b.count), values, strict=True))
    return PollResult(regs, tuple(exceptions), replies)


# ---------------------------------------------------------------------------------------------
# Buses shared between devices


_buses: dict[tuple[str, str, int], Bus] = {}
_buses_lock = threading.Lock()


def acquire_bus(target: Target, baud: int, framing: str, timeout_s: float) -> Bus:
    """The bus for `target`, shared with the other devices on it; release it with `release_bus`.

    Raises LinkDown when a serial port is already in use at another baud rate or framing.
    """
    with _buses_lock:
        bus = _buses.get(target.key)
        if bus is None:
            bus = _buses[target.key] = Bus(target, baud, framing, timeout_s)
        elif target.kind == "rtu" and (bus.baud, bus.framing) != (baud, framing):
            raise LinkDown(
                f"{target} is already used by another device at {bus.baud} {bus.framing}: "
                "devices on one port must have the same baud and framing"
            )
        bus.users += 1
        return bus


def release_bus(bus: Bus) -> None:
    with _buses_lock:
        bus.users -= 1
        if bus.users > 0:
            return
        if _buses.get(bus.target.key) is bus:
            del _buses[bus.target.key]
    bus.close()

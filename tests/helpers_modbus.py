"""Modbus test parts: a real pymodbus server (TCP on loopback, or RTU on a pty) serving a Teltonika RUT's
registers, a linked pty pair standing in for an RS-485 line, a TCP listener that never answers, and encoders.

The registers a server holds can be changed while it runs (`ModbusSim.update`), it can answer late
(`delay_s`), and it counts the requests it served, so a test can check what the driver asked for.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import socket
import struct
import threading
import tty
from collections.abc import Iterable
from pathlib import Path

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from alkomd.daemon.ctl.demo.broker import free_port

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # the server logs every exception it answers

# A patrol car on Jl. Nani Wartabone, Kota Gorontalo (0.54 N: Indonesia straddles the equator).
LAT, LON = 0.5435, 123.0595

LAYOUTS = {"big": (0, 1, 2, 3), "little": (2, 3, 0, 1), "big-byteswap": (1, 0, 3, 2), "little-byteswap": (3, 2, 1, 0)}


def regs32(raw: bytes, order: str = "big") -> list[int]:
    """Four big-endian bytes ABCD laid out in two registers in `order`."""
    b = [raw[i] for i in LAYOUTS[order]]
    return [b[0] << 8 | b[1], b[2] << 8 | b[3]]


def f32(value: float, order: str = "big") -> list[int]:
    return regs32(struct.pack(">f", value), order)


def u32(value: int, order: str = "big") -> list[int]:
    return regs32(struct.pack(">I", value), order)


def i32(value: int, order: str = "big") -> list[int]:
    return regs32(struct.pack(">i", value), order)


def ascii_regs(text: str, count: int = 16) -> list[int]:
    raw = text.encode("ascii").ljust(count * 2, b"\0")[: count * 2]
    return [raw[i] << 8 | raw[i + 1] for i in range(0, len(raw), 2)]


def at(address: int, regs: list[int]) -> dict[int, int]:
    return {address + i: r for i, r in enumerate(regs)}


def teltonika(
    lat: float = LAT, lon: float = LON, order: str = "big", *, speed: float = 42.5, sats: int = 9, hdop: float = 0.9,
    uptime: int = 86_400, signal: int = -71, temp_c: float = 41.5, operator: str = "Telkomsel", sim: str = "sim1",
    network: str = "LTE", gps: bool = True,
) -> dict[int, int]:
    """A Teltonika RUT's registers by 0-based address: health always, GPS unless `gps` is False (a RUT240).

    The GPS floats are laid out in `order`; the integers (satellites too) are big-endian, as on
    the real routers.
    """
    regs = {**at(1, u32(uptime)), **at(3, i32(signal)), **at(5, i32(round(temp_c * 10)))}
    regs |= at(23, ascii_regs(operator)) | at(87, ascii_regs(sim)) | at(119, ascii_regs(network))
    if gps:
        regs |= at(143, f32(lat, order)) | at(145, f32(lon, order))
        regs |= at(179, f32(speed, order)) | at(181, u32(sats)) | at(183, f32(hdop, order))
    return regs


def _runs(registers: dict[int, int]) -> Iterable[tuple[int, list[int]]]:
    """Contiguous runs of addresses: the server answers exception 2 for anything between them."""
    run: list[int] = []
    start = prev = -2
    for a in sorted(registers):
        if a != prev + 1 and run:
            yield start, run
            run = []
        if not run:
            start = a
        run.append(registers[a])
        prev = a
    if run:
        yield start, run


class ModbusSim:
    """A pymodbus server in a thread of its own: Modbus TCP on a free loopback port, or RTU on `serial_port`.

    `devices` maps unit ids to their registers. `update(unit, regs)` changes registers (applied at
    the next request); `delay_s` makes every answer late; `requests` counts reads per unit.
    """

    def __init__(self, devices: dict[int, dict[int, int]], serial_port: str = "", baud: int = 9600, port: int = 0) -> None:
        self.serial_port = serial_port
        self.baud = baud
        self.port = 0 if serial_port else port or free_port()
        self.delay_s = 0.0
        self.requests: dict[int, int] = dict.fromkeys(devices, 0)
        self.reads: list[tuple[int, int, int]] = []  # (unit, address, count)
        self._pending: dict[int, dict[int, int]] = {u: {} for u in devices}
        self._lock = threading.Lock()
        self._devices = devices
        self._loop = asyncio.new_event_loop()
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="modbus-sim", daemon=True)

    @property
    def url(self) -> str:
        return self.serial_port or f"tcp://127.0.0.1:{self.port}"

    def start(self) -> ModbusSim:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("modbus server did not start")
        if self._error is not None:
            raise RuntimeError(f"modbus server failed: {self._error}")
        return self

    def update(self, unit: int, registers: dict[int, int]) -> None:
        with self._lock:
            self._pending[unit].update(registers)

    def stop(self) -> None:
        if self._server is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(10)
        self._thread.join(10)

    def _device(self, unit: int, registers: dict[int, int]) -> SimDevice:
        async def action(fc: int, start: int, address: int, count: int, current: list[int], values: object) -> ExcCodes | None:
            with self._lock:
                self.requests[unit] += 1
                self.reads.append((unit, address, count))
                pending, self._pending[unit] = self._pending[unit], {}
            for a, v in pending.items():
                if 0 <= a - start < len(current):
                    current[a - start] = v
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            return None

        blocks = [SimData(a, values=run, datatype=DataType.REGISTERS) for a, run in _runs(registers)]
        return SimDevice(id=unit, simdata=blocks, action=action)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            pending = [t for t in asyncio.all_tasks(self._loop) if not t.done()]  # e.g. a reply held by delay_s
            for t in pending:
                t.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

    async def _main(self) -> None:
        devices = [self._device(u, r) for u, r in self._devices.items()]
        try:
            if self.serial_port:
                self._server = ModbusSerialServer(devices, framer=FramerType.RTU, port=self.serial_port, baudrate=self.baud)
            else:
                self._server = ModbusTcpServer(devices, address=("127.0.0.1", self.port))
            await self._server.serve_forever(background=True)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise
        self._ready.set()
        await self._server.serving


class PtyLink:
    """Two ptys joined by a copying thread: a serial cable between `a` and `b` (paths of symlinks)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.a, self.b = directory / "ttyStation", directory / "ttyModem"
        self._fds: list[int] = []
        masters = []
        for link in (self.a, self.b):
            master, slave = os.openpty()
            tty.setraw(slave)
            os.symlink(os.ttyname(slave), link)
            masters.append(master)
            self._fds += [master, slave]  # the slave stays open so the master never sees EIO
        self._masters = masters
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._copy, name="pty-link", daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        ma, mb = self._masters
        other = {ma: mb, mb: ma}
        while not self._stop.is_set():
            readable, _, _ = select.select([ma, mb], [], [], 0.05)
            for fd in readable:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                os.write(other[fd], data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for fd in self._fds:
            os.close(fd)
        for link in (self.a, self.b):
            link.unlink(missing_ok=True)


class _Listener:
    """A loopback TCP listener whose thread hands each accepted connection to `_handle`."""

    def __init__(self, name: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=name, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


class SilentListener(_Listener):
    """A TCP listener that accepts connections and never answers (a hung modem)."""

    def __init__(self) -> None:
        self.accepted: list[socket.socket] = []
        super().__init__("silent-listener")

    def _handle(self, conn: socket.socket) -> None:
        self.accepted.append(conn)

    def close(self) -> None:
        super().close()
        for c in self.accepted:
            c.close()


class OneShotProxy(_Listener):
    """A router with "keep persistent connection" off: forwards one request per connection, then closes it."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.connections = 0
        super().__init__("one-shot-proxy")

    def _handle(self, conn: socket.socket) -> None:
        self.connections += 1
        with conn, socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5) as up:
            conn.settimeout(5)
            try:
                request = conn.recv(4096)
                if request:
                    up.sendall(request)
                    conn.sendall(up.recv(4096))
            except OSError:
                pass


def closed_port_url() -> str:
    """tcp:// URL of a loopback port nothing listens on (connection refused)."""
    return f"tcp://127.0.0.1:{free_port()}"

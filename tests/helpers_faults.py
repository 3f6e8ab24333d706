"""Fault-injection helpers for the outage and fault-matrix tests: station configs with extra keys, a
mosquitto with its own configuration lines (ACL, packet limits, persistence), a TCP proxy that
can turn into a half-open path, a background GPS feed and a NOTIFY_SOCKET listener.

Everything started here is stopped by its own PID or thread; brokers listen on free loopback ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from conftest import Feeder, Station, Subscriber

from alkomd.daemon.ctl.demo.broker import find_mosquitto, free_port, port_open


def configure(station: Station, devices: int = 1, store: str = "", mqtt: str = "", extra: str = "") -> None:
    """`Station.write_config`, plus lines for `[store]` and `[mqtt]` and whole sections at the end."""
    station.write_config(devices=devices, extra_mqtt=mqtt)
    text = station.config.read_text()
    head = f'[store]\npath = "{station.db}"\n'
    assert head in text
    station.config.write_text(text.replace(head, head + store) + "\n" + extra)


def unsent_bytes(station: Station) -> int:
    """UTF-8 payload bytes of the unsent outbox, read from the database (what the budget limits)."""
    rows = station.query("SELECT coalesce(sum(length(CAST(payload AS BLOB))), 0) FROM outbox WHERE sent IS NULL")
    return int(rows[0][0])


class Mosquitto:
    """A private mosquitto on a free loopback port with extra configuration lines, killed and restarted by PID."""

    def __init__(self, workdir: Path, conf: str = "", port: int | None = None) -> None:
        binary = find_mosquitto()
        assert binary is not None, "mosquitto is not installed (./run-tests installs it)"
        self.binary = binary
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.log_path = workdir / "mosquitto.log"
        self.conf_path = workdir / "mosquitto.conf"
        # `user`: a broker started as root keeps our uid and can read and write our files; ignored otherwise.
        self.conf_path.write_text(
            f"user {getpass.getuser()}\nlistener {self.port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
            f"log_dest stderr\nlog_type all\nlog_timestamp true\n{conf}"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf_path)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.workdir,
            )
        deadline = time.monotonic() + 5
        while not port_open("127.0.0.1", self.port):
            assert self.proc.poll() is None, f"mosquitto exited:\n{self.log()[-2000:]}"
            assert time.monotonic() < deadline, "mosquitto did not listen within 5 s"
            time.sleep(0.02)
        return self

    def _signal(self, sig: int) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
            proc.wait(10)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class HalfOpenProxy:
    """127.0.0.1:<port> -> 127.0.0.1:<target>, in a thread with its own asyncio loop.

    `stall()` makes the path half-open: nothing is forwarded any more in either direction and
    nothing is closed, as when a router on the way dies or a NAT entry is lost; connections made
    while stalled are accepted and go nowhere. `heal()` lets new connections through again; the
    connections of before stay dead (their TCP state is gone on the far side).
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.generation = 0
        self.stalled = False
        self.connections = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._writers: list[asyncio.StreamWriter] = []  # closed when the proxy closes (a dead path never closes them)
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(5), "proxy did not start"

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in handlers:
            t.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        for w in self._writers:
            w.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        gen = self.generation
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self._writers += (writer, up_w)
        await asyncio.gather(self._pipe(reader, up_w, gen), self._pipe(up_r, writer, gen), return_exceptions=True)

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, gen: int) -> None:
        try:
            while data := await r.read(65536):
                if self._dead(gen):
                    continue  # swallowed: the far side never hears of it, and nobody is told
                w.write(data)
                await w.drain()
        finally:
            # A close on a dead path is swallowed too: the broker's own keepalive close must not reach the
            # daemon, or the test would measure the broker's detection (1.5 x keepalive) instead of the daemon's.
            if not self._dead(gen):
                w.close()

    def _dead(self, gen: int) -> bool:
        return self.stalled or gen != self.generation

    def stall(self) -> None:
        self._loop.call_soon_threadsafe(self._set, True)

    def heal(self) -> None:
        self._loop.call_soon_threadsafe(self._set, False)

    def _set(self, stalled: bool) -> None:
        self.stalled = stalled
        self.generation += 1

    def close(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()


class FeedThread:
    """Feeders written in a background thread, one epoch each every `period_s`, until `stop()`.

    An epoch nobody reads (the pty unplugged, or the daemon killed and not yet restarted) is
    dropped and counted, as a receiver's bytes are lost then; `Feeder.times` has only those written.
    """

    def __init__(self, feeds: list[Feeder], period_s: float = 0.05) -> None:
        self.feeds = feeds
        self.period_s = period_s
        self.skipped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> FeedThread:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            for f in self.feeds:
                try:
                    f.write(1)
                except (AssertionError, OSError):  # nobody has the port open
                    self.skipped += 1
            self._stop.wait(self.period_s)

    def stop(self) -> int:
        """Stop writing; returns the number of valid epochs written in all."""
        self._stop.set()
        self._thread.join(5)
        return sum(len(f.times) for f in self.feeds)


class NotifySocket:
    """A systemd-like NOTIFY_SOCKET (a datagram socket) that records what the daemon tells systemd, and when."""

    def __init__(self, path: Path | str) -> None:
        self.address = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.address)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []  # (monotonic time received, datagram)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def fields(self, key: str) -> list[str]:
        """Values of `KEY=` lines, in order."""
        return [ln[len(key) + 1 :] for _, text in list(self.messages) for ln in text.split("\n") if ln.startswith(key + "=")]

    def firsts(self) -> list[str]:
        """The first line of each message, in order (READY=1, RELOADING=1, STATUS=..., WATCHDOG=1)."""
        return [text.split("\n", 1)[0] for _, text in list(self.messages)]

    @property
    def pings(self) -> list[float]:
        """time.monotonic() (the test's) at which each WATCHDOG=1 arrived."""
        return [t for t, text in list(self.messages) if "WATCHDOG=1" in text.split("\n")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def outbox_ids(station: Station, where: str = "1") -> set[str]:
    return {r[0] for r in station.query(f"SELECT msg_id FROM outbox WHERE {where}")}


def received_ids(sub: Subscriber) -> Counter[str]:
    """msg_id -> times the consumer received it (the node's own state messages included)."""
    return Counter(str(m.payload.get("msg_id")) for m in list(sub.messages))

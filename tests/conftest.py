"""Shared fixtures: a private mosquitto, real ptys, the daemon as a real process, an MQTT subscriber."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from alkomd.daemon.ctl.demo.broker import Broker, free_port
from alkomd.drivers.nmea_writer import EpochSpec, epoch
from alkomd.drivers.simulator import PtyGps

NODE = "polri110/gorontalo/kota-gorontalo"


def wait_until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll `pred` until true; fail the test after `timeout` seconds (a bound, not a timing claim)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def loop_until(loop: asyncio.AbstractEventLoop, pred: Callable[[], bool], timeout: float = 10.0) -> None:
    """Run an event loop until `pred` holds (a bound, not a timing claim)."""

    async def wait() -> None:
        while not pred():
            await asyncio.sleep(0.01)

    loop.run_until_complete(asyncio.wait_for(wait(), timeout))


@contextmanager
def paho_thread_held(client: paho.Client, other: paho.Client, topic: str = "hold/now") -> Iterator[threading.Event]:
    """Hold `client`'s network thread inside a message callback (`other` publishes to `topic`, which `client` must be
    subscribed to) until the block ends; yields the event that is set while the thread is held."""
    inside, release = threading.Event(), threading.Event()

    def hold(c: paho.Client, u: object, m: paho.MQTTMessage) -> None:
        inside.set()
        release.wait(120)
        inside.clear()

    client.message_callback_add(topic, hold)
    other.publish(topic, b"hold", qos=0)
    wait_until(inside.is_set, 20, "the client's network thread inside the callback")
    try:
        yield inside
    finally:
        release.set()
        client.message_callback_remove(topic)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(kind="mosquitto", workdir=tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.close()


@dataclass
class Postgres:
    """A private PostgreSQL cluster (trust authentication, loopback only) on a free port."""

    dsn: str
    port: int


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    """Started like the broker: initdb into a fresh directory, pg_ctl start on a free loopback port (never 5432), stopped
    and deleted after the test. As root, the cluster runs as the `postgres` system user (PostgreSQL refuses root)."""
    import glob
    import pwd
    import shutil
    import tempfile

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert found, "PostgreSQL is not installed (./run-tests installs Debian's postgresql)"
    bindir = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="alkomd-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = root / "data"
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "alkomd", "--auth=trust", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True, timeout=120)
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root}"
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o", opts, "-w", "-t", "60", "start"],
                   check=True, capture_output=True, timeout=120)
    try:
        yield Postgres(f"postgresql://alkomd@127.0.0.1:{port}/postgres", port)
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True,
                       timeout=60)
        shutil.rmtree(root, ignore_errors=True)


CENTRAL_CONF = Path(__file__).resolve().parents[1] / "config" / "mosquitto" / "central.conf"
STATION_CONF = CENTRAL_CONF.with_name("bridge-station.conf")


def _shipped_flow(tmp_path: Path, conf: Path) -> Iterator[Broker]:
    """A private mosquitto with the flow control of a shipped configuration (max_queued_messages, max_inflight_messages)."""
    flow = [line for line in conf.read_text().splitlines() if line.startswith(("max_queued_messages", "max_inflight_messages"))]
    assert len(flow) == 2
    b = Broker(kind="mosquitto", workdir=tmp_path / "broker", extra_conf="\n".join(flow) + "\n")
    b.start()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def central_broker(tmp_path: Path) -> Iterator[Broker]:
    """The shipped central broker's flow control (a queue per client that holds a worker's share while it is away:
    mosquitto keeps routing a shared subscription's share to a persistent session that is offline, and beyond
    max_queued_messages it drops them)."""
    yield from _shipped_flow(tmp_path, CENTRAL_CONF)


@pytest.fixture
def station_broker(tmp_path: Path) -> Iterator[Broker]:
    """The shipped station broker's flow control: a burst of calls the daemon has not handled yet waits in the
    broker's queue for it (the daemon acknowledges a call once it is stored)."""
    yield from _shipped_flow(tmp_path, STATION_CONF)


@dataclass
class Received:
    topic: str
    payload: dict[str, Any]
    retain: bool


class Subscriber:
    """A consumer with a persistent MQTT 5 session that re-subscribes on every connect."""

    def __init__(self, port: int, topic: str = f"{NODE}/#", client_id: str = "test-consumer") -> None:
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self.topic = topic
        c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
        c.reconnect_delay_set(1, 2)
        c.on_connect = lambda cl, ud, fl, rc, pr: cl.subscribe(self.topic, qos=1)
        c.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        c.connect_async("127.0.0.1", port, keepalive=5, clean_start=False, properties=props)
        c.loop_start()
        self.client = c

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        try:
            payload = json.loads(msg.payload)
        except ValueError:  # e.g. a deliberately broken status/set seen on the node's subtree
            payload = {"_raw": msg.payload.decode("utf-8", "replace")}
        with self._lock:
            self.messages.append(Received(msg.topic, payload, bool(msg.retain)))

    def on(self, suffix: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber_factory() -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(port: int, **kw: Any) -> Subscriber:
        s = Subscriber(port, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


@dataclass
class Station:
    """Files of one daemon under test."""

    dir: Path
    port: int
    links: list[Path] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.dir / "alkomd.toml"

    @property
    def db(self) -> Path:
        return self.dir / "alkomd.db"

    def write_config(self, devices: int = 1, extra_mqtt: str = "") -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.links = [self.dir / f"ttyGPS{i}" for i in range(devices)]
        parts = [
            '[node]\npath = "gorontalo/kota-gorontalo"\nname = "Polres Gorontalo Kota (test)"\n',
            f'[store]\npath = "{self.db}"\n',
            f'[mqtt]\nhost = "127.0.0.1"\nport = {self.port}\ntls = false\nkeepalive_s = 5\n'
            f"reconnect_min_s = 0.5\nreconnect_max_s = 2\nhealth_interval_s = 1\n{extra_mqtt}",
        ]
        for i, link in enumerate(self.links):
            parts.append(
                f'[[device]]\nid = "gps{i}"\ndriver = "nmea"\nurl = "{link}"\n'
                "silent_after_s = 2\nno_fix_after_s = 3\nreconnect_max_s = 1\n"
            )
            parts.append(f'[[unit]]\nid = "R2-{i:02d}"\ncallsign = "Macan {i:02d}"\ntype = "car"\ndevice = "gps{i}"\n')
        self.config.write_text("\n".join(parts))

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()


class Daemon:
    """`alkomd --config FILE` as a real child process, with its log captured."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []

    def start(self, until: str = "ready:") -> Daemon:
        """Start it and wait for a log line containing `until` (a standby: "standby: waiting")."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alkomd.daemon.main", "--config", str(self.config), "--log-level", "debug"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        wait_until(lambda: any(until in ln for ln in self.lines) or self.proc.poll() is not None, 20, f"daemon log: {until}")  # type: ignore[union-attr]
        assert self.proc.poll() is None, "daemon exited at start:\n" + self.log
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def station(tmp_path: Path, broker: Broker) -> Station:
    return Station(tmp_path / "station", broker.port)


@pytest.fixture
def daemons() -> Iterator[Callable[[Path], Daemon]]:
    made: list[Daemon] = []

    def make(config: Path) -> Daemon:
        d = Daemon(config).start()
        made.append(d)
        return d

    yield make
    for d in made:
        if d.proc is not None and d.proc.poll() is None:
            d.kill()


@pytest.fixture
def ptys() -> Iterator[Callable[[Path], PtyGps]]:
    made: list[PtyGps] = []

    def make(link: Path) -> PtyGps:
        p = PtyGps(link)
        made.append(p)
        return p

    yield make
    for p in made:
        p.unplug()


class Feeder:
    """Writes epochs with strictly increasing times (one second apart) into a pty."""

    def __init__(self, pty: PtyGps, lat: float = 0.5412, lon: float = 123.0595) -> None:
        self.pty = pty
        self.t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
        self.lat, self.lon = lat, lon
        self.times: list[datetime] = []

    def write(self, n: int = 1, gap_s: float = 0.0, valid: bool = True) -> None:
        for _ in range(n):
            self.t += timedelta(seconds=1)
            self.lat += 0.0001
            written = self.pty.write(epoch(EpochSpec(self.t, self.lat, self.lon, speed_kmh=40, course=10, valid=valid)))
            assert written > 0, "nobody has the pty open"
            if valid:
                self.times.append(self.t)
            if gap_s:
                time.sleep(gap_s)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


__all__ = ["NODE", "Broker", "Daemon", "Feeder", "Station", "Subscriber", "free_port", "iso", "wait_until"]

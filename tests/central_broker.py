"""The shipped central broker (config/mosquitto/central.conf + acl) started for a test, with a test PKI.

The shipped files are copied, not rewritten: `render` replaces only the deployment paths and
the listener line, each exactly once (a changed shipped line fails loudly here instead of
silently testing something else), and adds `user root` (a root CI must not drop privileges
away from the temporary files) and `log_type debug` (a line per PUBLISH, to count attempts).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as paho
from conftest import wait_until
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from alkomd.daemon.ctl.demo.broker import find_mosquitto, free_port, port_open

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "config" / "mosquitto"
EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")

# Users of the shipped acl that tests log in as, with their test passwords.
USERS = {
    "mabes": "pw-mabes",
    "gorontalo": "pw-polda",
    "gorontalo/bone-bolango": "pw-bone-bolango",
    "gorontalo/kota-gorontalo": "pw-kota-gorontalo",
    "console-bone-bolango-1": "pw-console",
}


def _run(*cmd: str | Path, cwd: Path) -> None:
    subprocess.run([str(c) for c in cmd], cwd=cwd, check=True, capture_output=True)


@dataclass(frozen=True)
class Pki:
    """A test CA, the broker's certificate (localhost, 127.0.0.1), client certificates, and a rogue CA."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def rogue_ca(self) -> Path:
        return self.dir / "rogue-ca.crt"

    def client(self, name: str) -> tuple[Path, Path]:
        """(certificate, key) made by `make` for `name` ("station" signed by our CA, "rogue" by the other)."""
        return self.dir / f"{name}.crt", self.dir / f"{name}.key"

    @classmethod
    def make(cls, d: Path) -> Pki:
        d.mkdir(parents=True, exist_ok=True)
        for ca in ("ca", "rogue-ca"):
            _run("openssl", "req", "-x509", *EC, "-days", "2", "-subj", f"/CN=alkomd-test-{ca}", "-keyout", f"{ca}.key",
                 "-out", f"{ca}.crt", cwd=d)
        (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
        for name, ca, cn, ext in (
            ("server", "ca", "localhost", "server.ext"),
            ("station", "ca", r"gorontalo\/bone-bolango", "client.ext"),
            ("rogue", "rogue-ca", r"gorontalo\/bone-bolango", "client.ext"),
        ):
            _run("openssl", "req", *EC, "-subj", f"/CN={cn}", "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
            _run("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                 "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", f"{name}.crt", cwd=d)
        return cls(d)


def render(text: str, d: Path, port: int, pki: Pki, require_certificate: bool = False) -> str:
    """The shipped central.conf with test paths and a loopback port; every replaced line must exist once."""
    swaps = {
        "pid_file /run/mosquitto/mosquitto.pid": f"pid_file {d}/mosquitto.pid",
        "password_file /etc/mosquitto/alkomd/passwd": f"password_file {d}/passwd",
        "acl_file /etc/mosquitto/alkomd/acl": f"acl_file {d}/acl",
        "persistence_location /var/lib/mosquitto/": f"persistence_location {d}/",
        "log_dest file /var/log/mosquitto/mosquitto.log": f"log_dest file {d}/mosquitto.log",
        "log_type information": "log_type information\nlog_type debug",
        "listener 8883": f"listener {port} 127.0.0.1",
        "cafile /etc/mosquitto/certs/ca.crt": f"cafile {pki.ca}",
        "certfile /etc/mosquitto/certs/server.crt": f"certfile {pki.dir}/server.crt",
        "keyfile /etc/mosquitto/certs/server.key": f"keyfile {pki.dir}/server.key",
        "require_certificate false": f"require_certificate {'true' if require_certificate else 'false'}",
    }
    lines = text.splitlines()
    for old, new in swaps.items():
        at = [i for i, ln in enumerate(lines) if ln == old]
        assert len(at) == 1, f"central.conf: expected the line {old!r} once, found it {len(at)} times"
        lines[at[0]] = new
    return "user root\n" + "\n".join(lines) + "\n"


def render_bridge(text: str, d: Path, port: int, central: CentralBroker, password: str) -> str:
    """The shipped bridge-station.conf with test paths, a loopback port and the test central broker."""
    swaps = {
        "pid_file /run/mosquitto/mosquitto.pid": f"pid_file {d}/mosquitto.pid",
        "persistence_location /var/lib/mosquitto/": f"persistence_location {d}/",
        "log_dest file /var/log/mosquitto/mosquitto.log": f"log_dest file {d}/mosquitto.log",
        "log_type information": "log_type information\nlog_type debug",
        "listener 1883 127.0.0.1": f"listener {port} 127.0.0.1",
        "address mqtt.polri110.example:8883": f"address localhost:{central.port}",
        "remote_password CHANGE-ME": f"remote_password {password}",
        "bridge_cafile /etc/mosquitto/certs/central-ca.crt": f"bridge_cafile {central.pki.ca}",
    }
    lines = text.splitlines()
    for old, new in swaps.items():
        at = [i for i, ln in enumerate(lines) if ln == old]
        assert len(at) == 1, f"bridge-station.conf: expected the line {old!r} once, found it {len(at)} times"
        lines[at[0]] = new
    return "user root\n" + "\n".join(lines) + "\n"


class StationBroker:
    """mosquitto running the shipped bridge-station.conf, bridged to a running CentralBroker."""

    def __init__(self, d: Path, central: CentralBroker, password: str) -> None:
        d.mkdir(parents=True, exist_ok=True)
        self.dir = d
        self.port = free_port()
        self.conf = d / "mosquitto.conf"
        self.conf.write_text(render_bridge((SHIPPED / "bridge-station.conf").read_text(), d, self.port, central, password))
        self.log_path = d / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> StationBroker:
        binary = find_mosquitto()
        assert binary, "mosquitto is required (./run-tests installs it)"
        with (self.dir / "stderr.log").open("ab") as err:
            self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         start_new_session=True)
        wait_until(lambda: port_open("127.0.0.1", self.port) or self.proc.poll() is not None, 10, "station broker listening")  # type: ignore[union-attr]
        assert self.proc.poll() is None, f"mosquitto exited: {(self.dir / 'stderr.log').read_text()}"
        return self

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class CentralBroker:
    """mosquitto running the shipped central.conf and acl (plus `acl_extra`), on 127.0.0.1:<free port>."""

    def __init__(self, d: Path, pki: Pki, users: dict[str, str] | None = None, acl_extra: str = "",
                 require_certificate: bool = False) -> None:
        self.dir = d
        self.pki = pki
        self.users = dict(USERS if users is None else users)
        d.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = d / "mosquitto.conf"
        self.conf.write_text(render((SHIPPED / "central.conf").read_text(), d, self.port, pki, require_certificate))
        self.acl = d / "acl"
        self.acl.write_text((SHIPPED / "acl").read_text() + acl_extra)
        self.passwd = d / "passwd"
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        for i, (user, password) in enumerate(self.users.items()):
            _run(tool, *(("-c",) if i == 0 else ()), "-b", self.passwd, user, password, cwd=d)
        self.log_path = d / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CentralBroker:
        binary = find_mosquitto()
        assert binary, "mosquitto is required (./run-tests installs it)"
        with (self.dir / "stderr.log").open("ab") as err:
            self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         start_new_session=True)
        wait_until(lambda: port_open("127.0.0.1", self.port) or self.proc.poll() is not None, 10, "central broker listening")  # type: ignore[union-attr]
        assert self.proc.poll() is None, f"mosquitto exited: {(self.dir / 'stderr.log').read_text()}\n{self.log}"
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def reload(self) -> None:
        """SIGHUP, as `systemctl reload mosquitto` does; returns once the broker says it reloaded."""
        before = self.log.count("Reloading config")
        os.kill(self.pid, signal.SIGHUP)
        wait_until(lambda: self.log.count("Reloading config") > before, 10, "mosquitto reloaded its configuration")

    def add_user(self, user: str, password: str) -> None:
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        _run(tool, "-b", self.passwd, user, password, cwd=self.dir)
        self.users[user] = password

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


B = TypeVar("B", CentralBroker, StationBroker)


@contextlib.contextmanager
def running(broker: B) -> Iterator[B]:
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@dataclass
class Got:
    topic: str
    payload: bytes


@dataclass
class Client:
    """A paho MQTT client on the central broker's TLS listener, recording what the broker answers."""

    broker: CentralBroker
    user: str | None
    password: str | None = None
    client_id: str = ""
    cert: tuple[Path, Path] | None = None
    ca: Path | None = None
    v5: bool = True
    connack: list[int] = field(default_factory=list)
    session_present: list[bool] = field(default_factory=list)
    disconnects: list[int] = field(default_factory=list)
    messages: list[Got] = field(default_factory=list)
    pubacks: dict[int, int] = field(default_factory=dict)
    subacks: dict[int, list[int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        proto = MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311
        c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=self.client_id or (self.user or "anon"),
                        protocol=proto)
        if self.user is not None:
            c.username_pw_set(self.user, self.password if self.password is not None else self.broker.users.get(self.user))
        cert, key = self.cert if self.cert else (None, None)
        c.tls_set(ca_certs=str(self.ca or self.broker.pki.ca), certfile=cert and str(cert), keyfile=key and str(key),
                  cert_reqs=ssl.CERT_REQUIRED)
        c.on_connect = lambda cl, ud, fl, rc, pr: (self.connack.append(rc.value), self.session_present.append(bool(fl.session_present)))
        c.on_disconnect = lambda cl, ud, fl, rc, pr: self.disconnects.append(rc.value if rc is not None else -1)
        c.on_publish = lambda cl, ud, mid, rc, pr: self.pubacks.__setitem__(mid, rc.value)
        c.on_subscribe = lambda cl, ud, mid, rcs, pr: self.subacks.__setitem__(mid, [r.value for r in rcs])
        c.on_message = self._on_message
        c.on_log = lambda cl, ud, level, text: self.errors.append(text) if level <= paho.MQTT_LOG_ERR else None
        self.client = c

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Got(msg.topic, bytes(msg.payload)))

    def connect(self, wait: bool = True) -> int | None:
        """Connect (TLS to localhost:<port>); the CONNACK reason code, or None if the broker never sent one."""
        props = None
        if self.v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
        self.client.connect("localhost", self.broker.port, keepalive=10, properties=props)
        self.client.loop_start()
        if not wait:
            return None
        end = time.monotonic() + 5
        while time.monotonic() < end and not self.connack and not self.disconnects:
            time.sleep(0.01)
        return self.connack[0] if self.connack else None

    def subscribe(self, topic: str) -> list[int]:
        _, mid = self.client.subscribe(topic, qos=1)
        wait_until(lambda: mid in self.subacks, 5, f"SUBACK for {topic}")
        return self.subacks[mid]

    def publish(self, topic: str, payload: bytes = b"{}", retain: bool = False) -> int:
        """Publish QoS 1 and wait for the PUBACK: its reason code (0x87 refused, 0x10 no subscriber, 0 delivered)."""
        mid = self.client.publish(topic, payload, qos=1, retain=retain).mid
        wait_until(lambda: mid in self.pubacks, 5, f"PUBACK for {topic}")
        return self.pubacks[mid]

    def on(self, topic: str) -> list[Got]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def listening_ports(pid: int) -> set[int]:
    """TCP ports in LISTEN state held by process `pid` (from /proc: no ss/netstat needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports

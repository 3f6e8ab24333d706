"""The broker link with TLS and a password from a file, against a real mosquitto with a test PKI."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from conftest import Daemon, Feeder, Station, paho_thread_held, wait_until
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from alkomd.daemon.ctl.demo.broker import find_mosquitto, free_port, port_open
from alkomd.daemon.mqtt.buffered import BufferedClient
from alkomd.drivers.simulator import PtyGps

PASSWORD = "s3cret-polres"


def _run(*cmd: str | Path, cwd: Path) -> None:
    subprocess.run([str(c) for c in cmd], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """mosquitto on a free port: TLS only, no anonymous clients, a password file."""
    d = tmp_path / "pki"
    d.mkdir()
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _run("openssl", "req", "-x509", *ec, "-days", "2", "-subj", "/CN=alkomd-test-ca", "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    _run("openssl", "req", *ec, "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr", cwd=d)
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "2", "-extfile", "server.ext", "-out", "server.crt", cwd=d)
    passwd_tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    _run(passwd_tool, "-c", "-b", "passwd", "polres-kota", PASSWORD, cwd=d)
    _run(passwd_tool, "-b", "passwd", "consumer", "consumer-pw", cwd=d)
    port = free_port()
    (d / "mosquitto.conf").write_text(
        f"per_listener_settings false\nallow_anonymous false\npassword_file {d}/passwd\npersistence false\n"
        f"user root\nlog_dest file {d}/mosquitto.log\nlog_type all\n"
        f"listener {port} 127.0.0.1\ncafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n"
        "tls_version tlsv1.2\n"
    )
    mosquitto = find_mosquitto()
    assert mosquitto, "mosquitto is required (./run-tests installs it)"
    proc = subprocess.Popen([mosquitto, "-c", str(d / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: port_open("127.0.0.1", port), 10, "TLS broker listening")
        yield port, d
    finally:
        proc.terminate()
        proc.wait(5)


class TlsConsumer:
    def __init__(self, port: int, ca: Path, topic: str) -> None:
        self.payloads: list[dict[str, object]] = []
        self.lock = threading.Lock()
        c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="consumer", protocol=MQTTProtocolVersion.MQTTv5)
        c.username_pw_set("consumer", "consumer-pw")
        c.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
        c.on_connect = lambda cl, ud, fl, rc, pr: cl.subscribe(topic, qos=1)
        c.on_message = lambda cl, ud, m: self.payloads.append(json.loads(m.payload))
        c.connect("localhost", port, keepalive=5)
        c.loop_start()
        self.client = c

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _station(tmp_path: Path, port: int, pki: Path, password: str) -> Station:
    st = Station(tmp_path / "station", port)
    secret = tmp_path / "mqtt-password"
    secret.write_text(password + "\n")  # a trailing newline, as editors leave it
    secret.chmod(0o600)
    st.write_config(extra_mqtt=f'username = "polres-kota"\npassword_file = "{secret}"\nca_file = "{pki}/ca.crt"\n')
    text = st.config.read_text().replace("tls = false", "tls = true").replace('host = "127.0.0.1"', 'host = "localhost"')
    st.config.write_text(text)
    return st


def test_tls_with_password_file_delivers_positions(
    tmp_path: Path, tls_broker: tuple[int, Path], daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps]
) -> None:
    port, pki = tls_broker
    st = _station(tmp_path, port, pki, PASSWORD)
    consumer = TlsConsumer(port, pki / "ca.crt", "polri110/gorontalo/kota-gorontalo/unit/+/position")
    try:
        pty = ptys(st.links[0])
        d = daemons(st.config)
        wait_until(lambda: "mqtt: connected" in d.log, what="TLS connection")
        wait_until(lambda: "gps0: starting -> waiting" in d.log, what="port open")
        feed = Feeder(pty)
        feed.write(3, gap_s=0.1)
        wait_until(lambda: len(consumer.payloads) == 3, what="3 positions over TLS")
        assert PASSWORD not in d.log, "a secret must never be logged"
    finally:
        consumer.close()


def test_wrong_password_is_reported_once_and_nothing_is_lost(
    tmp_path: Path, tls_broker: tuple[int, Path], daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps]
) -> None:
    port, pki = tls_broker
    st = _station(tmp_path, port, pki, "wrong-password")
    pty = ptys(st.links[0])
    d = daemons(st.config)
    wait_until(lambda: "Not authorized" in d.log or "Bad user name or password" in d.log, what="refusal logged")
    wait_until(lambda: "gps0: starting -> waiting" in d.log, what="port open")
    Feeder(pty).write(3, gap_s=0.1)
    wait_until(lambda: st.query("SELECT count(*) FROM positions")[0][0] == 3, what="positions recorded locally")
    time.sleep(4)  # several reconnect attempts (reconnect_max_s = 2 in the test config)
    refusals = [ln for ln in d.lines if "refused the connection" in ln]
    assert len(refusals) == 1, refusals
    assert st.query("SELECT count(*) FROM outbox WHERE sent IS NULL AND kind = 'position'")[0][0] == 3
    assert d.proc is not None and d.proc.poll() is None
    assert "wrong-password" not in d.log



def test_over_tls_a_publish_is_never_written_by_the_publishing_thread(tls_broker: tuple[int, Path]) -> None:
    """An SSL socket must not be written by one thread while another reads it: over TLS `write_through` leaves the
    packet to paho's thread (still in its queue while that thread is held), which sends it once free."""
    port, pki = tls_broker
    started: list[paho.Client] = []
    try:
        pub = BufferedClient(callback_api_version=CallbackAPIVersion.VERSION2, client_id="pub", protocol=MQTTProtocolVersion.MQTTv5)
        watcher = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="watcher", protocol=MQTTProtocolVersion.MQTTv5)
        heard: list[bytes] = []
        watcher.on_message = lambda c, u, m: heard.append(m.payload)
        acks = []
        accounts = ((pub, "hold/now", "polres-kota", PASSWORD), (watcher, "out/#", "consumer", "consumer-pw"))
        for client, topic, user, password in accounts:
            ack = threading.Event()
            client.on_subscribe = lambda *a, ack=ack: ack.set()
            client.username_pw_set(user, password)
            client.tls_set(ca_certs=str(pki / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
            client.connect("localhost", port)
            client.subscribe(topic, qos=1)
            client.loop_start()
            started.append(client)
            acks.append(ack)
        wait_until(lambda: all(a.is_set() for a in acks), 20, "both SUBACKs")
        with paho_thread_held(pub, watcher):
            pub.publish("out/tls", b"later", qos=1)
            pub.write_through()
            assert len(pub._out_packet) == 1  # left to paho's thread
        wait_until(lambda: heard == [b"later"], 20, "the message, sent by paho's thread once free")
    finally:
        for client in started:
            client.loop_stop()

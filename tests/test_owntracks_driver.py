"""The `owntracks` driver: phones over a private mosquitto and over its HTTP endpoint (auth), garbage, a whole station."""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import logging
import re
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from central_broker import Pki
from conftest import Broker, Daemon, Station, Subscriber, free_port, wait_until
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from alkomd.daemon.config import load
from alkomd.daemon.ctl.demo.broker import find_mosquitto, port_open
from alkomd.daemon.records import DeviceState, DeviceStatus, Fix, Record
from alkomd.daemon.schema import ConfigError
from alkomd.drivers import registry
from alkomd.drivers.owntracks_driver import OwnTracksHttp, OwnTracksMqtt, OwnTracksOptions, create
from alkomd.drivers.sim_owntracks import MqttPhones, along, location, post


class Run:
    """The driver in its own thread, as the runtime runs it."""

    def __init__(self, **opts: Any) -> None:
        self.records: list[Record] = []
        self.driver = create("phones", OwnTracksOptions(**opts))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.driver.run, args=(self.stop, self.records.append), daemon=True)
        self.thread.start()

    def states(self) -> list[DeviceState]:
        return [r.state for r in self.records if isinstance(r, DeviceStatus)]

    def fixes(self, radio: str | None = None) -> list[Fix]:
        return [r for r in self.records if isinstance(r, Fix) and (radio is None or r.radio == radio)]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive(), "driver must stop within a second or so"


def test_mqtt_phones_become_fixes_of_user_device(broker: Broker) -> None:
    run = Run(transport="mqtt", host="127.0.0.1", port=broker.port, tls=False, reconnect_max_s=1)
    assert isinstance(run.driver, OwnTracksMqtt)
    phones = MqttPhones("127.0.0.1", broker.port)
    try:
        wait_until(lambda: bool({DeviceState.WAITING, DeviceState.CONNECTED} & set(run.states())), what="subscribed")
        wait_until(lambda: run.driver.counters().sentences >= 1 or _probe(phones, run), what="the subscription to take effect")
        phones.publish("bripka-andi/pixel7", location(0.5435, 123.0568, acc=15, vel=30, cog=90))
        wait_until(lambda: bool(run.fixes("bripka-andi/pixel7")), what="the phone's fix")
        f = run.fixes("bripka-andi/pixel7")[0]
        assert (f.device, f.accuracy_m, f.speed_kmh, f.course, f.mode) == ("phones", 15.0, 30.0, 90.0, 2)
        # Garbage of every kind: counted, never fatal; other message types are read but give no fix.
        for topic, data in [
            ("owntracks/x/y", b"not json"), ("owntracks/x/y", b"[1,2]"), ("owntracks/x/y", b'{"_type":"nonsense"}'),
            ("owntracks/x/y", bytes(range(256))), ("owntracks/x/y", b'{"_type":"location","lat":"a","lon":1,"tst":1}'),
            ("owntracks/x/y", b'{"_type":"lwt","tst":1}'), ("owntracks/x/y", b'{"_type":"location","lat":0,"lon":0,"tst":1}'),
        ]:
            phones.publish_raw(topic, data)
        phones.publish("briptu-sari/a52", along("kota-gorontalo-loop", 5, 60))
        wait_until(lambda: bool(run.fixes("briptu-sari/a52")), what="the second phone after the garbage")
        c = run.driver.counters()
        assert run.thread.is_alive() and c.parse_errors >= 4 and c.rejected_fixes >= 2 and c.fixes == len(run.fixes())
        # The broker goes away and comes back: disconnected, then subscribed again.
        broker.restart()
        wait_until(lambda: DeviceState.DISCONNECTED in run.states(), what="disconnected")
        wait_until(lambda: run.states()[-1] is not DeviceState.DISCONNECTED, 20, what="reconnected")
        assert run.driver.counters().reconnects >= 1
    finally:
        phones.close()
        run.close()


def _probe(phones: MqttPhones, run: Run) -> bool:
    """Publish a harmless message until the driver reads one (the subscription is then in place)."""
    phones.publish_raw("owntracks/probe/probe", b'{"_type":"status"}')
    time.sleep(0.1)
    return run.driver.counters().sentences >= 1


def test_mqtt_broker_away_is_disconnected_with_the_reason() -> None:
    port = free_port()
    run = Run(transport="mqtt", host="127.0.0.1", port=port, tls=False, reconnect_max_s=0.5)
    try:
        wait_until(lambda: bool(run.states()), what="a state")
        status = next(r for r in run.records if isinstance(r, DeviceStatus))
        assert status.state is DeviceState.DISCONNECTED and f"127.0.0.1:{port}" in status.detail
    finally:
        run.close()


@pytest.fixture
def http_run(tmp_path: Path) -> Any:
    users = tmp_path / "phones.users"
    users.write_text("# officers' phones\nbripka-andi:s3cret-andi\nbriptu-sari:s3cret-sari\n")
    port = free_port()
    run = Run(transport="http", bind="127.0.0.1", listen_port=port, users_file=users, reconnect_max_s=0.5)
    wait_until(lambda: bool({DeviceState.WAITING, DeviceState.CONNECTED} & set(run.states())), what="listening")
    yield run, f"http://127.0.0.1:{port}/pub", port
    run.close()


def test_http_refuses_without_credentials_and_accepts_with_them(http_run: Any) -> None:
    run, url, port = http_run
    assert isinstance(run.driver, OwnTracksHttp)
    report = location(0.5435, 123.0568, acc=8)
    assert post(url, "bripka-andi/pixel7", report)[0] == 401
    assert post(url, "bripka-andi/pixel7", report, password="wrong")[0] == 401
    assert post(url, "bripka-andi/pixel7", report, user="nobody", password="s3cret-andi")[0] == 401
    assert post(url, "bripka-andi/pixel7", report, user="briptu-sari", password="s3cret-sari")[0] == 403  # not her phone
    assert not run.fixes()
    status, body = post(url, "bripka-andi/pixel7", report, password="s3cret-andi")
    assert (status, json.loads(body)) == (200, [])
    wait_until(lambda: bool(run.fixes()), what="the fix")
    (f,) = run.fixes()
    assert (f.radio, f.accuracy_m, f.device) == ("bripka-andi/pixel7", 8.0, "phones")
    # Garbage from an authenticated phone is answered [] (the app would resend a refused message forever) and counted.
    for data in (b"not json", b"{}", bytes(range(256)), b'{"_type":"location"}'):
        assert post(url, "bripka-andi/pixel7", data, password="s3cret-andi")[0] == 200
    assert post(url.replace("/pub", "/other"), "bripka-andi/pixel7", report, password="s3cret-andi")[0] == 404
    assert post(url, "bripka-andi/pixel7", b"x" * (300 * 1024), password="s3cret-andi")[0] == 413
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/pub")
    assert conn.getresponse().status == 405
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # a raw request line of garbage
    conn.sock = None
    conn.connect()
    assert conn.sock is not None
    conn.sock.sendall(b"\x00\xff garbage\r\n\r\n")
    conn.sock.recv(1024)
    conn.close()
    token = base64.b64encode(b"bripka-andi:s3cret-andi").decode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # no Content-Length
    conn.putrequest("POST", "/pub")
    conn.putheader("Authorization", f"Basic {token}")
    conn.endheaders()
    assert conn.getresponse().status == 411
    conn.close()
    assert run.thread.is_alive()
    assert post(url, "bripka-andi/pixel7", location(0.55, 123.06), password="s3cret-andi")[0] == 200
    wait_until(lambda: len(run.fixes()) == 2, what="a fix after the garbage")
    c = run.driver.counters()
    assert c.parse_errors >= 3 and c.fixes == 2
    # Without X-Limit-D the body's topic names the phone, but only as its own user.
    before = run.driver.counters().parse_errors
    for topic in ("owntracks/briptu-sari/a52", "owntracks/bripka-andi/tablet"):
        body = json.dumps(dict(location(0.56, 123.07), topic=topic)).encode()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/pub", body, {"Authorization": f"Basic {token}", "Content-Type": "application/json"})
        assert conn.getresponse().status == 200
        conn.close()
    wait_until(lambda: bool(run.fixes("bripka-andi/tablet")), what="the fix named by the body's topic")
    assert not run.fixes("briptu-sari/a52") and run.driver.counters().parse_errors == before + 1
    # An officer's phone added to the users file is let in without a restart.
    assert post(url, "bharada-rudi/s23", location(0.55, 123.06), password="pw-rudi")[0] == 401
    users = run.driver.opts.users_file
    users.write_text(users.read_text() + "bharada-rudi:pw-rudi\n")
    wait_until(lambda: post(url, "bharada-rudi/s23", location(0.55, 123.06), password="pw-rudi")[0] == 200, what="the new user")
    assert post(url, "bripka-andi/pixel7", location(0.55, 123.06), password="s3cret-andi")[0] == 200


def test_http_shared_secret_and_config_rules(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("one-for-all\n")
    port = free_port()
    run = Run(transport="http", bind="127.0.0.1", listen_port=port, secret_file=secret)
    try:
        wait_until(lambda: bool({DeviceState.WAITING, DeviceState.CONNECTED} & set(run.states())), what="listening")
        url = f"http://127.0.0.1:{port}/pub"
        assert post(url, "anyone/phone", location(0.5, 123.0), password="nope")[0] == 401
        assert post(url, "anyone/phone", location(0.5, 123.0), password="one-for-all")[0] == 200
        wait_until(lambda: bool(run.fixes("anyone/phone")), what="the fix")
    finally:
        run.close()
    with pytest.raises(ValueError, match="users_file and secret_file"):
        OwnTracksOptions(transport="http")
    with pytest.raises(ValueError, match="users_file and secret_file"):
        OwnTracksOptions(transport="http", users_file=secret, secret_file=secret)


def test_http_port_in_use_is_disconnected(tmp_path: Path, http_run: Any) -> None:
    _, _, port = http_run
    secret = tmp_path / "s"
    secret.write_text("x")
    run = Run(transport="http", bind="127.0.0.1", listen_port=port, secret_file=secret, reconnect_max_s=0.5)
    try:
        wait_until(lambda: bool(run.states()), what="a state")
        assert run.states()[0] is DeviceState.DISCONNECTED and "cannot listen" in run.records[0].detail  # type: ignore[union-attr]
    finally:
        run.close()


def phones_config(station: Station, http_port: int, secret: Path) -> Path:
    station.dir.mkdir(parents=True, exist_ok=True)
    station.config.write_text(
        '[node]\npath = "gorontalo/kota-gorontalo"\n\n'
        f'[store]\npath = "{station.db}"\n\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {station.port}\ntls = false\nkeepalive_s = 5\nreconnect_min_s = 0.5\n'
        "reconnect_max_s = 2\nhealth_interval_s = 1\n\n"
        f'[[device]]\nid = "phones-mqtt"\ndriver = "owntracks"\nhost = "127.0.0.1"\nport = {station.port}\ntls = false\n'
        "reconnect_max_s = 1\n\n"
        f'[[device]]\nid = "phones-http"\ndriver = "owntracks"\ntransport = "http"\nbind = "127.0.0.1"\n'
        f'listen_port = {http_port}\nsecret_file = "{secret}"\nreconnect_max_s = 1\n\n'
        '[[unit]]\nid = "BRIPKA-ANDI"\ntype = "foot"\nradio = "bripka-andi/pixel7"\n\n'
        '[[unit]]\nid = "BRIPTU-SARI"\ntype = "foot"\ndevice = "phones-http"\nradio = "briptu-sari/a52"\n'
    )
    return station.config


def test_config_radio_ids_of_phones(station: Station, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("x")
    cfg = load(phones_config(station, 8083, secret))
    assert registry.get("owntracks") is not None
    assert [u.radio for u in cfg.units] == ["bripka-andi/pixel7", "briptu-sari/a52"]
    text = station.config.read_text()
    for bad in ("owntracks/+", "a/#", "a/b/c", "a/"):
        station.config.write_text(text.replace('"briptu-sari/a52"', json.dumps(bad)))
        with pytest.raises(ConfigError, match=r"unit\[1\]\.radio"):
            load(station.config)


def test_a_station_publishes_its_officers_phones(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], subscriber_factory: Callable[..., Subscriber],
    tmp_path: Path,
) -> None:
    secret = tmp_path / "phones.secret"
    secret.write_text("one-for-all\n")
    http_port = free_port()
    sub = subscriber_factory(broker.port)
    d = daemons(phones_config(station, http_port, secret))
    up = ("waiting", "connected")
    wait_until(lambda: any(m.payload["state"] in up for m in sub.on("/device/phones-http/status")), what="endpoint up")
    wait_until(lambda: any(m.payload["state"] in up for m in sub.on("/device/phones-mqtt/status")), what="subscribed")
    phones = MqttPhones("127.0.0.1", broker.port, client_id="sim-phones")
    try:
        url = f"http://127.0.0.1:{http_port}/pub"
        assert post(url, "briptu-sari/a52", location(0.5436, 123.0573, acc=9), password="wrong")[0] == 401
        assert post(url, "briptu-sari/a52", location(0.5436, 123.0573, acc=9), password="one-for-all")[0] == 200
        wait_until(lambda: bool(sub.on("/unit/BRIPTU-SARI/position")), 20, "the HTTP phone's position")

        def andi_seen() -> bool:
            if not sub.on("/unit/BRIPKA-ANDI/position"):
                phones.publish("bripka-andi/pixel7", location(0.5478, 123.0625, acc=14, vel=4))
                return False
            return True

        wait_until(andi_seen, 20, "the MQTT phone's position")
    finally:
        phones.close()
    p = sub.on("/unit/BRIPTU-SARI/position")[0].payload
    assert (p["unit"], p["source"], p["accuracy_m"], p["lat"]) == ("BRIPTU-SARI", "phones-http:briptu-sari/a52", 9.0, 0.5436)
    assert p["protocol"] == "owntracks"
    p = sub.on("/unit/BRIPKA-ANDI/position")[0].payload
    assert (p["unit"], p["source"], p["accuracy_m"]) == ("BRIPKA-ANDI", "phones-mqtt:bripka-andi/pixel7", 14.0)
    assert "Traceback" not in d.log


def test_an_unmapped_phone_does_not_break_the_station(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], subscriber_factory: Callable[..., Subscriber],
    tmp_path: Path,
) -> None:
    secret = tmp_path / "phones.secret"
    secret.write_text("one-for-all\n")
    http_port = free_port()
    sub = subscriber_factory(broker.port)
    d = daemons(phones_config(station, http_port, secret))
    up = ("waiting", "connected")
    wait_until(lambda: any(m.payload["state"] in up for m in sub.on("/device/phones-http/status")), what="endpoint up")
    url = f"http://127.0.0.1:{http_port}/pub"
    assert post(url, "new-officer/phone", location(0.5436, 123.0573, acc=9), password="one-for-all")[0] == 200  # no [[unit]]
    assert post(url, "briptu-sari/a52", location(0.5436, 123.0573, acc=9), password="one-for-all")[0] == 200
    wait_until(lambda: bool(sub.on("/unit/BRIPTU-SARI/position")), 10, "the mapped phone's position")
    wait_until(lambda: bool(sub.on("/device/phones-http/radio/new-officer%2Fphone")), 10, "the unknown phone reported")
    assert sub.on("/device/phones-http/radio/new-officer%2Fphone")[-1].payload["radio"] == "new-officer/phone"
    assert "Traceback" not in d.log


def test_every_key_is_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", readme))
    assert not [f.name for f in dataclasses.fields(OwnTracksOptions) if f.name not in documented]
    assert "driver = \"owntracks\"" in readme


# -- TLS and accounts: a mosquitto with a test PKI and a password file; the endpoint over https ----------


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki.make(tmp_path / "pki")


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[int]:
    mosquitto = find_mosquitto()
    assert mosquitto is not None and shutil.which("mosquitto_passwd"), "mosquitto and mosquitto_passwd are needed (run-tests installs them)"
    d = tmp_path / "tls-broker"
    d.mkdir()
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(d / "passwd"), "alkomd-phones", "pw-phones"], check=True, capture_output=True)
    subprocess.run(["mosquitto_passwd", "-b", str(d / "passwd"), "bripka-andi", "pw-andi"], check=True, capture_output=True)
    port = free_port()
    (d / "mosquitto.conf").write_text(
        f"user root\nlistener {port} 127.0.0.1\ncafile {pki.ca}\ncertfile {pki.dir}/server.crt\nkeyfile {pki.dir}/server.key\n"
        f"allow_anonymous false\npassword_file {d}/passwd\nacl_file {d}/acl\npersistence false\nlog_dest file {d}/mosquitto.log\n"
    )
    (d / "acl").write_text("user alkomd-phones\ntopic read owntracks/#\n\npattern write owntracks/%u/#\n")
    proc = subprocess.Popen([mosquitto, "-c", str(d / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_open("127.0.0.1", port) or proc.poll() is not None, what="the TLS broker")
        assert proc.poll() is None, (d / "mosquitto.log").read_text() if (d / "mosquitto.log").exists() else "mosquitto exited"
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_mqtt_over_tls_with_an_account(tmp_path: Path, pki: Pki, tls_broker: int) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    run = Run(host="localhost", port=tls_broker, ca_file=pki.ca, username="alkomd-phones", password_file=wrong, reconnect_max_s=0.5)
    try:
        wait_until(lambda: bool(run.states()), what="a state")
        status = next(r for r in run.records if isinstance(r, DeviceStatus))
        assert status.state is DeviceState.DISCONNECTED and "refused" in status.detail
    finally:
        run.close()
    good = tmp_path / "good"
    good.write_text("pw-phones\n")
    run = Run(host="localhost", port=tls_broker, ca_file=pki.ca, username="alkomd-phones", password_file=good)
    phone = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="andi")
    phone.username_pw_set("bripka-andi", "pw-andi")
    phone.tls_set(ca_certs=str(pki.ca))
    phone.connect("localhost", tls_broker)
    phone.loop_start()
    try:
        wait_until(lambda: bool({DeviceState.WAITING, DeviceState.CONNECTED} & set(run.states())), what="connected over TLS")

        def seen() -> bool:
            if not run.fixes():
                phone.publish("owntracks/bripka-andi/pixel7", json.dumps(location(0.5435, 123.0568, acc=7)), qos=1)
                time.sleep(0.2)
            return bool(run.fixes())

        wait_until(seen, what="the phone's fix over TLS")
        assert run.fixes()[0].radio == "bripka-andi/pixel7"
    finally:
        phone.disconnect()
        phone.loop_stop()
        run.close()


def test_a_refused_subscription_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """mosquitto 2.0 accepts a subscription it will filter; other brokers refuse it in the SUBACK (0x80)."""
    caplog.set_level(logging.INFO, logger="alkomd.drivers.owntracks_driver")
    drv = OwnTracksMqtt("phones", OwnTracksOptions(username="bripka-andi"))
    client = drv._client()
    refused, granted = ReasonCode(PacketTypes.SUBACK, identifier=0x80), ReasonCode(PacketTypes.SUBACK, identifier=1)
    for codes in ([refused], [refused], [granted]):
        drv._on_subscribe(client, None, 1, codes, None)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("refused the subscription" in m for m in messages) == 1 and "'bripka-andi' needs read access" in messages[0]
    assert "subscribed to owntracks/+/+" in messages[-1]


def test_the_endpoint_over_https(tmp_path: Path, pki: Pki) -> None:
    secret = tmp_path / "secret"
    secret.write_text("one-for-all")
    port = free_port()
    run = Run(transport="http", bind="127.0.0.1", listen_port=port, secret_file=secret, cert_file=pki.dir / "server.crt",
              key_file=pki.dir / "server.key")
    try:
        wait_until(lambda: bool({DeviceState.WAITING, DeviceState.CONNECTED} & set(run.states())), what="listening")
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        url = f"https://localhost:{port}/pub"
        assert post(url, "anyone/phone", location(0.5, 123.0), password="nope", context=ctx)[0] == 401
        assert post(url, "anyone/phone", location(0.5, 123.0), password="one-for-all", context=ctx) == (200, b"[]")
        wait_until(lambda: bool(run.fixes("anyone/phone")), what="the fix over https")
        with pytest.raises(OSError):  # plain HTTP to the TLS port: refused, and the endpoint lives on
            post(f"http://127.0.0.1:{port}/pub", "anyone/phone", location(0.5, 123.0), password="one-for-all", timeout=3)
        assert post(url, "anyone/phone", location(0.51, 123.0), password="one-for-all", context=ctx)[0] == 200
        assert run.thread.is_alive()
    finally:
        run.close()

"""`alkomctl mqtt-check` as a real process against private brokers: plain, the shipped central broker (TLS,
passwords, client certificates, ACL), and next to a running alkomd whose session it must hand back intact."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from central_broker import USERS, CentralBroker, Client, Pki, running
from conftest import Daemon, Feeder, Station, wait_until
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from alkomd.daemon.ctl.demo.broker import Broker, free_port
from alkomd.drivers.simulator import PtyGps

STEPS = ["resolve", "connect", "login", "subscribe", "publish", "receive"]
KOTA = "polri110/gorontalo/kota-gorontalo"


def mqtt_check(config: Path, *extra: str, timeout: float = 3) -> tuple[int, dict[str, Any], str]:
    """(exit code, the --json report or {}, stderr)."""
    cmd = [sys.executable, "-m", "alkomd.daemon.ctl", "mqtt-check", "--config", str(config), "--json", "--timeout", str(timeout), *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return p.returncode, json.loads(p.stdout) if p.stdout.strip() else {}, p.stderr


def failed_step(report: dict[str, Any]) -> str:
    bad = [s["name"] for s in report["steps"] if not s["ok"]]
    assert len(bad) == 1, report["steps"]
    return str(bad[0])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.make(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def central(tmp_path: Path, pki: Pki) -> Iterator[CentralBroker]:
    users = dict(USERS, **{"gorontalo/limboto": "pw-limboto"})
    # limboto may write its subtree but not read it (a typical ACL slip)
    extra = "\nuser gorontalo/limboto\ntopic write polri110/gorontalo/limboto/#\n"
    with running(CentralBroker(tmp_path / "central", pki, users=users, acl_extra=extra)) as b:
        yield b


def tls_station(tmp_path: Path, broker: CentralBroker, user: str = "gorontalo/kota-gorontalo", password: str | None = None,
                node_path: str | None = None, mqtt: str = "") -> Station:
    """A station configured for the central broker (TLS, user, password file), like tests/test_security.py's."""
    st = Station(tmp_path / "station", broker.port)
    secret = tmp_path / "mqtt-password"
    secret.write_text((broker.users[user] if password is None else password) + "\n")
    st.write_config(extra_mqtt=f'username = "{user}"\npassword_file = "{secret}"\nca_file = "{broker.pki.ca}"\n{mqtt}')
    text = st.config.read_text().replace("tls = false", "tls = true").replace('host = "127.0.0.1"', 'host = "localhost"')
    if node_path:
        text = text.replace('path = "gorontalo/kota-gorontalo"', f'path = "{node_path}"')
    st.config.write_text(text)
    return st


# -- plain broker --------------------------------------------------------------------------------


def test_plain_broker_round_trip_and_nothing_left_behind(station: Station, broker: Broker) -> None:
    """Pass: exit 0, the 6 steps ok in order, a round trip > 0 ms; the text output says OK; afterwards a client
    with the daemon's client id finds no session (the check removed the one it made)."""
    station.write_config()
    code, report, err = mqtt_check(station.config)
    assert code == 0, (report, err)
    assert [s["name"] for s in report["steps"]] == STEPS and all(s["ok"] for s in report["steps"])
    assert report["rtt_ms"] > 0 and report["probe_topic"].startswith(f"{KOTA}/probe/")
    assert report["client_id"] == "alkomctl-check-polri110-gorontalo-kota-gorontalo" and report["tls"] is False
    out = subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", "mqtt-check", "--config", str(station.config)],
                         capture_output=True, text=True, timeout=60).stdout
    assert "OK: the probe came back, round trip" in out and "receive" in out
    c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=report["client_id"], protocol=MQTTProtocolVersion.MQTTv5)
    present: list[bool] = []
    c.on_connect = lambda cl, ud, fl, rc, pr: present.append(bool(fl.session_present))
    c.connect("127.0.0.1", broker.port, clean_start=False)
    c.loop_start()
    try:
        wait_until(lambda: bool(present), 5, "CONNACK")
        assert present == [False]
    finally:
        c.disconnect()
        c.loop_stop()


def test_dns_failure_and_connection_refused_are_unreachable(tmp_path: Path) -> None:
    """Pass: an unresolvable host -> exit 69, the resolve step failed, "DNS" in the problem; a port nobody listens
    on -> exit 69, the connect step failed, "connection refused"."""
    st = Station(tmp_path / "st", free_port())
    st.write_config()
    st.config.write_text(st.config.read_text().replace('host = "127.0.0.1"', 'host = "no-such-broker.invalid"'))
    code, report, _ = mqtt_check(st.config)
    assert code == 69 and failed_step(report) == "resolve" and report["problem"].startswith("DNS")
    st.config.write_text(st.config.read_text().replace('host = "no-such-broker.invalid"', 'host = "127.0.0.1"'))
    code, report, _ = mqtt_check(st.config)
    assert code == 69 and failed_step(report) == "connect" and "connection refused" in report["problem"]


def test_tls_client_to_a_plain_port(station: Station) -> None:
    """Pass: exit 69, the connect step failed, the problem says the port does not speak TLS."""
    station.write_config()
    station.config.write_text(station.config.read_text().replace("tls = false", "tls = true"))
    code, report, _ = mqtt_check(station.config)
    assert code == 69 and failed_step(report) == "connect" and "does not speak TLS" in report["problem"], report


# -- the central broker: TLS, passwords, certificates -------------------------------------------


def test_central_broker_tls_and_password(tmp_path: Path, central: CentralBroker) -> None:
    """Pass: exit 0 with TLS and the shipped ACL, the CA file named in the connect step, round trip > 0 ms."""
    code, report, err = mqtt_check(tls_station(tmp_path, central).config)
    assert code == 0, (report, err)
    assert report["tls"] is True and str(central.pki.ca) in report["steps"][1]["detail"] and report["rtt_ms"] > 0


def test_wrong_password_is_refused_and_not_printed(tmp_path: Path, central: CentralBroker) -> None:
    """Pass: exit 77, the login step failed with CONNACK 0x87, the password appears nowhere in the output."""
    code, report, err = mqtt_check(tls_station(tmp_path, central, password="S3cret-but-wrong").config)
    assert code == 77 and failed_step(report) == "login" and "0x87" in report["problem"]
    assert "username" in report["hint"] and "S3cret-but-wrong" not in json.dumps(report) + err


def test_untrusted_broker_certificate_names_the_ca(tmp_path: Path, central: CentralBroker) -> None:
    """mqtt.ca_file is another CA. Pass: exit 69, the connect step failed, the problem names that CA file."""
    st = tls_station(tmp_path, central)
    st.config.write_text(st.config.read_text().replace(str(central.pki.ca), str(central.pki.rogue_ca)))
    code, report, _ = mqtt_check(st.config)
    assert code == 69 and failed_step(report) == "connect"
    assert "not trusted" in report["problem"] and str(central.pki.rogue_ca) in report["problem"]


def test_plain_client_to_the_tls_port(tmp_path: Path, central: CentralBroker) -> None:
    """Pass: exit 69, the login step failed (no CONNACK), the hint says mqtt.tls = true."""
    st = tls_station(tmp_path, central)
    st.config.write_text(st.config.read_text().replace("tls = true", "tls = false"))
    code, report, _ = mqtt_check(st.config)
    assert code == 69 and failed_step(report) == "login" and "mqtt.tls = true" in report["hint"], report


@pytest.mark.parametrize(
    ("cert", "code", "words"), [(None, 77, "requires a client certificate"), ("rogue", 77, "rogue.crt"), ("station", 0, "")]
)
def test_client_certificate_required(tmp_path: Path, pki: Pki, cert: str | None, code: int, words: str) -> None:
    """require_certificate true. Pass: none -> 77 "requires a client certificate"; signed by another CA -> 77 naming
    that certificate file (the broker's alert, or its closing the connection, whichever the client reads first); ours -> 0."""
    with running(CentralBroker(tmp_path / "central", pki, require_certificate=True)) as b:
        mqtt = ""
        if cert:
            crt, key = pki.client(cert)
            mqtt = f'cert_file = "{crt}"\nkey_file = "{key}"\n'
        got, report, err = mqtt_check(tls_station(tmp_path, b, mqtt=mqtt).config)
        assert got == code, (report, err)
        assert words in report["problem"]


# -- the central broker: ACL ---------------------------------------------------------------------


def test_acl_refuses_the_publish(tmp_path: Path, central: CentralBroker) -> None:
    """Kota Gorontalo's user configured with another node path. Pass: exit 77, the publish step failed with PUBACK
    0x87, the hint names the user and the node's subtree."""
    st = tls_station(tmp_path, central, node_path="gorontalo/bone-bolango")
    code, report, _ = mqtt_check(st.config)
    assert code == 77 and failed_step(report) == "publish" and "PUBACK 0x87" in report["problem"]
    assert "gorontalo/kota-gorontalo" in report["hint"] and "polri110/gorontalo/bone-bolango/#" in report["hint"]


def test_acl_lets_it_write_but_not_read(tmp_path: Path, central: CentralBroker) -> None:
    """limboto's block grants write only. Pass: exit 77 after the 3 s timeout, subscribe and publish ok, the receive
    step failed, "write but not read" in the hint."""
    st = tls_station(tmp_path, central, user="gorontalo/limboto", node_path="gorontalo/limboto")
    code, report, _ = mqtt_check(st.config)
    assert code == 77 and failed_step(report) == "receive", report
    assert [s["ok"] for s in report["steps"]] == [True] * 5 + [False]
    assert "write but not read" in report["hint"]


def test_mqtt_311_refusal_is_explained_as_silent(tmp_path: Path, central: CentralBroker) -> None:
    """MQTT 3.1.1 and a node path outside the ACL: the broker acknowledges and drops. Pass: exit 77, the receive
    step failed, the problem says 3.1.1 gives no reason."""
    st = tls_station(tmp_path, central, node_path="gorontalo/bone-bolango", mqtt='protocol = "3.1.1"\n')
    code, report, _ = mqtt_check(st.config)
    assert code == 77 and failed_step(report) == "receive" and "3.1.1" in report["problem"], report


# -- configuration ------------------------------------------------------------------------------


def test_configuration_errors(tmp_path: Path, central: CentralBroker) -> None:
    """Pass: a missing systemd credential -> exit 78 with the --password-file hint; --password-file then works
    (exit 0); an unknown key -> 78 naming it."""
    st = tls_station(tmp_path, central)
    secret = tmp_path / "mqtt-password"
    st.config.write_text(st.config.read_text().replace(str(secret), "/run/credentials/alkomd.service/mqtt-password"))
    code, _, err = mqtt_check(st.config)
    assert code == 78 and "mqtt.password_file" in err and "--password-file" in err
    code, report, err = mqtt_check(st.config, "--password-file", str(secret))
    assert code == 0, (report, err)
    st.config.write_text(st.config.read_text() + "\n[mqtt2]\n")
    code, _, err = mqtt_check(st.config)
    assert code == 78 and "mqtt2" in err


# -- next to a running daemon ---------------------------------------------------------------------


def test_check_leaves_a_running_daemon_connected(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps]
) -> None:
    """Issue 13 item 3: the check used the daemon's client id and the broker dropped the running daemon.
    Pass: exit 0 with its own client id (not the daemon's), no session handed over; the daemon logs no disconnect,
    one "mqtt: connected" only, and its control socket's broker `since` is unchanged after two checks."""
    from alkomd.daemon import control

    station.write_config()
    ptys(station.links[0])
    d = daemons(station.config)
    sock = station.dir / "control.sock"
    wait_until(lambda: "mqtt: connected" in d.log, what="daemon connected")
    before = control.query_status(sock).broker
    assert before.connected
    for _ in range(2):
        code, report, err = mqtt_check(station.config)
        assert code == 0, (report, err)
        assert report["client_id"] == "alkomctl-check-polri110-gorontalo-kota-gorontalo"
        assert "own session" in report["session"]
    after = control.query_status(sock).broker
    assert after.connected and after.since == before.since, (before, after)
    assert "disconnected" not in d.log and d.log.count("mqtt: connected") == 1, d.log


def test_messages_queued_for_the_daemon_survive_the_check(tmp_path: Path, central: CentralBroker) -> None:
    """The daemon's session (subscribed to <node>/call/new) is offline with 3 calls queued; the check borrows it.
    Pass: exit 0, the report says 3 messages were left for the daemon, and the daemon's identity reconnecting with
    its session receives all 3 calls (0 lost)."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    got: list[bytes] = []
    stand_in = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="alkomd-x", protocol=MQTTProtocolVersion.MQTTv5)
    stand_in.username_pw_set("gorontalo/kota-gorontalo", USERS["gorontalo/kota-gorontalo"])
    stand_in.tls_set(ca_certs=str(central.pki.ca))
    stand_in.on_message = lambda cl, ud, m: got.append(bytes(m.payload))
    stand_in.connect("localhost", central.port, clean_start=False, properties=props)
    mid = stand_in.subscribe(f"{KOTA}/call/new", qos=1)[1]
    acked: list[int] = []
    stand_in.on_subscribe = lambda cl, ud, m, rcs, pr: acked.append(m)
    while mid not in acked:
        stand_in.loop(0.1)
    stand_in.disconnect()
    stand_in.loop(0.1)
    polda = Client(central, "gorontalo")
    assert polda.connect() == 0
    for i in range(3):
        assert polda.publish(f"{KOTA}/call/new", b'{"call_id": "C-%d"}' % i) == 0
    polda.close()
    code, report, err = mqtt_check(tls_station(tmp_path, central).config)
    assert code == 0, (report, err)
    assert "handed an existing session" in report["session"] and "3 message(s)" in report["session"]
    stand_in.connect("localhost", central.port, clean_start=False, properties=props)
    end = time.monotonic() + 5
    while len(got) < 3 and time.monotonic() < end:
        stand_in.loop(0.1)
    stand_in.disconnect()
    assert sorted(got) == [b'{"call_id": "C-%d"}' % i for i in range(3)]


def test_check_next_to_a_running_daemon(
    tmp_path: Path, central: CentralBroker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps]
) -> None:
    """Pass: exit 0 while alkomd is connected; alkomd reconnects by itself (2 "mqtt: connected" lines), its
    retained state is never "offline" meanwhile, and the 2 positions fed afterwards reach Mabes."""
    st = tls_station(tmp_path, central)
    mabes = Client(central, "mabes")
    assert mabes.connect() == 0
    mabes.subscribe(f"{KOTA}/#")
    pty = ptys(st.links[0])
    d = daemons(st.config)
    wait_until(lambda: "mqtt: connected" in d.log and "gps0: starting -> waiting" in d.log, what="daemon connected")
    code, report, err = mqtt_check(st.config)
    assert code in (0, 75), (report, err)  # 75: alkomd took its session back first (run again)
    if code == 75:
        code, report, err = mqtt_check(st.config)
    assert code == 0, (report, err)
    wait_until(lambda: d.log.count("mqtt: connected") >= 2, 10, "alkomd reconnected")
    Feeder(pty).write(2, gap_s=0.1)
    wait_until(lambda: len(mabes.on(f"{KOTA}/unit/R2-00/position")) == 2, 10, "2 positions at Mabes")
    states = [json.loads(m.payload)["state"] for m in mabes.on(f"{KOTA}/state")]
    assert "offline" not in states and states, states
    mabes.close()

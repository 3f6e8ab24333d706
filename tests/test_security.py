"""MQTT security (fault matrix Q1-Q6) against the shipped central broker: config/mosquitto/central.conf + acl.

Every test starts mosquitto from a copy of the shipped files (tests/central_broker.py changes
only paths and the port) with a test PKI, on a free loopback port. Each test's docstring states
its pass criterion in numbers.
"""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from central_broker import USERS, CentralBroker, Client, Pki, StationBroker, listening_ports, running
from conftest import Daemon, Feeder, Station, wait_until
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from alkomd.drivers.simulator import PtyGps

BONE = "polri110/gorontalo/bone-bolango"
KOTA = "polri110/gorontalo/kota-gorontalo"
NOT_AUTHORIZED = 0x87
# MQTT 3.1.1 CONNECT: protocol "MQTT" level 4, clean session, keepalive 60, empty client id, no user.
CONNECT_311 = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 60, 0, 0])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.make(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def central(tmp_path: Path, pki: Pki) -> Iterator[CentralBroker]:
    with running(CentralBroker(tmp_path / "central", pki)) as b:
        yield b


@pytest.fixture
def clients() -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(broker: CentralBroker, user: str | None, **kw: object) -> Client:
        c = Client(broker, user, **kw)  # type: ignore[arg-type]
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def connected(make: Callable[..., Client], broker: CentralBroker, user: str, **kw: object) -> Client:
    c = make(broker, user, **kw)
    assert c.connect() == 0, f"{user} could not log in: {c.connack} {c.errors}"
    return c


def _tls(port: int, ca: Path) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(ca))
    return ctx.wrap_socket(socket.create_connection(("localhost", port), 5), server_hostname="localhost")


# -- Q6: the listeners ------------------------------------------------------------------------


def test_q6_the_shipped_config_listens_on_its_one_tls_port_only(central: CentralBroker) -> None:
    """Pass: the broker process holds exactly 1 listening TCP port, the configured one (no 1883, no 8883 here)."""
    ports = listening_ports(central.pid)
    assert ports == {central.port}, ports
    assert "port 1883" not in central.log
    with socket.create_connection(("127.0.0.1", central.port), 5) as s:  # plain MQTT on the TLS port
        s.settimeout(5)
        s.sendall(CONNECT_311)
        try:
            answer = s.recv(4)
        except ConnectionResetError:
            answer = b""
    assert answer == b"", "a plain-text client got an MQTT answer from the TLS listener"


# -- Q1, Q2: who may connect -------------------------------------------------------------------


def test_q1_anonymous_clients_are_refused(central: CentralBroker, clients: Callable[..., Client]) -> None:
    """Pass: MQTT 5 CONNACK 0x87; MQTT 3.1.1 CONNACK return code 5; 2 refusals in the broker log."""
    assert clients(central, None).connect() == NOT_AUTHORIZED
    with _tls(central.port, central.pki.ca) as s:
        s.sendall(CONNECT_311)
        assert s.recv(4) == bytes([0x20, 2, 0, 5])  # CONNACK, "not authorised"
    wait_until(lambda: central.log.count("disconnected, not authorised") >= 2, 5, "2 refusals logged")


def test_q2_wrong_password_unknown_user_and_a_foreign_ca_are_refused(central: CentralBroker, clients: Callable[..., Client]) -> None:
    """Pass: a wrong password and an unknown user each get CONNACK >= 0x80 (0x86 or 0x87), the right one 0;
    a client trusting another CA refuses the broker (certificate verify failed) and the broker logs it."""
    assert clients(central, "gorontalo/bone-bolango", password="not-the-password").connect() in (0x86, NOT_AUTHORIZED)
    assert clients(central, "gorontalo/nowhere", password="x").connect() in (0x86, NOT_AUTHORIZED)
    assert clients(central, "gorontalo/bone-bolango").connect() == 0
    with pytest.raises(ssl.SSLCertVerificationError):
        clients(central, "gorontalo/bone-bolango", ca=central.pki.rogue_ca).connect()
    wait_until(lambda: "unknown ca" in central.log, 5, "the broker logs the client's TLS alert")


@pytest.mark.parametrize("cert", ["none", "rogue", "station"])
def test_q2_client_certificate_when_required(tmp_path: Path, pki: Pki, clients: Callable[..., Client], cert: str) -> None:
    """require_certificate true. Pass: no certificate -> no CONNACK (broker: "peer did not return a certificate");
    a certificate from another CA -> no CONNACK ("certificate verify failed"); ours -> CONNACK 0, and with a
    wrong password still 0x87 (the certificate is a second factor, not a replacement)."""
    with running(CentralBroker(tmp_path / "central", pki, require_certificate=True)) as b:
        kw = {} if cert == "none" else {"cert": pki.client(cert)}
        c = clients(b, "gorontalo/bone-bolango", **kw)
        if cert == "station":
            assert c.connect() == 0
            assert clients(b, "gorontalo/bone-bolango", password="wrong", client_id="x", **kw).connect() == NOT_AUTHORIZED
            return
        assert c.connect() is None and c.connack == []
        reason = "peer did not return a certificate" if cert == "none" else "certificate verify failed"
        wait_until(lambda: reason in b.log, 5, f"broker log: {reason}")


# -- Q3, Q4: what a station may publish and read -----------------------------------------------


def test_q3_a_station_cannot_publish_outside_its_subtree(central: CentralBroker, clients: Callable[..., Client]) -> None:
    """Pass: own position -> PUBACK 0; 4 foreign topics -> PUBACK 0x87 each (MQTT 5); under MQTT 3.1.1 the same
    4 are acknowledged silently; Mabes, subscribed to everything, receives exactly the 1 allowed message of each client."""
    mabes = connected(clients, central, "mabes")
    mabes.subscribe("polri110/#")
    foreign = [
        f"{KOTA}/unit/R2-01/position",  # another Polres of the same Polda
        "polri110/sulawesi-utara/call/new",  # another Polda's intake
        "polri110/call/new",  # Mabes' intake: only via the Polda
        f"{KOTA}/call/new",  # another Polres' intake
    ]
    for v5 in (True, False):
        bone = connected(clients, central, "gorontalo/bone-bolango", v5=v5)
        own = f"{BONE}/unit/R2-0{int(v5)}/position"
        assert bone.publish(own) == 0
        for topic in foreign:
            assert bone.publish(topic) == (NOT_AUTHORIZED if v5 else 0), topic
        bone.close()
        wait_until(lambda t=own: len(mabes.on(t)) == 1, 5, "the allowed message")  # type: ignore[misc]
    time.sleep(0.5)  # anything forwarded would have arrived by now; the count below must stay 0
    assert [m.topic for m in mabes.messages if m.topic in foreign] == []
    assert central.log.count("Denied PUBLISH from gorontalo/bone-bolango") == 2 * len(foreign)


def test_q4_a_station_cannot_read_another_station(central: CentralBroker, clients: Callable[..., Client]) -> None:
    """Pass: Bone Bolango's subscriptions to Kota Gorontalo's subtree and to everything are granted (mosquitto 2.0
    filters at delivery), yet of Kota Gorontalo's 5 messages (1 retained) it receives 0 while Mabes receives 5."""
    kota = connected(clients, central, "gorontalo/kota-gorontalo")
    assert kota.publish(f"{KOTA}/unit/R2-00/position", b'{"n":0}', retain=True) in (0, 0x10)
    bone = connected(clients, central, "gorontalo/bone-bolango")
    mabes = connected(clients, central, "mabes")
    assert bone.subscribe(f"{KOTA}/#") == [1]
    assert bone.subscribe("polri110/#") == [1]
    mabes.subscribe(f"{KOTA}/#")
    for i in range(1, 5):
        assert kota.publish(f"{KOTA}/unit/R2-0{i}/position", b'{"n":%d}' % i) == 0
    wait_until(lambda: len([m for m in mabes.messages if m.topic.startswith(KOTA)]) == 5, 5, "Mabes receives 5")
    time.sleep(0.5)
    assert [m.topic for m in bone.messages] == []


def test_polda_reads_its_polres_escalations_and_units_and_nothing_of_another_polda(
    tmp_path: Path, pki: Pki, clients: Callable[..., Client]
) -> None:
    """Two Polda (Gorontalo from the shipped acl, Sulawesi Utara added the documented way). Pass: each Polda
    receives exactly its own Polres' escalation and position (2 messages), 0 of the other's; a Polda hands a call
    to its Polres and to Mabes (PUBACK < 0x80) but not into the other Polda's Polres (0x87)."""
    extra = ("\nuser sulawesi-utara\ntopic readwrite polri110/sulawesi-utara/#\ntopic write polri110/call/new\n"
             "\nuser sulawesi-utara/manado\ntopic readwrite polri110/sulawesi-utara/manado/#\n"
             "topic write polri110/sulawesi-utara/call/new\n")
    users = dict(USERS, **{"sulawesi-utara": "pw-sulut", "sulawesi-utara/manado": "pw-manado"})
    with running(CentralBroker(tmp_path / "central", pki, users=users, acl_extra=extra)) as b:
        polda = {p: connected(clients, b, p) for p in ("gorontalo", "sulawesi-utara")}
        for c in polda.values():  # what an alkomd Polda subscribes to, plus a greedy look at everything
            for topic in ("polri110/+/call/new", "polri110/+/+/unit/+/position", "polri110/#"):
                c.subscribe(topic)
        stations = {
            "gorontalo": ("gorontalo/bone-bolango", BONE),
            "sulawesi-utara": ("sulawesi-utara/manado", "polri110/sulawesi-utara/manado"),
        }
        for p, (user, node) in stations.items():
            s = connected(clients, b, user)
            assert s.publish(f"polri110/{p}/call/new", json.dumps({"call_id": f"C-{p}", "escalated_from": node}).encode()) == 0
            assert s.publish(f"{node}/unit/R2-01/position") == 0
        for p, (_, node) in stations.items():
            mine = {f"polri110/{p}/call/new", f"{node}/unit/R2-01/position"}
            wait_until(lambda p=p, mine=mine: {m.topic for m in polda[p].messages} >= mine, 5, f"{p} receives its own")  # type: ignore[misc]
        time.sleep(0.5)
        for p, (_, node) in stations.items():
            # a set: mosquitto sends one copy per matching subscription, and these overlap
            assert {m.topic for m in polda[p].messages} == {f"polri110/{p}/call/new", f"{node}/unit/R2-01/position"}
        g = polda["gorontalo"]
        assert g.publish(f"{BONE}/call/new") in (0, 0x10)  # a call for Bone Bolango's area
        assert g.publish(f"{BONE}/unit/R2-01/alert") in (0, 0x10)
        assert g.publish("polri110/call/new") in (0, 0x10)  # escalation to Mabes
        assert g.publish("polri110/sulawesi-utara/manado/call/new") == NOT_AUTHORIZED


def test_a_console_answers_its_own_station_only(central: CentralBroker, clients: Callable[..., Client]) -> None:
    """Pass: the Bone Bolango console's call event and status/set -> PUBACK < 0x80; a forged position, a Kota
    Gorontalo event and a Polda event -> 0x87 each."""
    console = connected(clients, central, "console-bone-bolango-1")
    assert console.publish(f"{BONE}/call/C-1/event") in (0, 0x10)
    assert console.publish(f"{BONE}/unit/R2-01/status/set") in (0, 0x10)
    for topic in (f"{BONE}/unit/R2-01/position", f"{KOTA}/call/C-1/event", "polri110/gorontalo/call/C-1/event"):
        assert console.publish(topic) == NOT_AUTHORIZED, topic


# -- Q5: client id takeover ---------------------------------------------------------------------


def test_q5_a_station_cannot_take_over_another_stations_client_id(central: CentralBroker, clients: Callable[..., Client]) -> None:
    """Bone Bolango connects twice with Kota Gorontalo's client ids (its configured one and its user name).
    Pass: Kota Gorontalo is disconnected 0 times in 2 s and still publishes (PUBACK < 0x80)."""
    kota = connected(clients, central, "gorontalo/kota-gorontalo", client_id="alkomd-polri110-gorontalo-kota-gorontalo")
    for cid in ("alkomd-polri110-gorontalo-kota-gorontalo", "gorontalo/kota-gorontalo"):
        connected(clients, central, "gorontalo/bone-bolango", client_id=cid)
    time.sleep(2)
    assert kota.disconnects == []
    assert kota.publish(f"{KOTA}/health") in (0, 0x10)
    assert "Client gorontalo/kota-gorontalo already connected" not in central.log


# -- a real alkomd against the central broker ----------------------------------------------------


def _station(tmp_path: Path, broker: CentralBroker, user: str, password: str, node_path: str | None = None) -> Station:
    st = Station(tmp_path / "station", broker.port)
    secret = tmp_path / "mqtt-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    st.write_config(extra_mqtt=f'username = "{user}"\npassword_file = "{secret}"\nca_file = "{broker.pki.ca}"\n')
    text = st.config.read_text().replace("tls = false", "tls = true").replace('host = "127.0.0.1"', 'host = "localhost"')
    if node_path:
        text = text.replace('path = "gorontalo/kota-gorontalo"', f'path = "{node_path}"')
    st.config.write_text(text)
    return st


def test_wrong_password_alkomd_reports_once_and_never_logs_the_password(
    tmp_path: Path, central: CentralBroker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps]
) -> None:
    """Pass: >= 3 refused logins at the broker, exactly 1 refusal line in alkomd's log, the password in neither
    log, 3 positions recorded and 3 unsent in the outbox, the daemon still running."""
    password = "Wr0ng-but-s3cret"
    st = _station(tmp_path, central, "gorontalo/kota-gorontalo", password)
    pty = ptys(st.links[0])
    d = daemons(st.config)
    wait_until(lambda: "gps0: starting -> waiting" in d.log, what="port open")
    Feeder(pty).write(3, gap_s=0.1)
    wait_until(lambda: st.query("SELECT count(*) FROM positions")[0][0] == 3, what="positions recorded")
    wait_until(lambda: central.log.count("disconnected, not authorised") >= 3, 20, "3 refused logins")
    assert len([ln for ln in d.lines if "refused the connection" in ln]) == 1, d.log
    assert st.query("SELECT count(*) FROM outbox WHERE sent IS NULL AND kind = 'position'")[0][0] == 3
    assert password not in d.log and password not in central.log
    assert d.proc is not None and d.proc.poll() is None


def test_acl_refusal_is_kept_reported_once_not_spun_and_delivered_after_the_acl_is_fixed(
    tmp_path: Path, pki: Pki, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps], clients: Callable[..., Client]
) -> None:
    """A new Polres (gorontalo/limboto) has a password but no ACL block yet: every publish gets PUBACK 0x87.
    Pass, over 12 s of refusals: 1 log line per refused kind of message (position), the 3 positions unsent in the
    outbox, broker-side attempts on outbox topics == outbox rows (each row once per 60 s; a spinning client makes
    thousands), and on <node>/health (a live heartbeat, 1 s in tests, not stored) <= elapsed seconds + 2; its probe
    to itself is refused once and the daemon says so (calls held after the connect go on at the 10 s fallback).
    Then the block is added the documented way and mosquitto reloaded (SIGHUP): within 90 s (one 60 s retry)
    the outbox drains to 0 unsent and Mabes receives each of the 3 positions exactly once."""
    node = "polri110/gorontalo/limboto"
    users = dict(USERS, **{"gorontalo/limboto": "pw-limboto"})
    with running(CentralBroker(tmp_path / "central", pki, users=users)) as b:
        mabes = connected(clients, b, "mabes")
        mabes.subscribe(f"{node}/unit/+/position")
        st = _station(tmp_path, b, "gorontalo/limboto", "pw-limboto", node_path="gorontalo/limboto")
        pty = ptys(st.links[0])
        started = time.monotonic()
        d = daemons(st.config)
        wait_until(lambda: "mqtt: connected" in d.log and "gps0: starting -> waiting" in d.log, what="connected, port open")
        Feeder(pty).write(3, gap_s=0.1)
        wait_until(lambda: any("broker refused a position message" in ln for ln in d.lines), 10, "the refusal logged")
        assert "0x87" in d.log
        time.sleep(12)
        refusals = [ln for ln in d.lines if "broker refused a position message" in ln]
        assert len(refusals) == 1, refusals
        unsent = st.query("SELECT count(*) FROM outbox WHERE sent IS NULL AND kind = 'position'")[0][0]
        assert unsent == 3
        rows = st.query("SELECT count(*) FROM outbox")[0][0]
        elapsed = time.monotonic() - started
        denied = re.findall(r"Denied PUBLISH from gorontalo/limboto \(.*?'([^']+)'", b.log)
        outbox_attempts = [t for t in denied if not t.endswith(("/health", "/state", "/probe/link"))]
        health_attempts = [t for t in denied if t.endswith("/health")]
        assert len(outbox_attempts) == rows, f"{len(outbox_attempts)} refused publishes of {rows} outbox rows in {elapsed:.0f} s"
        assert len(health_attempts) <= elapsed + 2, f"{len(health_attempts)} health publishes in {elapsed:.0f} s"
        # its probe to itself is refused too: the calls held after the connect go on at the fallback, with the cause said
        wait_until(lambda: "the probe on polri110/gorontalo/limboto/probe/link did not come back" in d.log, 30, "the fallback")
        assert denied.count(f"{node}/probe/link") == 1

        with b.acl.open("a") as acl:  # README.md: adding a station
            acl.write("\nuser gorontalo/limboto\ntopic readwrite polri110/gorontalo/limboto/#\ntopic write polri110/gorontalo/call/new\n")
        b.reload()
        wait_until(lambda: st.query("SELECT count(*) FROM outbox WHERE sent IS NULL")[0][0] == 0, 90, "the outbox drained")
        wanted = {r[0] for r in st.query("SELECT msg_id FROM outbox WHERE kind = 'position'")}
        wait_until(lambda: len(mabes.messages) >= 3, 5, "3 positions at Mabes")
        time.sleep(0.5)
        got = [json.loads(m.payload)["msg_id"] for m in mabes.messages]
        assert sorted(got) == sorted(wanted), (got, wanted)
        assert d.proc is not None and d.proc.poll() is None


# -- the station bridge ------------------------------------------------------------------------


def test_bridge_station_conf_carries_the_station_both_ways_without_loops(tmp_path: Path, pki: Pki, clients: Callable[..., Client]) -> None:
    """The shipped bridge-station.conf (Bone Bolango) bridged to the shipped central broker. Pass: a position and an
    escalation published on the station's broker reach the centre once each; a call/new for the station published
    at the centre reaches the station's subscriber once and is not sent back (Mabes sees it exactly 1 time); a
    publish outside the station's subtree on the station broker reaches the centre 0 times."""
    with running(CentralBroker(tmp_path / "central", pki)) as central:
        mabes = connected(clients, central, "mabes")
        mabes.subscribe("polri110/#")
        with running(StationBroker(tmp_path / "station", central, USERS["gorontalo/bone-bolango"])) as station:
            wait_until(lambda: "New client connected" in central.log and "gorontalo/bone-bolango" in central.log, 10, "bridge up")
            local = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="alkomd", protocol=MQTTProtocolVersion.MQTTv5)
            got: list[str] = []
            local.on_message = lambda cl, ud, m: got.append(m.topic)
            local.connect("127.0.0.1", station.port)
            local.loop_start()
            try:
                local.subscribe(f"{BONE}/call/new", qos=1)
                local.subscribe(f"{BONE}/call/+/taken", qos=1)
                time.sleep(0.5)  # the SUBACK; the bridge's own subscriptions at the centre were made at its connect
                for topic in (f"{BONE}/unit/R2-01/position", "polri110/gorontalo/call/new", f"{KOTA}/unit/R2-01/position"):
                    local.publish(topic, b"{}", qos=1).wait_for_publish(5)
                polda = connected(clients, central, "gorontalo")
                assert polda.publish(f"{BONE}/call/new", b'{"call_id":"C-1"}') == 0
                wait_until(lambda: got == [f"{BONE}/call/new"], 10, "the call reaches the station")
                assert polda.publish(f"{BONE}/call/C-0/taken", b'{"call_id":"C-0","by":"polri110/gorontalo"}', retain=True) == 0
                wait_until(lambda: got == [f"{BONE}/call/new", f"{BONE}/call/C-0/taken"], 10, "the Polda's taken marker at the station")
                wait_until(lambda: {m.topic for m in mabes.messages} >= {f"{BONE}/unit/R2-01/position", "polri110/gorontalo/call/new"}, 10,
                           "position and escalation at the centre")
                time.sleep(1)  # a loop or a stray forward would show up by now
                topics = [m.topic for m in mabes.messages]
                assert topics.count(f"{BONE}/call/new") == 1, topics
                assert topics.count(f"{BONE}/unit/R2-01/position") == 1 and topics.count("polri110/gorontalo/call/new") == 1
                assert f"{KOTA}/unit/R2-01/position" not in topics
                assert topics.count(f"{BONE}/call/C-0/taken") == 1, "the marker came in and was not sent back"
                assert got == [f"{BONE}/call/new", f"{BONE}/call/C-0/taken"]
            finally:
                local.disconnect()
                local.loop_stop()


# -- three tiers of real daemons through the shipped ACL --------------------------------------

JUR = Path(__file__).resolve().parents[1] / "config" / "jurisdictions"


def _tier(d: Path, broker: CentralBroker, node_path: str, tier: str, user: str, sections: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "pw").write_text(broker.users[user] + "\n")
    cfg = d / "alkomd.toml"
    cfg.write_text(
        f'[node]\npath = "{node_path}"\ntier = "{tier}"\n[store]\npath = "{d}/alkomd.db"\n'
        f'[mqtt]\nhost = "localhost"\nport = {broker.port}\ntls = true\nca_file = "{broker.pki.ca}"\nusername = "{user}"\n'
        f'password_file = "{d}/pw"\nreconnect_min_s = 0.5\nreconnect_max_s = 2\n{sections}'
    )
    return cfg


def test_three_tiers_of_alkomd_work_through_the_shipped_acl(
    tmp_path: Path, pki: Pki, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps], clients: Callable[..., Client]
) -> None:
    """Polres Kota Gorontalo, Polda Gorontalo and Mabes, each logged in as its own user of the shipped acl; the
    call comes from the 110 contact centre's user and Mabes' console answers it. Pass: the call escalates Polres ->
    Polda -> Mabes, the Polda recommends the Polres' unit (it reads the child's units), Mabes' answer alerts that
    unit at its own node and the Polres sets it assigned; each daemon's probe to itself (<node>/probe/link) comes
    back; 0 "Denied PUBLISH" in the broker log, 0 refusals logged by any daemon."""
    users = dict(USERS, **{"gateway-110": "pw-gateway", "console-mabes-1": "pw-console-mabes", "observer": "pw-observer"})
    with running(CentralBroker(tmp_path / "central", pki, users=users, acl_extra="\nuser observer\ntopic read polri110/#\n")) as b:
        sub = connected(clients, b, "observer")
        sub.subscribe("polri110/#")

        def state(node: str, call_id: str = "C-9") -> dict[str, object]:
            got = sub.on(f"{node}/call/{call_id}")
            return dict(json.loads(got[-1].payload)) if got else {}

        link = tmp_path / "polres" / "ttyGPS0"
        polres = _tier(tmp_path / "polres", b, "gorontalo/kota-gorontalo", "polres", "gorontalo/kota-gorontalo",
                       f'[jurisdictions]\nfile = "{JUR}/gorontalo-adm2.geojson"\ninclude_property = "code"\ninclude_values = ["75.71"]\n'
                       "[dispatch]\nanswer_timeout_polres_s = 5\n[recommend]\nmax_fix_age_s = 3600\n"
                       f'[[device]]\nid = "gps0"\ndriver = "nmea"\nurl = "{link}"\n[[unit]]\nid = "R2-00"\ndevice = "gps0"\n')
        polda = _tier(tmp_path / "polda", b, "gorontalo", "polda", "gorontalo",
                      f'[jurisdictions]\nfile = "{JUR}/gorontalo-adm2.geojson"\ninclude_property = "level"\n'
                      'include_values = ["regency", "city"]\nchildren = ["75.71=gorontalo/kota-gorontalo"]\n'
                      "[dispatch]\nanswer_timeout_polda_s = 5\n[recommend]\nmax_fix_age_s = 3600\n")
        mabes = _tier(tmp_path / "mabes", b, "", "mabes", "mabes",
                      f'[jurisdictions]\nfile = "{JUR}/indonesia-adm1.geojson"\noutside_max_m = 3000\nchildren = ["75=gorontalo"]\n'
                      "[dispatch]\nanswer_timeout_mabes_s = 5\nrealert_s = 5\n[recommend]\nmax_fix_age_s = 3600\n")
        pty = ptys(link)
        running_daemons = [daemons(polres), daemons(polda), daemons(mabes)]
        for node in (KOTA, "polri110/gorontalo", "polri110"):
            wait_until(lambda n=node: any(json.loads(m.payload)["state"] == "online" for m in sub.on(f"{n}/state")), 10, f"{node} online")  # type: ignore[misc]
        wait_until(lambda: "gps0: starting -> waiting" in running_daemons[0].log, what="port open")
        Feeder(pty).write(3, gap_s=0.1)
        wait_until(lambda: any(b'"available"' in m.payload for m in sub.on(f"{KOTA}/unit/R2-00/status")), 10, "unit available")

        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        call = {"call_id": "C-9", "caller": "+6285200000000", "lat": 0.5450, "lon": 123.0620, "accuracy_m": 10,
                "received_at": now, "category": "kecelakaan"}
        gateway = connected(clients, b, "gateway-110")
        assert gateway.publish(f"{KOTA}/call/new", json.dumps(call).encode()) == 0
        wait_until(lambda: state(KOTA).get("state") == "escalated", 20, "escalated at the Polres")
        wait_until(lambda: state("polri110/gorontalo").get("state") == "offered", 20, "offered at the Polda")
        assert [c["unit"] for c in state("polri110/gorontalo")["candidates"]] == ["R2-00"]  # type: ignore[attr-defined]
        wait_until(lambda: state("polri110").get("state") == "offered", 30, "offered at Mabes")
        console = connected(clients, b, "console-mabes-1")
        assert console.publish("polri110/call/C-9/event", json.dumps({"action": "answer", "by": "piket-mabes"}).encode()) == 0
        wait_until(lambda: bool(sub.on(f"{KOTA}/unit/R2-00/alert")), 10, "alert at the unit's own node")
        wait_until(lambda: b'"assigned"' in sub.on(f"{KOTA}/unit/R2-00/status")[-1].payload, 10, "unit assigned at its node")
        assert "Denied PUBLISH" not in b.log
        for d in running_daemons:
            assert "broker refused" not in d.log and "refused the connection" not in d.log
            wait_until(lambda d=d: "the probe came back" in d.log, 15, "each node's probe to itself back through the ACL")  # type: ignore[misc]
            assert "no proof" not in d.log


def test_a_history_worker_reads_the_positions_below_through_the_shipped_acl_and_may_write_nothing(
    tmp_path: Path, pki: Pki, clients: Callable[..., Client]
) -> None:
    """alkomd-history of Polda Gorontalo logged in as `history-gorontalo` of the shipped acl, with its shared
    subscription. Pass: a position Polres Kota Gorontalo publishes is stored; the same user's publish is refused (0x87)."""
    users = dict(USERS, **{"history-gorontalo": "pw-history"})
    with running(CentralBroker(tmp_path / "central", pki, users=users)) as b:
        d = tmp_path / "history"
        history = d / "history.db"
        cfg = _tier(d, b, "gorontalo", "polda", "history-gorontalo",
                    f'[history]\npath = "{history}"\nusername = "history-gorontalo"\npassword_file = "{d}/pw"\n')
        worker = subprocess.Popen([sys.executable, "-m", "alkomd.daemon.central.main", "--config", str(cfg), "--name", "1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            station = connected(clients, b, "gorontalo/kota-gorontalo")
            n = [0]

            def stored() -> bool:  # a shared subscription gets no retained message: publish until one is stored
                n[0] += 1
                t = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
                body = {"unit": "R2-00", "lat": 0.545, "lon": 123.062, "time": t, "received": t, "msg_id": f"h-{n[0]}"}
                station.publish(f"{KOTA}/unit/R2-00/position", json.dumps(body).encode())
                if not history.exists():
                    return False
                conn = sqlite3.connect(history, timeout=10)
                try:
                    return bool(conn.execute("SELECT count(*) FROM below_positions WHERE unit = 'R2-00'").fetchone()[0])
                except sqlite3.OperationalError:
                    return False
                finally:
                    conn.close()

            wait_until(stored, 30, "a position below stored by the worker")
            own = connected(clients, b, "history-gorontalo")
            assert own.publish(f"{KOTA}/unit/R2-00/position", b"{}") == 0x87
        finally:
            worker.terminate()
            _, err = worker.communicate(timeout=20)
        assert worker.returncode == 0 and "refused" not in err, err[-2000:]

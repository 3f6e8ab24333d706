"""NMEA over the network: UDP modems (by address, by id field), garbage, NMEA over TCP, and the daemon end to end."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import NODE, Daemon, Station, Subscriber, wait_until

from alkomd.daemon import config as cfgmod
from alkomd.daemon.records import DeviceState, DeviceStatus, Fix, RadioStatus, Record
from alkomd.daemon.schema import ConfigError
from alkomd.drivers.net import connect_tcp
from alkomd.drivers.nmea_serial import NmeaOptions, NmeaSerial
from alkomd.drivers.nmea_udp import NmeaUdp, NmeaUdpOptions, sender_address
from alkomd.drivers.nmea_writer import EpochSpec, epoch, kenwood_ds, kenwood_id, sentence

PER_EPOCH = epoch(EpochSpec(datetime.now(UTC), 0.5, 123.0)).count(b"$")  # sentences in one written epoch


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class Modem:
    """A vehicle modem: sends its receiver's epochs to the station as UDP datagrams from `source`."""

    def __init__(self, port: int, source: str = "127.0.0.1", prefix: bytes = b"", lat: float = 0.54, split: bool = False) -> None:
        self.port, self.prefix, self.lat, self.split = port, prefix, lat, split
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
        self.sent: dict[datetime, float] = {}  # time -> latitude of valid epochs sent

    def send(self, n: int = 1, valid: bool = True) -> None:
        for _ in range(n):
            self.t += timedelta(seconds=1)
            self.lat += 0.0001
            data = epoch(EpochSpec(self.t, self.lat, 123.06, speed_kmh=30, course=90, valid=valid))
            parts = data.splitlines(keepends=True) if self.split else [data]
            for part in parts:  # split: one sentence per datagram, as some modems send
                self.sock.sendto(self.prefix + part, ("127.0.0.1", self.port))
            if valid:
                self.sent[self.t] = self.lat

    def raw(self, data: bytes) -> None:
        self.sock.sendto(data, ("127.0.0.1", self.port))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def modems() -> Iterator[Callable[..., Modem]]:
    made: list[Modem] = []

    def make(port: int, **kw: object) -> Modem:
        m = Modem(port, **kw)  # type: ignore[arg-type]
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()


class Run:
    """A driver in its own thread, as the runtime runs it."""

    def __init__(self, driver: NmeaUdp | NmeaSerial) -> None:
        self.records: list[Record] = []
        self.driver = driver
        self.stop = threading.Event()
        self.thread = threading.Thread(target=driver.run, args=(self.stop, self.records.append), daemon=True)
        self.thread.start()

    @classmethod
    def udp(cls, port: int, **opts: object) -> Run:
        return cls(NmeaUdp("modems", NmeaUdpOptions(port=port, bind="127.0.0.1", **opts)))  # type: ignore[arg-type]

    def statuses(self) -> list[DeviceStatus]:
        return [r for r in self.records if isinstance(r, DeviceStatus)]

    def states(self) -> list[DeviceState]:
        return [s.state for s in self.statuses()]

    def fixes(self, radio: str | None = None) -> list[Fix]:
        return [r for r in self.records if isinstance(r, Fix) and (radio is None or r.radio == radio)]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        assert not self.thread.is_alive(), "the driver must stop within about a second"
        seen = [(s.state, s.detail) for s in self.statuses()]
        assert all(a != b for a, b in itertools.pairwise(seen)), "a state is reported on change only"


def _check(fixes: list[Fix], modem: Modem) -> None:
    assert fixes
    for f in fixes:
        assert f.time in modem.sent, f"fix at {f.time} was never sent by this modem"
        assert abs(f.lat - modem.sent[f.time]) < 2e-6 and abs(f.lon - 123.06) < 2e-6
        assert f.device == "modems" and f.mode == 3 and f.speed_kmh is not None and abs(f.speed_kmh - 30) < 0.01
    times = [f.time for f in fixes]
    assert times == sorted(set(times))


def test_several_modems_told_apart_by_address(modems: Callable[..., Modem]) -> None:
    port = free_udp_port()
    run = Run.udp(port)
    try:
        wait_until(lambda: bool(run.states()), what="listening")
        a = modems(port, source="127.0.0.2", lat=0.50)
        b = modems(port, source="127.0.0.3", lat=0.60, split=True)  # one sentence per datagram
        for _ in range(4):
            a.send()
            b.send()
        wait_until(lambda: len(run.fixes("127.0.0.2")) == 4 and len(run.fixes("127.0.0.3")) == 4, what="4 fixes from each modem")
    finally:
        run.close()
    _check(run.fixes("127.0.0.2"), a)
    _check(run.fixes("127.0.0.3"), b)
    assert len(run.fixes()) == 8 and run.driver.senders == ["127.0.0.2", "127.0.0.3"]
    c = run.driver.counters()
    assert c.fixes == 8 and c.sentences == 8 * PER_EPOCH and c.checksum_errors == c.parse_errors == c.garbage_bytes == 0
    assert run.states() == [DeviceState.WAITING, DeviceState.CONNECTED]


def test_modems_told_apart_by_an_id_field(modems: Callable[..., Modem]) -> None:
    port = free_udp_port()
    run = Run.udp(port, identify="field")
    try:
        wait_until(lambda: bool(run.states()), what="listening")
        car = modems(port, prefix=b"ID=car12;", lat=0.50)  # both behind one NAT address
        imei = modems(port, prefix=b"354678901234567,\r\n", lat=0.60, split=True)
        for _ in range(3):
            car.send()
            imei.send()
        modems(port).send(2)  # no id: dropped and counted
        modems(port, prefix=b"ID=car 12;").send()  # an id a [[unit]] radio could not name
        wait_until(lambda: len(run.fixes()) == 6, what="3 fixes from each id")
        wait_until(lambda: run.driver.unidentified == 3, what="datagrams without an id counted")
    finally:
        run.close()
    _check(run.fixes("car12"), car)
    _check(run.fixes("354678901234567"), imei)
    c = run.driver.counters()
    assert c.parse_errors == 3 and c.checksum_errors == 0 and c.fixes == 6
    assert sorted(run.driver.senders) == ["354678901234567", "car12"]


def test_a_custom_id_pattern_takes_an_identifying_sentence(modems: Callable[..., Modem]) -> None:
    port = free_udp_port()
    run = Run.udp(port, identify="field", id_pattern=r"\$GPSTN,([A-Za-z0-9]{1,32})[^\n]*\n")
    try:
        wait_until(lambda: bool(run.states()), what="listening")
        m = modems(port, prefix=b"$GPSTN,1234567890,PT01,X*3F\r\n")
        m.send(3)
        wait_until(lambda: len(run.fixes("1234567890")) == 3, what="fixes of the identified modem")
    finally:
        run.close()
    _check(run.fixes(), m)
    assert run.driver.counters().garbage_bytes == 0 and run.driver.counters().checksum_errors == 0


def test_garbage_and_oversized_datagrams_are_counted_never_fatal(modems: Callable[..., Modem]) -> None:
    port = free_udp_port()
    run = Run.udp(port, max_datagram_bytes=1024)
    try:
        wait_until(lambda: bool(run.states()), what="listening")
        m = modems(port)
        m.send(2)
        m.raw(bytes(range(128, 256)) * 4 + b"\xff" * 88)  # line noise (600 bytes)
        m.raw(b"$GPRMC" * 400)  # oversized
        m.raw(b"")  # empty
        m.raw(epoch(EpochSpec(m.t, 0.5, 123.0)).replace(b",", b";"))  # every checksum broken
        m.raw(sentence("GPGGA,,,,,,0,00,99.99,,M,,M,,"))  # a receiver without a fix: no phantom fix at 0,0
        m.send(2)
        wait_until(lambda: len(run.fixes()) == 4, what="fixes around the garbage")
    finally:
        run.close()
    _check(run.fixes(), m)
    assert all(f.radio == "127.0.0.1" for f in run.fixes())
    c = run.driver.counters()
    assert run.driver.oversized == 1 and run.driver.datagrams == 2 + 5 + 2
    assert c.garbage_bytes >= 600 + 2400 and c.checksum_errors == 6 and c.rejected_fixes >= 1


def test_a_base_radio_behind_a_modem_keeps_its_radios_names(modems: Callable[..., Modem]) -> None:
    """Kenwood reports relayed over UDP name their radio; a status code alone is not a fix."""
    port = free_udp_port()
    run = Run.udp(port, no_fix_after_s=1.0)
    try:
        wait_until(lambda: bool(run.states()), what="listening")
        m = modems(port)
        t = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
        m.raw(kenwood_ds(t, 0.55, 123.05, "100-1001", 99))
        wait_until(lambda: any(isinstance(r, RadioStatus) for r in run.records), what="the relayed status")
        deadline = time.monotonic() + 10
        while run.states()[-1] is not DeviceState.NO_FIX and time.monotonic() < deadline:
            m.raw(kenwood_id("U00002", 10))  # status codes only: no fix from anyone
            time.sleep(0.1)
    finally:
        run.close()
    (fix,) = run.fixes()
    assert fix.radio == "100-1001" and abs(fix.lat - 0.55) < 2e-6 and fix.time == t
    statuses = [(r.radio, r.code) for r in run.records if isinstance(r, RadioStatus)]
    assert statuses[0] == ("100-1001", 99) and set(statuses[1:]) == {("U00002", 10)}
    assert run.states()[-1] is DeviceState.NO_FIX, "status codes without a position must not count as fixes"


def test_allow_refuses_other_networks(modems: Callable[..., Modem]) -> None:
    port = free_udp_port()
    run = Run.udp(port, allow=("127.0.0.2/32", "10.64.0.0/16"))
    try:
        wait_until(lambda: bool(run.states()), what="listening")
        good, bad = modems(port, source="127.0.0.2"), modems(port, source="127.0.0.3")
        bad.send(3)
        good.send(3)
        wait_until(lambda: len(run.fixes()) == 3, what="fixes of the allowed modem")
        wait_until(lambda: run.driver.denied == 3, what="refusals counted")
    finally:
        run.close()
    _check(run.fixes(), good)
    assert run.driver.senders == ["127.0.0.2"] and run.driver.counters().bytes > 0


def test_senders_are_bounded_the_longest_quiet_is_forgotten(modems: Callable[..., Modem]) -> None:
    port = free_udp_port()
    run = Run.udp(port, max_senders=2)
    try:
        wait_until(lambda: bool(run.states()), what="listening")
        for i in range(1, 5):
            ip = f"127.0.1.{i}"
            modems(port, source=ip).send(2)
            wait_until(lambda ip=ip: len(run.fixes(ip)) == 2, what=f"two fixes from {ip}")  # type: ignore[misc]
    finally:
        run.close()
    assert run.driver.evicted == 2 and run.driver.senders == ["127.0.1.3", "127.0.1.4"]
    assert run.driver.counters().fixes == 8 and len(run.fixes()) == 8  # a forgotten sender's fixes still counted


def test_a_port_in_use_is_disconnected_with_the_reason_then_bound() -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    run = Run.udp(port, reconnect_max_s=0.5)
    try:
        wait_until(lambda: bool(run.states()), what="a state")
        assert run.statuses()[0].state is DeviceState.DISCONNECTED
        assert run.statuses()[0].detail == f"cannot listen on udp 127.0.0.1:{port}: port in use by another program"
        holder.close()
        wait_until(lambda: run.states()[-1] is DeviceState.WAITING, what="bound once the port is free")
    finally:
        holder.close()
        run.close()


class Saturated:
    """A TCP port that never completes a connection: a listener whose backlog is full (SYNs dropped)."""

    def __init__(self) -> None:
        self.srv = socket.create_server(("127.0.0.1", 0), backlog=0)
        self.port: int = self.srv.getsockname()[1]
        self.held: list[socket.socket] = []
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", self.port))
            self.held.append(c)

    def close(self) -> None:
        for c in self.held:
            c.close()
        self.srv.close()


def test_connect_tcp_gives_up_in_time_and_is_cut_short_by_stop() -> None:
    sat = Saturated()
    try:
        with pytest.raises(TimeoutError):
            connect_tcp("127.0.0.1", sat.port, 0.3, threading.Event())
        stop = threading.Event()
        got: list[object] = ["not returned"]
        t = threading.Thread(target=lambda: got.__setitem__(0, connect_tcp("127.0.0.1", sat.port, 60.0, stop)), daemon=True)
        t.start()
        stop.set()
        t.join(5)  # a bound: the connect would wait 60 s without the stop
        assert not t.is_alive() and got == [None]
        with pytest.raises(ConnectionRefusedError):
            connect_tcp("127.0.0.1", free_udp_port(), 1.0, threading.Event())  # nothing listens on TCP there
    finally:
        sat.close()


def test_sender_address_names() -> None:
    assert sender_address("::ffff:10.64.1.23") == "10.64.1.23"
    assert sender_address("fe80::1%eth0") == "fe80::1"
    assert sender_address("10.64.1.23") == "10.64.1.23"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('allow = ["10.64.0.0/16", "10.300.0.0/16"]', "device[0]: allow[1]: '10.300.0.0/16' is not a network"),
        ('identify = "field"\nid_pattern = "ID=(["', "device[0]: id_pattern: not a valid regular expression"),
        ('identify = "field"\nid_pattern = "ID=[a-z]+;"', "device[0]: id_pattern: needs a group"),
        ('identify = "name"', "device[0].identify: must be one of address, field"),
        ("port = 0", "device[0].port: must be an integer between 1 and 65535"),
    ],
)
def test_bad_options_are_config_errors_naming_the_key(tmp_path: Path, extra: str, message: str) -> None:
    port = "" if extra.startswith("port") else "port = 5000\n"
    text = f'[node]\npath = "gorontalo/kota-gorontalo"\n[[device]]\nid = "modems"\ndriver = "nmea_udp"\n{port}{extra}\n'
    f = tmp_path / "alkomd.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        cfgmod.load(f)
    assert message in str(err.value) and str(f) in str(err.value)


def test_nmea_over_tcp_reconnects_when_the_server_comes_back() -> None:
    """The `nmea` driver with `socket://host:port`: a modem's TCP server goes away and comes back."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    run = Run(NmeaSerial("tcp-gps", NmeaOptions(url=f"socket://127.0.0.1:{port}", reconnect_max_s=0.5)))
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    try:
        conn, _ = srv.accept()
        wait_until(lambda: bool(run.states()), what="port open")  # pyserial drops what comes before it is open
        conn.sendall(b"".join(epoch(EpochSpec(t0 + timedelta(seconds=i), 0.55 + i * 1e-4, 123.1)) for i in range(3)))
        wait_until(lambda: len(run.fixes()) >= 2, what="fixes over TCP")
        conn.close()
        srv.close()  # the server is gone: connections are refused meanwhile
        wait_until(lambda: DeviceState.DISCONNECTED in run.states(), what="disconnected")
        wait_until(lambda: any("refused" in s.detail for s in run.statuses()), what="reopening refused while the server is away")
        srv = socket.create_server(("127.0.0.1", port))  # back on the same port
        srv.settimeout(10)
        conn, _ = srv.accept()
        wait_until(lambda: run.states()[-1] is DeviceState.WAITING, what="open again")
        before = len(run.fixes())
        later = t0 + timedelta(seconds=60)
        conn.sendall(b"".join(epoch(EpochSpec(later + timedelta(seconds=i), 0.56 + i * 1e-4, 123.1)) for i in range(3)))
        wait_until(lambda: len(run.fixes()) >= before + 2, what="fixes after the server came back")
        conn.close()
    finally:
        run.close()
        srv.close()
    resumed = [f for f in run.fixes() if f.time >= t0 + timedelta(seconds=60)]
    assert resumed and all(abs(f.lat - 0.56) < 0.001 for f in resumed) and run.driver.counters().reconnects >= 1


def test_daemon_publishes_udp_modems_as_units(
    station: Station, daemons: Callable[[Path], Daemon], subscriber_factory: Callable[..., Subscriber]
) -> None:
    """End to end: modems over UDP, by address and by id, become units' positions on MQTT."""
    by_addr, by_field = free_udp_port(), free_udp_port()
    station.dir.mkdir(parents=True, exist_ok=True)
    station.config.write_text(
        '[node]\npath = "gorontalo/kota-gorontalo"\n'
        f'[store]\npath = "{station.db}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {station.port}\ntls = false\nkeepalive_s = 5\nreconnect_min_s = 0.5\nreconnect_max_s = 2\n'
        f'[[device]]\nid = "modems"\ndriver = "nmea_udp"\nbind = "127.0.0.1"\nport = {by_addr}\nallow = ["127.0.0.0/8"]\n'
        f'[[device]]\nid = "airlink"\ndriver = "nmea_udp"\nbind = "127.0.0.1"\nport = {by_field}\nidentify = "field"\n'
        '[[unit]]\nid = "R2-01"\ndevice = "modems"\nradio = "127.0.0.2"\n'
        '[[unit]]\nid = "R2-02"\ndevice = "modems"\nradio = "127.0.0.3"\n'
        '[[unit]]\nid = "R2-03"\ndevice = "airlink"\nradio = "car12"\n'
    )
    sub = subscriber_factory(station.port)
    daemons(station.config)
    a = Modem(port=by_addr, source="127.0.0.2", lat=0.50)
    b = Modem(port=by_addr, source="127.0.0.3", lat=0.60)
    c = Modem(port=by_field, prefix=b"ID=car12;", lat=0.70)
    try:
        last = [0.0]

        def arrived() -> bool:
            if time.monotonic() - last[0] >= 0.3:  # an epoch every 0.3 s until the daemon listens and publishes
                last[0] = time.monotonic()
                for m in (a, b, c):
                    m.send()
            return all(sub.on(f"/unit/{u}/position") for u in ("R2-01", "R2-02", "R2-03"))

        wait_until(arrived, 20, "positions of the three units")
    finally:
        for m in (a, b, c):
            m.close()
    for unit, source, modem in (("R2-01", "modems:127.0.0.2", a), ("R2-02", "modems:127.0.0.3", b), ("R2-03", "airlink:car12", c)):
        msg = sub.on(f"/unit/{unit}/position")[0]
        assert msg.topic == f"{NODE}/unit/{unit}/position"
        p = msg.payload
        assert p["unit"] == unit and p["source"] == source
        assert any(abs(p["lat"] - lat) < 2e-6 for lat in modem.sent.values()) and abs(p["lon"] - 123.06) < 2e-6
    # The device's status follows its first fix in the outbox: it may arrive just after the positions.
    wait_until(lambda: any(s.payload["state"] == "connected" for s in sub.on("/device/airlink/status")), what="airlink connected")
    assert all(s.payload["driver"] == "nmea_udp" for s in sub.on("/device/airlink/status"))

"""The `lrrp` driver on loopback: ARS registration, requests, reports, emergencies, garbage, and the daemon end to end."""

from __future__ import annotations

import dataclasses
import random
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import NODE, Daemon, Station, Subscriber, wait_until
from helpers_radio import Run, free_udp_port

from alkomd.daemon import config as cfgmod
from alkomd.daemon.records import DeviceState
from alkomd.daemon.schema import ConfigError
from alkomd.drivers import registry
from alkomd.drivers.lrrp import MessageType
from alkomd.drivers.lrrp_driver import LrrpDriver, LrrpOptions
from alkomd.drivers.sim_mototrbo import MototrboSim, SimRadio

RADIOS = (SimRadio(1001, "kota-gorontalo-loop", 5.0), SimRadio(1002, "limboto-gorontalo", 40.0, 120.0))


class Bench:
    """A driver and a simulated control station wired to each other on loopback."""

    def __init__(self, radios: tuple[SimRadio, ...] = RADIOS, start_sim: bool = True, **opts: object) -> None:
        self.lrrp_port, self.ars_port = free_udp_port(), free_udp_port()
        self.sim = MototrboSim(radios, lrrp_port=self.lrrp_port, ars_port=self.ars_port, register_retry_s=0.3)
        o = LrrpOptions(
            bind="127.0.0.1", lrrp_port=self.lrrp_port, ars_port=self.ars_port, radio_network=127,
            radio_lrrp_port=self.sim.radio_port, **opts,  # type: ignore[arg-type]
        )
        self.driver = LrrpDriver("trbo", o)
        self.run = Run(self.driver)
        if start_sim:
            self.sim.start()

    def close(self) -> None:
        try:
            self.run.close()
        finally:
            self.sim.close()


@pytest.fixture
def bench() -> Iterator[Callable[..., Bench]]:
    made: list[Bench] = []

    def make(*args: object, **kw: object) -> Bench:
        b = Bench(*args, **kw)  # type: ignore[arg-type]
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def test_registration_is_acknowledged_and_radios_are_asked_for_reports(bench: Callable[..., Bench]) -> None:
    b = bench(report_interval_s=1)
    wait_until(lambda: all(b.sim.registered(r) for r in ("1001", "1002")), what="ARS acknowledgements")
    for radio in ("1001", "1002"):
        wait_until(lambda r=radio: {MessageType.TRIGGERED_START_REQUEST, MessageType.IMMEDIATE_REQUEST} <= set(b.sim.requests(r)),
                   what=f"requests to {radio}")
    # the immediate report, then triggered ones: at least two fixes of each radio
    wait_until(lambda: all(len(b.run.fixes(r)) >= 2 for r in ("1001", "1002")), what="fixes of both radios")
    f = b.run.fixes("1001")[0]
    assert f.device == "trbo" and f.accuracy_m == 5.0 and f.mode == 2
    assert 0.4 < f.lat < 0.7 and 122.9 < f.lon < 123.2  # Kota Gorontalo
    assert f.speed_kmh == 5.0 and f.course is not None
    wait_until(lambda: DeviceState.CONNECTED in b.run.states(), what="state connected")
    c = b.driver.counters()
    assert c.fixes >= 4 and c.parse_errors == 0 and c.sentences >= 6
    assert not b.run.emergencies()


def test_deregistration_sends_a_stop_request_and_forgets_the_radio(bench: Callable[..., Bench]) -> None:
    b = bench(report_interval_s=1)
    wait_until(lambda: b.sim.triggered("1001") and "1001" in b.driver.radios, what="radio 1001 triggered")
    b.sim.deregister("1001")
    wait_until(lambda: MessageType.TRIGGERED_STOP_REQUEST in b.sim.requests("1001"), what="a stop request")
    wait_until(lambda: not b.sim.triggered("1001"), what="the radio's reports stopped")
    assert "1001" not in b.driver.radios and b.driver.deregistrations == 1
    b.sim.register("1001")  # powered on again: asked again
    wait_until(lambda: b.sim.requests("1001").count(MessageType.TRIGGERED_START_REQUEST) >= 2, what="a new start request")
    assert "1001" in b.driver.radios


def test_a_radio_whose_requests_were_lost_is_asked_again() -> None:
    b = Bench(start_sim=False)
    try:
        b.sim.lose_requests("1001")
        b.sim.start()
        wait_until(lambda: b.sim.registered("1001") and b.driver.radios.get("1001") is not None, what="1001 registered")
        assert not b.sim.requests("1001") and not b.run.fixes("1001")
        b.sim.lose_requests("1001", False)
        r = b.driver.radios.get("1001")
        assert r is not None
        r.asked -= 3600  # as if an hour had passed without a report (the retry timer, without waiting for it)
        wait_until(lambda: b.run.fixes("1001"), what="a fix after asking again")
        assert MessageType.TRIGGERED_START_REQUEST in b.sim.requests("1001")
    finally:
        b.close()


def test_unsolicited_report_is_an_emergency_only_when_configured(bench: Callable[..., Bench]) -> None:
    b = bench(unsolicited_emergency=True)
    wait_until(lambda: b.run.fixes("1002"), what="a fix of 1002")
    b.sim.emergency("1002")
    wait_until(lambda: b.run.emergencies(), what="an emergency")
    e = b.run.emergencies()[0]
    assert e.radio == "1002" and e.code == 99 and e.device == "trbo"

    plain = bench()
    wait_until(lambda: plain.run.fixes("1002"), what="a fix of 1002")
    n = len(plain.run.fixes("1002"))
    plain.sim.emergency("1002")
    wait_until(lambda: len(plain.run.fixes("1002")) > n, what="the unsolicited report's fix")
    assert not plain.run.emergencies()


def test_a_radios_second_emergency_is_a_new_signal_after_an_ordinary_report(bench: Callable[..., Bench]) -> None:
    """LRRP has no "emergency ended": the radio's first triggered report after its emergency passes on
    `after_emergency_code`, so that the station, which raises one alarm when a radio's code turns to 99, raises the
    second emergency too (before, it passed as a repeat of the first until the daemon restarted)."""
    b = bench(unsolicited_emergency=True, after_emergency_code=7, report_interval_s=1)
    wait_until(lambda: b.run.fixes("1002"), what="a fix of 1002")

    def codes() -> list[int]:
        return [e.code for e in b.run.emergencies() if e.radio == "1002"]

    b.sim.emergency("1002")
    wait_until(lambda: codes() == [99, 7], what="the emergency, then the end of it with the next triggered report")
    b.sim.emergency("1002")
    wait_until(lambda: codes()[:3] == [99, 7, 99], what="the second emergency")
    assert all(e.device == "trbo" for e in b.run.emergencies()) and b.driver.tally.emergencies == 2


def test_garbage_is_counted_and_never_fatal(bench: Callable[..., Bench]) -> None:
    b = bench()
    wait_until(lambda: b.run.fixes("1001"), what="a first fix")
    junk = [b"", b"\x00", b"\x07\x05abc", b"\x13\x02\x66\x00", b"\xff" * 300, b"$GPRMC,hello*00\r\n", b"\x0d\x81\x80\x80\x80\x80\x00"]
    rng = random.Random(14)
    junk += [bytes([rng.choice((0x05, 0x07, 0x0D, 0x13, 0x00))]) + rng.randbytes(rng.randrange(0, 40)) for _ in range(200)]
    for data in junk:
        b.sim.send_raw("1001", data)
        b.sim.send_raw("1001", data, ars=True)
    wait_until(lambda: b.driver.counters().parse_errors >= 2 * 7 - 2, what="bad datagrams counted")
    assert b.run.thread.is_alive()
    n = len(b.run.fixes("1001"))
    b.sim.emergency("1001")  # still decoding
    wait_until(lambda: len(b.run.fixes("1001")) > n, what="a fix after the garbage")
    assert b.driver.counters().garbage_bytes > 0


def test_the_radio_table_is_bounded(bench: Callable[..., Bench]) -> None:
    radios = tuple(SimRadio(2000 + i) for i in range(4))
    b = bench(radios, max_radios=2)
    wait_until(lambda: all(b.sim.registered(str(r.radio)) for r in radios), what="four registrations")
    assert len(b.driver.radios) == 2 and b.driver.radios.evicted >= 2


def test_stop_on_exit_stops_the_radios() -> None:
    b = Bench(stop_on_exit=True, report_interval_s=1)
    try:
        wait_until(lambda: b.sim.triggered("1001") and b.sim.triggered("1002"), what="both radios triggered")
        b.run.close()
        wait_until(lambda: not b.sim.triggered("1001") and not b.sim.triggered("1002"), what="stop requests on exit")
    finally:
        b.sim.close()


def test_reports_of_a_radio_never_heard_registering_are_taken() -> None:
    """After a daemon restart radios still report: they are learnt from their address."""
    b = Bench(start_sim=False)
    try:
        for st in b.sim.radios.values():
            st.registered = True  # as if registered with the daemon before its restart
        b.sim.start()
        wait_until(lambda: b.run.statuses(), what="the driver listening")
        b.sim.emergency("1001")
        wait_until(lambda: b.run.fixes("1001"), what="a fix of an unregistered radio")
        assert "1001" in b.driver.radios and b.driver.registrations == 0
        wait_until(lambda: b.sim.triggered("1001"), what="the learnt radio asked for reports at this driver's interval")
    finally:
        b.close()


def test_bind_failure_is_a_state_not_a_crash() -> None:
    port = free_udp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hog:
        hog.bind(("127.0.0.1", port))
        run = Run(LrrpDriver("trbo", LrrpOptions(bind="127.0.0.1", lrrp_port=port, ars_port=free_udp_port(), reconnect_max_s=0.5)))
        try:
            wait_until(lambda: DeviceState.DISCONNECTED in run.states(), what="disconnected")
            assert "port in use" in run.statuses()[-1].detail
        finally:
            run.close()


def _config(tmp_path: Path, device: str) -> Path:
    f = tmp_path / "alkomd.toml"
    f.write_text(f'[node]\npath = "gorontalo/kota-gorontalo"\n[[device]]\nid = "trbo"\ndriver = "lrrp"\n{device}\n'
                 '[[unit]]\nid = "HT-11"\ndevice = "trbo"\nradio = "1001"\n')
    return f


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("report_interval = 30", "device[0].report_interval"),
        ("report_interval_s = 0", "device[0].report_interval_s"),
        ("lrrp_port = 70000", "device[0].lrrp_port"),
        ('unsolicited_emergency = "yes"', "device[0].unsolicited_emergency"),
    ],
)
def test_bad_options_are_config_errors_naming_the_key(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        cfgmod.load(_config(tmp_path, extra))
    assert message in str(err.value)


def test_config_takes_decimal_radio_ids(tmp_path: Path) -> None:
    cfg = cfgmod.load(_config(tmp_path, "report_interval_s = 60"))
    assert cfg.units[0].radio == "1001" and cfg.devices[0].driver == "lrrp"
    assert "lrrp" in registry.names() and "hytera" in registry.names()


def test_daemon_publishes_lrrp_radios_as_units(
    station: Station, daemons: Callable[[Path], Daemon], subscriber_factory: Callable[..., Subscriber]
) -> None:
    """End to end: a simulated control station's radios become units' positions and emergencies on MQTT."""
    lrrp_port, ars_port = free_udp_port(), free_udp_port()
    sim = MototrboSim(RADIOS, lrrp_port=lrrp_port, ars_port=ars_port, register_retry_s=0.5)
    station.dir.mkdir(parents=True, exist_ok=True)
    station.config.write_text(
        '[node]\npath = "gorontalo/kota-gorontalo"\n'
        f'[store]\npath = "{station.db}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {station.port}\ntls = false\nkeepalive_s = 5\nreconnect_min_s = 0.5\nreconnect_max_s = 2\n'
        f'[[device]]\nid = "lrrp-cs"\ndriver = "lrrp"\nbind = "127.0.0.1"\nlrrp_port = {lrrp_port}\nars_port = {ars_port}\n'
        f"radio_network = 127\nradio_lrrp_port = {sim.radio_port}\nreport_interval_s = 2\nunsolicited_emergency = true\n"
        '[[unit]]\nid = "HT-11"\ntype = "foot"\ndevice = "lrrp-cs"\nradio = "1001"\n'
        '[[unit]]\nid = "HT-12"\ntype = "foot"\nradio = "1002"\n'
    )
    sub = subscriber_factory(station.port)
    daemons(station.config)
    sim.start()
    try:
        wait_until(lambda: all(sub.on(f"/unit/{u}/position") for u in ("HT-11", "HT-12")), 30, "positions of both units")
        sim.emergency("1002")
        wait_until(lambda: sub.on("/unit/HT-12/emergency"), 20, "the emergency of HT-12")
    finally:
        sim.close()
    for unit, radio in (("HT-11", "1001"), ("HT-12", "1002")):
        p = sub.on(f"/unit/{unit}/position")[0].payload
        assert p["unit"] == unit and p["source"] == f"lrrp-cs:{radio}" and p["accuracy_m"] == 5.0 and p["protocol"] == "lrrp"
        assert 0.4 < p["lat"] < 0.8 and 122.8 < p["lon"] < 123.2
    e = sub.on("/unit/HT-12/emergency")[0]
    assert e.topic == f"{NODE}/unit/HT-12/emergency" and e.payload["unit"] == "HT-12"
    status = sub.on("/device/lrrp-cs/status")
    assert status and all(s.payload["driver"] == "lrrp" for s in status)


def test_every_option_is_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", readme))
    assert not [f.name for f in dataclasses.fields(LrrpOptions) if f.name not in documented]

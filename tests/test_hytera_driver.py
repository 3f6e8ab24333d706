"""The `hytera` driver on loopback: requests to configured radios, reports, emergencies, garbage, and the daemon end to end."""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import NODE, Daemon, Station, Subscriber, wait_until
from helpers_radio import Run, free_udp_port

from alkomd.daemon import config as cfgmod
from alkomd.daemon.records import DeviceState
from alkomd.daemon.schema import ConfigError
from alkomd.drivers import hytera
from alkomd.drivers.hytera import Opcode
from alkomd.drivers.hytera_driver import HyteraDriver, HyteraOptions
from alkomd.drivers.sim_hytera import HyteraSim
from alkomd.drivers.sim_mototrbo import SimRadio

RADIOS = (SimRadio(1001, "kota-gorontalo-loop", 5.0), SimRadio(1002, "bone-bolango-coast", 60.0, 300.0), SimRadio(1003))


class Bench:
    """A driver and a simulated Hytera control station wired to each other on loopback."""

    def __init__(self, radios: tuple[str, ...] = ("1001", "1002"), **opts: object) -> None:
        self.port = free_udp_port()
        self.sim = HyteraSim(RADIOS, server_port=self.port)
        o = HyteraOptions(
            bind="127.0.0.1", port=self.port, station="127.0.0.1", station_port=self.sim.port, radios=radios, **opts,  # type: ignore[arg-type]
        )
        self.driver = HyteraDriver("hytera-cs", o)
        self.sim.start()
        self.run = Run(self.driver)

    def close(self) -> None:
        try:
            if self.run.thread.is_alive():
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


def test_configured_radios_are_asked_and_their_reports_are_fixes(bench: Callable[..., Bench]) -> None:
    b = bench(report_interval_s=1)
    asked = {Opcode.TRIGGERED_REQUEST, Opcode.STANDARD_REQUEST}
    for radio in ("1001", "1002"):
        wait_until(lambda r=radio: asked <= set(b.sim.requests(r)), what=f"requests to {radio}")
    wait_until(lambda: all(len(b.run.fixes(r)) >= 2 for r in ("1001", "1002")), what="standard and triggered reports")
    assert not b.sim.requests("1003"), "a radio not configured is not asked"
    f = b.run.fixes("1002")[0]
    assert f.device == "hytera-cs" and f.mode == 2 and 0.4 < f.lat < 0.7 and 123.0 < f.lon < 123.3
    assert f.speed_kmh is not None and abs(f.speed_kmh - 60.0) < 2.0
    wait_until(lambda: DeviceState.CONNECTED in b.run.states(), what="state connected")
    assert b.driver.counters().parse_errors == 0 and not b.run.emergencies()


def test_driver_stop_stops_the_triggered_reports(bench: Callable[..., Bench]) -> None:
    b = bench(report_interval_s=1)
    wait_until(lambda: b.sim.triggered("1001") and b.sim.triggered("1002"), what="both radios triggered")
    b.run.close()
    wait_until(lambda: not b.sim.triggered("1001") and not b.sim.triggered("1002"), what="triggered stops")
    assert Opcode.TRIGGERED_STOP_REQUEST in b.sim.requests("1001")


def test_emergency_report_is_a_radio_status_99_with_a_fix(bench: Callable[..., Bench]) -> None:
    b = bench()
    wait_until(lambda: b.run.fixes("1001"), what="a first fix")
    n = len(b.run.fixes("1001"))
    b.sim.emergency("1001")
    wait_until(lambda: b.run.emergencies(), what="the emergency")
    e = b.run.emergencies()[0]
    assert e.radio == "1001" and e.code == 99 and e.device == "hytera-cs"
    wait_until(lambda: len(b.run.fixes("1001")) > n, what="the emergency report's fix")


def test_a_radios_second_emergency_is_a_new_signal_after_an_ordinary_report(bench: Callable[..., Bench]) -> None:
    """The protocol has no "emergency ended": the radio's first ordinary report after its emergency report passes on
    `after_emergency_code`, so that the station, which raises one alarm when a radio's code turns to 99, raises the
    second emergency too (before, it passed as a repeat of the first until the daemon restarted)."""
    b = bench(after_emergency_code=7, report_interval_s=1)
    wait_until(lambda: b.run.fixes("1001"), what="a first fix")

    def codes() -> list[int]:
        return [e.code for e in b.run.emergencies() if e.radio == "1001"]

    b.sim.emergency("1001")
    wait_until(lambda: codes() == [99, 7], what="the emergency, then the end of it with the next triggered report")
    b.sim.emergency("1001")
    wait_until(lambda: codes()[:3] == [99, 7, 99], what="the second emergency")
    assert b.driver.tally.emergencies == 2


def test_a_radio_reporting_unasked_is_learnt(bench: Callable[..., Bench]) -> None:
    b = bench(radios=())
    wait_until(lambda: b.run.statuses(), what="the driver listening")
    b.sim.report_unasked("1003")
    wait_until(lambda: b.run.fixes("1003"), what="the unasked report's fix")
    wait_until(lambda: Opcode.TRIGGERED_REQUEST in b.sim.requests("1003"), what="1003 asked for reports")

    quiet = bench(radios=(), learn_radios=False)
    wait_until(lambda: quiet.run.statuses(), what="the driver listening")
    quiet.sim.report_unasked("1003")
    wait_until(lambda: quiet.run.fixes("1003"), what="the fix (taken even when not learning)")
    assert "1003" not in quiet.driver.radios and not quiet.sim.requests("1003")


def test_a_radio_that_was_off_is_asked_again() -> None:
    port = free_udp_port()
    sim = HyteraSim(RADIOS, server_port=port).start()
    sim.power("1001", False)
    o = HyteraOptions(bind="127.0.0.1", port=port, station="127.0.0.1", station_port=sim.port, radios=("1001",), retry_s=10)
    driver = HyteraDriver("hytera-cs", o)
    run = Run(driver)
    try:
        wait_until(lambda: driver.sender.sent >= 2, what="the first requests")
        r = driver.radios.get("1001")
        assert r is not None and r.heard is None
        sim.power("1001", True)
        r.asked -= 60  # as if a minute had passed (the driver's timer, without waiting for it)
        wait_until(lambda: bool(run.fixes("1001")), what="a fix once the radio is on")
    finally:
        run.close()
        sim.close()


def test_garbage_is_counted_and_never_fatal(bench: Callable[..., Bench]) -> None:
    b = bench()
    wait_until(lambda: b.run.fixes("1001"), what="a first fix")
    good = hytera.standard_request(1, 1001)
    junk = [b"", b"\x08", b"\x08\xa0\x02\x00\x00\x00\x03", good[:-2] + b"\x00\x03", b"\x01" + good[1:], b"\xff" * 500]
    rng = random.Random(14)
    fuzz = [bytes([0x08, 0xA0 | rng.randrange(0, 0x40), rng.randrange(256)]) + rng.randbytes(rng.randrange(0, 60)) + b"\x03"
            for _ in range(200)]
    for data in junk + fuzz:
        b.sim.send_raw(data)
    wait_until(lambda: (lambda c: c.parse_errors + c.checksum_errors)(b.driver.counters()) >= len(junk), what="garbage counted")
    assert b.driver.counters().checksum_errors >= 1 and b.run.thread.is_alive()
    n = len(b.run.fixes("1002"))
    b.sim.emergency("1002")
    wait_until(lambda: len(b.run.fixes("1002")) > n, what="a fix after the garbage")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('radios = ["HT1"]', "device[0]: radios[0]"),
        ("radios = [1001]", "device[0].radios[0]"),
        ("port = 0", "device[0].port"),
        ("interval_s = 30", "device[0].interval_s"),
    ],
)
def test_bad_options_are_config_errors_naming_the_key(tmp_path: Path, extra: str, message: str) -> None:
    f = tmp_path / "alkomd.toml"
    f.write_text(f'[node]\npath = "gorontalo/kota-gorontalo"\n[[device]]\nid = "h"\ndriver = "hytera"\n{extra}\n')
    with pytest.raises(ConfigError) as err:
        cfgmod.load(f)
    assert message in str(err.value)


def test_daemon_publishes_hytera_radios_as_units(
    station: Station, daemons: Callable[[Path], Daemon], subscriber_factory: Callable[..., Subscriber]
) -> None:
    """End to end: a simulated Hytera station's radios become units' positions and an emergency on MQTT."""
    port = free_udp_port()
    sim = HyteraSim(RADIOS, server_port=port).start()
    station.dir.mkdir(parents=True, exist_ok=True)
    station.config.write_text(
        '[node]\npath = "gorontalo/kota-gorontalo"\n'
        f'[store]\npath = "{station.db}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {station.port}\ntls = false\nkeepalive_s = 5\nreconnect_min_s = 0.5\nreconnect_max_s = 2\n'
        f'[[device]]\nid = "hytera-cs"\ndriver = "hytera"\nbind = "127.0.0.1"\nport = {port}\nstation = "127.0.0.1"\n'
        f'station_port = {sim.port}\nradios = ["1001", "1002"]\nreport_interval_s = 2\nretry_s = 10\n'
        '[[unit]]\nid = "HT-21"\ntype = "foot"\ndevice = "hytera-cs"\nradio = "1001"\n'
        '[[unit]]\nid = "R2-22"\nradio = "1002"\n'
    )
    sub = subscriber_factory(station.port)
    daemons(station.config)
    try:
        wait_until(lambda: all(sub.on(f"/unit/{u}/position") for u in ("HT-21", "R2-22")), 30, "positions of both units")
        sim.emergency("1001")
        wait_until(lambda: sub.on("/unit/HT-21/emergency"), 20, "the emergency of HT-21")
    finally:
        sim.close()
    for unit, radio in (("HT-21", "1001"), ("R2-22", "1002")):
        p = sub.on(f"/unit/{unit}/position")[0].payload
        assert p["unit"] == unit and p["source"] == f"hytera-cs:{radio}"
        assert 0.4 < p["lat"] < 0.8 and 122.8 < p["lon"] < 123.3
    assert sub.on("/unit/HT-21/emergency")[0].topic == f"{NODE}/unit/HT-21/emergency"
    status = sub.on("/device/hytera-cs/status")
    assert status and all(s.payload["driver"] == "hytera" for s in status)


def test_every_option_is_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", readme))
    assert not [f.name for f in dataclasses.fields(HyteraOptions) if f.name not in documented]

"""The `tetra` driver on real ptys with a simulated terminal: registration, LIP fixes per ISSI, emergencies, garbage, a whole station."""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Broker, Daemon, Station, Subscriber, wait_until
from hypothesis import given, settings
from hypothesis import strategies as st

from alkomd.daemon.config import load
from alkomd.daemon.records import DeviceState, DeviceStatus, Fix, RadioStatus, Record
from alkomd.drivers import registry
from alkomd.drivers.sim_tetra import REGISTRATION, PtyTerminal, SimulatedTerminal
from alkomd.drivers.tetra_driver import MAX_LINE, TetraOptions, TetraPei
from alkomd.drivers.tetra_lip_build import ctsdsr, long_report, short_report

GORONTALO = (0.5435, 123.0568)


class Run:
    """The driver in its own thread, as the runtime runs it."""

    def __init__(self, url: str, **opts: object) -> None:
        self.records: list[Record] = []
        self.driver = TetraPei("pei", TetraOptions(url=url, **opts))  # type: ignore[arg-type]
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
        assert not self.thread.is_alive(), "driver must stop within the read timeout"


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[PtyTerminal]:
    p = PtyTerminal(tmp_path / "ttyTETRA")
    yield p
    p.unplug()


def _sim(pty: PtyTerminal, **kw: object) -> tuple[SimulatedTerminal, threading.Event, threading.Thread]:
    sim = SimulatedTerminal(pty, [2269001, 2269002], **kw)  # type: ignore[arg-type]
    stop = threading.Event()
    t = threading.Thread(target=sim.run, args=(stop,), daemon=True)
    t.start()
    return sim, stop, t


def test_registers_at_open_and_after_every_reconnect_and_relays_each_issi(terminal: PtyTerminal) -> None:
    sim, sim_stop, sim_thread = _sim(terminal, interval_s=0.2, emergency_at_s=0.5)
    run = Run(str(terminal.link), reconnect_max_s=1)
    try:
        wait_until(lambda: len(run.fixes("2269001")) >= 2 and len(run.fixes("2269002")) >= 2, what="fixes of both radios")
        assert sim.commands[:2] == [b"AT", REGISTRATION]
        f = run.fixes("2269001")[0]
        assert f.device == "pei" and f.accuracy_m is not None and abs(f.lat - 0.5436) < 0.01 and abs(f.lon - 123.057) < 0.01
        assert {x.mode for x in run.fixes()} == {2, 3}  # short (2D) and long with altitude (3D) reports
        wait_until(lambda: any(isinstance(r, RadioStatus) for r in run.records), what="the emergency")
        wait_until(lambda: len([r for r in run.records if isinstance(r, RadioStatus)]) == 2, what="the report after it")
        em, after = [r for r in run.records if isinstance(r, RadioStatus)]
        assert (em.radio, em.code, em.device) == ("2269001", 99, "pei")
        assert (after.radio, after.code) == ("2269001", 0)  # the next emergency is a new signal
        assert run.states()[0] is DeviceState.WAITING  # the port is open, no fix yet
        # The terminal is unplugged and plugged back: disconnected, reopened, registered again.
        terminal.unplug()
        wait_until(lambda: run.states()[-1] is DeviceState.DISCONNECTED, what="disconnected")
        sim.registered = False
        before = len(run.fixes())
        terminal.replug()
        wait_until(lambda: sim.commands.count(REGISTRATION) >= 2, what="registration after the reconnect")
        wait_until(lambda: len(run.fixes()) > before + 2, what="fixes after the reconnect")
        c = run.driver.counters()
        assert c.reconnects >= 1 and c.parse_errors == 0 and c.fixes == len(run.fixes())
    finally:
        run.close()
        sim_stop.set()
        sim_thread.join(5)


def test_a_silent_terminal_still_gets_the_whole_registration(terminal: PtyTerminal) -> None:
    """Each command waits for the previous one's result, or a timeout: a terminal that does not answer `AT` gets `AT+CTSP` too."""
    run = Run(str(terminal.link))
    try:
        got = b""

        def registration_sent() -> bool:
            nonlocal got
            got += terminal.read()
            return REGISTRATION in got

        wait_until(registration_sent, what="the registration after the timeout")
        assert got == b"AT\r" + REGISTRATION + b"\r"
    finally:
        run.close()


def test_garbage_cme_errors_and_bad_reports_are_counted_never_fatal(terminal: PtyTerminal, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="alkomd.drivers.tetra_driver")
    run = Run(str(terminal.link), silent_after_s=60)
    try:
        wait_until(lambda: bool(run.states()), what="port open")
        bad_lip = ctsdsr(2269003, bytes.fromhex("0a010e"), 24)  # LIP, truncated
        junk = [
            bytes(range(256)) + b"\r\n",
            b"+CME ERROR: 35\r\n", b"+CME ERROR: 35\r\n", b"ERROR\r\n",
            b"+CTSDSR: 12,notanissi,0,9999,0,84\r\n0A112853A9FF4D4FFFE810\r\n",
            b"+CTSDSR: 12,2269001,0,9999,0,84\r\nZZZZ\r\n",
            b"+CTSDSR: 12,2269001,0,9999,0,84\r\n+CTSDSR: 12,2269001\r\n",
            bad_lip,
            ctsdsr(2269004, bytes.fromhex("82040801476A61746A616A676A61"), 112),  # a text SDS: not LIP, not an error
            b"X" * 5000,
            b"\r\n" + ctsdsr(2269005, *short_report(*GORONTALO, speed_kmh=30, course=90)),
        ]
        for chunk in junk:
            assert terminal.write(chunk) == len(chunk)
        wait_until(lambda: bool(run.fixes("2269005")), what="the good report after the junk")
        assert run.thread.is_alive()
        c = run.driver.counters()
        # The 5000 X's are garbage; how the pty splits them decides whether their last < MAX_LINE bytes are counted
        # as garbage or ride into the next line (then an unreadable line): never a crash, never a fix.
        assert c.parse_errors >= 4 and c.garbage_bytes >= 5000 - MAX_LINE and c.fixes == 1
        cme = [r.getMessage() for r in caplog.records if "+CME ERROR: 35" in r.getMessage()]
        assert len(cme) == 1  # logged once, not at every reply
    finally:
        run.close()


def test_keepalive_registers_again_when_the_terminal_is_quiet(terminal: PtyTerminal) -> None:
    sim, sim_stop, sim_thread = _sim(terminal, interval_s=3600, registered=True)
    run = Run(str(terminal.link), keepalive_s=0.3)
    try:
        wait_until(lambda: sim.commands.count(REGISTRATION) >= 3, what="registration repeated while quiet")
        assert run.driver.counters().sentences >= 3  # the terminal's OKs
    finally:
        run.close()
        sim_stop.set()
        sim_thread.join(5)


def test_a_missing_port_is_disconnected_with_a_hint(tmp_path: Path) -> None:
    run = Run(str(tmp_path / "nothing"), reconnect_max_s=0.5)
    try:
        wait_until(lambda: bool(run.states()), what="a state")
        (status,) = [r for r in run.records if isinstance(r, DeviceStatus)][:1]
        assert status.state is DeviceState.DISCONNECTED and "port not found" in status.detail
    finally:
        run.close()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300) | st.sampled_from([b"\r\n", b"+CTSDSR: 12,2269001,0,9999,0,84\r\n", b"OK\r\n",
                                                          b"0A112853A9FF4D4FFFE810\r\n", b"+CME ERROR: 4\r\n"]), max_size=30))
def test_fuzz_feed_never_raises(chunks: list[bytes]) -> None:
    drv = TetraPei("pei", TetraOptions(url="/dev/null"))
    out: list[Record] = []
    for c in chunks:
        drv.feed(c, out.append, None, 0.0)
    assert all(isinstance(r, Fix | RadioStatus) for r in out)


def test_every_emergency_is_a_new_signal_after_a_normal_report() -> None:
    drv = TetraPei("pei", TetraOptions(url="/dev/null", after_emergency_code=7))
    out: list[Record] = []
    for reason in (2, 2, 129, 129, 2):
        drv.feed(ctsdsr(2269001, *short_report(*GORONTALO, reason=reason)), out.append, None, 0.0)
    assert [r.code for r in out if isinstance(r, RadioStatus)] == [99, 99, 7, 99]
    assert len([r for r in out if isinstance(r, Fix)]) == 5


def test_built_reports_decode_to_what_was_built() -> None:
    drv = TetraPei("pei", TetraOptions(url="/dev/null"))
    out: list[Record] = []
    drv.feed(ctsdsr("9011638302269001", *long_report(*GORONTALO, speed_kmh=60, course=180, accuracy_code=10, altitude_m=25)),
             out.append, None, 0.0)  # a TSI (MCC, MNC, ISSI): the ISSI is its last 8 digits
    (fix,) = out
    assert isinstance(fix, Fix) and fix.radio == "2269001" and fix.alt == 25.0 and fix.course == 180.0
    assert fix.lat == pytest.approx(GORONTALO[0], abs=1e-5) and fix.speed_kmh == pytest.approx(60, rel=0.03)


def tetra_config(station: Station, link: Path) -> Path:
    station.dir.mkdir(parents=True, exist_ok=True)
    station.config.write_text(
        '[node]\npath = "gorontalo/kota-gorontalo"\n\n'
        f'[store]\npath = "{station.db}"\n\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {station.port}\ntls = false\nkeepalive_s = 5\nreconnect_min_s = 0.5\n'
        "reconnect_max_s = 2\nhealth_interval_s = 1\n\n"
        f'[[device]]\nid = "pei"\ndriver = "tetra"\nurl = "{link}"\nreconnect_max_s = 1\n\n'
        '[[unit]]\nid = "HT-01"\ntype = "foot"\nradio = "2269001"\n\n'
        '[[unit]]\nid = "R2-07"\ntype = "car"\ndevice = "pei"\nradio = "2269002"\n'
    )
    return station.config


def test_config_accepts_the_driver_and_issi_radios(station: Station, tmp_path: Path) -> None:
    cfg = load(tetra_config(station, tmp_path / "tty"))
    assert registry.get("tetra") is not None and "tetra" in registry.names()
    assert [u.radio for u in cfg.units] == ["2269001", "2269002"]
    assert cfg.devices[0].options.baud == 38400


def test_a_station_publishes_its_tetra_units(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], subscriber_factory: Callable[..., Subscriber],
) -> None:
    link = station.dir / "ttyTETRA"
    station.dir.mkdir(parents=True, exist_ok=True)
    sub = subscriber_factory(broker.port)
    with PtyTerminal(link) as pty:
        _, sim_stop, sim_thread = _sim(pty, interval_s=0.5, emergency_at_s=1.0)
        try:
            daemons(tetra_config(station, link))
            wait_until(lambda: len(sub.on("/unit/HT-01/position")) >= 2 and len(sub.on("/unit/R2-07/position")) >= 2,
                       20, "positions of both units")
            wait_until(lambda: bool(sub.on("/unit/HT-01/emergency")), 20, "HT-01's emergency")
        finally:
            sim_stop.set()
            sim_thread.join(5)
    p = sub.on("/unit/HT-01/position")[0].payload
    assert p["unit"] == "HT-01" and p["source"] == "pei:2269001" and p["accuracy_m"] is not None and p["protocol"] == "tetra"
    assert abs(p["lat"] - 0.5436) < 0.01
    e = sub.on("/unit/HT-01/emergency")[0].payload
    assert e["unit"] == "HT-01" and e["code"] == 99
    status = [m.payload for m in sub.on("/device/pei/status")]
    assert status and status[0]["driver"] == "tetra"


def test_every_key_is_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", readme))
    assert not [f.name for f in dataclasses.fields(TetraOptions) if f.name not in documented]
    assert "driver = \"tetra\"" in readme

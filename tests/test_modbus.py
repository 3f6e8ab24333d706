"""The Modbus modem driver against real pymodbus servers: TCP on loopback, RTU over a pty pair, and the daemon end to end.

Also the register-map model it stands on: the built-in Teltonika map and its TOML twin, map-file
errors, read planning, decoding in every word order, word-order detection and the validity gates.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import NODE, Daemon, Subscriber, wait_until
from helpers_modbus import (
    LAT,
    LON,
    ModbusSim,
    OneShotProxy,
    PtyLink,
    SilentListener,
    closed_port_url,
    f32,
    i32,
    teltonika,
    u32,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from test_contract import assert_valid

from alkomd.daemon import config as cfgmod
from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.daemon.records import DeviceState, DeviceStatus, Fix, ModemHealth, Record
from alkomd.daemon.schema import ConfigError
from alkomd.drivers import modbus_map as mm
from alkomd.drivers.modbus import ModbusModem, ModbusOptions
from alkomd.drivers.modbus_link import parse_url

ROOT = Path(__file__).resolve().parents[1]
F32_EPS = 1e-5  # float32 keeps ~7 digits: 123.0595 comes back as 123.05950164...


class Run:
    """A driver running in its own thread, with what it emitted."""

    def __init__(self, driver: ModbusModem) -> None:
        self.driver = driver
        self.records: list[Record] = []
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=driver.run, args=(self.stop, self._emit), daemon=True)

    def _emit(self, r: Record) -> None:
        with self._lock:
            self.records.append(r)

    def fixes(self) -> list[Fix]:
        with self._lock:
            return [r for r in self.records if isinstance(r, Fix)]

    def statuses(self) -> list[DeviceStatus]:
        with self._lock:
            return [r for r in self.records if isinstance(r, DeviceStatus)]

    def state(self) -> DeviceStatus | None:
        s = self.statuses()
        return s[-1] if s else None

    def wait_state(self, state: DeviceState, timeout: float = 10, detail: str = "") -> DeviceStatus:
        def ok() -> bool:
            s = self.state()
            return s is not None and s.state is state and detail in s.detail

        wait_until(ok, timeout, f"state {state.value} {detail!r} (last: {self.state()})")
        s = self.state()
        assert s is not None
        return s


@contextmanager
def running(url: str, device: str = "rut1", **kw: object) -> Iterator[Run]:
    opts = ModbusOptions(url=url, **{"poll_interval_s": 0.2, "timeout_s": 0.5, "retries": 0, **kw})  # type: ignore[arg-type]
    run = Run(ModbusModem(device, opts))
    run.thread.start()
    try:
        yield run
    finally:
        run.stop.set()
        run.thread.join(3)  # a bound, not a timing: its waits are 20 s in the slow-reply test
        assert not run.thread.is_alive(), "driver did not stop"


@pytest.fixture
def sims() -> Iterator[Callable[..., ModbusSim]]:
    made: list[ModbusSim] = []

    def make(devices: dict[int, dict[int, int]], **kw: object) -> ModbusSim:
        s = ModbusSim(devices, **kw).start()  # type: ignore[arg-type]
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


# ---------------------------------------------------------------------------------------------
# The register map model


def test_builtin_map_equals_its_toml_twin() -> None:
    shipped = mm.load_map_file(ROOT / "config" / "modbus" / "teltonika-rut.toml")
    assert shipped == mm.TELTONIKA_RUT
    assert {f.meaning for f in shipped.fields} == set(mm.MEANINGS)
    assert (shipped.by_meaning(mm.LAT).address, shipped.by_meaning(mm.LON).address) == (143, 145)  # type: ignore[union-attr]


def test_teltonika_map_reads_in_six_requests() -> None:
    blocks = mm.plan_reads(mm.TELTONIKA_RUT.fields)
    assert [(b.start, b.count) for b in blocks] == [(1, 6), (23, 16), (87, 16), (119, 16), (143, 4), (179, 6)]
    merged = mm.plan_reads(mm.TELTONIKA_RUT.fields, max_gap=20)
    assert [(b.start, b.count) for b in merged] == [(1, 38), (87, 60), (179, 6)]


field_lists = st.lists(
    st.tuples(st.integers(0, 400), st.sampled_from(["uint16", "float32", "ascii"]), st.integers(1, 40)), min_size=1, max_size=25
)


@settings(max_examples=200, deadline=None)
@given(field_lists, st.integers(0, 10), st.integers(40, 125))
def test_plan_reads_covers_every_field_within_the_limits(specs: list[tuple[int, str, int]], gap: int, limit: int) -> None:
    fields = [
        mm.Field(f"f{i}", a, n if t == "ascii" else mm.TYPES[t], t) for i, (a, t, n) in enumerate(specs)
    ]
    blocks = mm.plan_reads(fields, gap, limit)
    for f in fields:
        holders = [b for b in blocks if f in b.fields]
        assert len(holders) == 1
        b = holders[0]
        assert b.start <= f.address and f.end <= b.start + b.count
    for b in blocks:
        assert 1 <= b.count <= limit
        covered = sorted({a for f in b.fields for a in range(f.address, f.end)})
        assert covered[0] == b.start and covered[-1] == b.start + b.count - 1
        holes = [y - x - 1 for x, y in itertools.pairwise(covered) if y - x > 1]
        assert all(h <= gap for h in holes), "read registers no field asked for beyond max_gap"
    starts = [b.start for b in blocks]
    assert starts == sorted(starts)


@settings(max_examples=300, deadline=None)
@given(st.floats(width=32, allow_nan=False), st.sampled_from(mm.WORD_ORDERS))
def test_float32_decodes_in_every_word_order(value: float, order: str) -> None:
    assert mm.decode_registers(f32(value, order), "float32", order) == value


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(-(2**31), 2**31 - 1), st.sampled_from(mm.WORD_ORDERS))
def test_32_bit_integers_decode_in_every_word_order(u: int, i: int, order: str) -> None:
    assert mm.decode_registers(u32(u, order), "uint32", order) == u
    assert mm.decode_registers(i32(i, order), "int32", order) == i


def test_16_bit_ascii_and_scale() -> None:
    assert mm.decode_registers([0xFFB9], "int16") == -71
    assert mm.decode_registers([0xFFB9], "uint16") == 0xFFB9
    assert mm.decode_registers(i32(415), "int32", "big", 0.1) == pytest.approx(41.5)
    regs = teltonika(operator="Telkomsel")
    assert mm.decode_field(mm.TELTONIKA_RUT.by_meaning(mm.OPERATOR), regs, None) == "Telkomsel"  # type: ignore[arg-type]
    # Text ends at the first NUL; garbage after it, or non-ASCII bytes, never raise.
    assert mm.decode_registers([0x4C54, 0x4500, 0xFFFF], "ascii") == "LT" + "E"
    assert mm.decode_registers([0xC3A9, 0x0000], "ascii") == "\ufffd\ufffd"


@pytest.mark.parametrize("order", mm.WORD_ORDERS)
def test_word_order_is_detected_from_coordinates_in_indonesia(order: str) -> None:
    guess = mm.detect_word_order(mm.TELTONIKA_RUT, teltonika(order=order))
    assert guess.order == order and guess.in_indonesia
    # The other orders decode to garbage that no gate lets through.
    for other in mm.WORD_ORDERS:
        if other != order:
            assert mm.fix_problem(mm.gps_reading(mm.TELTONIKA_RUT, teltonika(order=order), other))


def test_word_order_needs_a_position() -> None:
    assert mm.detect_word_order(mm.TELTONIKA_RUT, teltonika(lat=0.0, lon=0.0)).order is None
    assert mm.detect_word_order(mm.TELTONIKA_RUT, teltonika(gps=False)).reason == "the coordinate registers were not read"
    outside = mm.detect_word_order(mm.TELTONIKA_RUT, teltonika(lat=52.37, lon=4.89, order="little"))  # a bench in Amsterdam
    assert outside.order == "little" and not outside.in_indonesia


@pytest.mark.parametrize(
    ("reading", "problem"),
    [
        (mm.GpsReading(0.0, 0.0, sats=9), "0,0"),
        (mm.GpsReading(1.2e-21, 3.1e-20, sats=9), "near 0,0"),
        (mm.GpsReading(0.5435, 4e-9, sats=9), "near 0,0"),
        (mm.GpsReading(91.0, 123.0, sats=9), "out of range"),
        (mm.GpsReading(0.5435, 3.2e33, sats=9), "out of range"),
        (mm.GpsReading(None, 123.0), "no coordinates"),
        (mm.GpsReading(0.5435, 123.0595, sats=0), "0 satellites"),
        (mm.GpsReading(0.5435, 123.0595, sats=9), ""),
        (mm.GpsReading(0.0, 109.33, sats=7), ""),  # Pontianak sits on the equator
        (mm.GpsReading(-8.5, 140.4, sats=None), ""),  # Merauke; satellites not reported
    ],
)
def test_validity_gates(reading: mm.GpsReading, problem: str) -> None:
    got = mm.fix_problem(reading)
    assert (problem in got and got) if problem else got == ""


def test_modem_health_values_out_of_range_are_none() -> None:
    m = mm.TELTONIKA_RUT
    h = mm.modem_health(m, teltonika(signal=0, temp_c=-300.0, operator="", sim="sim2"))
    assert h == ModemHealth(uptime_s=86400, signal_dbm=None, temperature_c=None, network="LTE", operator=None, sim="sim2")
    assert mm.modem_health(m, {}) is None


def _map_file(tmp_path: Path, body: str, name: str = "modem.toml") -> Path:
    p = tmp_path / name
    p.write_text('[map]\nname = "test"\n' + body)
    return p


GPS_FIELDS = '[[field]]\nname = "lat"\naddress = 0\ntype = "float32"\nmeaning = "lat"\n' \
             '[[field]]\nname = "lon"\naddress = 2\ntype = "float32"\nmeaning = "lon"\n'


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        (GPS_FIELDS + '[[field]]\nname = "x"\naddress = 9\ntype = "float"\n', "field[2].type", "must be one of"),
        (GPS_FIELDS + '[[field]]\nname = "op"\naddress = 9\ntype = "ascii"\n', "field[2].count", "required for ascii"),
        (GPS_FIELDS + '[[field]]\nname = "lat"\naddress = 9\ntype = "uint16"\n', "field[2].name", "duplicate"),
        (GPS_FIELDS + '[[field]]\nname = "s"\naddress = 9\ntype = "uint16"\nword_order = "little"\n', "field[2].word_order",
         "only 32-bit"),
        (GPS_FIELDS + '[[field]]\nname = "s"\naddress = 9\ntype = "uint16"\ncount = 2\n', "field[2].count", "spans 1"),
        (GPS_FIELDS + '[[field]]\nname = "o"\naddress = 9\ntype = "uint16"\nmeaning = "operator"\n', "field[2].type", "text"),
        (GPS_FIELDS + '[[field]]\nname = "s"\naddress = 9\ntype = "uint16"\ncolour = "red"\n', "field[2].colour", "unknown key"),
        (GPS_FIELDS + '[[field]]\nname = "s"\naddress = 65535\ntype = "uint32"\n', "field[2].address", "past 65535"),
        ('[[field]]\nname = "lat"\naddress = 0\ntype = "float32"\nmeaning = "lat"\n', "field", "meaning = 'lon'"),
        (GPS_FIELDS + "[extra]\n", "extra", "unknown section"),
    ],
)
def test_map_file_errors_name_the_key_and_the_file(tmp_path: Path, body: str, key: str, message: str) -> None:
    path = _map_file(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        mm.load_map_file(path)
    assert err.value.key == key and err.value.file == str(path)
    assert message in str(err.value)


def _config(tmp_path: Path, device: str) -> Path:
    p = tmp_path / "alkomd.toml"
    p.write_text(f'[node]\npath = "gorontalo/kota-gorontalo"\n[[device]]\nid = "rut1"\ndriver = "modbus"\n{device}')
    return p


def test_config_map_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "modbus").mkdir()
    _map_file(tmp_path / "modbus", GPS_FIELDS, "car.toml")
    cfg = cfgmod.load(_config(tmp_path, 'url = "tcp://10.0.0.1"\nmap = "modbus/car.toml"\nword_order = "little-byteswap"\n'))
    opts = cfg.devices[0].options
    assert isinstance(opts, ModbusOptions)
    assert opts.map == tmp_path / "modbus" / "car.toml" and opts.word_order == "little-byteswap"
    assert ModbusModem("rut1", opts).map.name == "test"
    default = cfgmod.load(_config(tmp_path, 'url = "/dev/ttyUSB0"\n')).devices[0].options
    assert ModbusModem("rut1", default).map is mm.TELTONIKA_RUT


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ('url = "tcp://10.0.0.1"\nmap = "missing.toml"\n', "device[0]: map: map file not found"),
        ('url = "tcp://10.0.0.1"\nmap = "teltonika-rutx"\n', "unknown map 'teltonika-rutx'"),
        ('url = "tcp://10.0.0.1"\nmap = "bad.toml"\n', "field[0].type: must be one of"),
        ('url = "tcp://10.0.0.1:99999"\n', "device[0]: url: bad port"),
        ('url = "udp://10.0.0.1:502"\n', "device[0]: url: unsupported scheme"),
        ('url = "tcp://10.0.0.1"\nword_order = "middle"\n', "device[0].word_order: must be one of"),
        ('url = "tcp://10.0.0.1"\nunit_id = 256\n', "device[0].unit_id: must be an integer between 0 and 255"),
    ],
)
def test_config_errors_name_device_and_file(tmp_path: Path, device: str, message: str) -> None:
    (tmp_path / "bad.toml").write_text('[map]\nname = "bad"\n[[field]]\nname = "lat"\naddress = 1\ntype = "double"\n')
    path = _config(tmp_path, device)
    with pytest.raises(ConfigError) as err:
        cfgmod.load(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)
    if "bad.toml" in device:
        assert str(tmp_path / "bad.toml") in str(err.value)


def test_urls() -> None:
    assert parse_url("tcp://10.0.0.1").port == 502
    t = parse_url("tcp://[fe80::1]:1502")
    assert (t.kind, t.host, t.port, str(t)) == ("tcp", "fe80::1", 1502, "[fe80::1]:1502")
    assert parse_url("/dev/serial/by-id/usb-FTDI-if00").kind == "rtu"
    assert parse_url("rfc2217://10.0.0.5:4001").kind == "rtu"


# ---------------------------------------------------------------------------------------------
# The driver over Modbus TCP


@pytest.mark.parametrize("order", mm.WORD_ORDERS)
def test_tcp_fix_and_health_in_every_word_order(sims: Callable[..., ModbusSim], order: str) -> None:
    sim = sims({1: teltonika(order=order)})
    with running(sim.url) as run:
        wait_until(lambda: len(run.fixes()) >= 3, 10, "three fixes")
        status = run.wait_state(DeviceState.CONNECTED)
    fix = run.fixes()[0]
    assert fix.device == "rut1" and fix.radio is None
    assert math.isclose(fix.lat, LAT, abs_tol=F32_EPS) and math.isclose(fix.lon, LON, abs_tol=F32_EPS)
    assert fix.speed_kmh == pytest.approx(42.5) and fix.sats == 9 and fix.hdop == pytest.approx(0.9) and fix.mode == 3
    assert fix.time == fix.received  # the modem's GPS time register is not trusted: time of reading
    assert status.detail == ""
    assert status.modem == ModemHealth(uptime_s=86400, signal_dbm=-71, temperature_c=41.5, network="LTE", operator="Telkomsel",
                                       sim="sim1")
    # The first status already says connected, with the modem's health: no "waiting" flicker before it.
    assert run.statuses()[0].state is DeviceState.CONNECTED and run.statuses()[0].modem is not None
    c = run.driver.counters()
    assert c.fixes >= 3 and c.sentences >= 6 * c.fixes and c.parse_errors == c.checksum_errors == c.reconnects == 0
    assert c.bytes > 0 and run.driver.order == order
    # Only the mapped registers were asked for, six requests a poll.
    assert {(a, n) for _, a, n in sim.reads} == {(1, 6), (23, 16), (87, 16), (119, 16), (143, 4), (179, 6)}


def test_fixed_word_order_that_is_wrong_gives_no_fix(sims: Callable[..., ModbusSim]) -> None:
    sim = sims({1: teltonika(order="little")})
    with running(sim.url, word_order="big", no_fix_after_s=1) as run:
        status = run.wait_state(DeviceState.NO_FIX)
        assert "near 0,0" in status.detail and "wrong word order" in status.detail
        assert not run.fixes() and run.driver.counters().rejected_fixes >= 2


def test_word_order_is_found_again_after_a_firmware_change(sims: Callable[..., ModbusSim]) -> None:
    sim = sims({1: teltonika(order="big")})
    with running(sim.url) as run:
        wait_until(lambda: run.driver.order == "big" and bool(run.fixes()), 10, "fix in big order")
        sim.update(1, teltonika(lat=-0.8917, lon=119.8707, order="little-byteswap"))  # Palu, after an upgrade
        wait_until(lambda: any(math.isclose(f.lat, -0.8917, abs_tol=F32_EPS) for f in run.fixes()), 10, "fix after the change")
    assert run.driver.order == "little-byteswap"
    assert all(mm.in_indonesia(f.lat, f.lon) for f in run.fixes()), "a garbage position got through in between"


def test_no_fix_then_fix_then_health_changes(sims: Callable[..., ModbusSim]) -> None:
    sim = sims({1: teltonika(lat=0.0, lon=0.0)})
    with running(sim.url, no_fix_after_s=1) as run:
        status = run.wait_state(DeviceState.NO_FIX)
        assert "0,0: no GPS fix" in status.detail or "no plausible position" in status.detail
        n = len(run.statuses())
        time.sleep(0.6)  # polls that change nothing publish nothing (uptime ticks are not notable)
        sim.update(1, teltonika(uptime=86_401, lat=0.0, lon=0.0))
        time.sleep(0.6)
        assert len(run.statuses()) == n
        sim.update(1, teltonika())
        run.wait_state(DeviceState.CONNECTED)
        sim.update(1, teltonika(signal=-95, network="3G"))
        wait_until(lambda: (s := run.state()) is not None and s.modem is not None and s.modem.network == "3G", 5, "3G")
    last = run.state()
    assert last is not None and last.modem is not None and last.modem.signal_dbm == -95
    assert last.state is DeviceState.CONNECTED


def test_exception_replies_without_gps_registers(sims: Callable[..., ModbusSim]) -> None:
    sim = sims({1: teltonika(gps=False)})  # a RUT240: no GPS registers
    with running(sim.url) as run:
        status = run.wait_state(DeviceState.DEGRADED)
        wait_until(lambda: run.driver.counters().parse_errors >= 4, 5, "exception replies counted")
    assert status.detail == (
        "modbus exception 2 (illegal data address) at register 143: wrong register map, or no GPS in this modem?"
    )
    assert status.modem is not None and status.modem.operator == "Telkomsel"  # health still read
    c = run.driver.counters()
    assert c.sentences >= 4 and c.fixes == 0 and c.checksum_errors == 0


def test_silent_modem(tmp_path: Path) -> None:
    listener = SilentListener()
    try:
        with running(listener.url, timeout_s=0.3, silent_after_s=1, poll_interval_s=0.2) as run:
            status = run.wait_state(DeviceState.SILENT)
            assert status.detail == f"no reply within 0.3 s from unit 1 at 127.0.0.1:{listener.port}"
            assert run.driver.counters().checksum_errors >= 2
            assert not run.fixes()
    finally:
        listener.close()


def test_stops_within_a_second_while_waiting_for_a_slow_reply() -> None:
    listener = SilentListener()
    try:
        with running(listener.url, timeout_s=20, retries=5) as run:
            wait_until(lambda: len(listener.accepted) >= 1, 5, "connection")
            time.sleep(0.3)  # the driver is now inside a 20 s wait for a reply
        # `running` asserted that it stopped (a 20 s reply wait would have outlasted its bound).
        assert run.driver.counters().checksum_errors == 0
    finally:
        listener.close()


def test_closed_port_then_the_server_comes_up(sims: Callable[..., ModbusSim]) -> None:
    url = closed_port_url()
    with running(url, reconnect_max_s=0.5) as run:
        status = run.wait_state(DeviceState.DISCONNECTED)
        assert "connection refused" in status.detail
        assert "is the modem's Modbus TCP server enabled? It is off by default on Teltonika (Services > Modbus)" in status.detail
        assert len(run.statuses()) == 1, "a failing reconnect is not re-published"
        sims({1: teltonika()}, port=int(url.rsplit(":", 1)[1]))
        run.wait_state(DeviceState.CONNECTED)
        wait_until(lambda: bool(run.fixes()), 5, "fix")
    assert run.driver.counters().reconnects == 1


def test_slow_replies_are_dropped_and_never_pile_up(sims: Callable[..., ModbusSim]) -> None:
    sim = sims({1: teltonika()})
    sim.delay_s = 0.4
    with running(sim.url, timeout_s=0.2, retries=1, silent_after_s=1) as run:
        run.wait_state(DeviceState.SILENT)
        sim.delay_s = 0.0
        run.wait_state(DeviceState.CONNECTED)
        wait_until(lambda: bool(run.fixes()), 5, "fix after the modem recovered")
    c = run.driver.counters()
    assert c.checksum_errors >= 1 and c.fixes >= 1
    # A late reply is never taken for another request: every fix is the right place.
    assert all(math.isclose(f.lat, LAT, abs_tol=F32_EPS) for f in run.fixes())


def test_router_that_closes_after_each_reply(sims: Callable[..., ModbusSim]) -> None:
    sim = sims({1: teltonika()})
    proxy = OneShotProxy(sim.port)
    try:
        with running(proxy.url) as run:
            wait_until(lambda: len(run.fixes()) >= 2, 10, "two fixes through a one-request-per-connection router")
            run.wait_state(DeviceState.CONNECTED)
        c = run.driver.counters()
        assert c.checksum_errors == 0 and c.reconnects == 0 and proxy.connections >= 12
    finally:
        proxy.close()


# ---------------------------------------------------------------------------------------------
# Modbus RTU over a pty pair


@pytest.fixture
def line(tmp_path: Path) -> Iterator[PtyLink]:
    link = PtyLink(tmp_path / "rs485")
    yield link
    link.close()


def test_rtu_two_units_share_one_port(sims: Callable[..., ModbusSim], line: PtyLink) -> None:
    sims({1: teltonika(order="big"), 7: teltonika(lat=-6.1754, lon=106.8272, order="little")}, serial_port=str(line.b))
    with running(str(line.a), "car1", unit_id=1, poll_interval_s=0.1) as car1, \
         running(str(line.a), "car7", unit_id=7, poll_interval_s=0.1) as car7:
        wait_until(lambda: len(car1.fixes()) >= 3 and len(car7.fixes()) >= 3, 15, "fixes from both units")
    assert math.isclose(car7.fixes()[0].lat, -6.1754, abs_tol=F32_EPS)
    assert math.isclose(car1.fixes()[0].lat, LAT, abs_tol=F32_EPS)
    for run in (car1, car7):
        c = run.driver.counters()
        # One request in flight on the line: no collision ever garbled a reply into a timeout.
        assert c.checksum_errors == 0 and c.parse_errors == 0 and c.bytes > 0
        assert run.state() is not None and run.state().state is DeviceState.CONNECTED  # type: ignore[union-attr]


def test_rtu_devices_on_one_port_must_agree_on_baud(sims: Callable[..., ModbusSim], line: PtyLink) -> None:
    sims({1: teltonika()}, serial_port=str(line.b))
    with running(str(line.a), "car1") as car1:
        wait_until(lambda: bool(car1.fixes()), 10, "fix")
        with running(str(line.a), "car2", unit_id=2, baud=19200) as car2:
            status = car2.wait_state(DeviceState.DISCONNECTED)
    assert "already used by another device at 9600 8N1" in status.detail


def test_rtu_port_missing(tmp_path: Path) -> None:
    with running(str(tmp_path / "ttyUSB9")) as run:
        status = run.wait_state(DeviceState.DISCONNECTED)
    assert "port not found" in status.detail


# ---------------------------------------------------------------------------------------------
# The daemon end to end


def test_daemon_publishes_position_and_modem_status(
    tmp_path: Path, broker: Broker, sims: Callable[..., ModbusSim], daemons: Callable[[Path], Daemon],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    sim = sims({1: teltonika(order="little-byteswap")})
    (tmp_path / "modbus").mkdir()
    (tmp_path / "modbus" / "rut.toml").write_text((ROOT / "config" / "modbus" / "teltonika-rut.toml").read_text())
    config = tmp_path / "alkomd.toml"
    config.write_text(
        '[node]\npath = "gorontalo/kota-gorontalo"\n'
        f'[store]\npath = "{tmp_path / "alkomd.db"}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\ntls = false\nkeepalive_s = 5\nhealth_interval_s = 1\n'
        f'[[device]]\nid = "rut-r2-07"\ndriver = "modbus"\nurl = "{sim.url}"\nmap = "modbus/rut.toml"\npoll_interval_s = 0.5\n'
        '[[unit]]\nid = "R2-07"\ncallsign = "Macan 07"\ntype = "car"\ndevice = "rut-r2-07"\n'
    )
    sub = subscriber_factory(broker.port)
    daemons(config)
    wait_until(lambda: bool(sub.on("/unit/R2-07/position")), 20, "a position over MQTT")
    wait_until(lambda: any(m.payload.get("modem") for m in sub.on("/device/rut-r2-07/status")), 10, "device status")
    pos = sub.on("/unit/R2-07/position")[0]
    assert pos.topic == f"{NODE}/unit/R2-07/position"
    assert_valid("unit-position", pos.payload)
    assert pos.payload["source"] == "rut-r2-07" and pos.payload["sats"] == 9 and pos.payload["fix"] == "3d"
    assert pos.payload["lat"] == pytest.approx(LAT, abs=F32_EPS) and pos.payload["lon"] == pytest.approx(LON, abs=F32_EPS)
    status = next(m for m in sub.on("/device/rut-r2-07/status") if m.payload.get("modem"))
    assert_valid("device-status", status.payload)
    assert status.payload["driver"] == "modbus" and status.payload["state"] == "connected"
    assert status.payload["modem"] == {"uptime_s": 86400, "signal_dbm": -71, "temperature_c": 41.5, "network": "LTE",
                                       "operator": "Telkomsel", "sim": "sim1"}
    wait_until(lambda: bool(sub.on(f"{NODE}/health")), 5, "health")
    health = sub.on(f"{NODE}/health")
    assert "rut-r2-07" in json.dumps(health[-1].payload)

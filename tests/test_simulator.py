"""The simulator: route math, the fault grammar, real ptys behind a symlink, and the real serial driver reading it."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import serial
from conftest import wait_until

from alkomd.daemon.config import parse as parse_config
from alkomd.daemon.geodesy import haversine_m
from alkomd.daemon.records import DeviceState, DeviceStatus, Fix, RadioHeard, RadioStatus, Record
from alkomd.daemon.schema import ConfigError
from alkomd.drivers import registry
from alkomd.drivers.nmea import Decoder
from alkomd.drivers.nmea_serial import NmeaOptions, NmeaSerial
from alkomd.drivers.sim_pty import PtyGps
from alkomd.drivers.sim_receiver import FAULT_KINDS, Fault, SimulatedReceiver, add_noise, corrupt_checksums, parse_fault, validate_faults
from alkomd.drivers.sim_routes import ROUTES, Route, bearing_deg, position_at
from alkomd.drivers.simulator import DRIVER, SimulatorDriver, SimulatorOptions

GORONTALO_BBOX = (0.2, 1.1, 121.1, 123.6)  # lat min, lat max, lon min, lon max
GORONTALO_GEOJSON = Path(__file__).resolve().parents[1] / "config" / "jurisdictions" / "gorontalo-adm2.geojson"


def distance_to_route_m(route: Route, lat: float, lon: float) -> float:
    """Distance from a point to the route's polyline (local flat projection; segments are short)."""
    k = math.cos(math.radians(lat)) * 111_320.0
    px, py = lon * k, lat * 110_574.0
    best = math.inf
    for (la1, lo1), (la2, lo2) in zip(route.waypoints, route.waypoints[1:], strict=False):
        ax, ay, bx, by = lo1 * k, la1 * 110_574.0, lo2 * k, la2 * 110_574.0
        dx, dy = bx - ax, by - ay
        L2 = dx * dx + dy * dy
        f = 0.0 if L2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / L2))
        best = min(best, math.hypot(px - (ax + f * dx), py - (ay + f * dy)))
    return best


def angle_diff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


# --- routes -----------------------------------------------------------------------------------


def test_routes_are_named_and_inside_gorontalo() -> None:
    assert {"kota-gorontalo-loop", "limboto-gorontalo", "bone-bolango-coast", "gorontalo-kwandang",
            "marisa-town", "tilamuta-town"} <= set(ROUTES)
    lat0, lat1, lon0, lon1 = GORONTALO_BBOX
    for name, r in ROUTES.items():
        assert r.name == name and r.length_m > 1000
        for lat, lon in r.waypoints:
            assert lat0 < lat < lat1 and lon0 < lon < lon1, (name, lat, lon)


def test_routes_lie_in_gorontalo_regencies() -> None:
    from shapely import geometry as shapely_geometry

    data = json.loads(GORONTALO_GEOJSON.read_text())
    province = next(f for f in data["features"] if f["properties"]["level"] == "province")
    shape = shapely_geometry.shape(province["geometry"])
    for r in ROUTES.values():
        line = shapely_geometry.LineString([(lon, lat) for lat, lon in r.waypoints])
        assert shape.covers(line), f"route {r.name} leaves Gorontalo (or goes to sea)"


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_position_stays_on_the_route_and_course_follows_the_motion(name: str) -> None:
    route = ROUTES[name]
    speed = 50.0
    period_s = route.length_m / (speed / 3.6) * (1 if route.loop else 2)
    lat0, lat1, lon0, lon1 = GORONTALO_BBOX
    steps = 400
    checked = 0
    for i in range(steps):
        t = period_s * 1.5 * i / steps
        p = position_at(route, speed, t)
        assert lat0 < p.lat < lat1 and lon0 < p.lon < lon1
        assert distance_to_route_m(route, p.lat, p.lon) < 1.0
        assert 0.0 <= p.course < 360.0
        q = position_at(route, speed, t + 1.0)
        step_m = haversine_m(p.lat, p.lon, q.lat, q.lon)
        assert step_m <= speed / 3.6 + 0.5  # never faster than the speed
        if abs(step_m - speed / 3.6) < 0.05 and angle_diff(p.course, q.course) < 0.01:
            # A straight second (no waypoint, no turn-around): the course is the direction of motion.
            assert angle_diff(bearing_deg((p.lat, p.lon), (q.lat, q.lon)), p.course) < 1.0
            checked += 1
    assert checked > steps // 2


def test_loops_come_back_and_open_routes_turn_around() -> None:
    loop = ROUTES["kota-gorontalo-loop"]
    assert loop.loop
    lap_s = loop.length_m / (36 / 3.6)
    start, again = position_at(loop, 36, 0), position_at(loop, 36, lap_s)
    assert haversine_m(*start[:2], *again[:2]) < 1.0

    line = ROUTES["limboto-gorontalo"]
    assert not line.loop
    one_way_s = line.length_m / (36 / 3.6)
    out, back = position_at(line, 36, one_way_s * 0.5), position_at(line, 36, one_way_s * 1.5)
    assert haversine_m(*out[:2], *back[:2]) < 1.0  # same place, driven the other way
    assert angle_diff(out.course, back.course) > 170
    end = position_at(line, 36, one_way_s)
    assert haversine_m(*end[:2], *line.waypoints[-1]) < 1.0
    home = position_at(line, 36, 2 * one_way_s)
    assert haversine_m(*home[:2], *line.waypoints[0]) < 1.0


def test_parked_unit_stays_at_the_start() -> None:
    r = ROUTES["marisa-town"]
    p = position_at(r, 0.0, 1234.0)
    assert (p.lat, p.lon) == r.waypoints[0]


def test_route_needs_two_waypoints() -> None:
    with pytest.raises(ValueError):
        Route("x", "", ((0.5, 123.0),))


# --- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("120+30:unplug", Fault(120, 30, "unplug")),
        ("60+10:noise", Fault(60, 10, "noise")),
        ("200+20:bad_checksum", Fault(200, 20, "bad_checksum")),
        ("300+60:no_fix", Fault(300, 60, "no_fix")),
        ("0.5+0.5:unplug", Fault(0.5, 0.5, "unplug")),
        ("0+1.25:noise", Fault(0, 1.25, "noise")),
    ],
)
def test_fault_grammar_valid(text: str, fault: Fault) -> None:
    assert parse_fault(text) == fault
    assert parse_fault(str(fault)) == fault
    validate_faults([text])


@pytest.mark.parametrize(
    "text",
    ["", "unplug", "120+30", "120:unplug", "120-30:unplug", "-5+3:noise", "120+30:explode", "120+30:Unplug",
     "12a+3:noise", "1e3+5:noise", "120+30:unplug:x", "120 + 30 : unplug", "10+0:noise", ".5+1:noise"],
)
def test_fault_grammar_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="fault"):
        parse_fault(text)
    with pytest.raises(ValueError):
        validate_faults(["1+1:noise", text])
    with pytest.raises(ValueError):
        SimulatorOptions(faults=(text,))


def test_fault_is_active_in_its_window_only() -> None:
    f = parse_fault("10+5:noise")
    assert not f.active(9.99) and f.active(10) and f.active(14.9) and not f.active(15)


def _config(**device: object) -> dict[str, object]:
    return {"node": {"path": "gorontalo/kota-gorontalo"}, "device": [{"id": "sim-01", "driver": "simulator", **device}]}


def test_config_accepts_simulator_devices_and_names_the_bad_fault_key(tmp_path: Path) -> None:
    cfg = parse_config(_config(route="tilamuta-town", faults=["20+10:unplug", "45+10:noise"], talker="GN"), tmp_path / "a.toml")
    opts = cfg.devices[0].options
    assert isinstance(opts, SimulatorOptions)
    assert opts.route == "tilamuta-town" and opts.faults == ("20+10:unplug", "45+10:noise") and opts.talker == "GN"
    assert opts.max_hdop == NmeaOptions.max_hdop and opts.no_fix_after_s == NmeaOptions.no_fix_after_s
    with pytest.raises(ConfigError, match=r"device\[0\]\.faults\[1\]"):
        parse_config(_config(faults=["20+10:unplug", "45+10:explode"]), tmp_path / "a.toml")
    with pytest.raises(ConfigError, match=r"device\[0\].*duration"):  # the pattern passes; __post_init__ refuses
        parse_config(_config(faults=["20+0:noise"]), tmp_path / "a.toml")
    with pytest.raises(ConfigError, match=r"device\[0\]\.route"):
        parse_config(_config(route="jakarta"), tmp_path / "a.toml")
    assert registry.get("simulator") is DRIVER


def _epochs(n: int, rx: SimulatedReceiver, kinds: frozenset[str]) -> bytes:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    return b"".join(rx.epoch_bytes(float(i), t0 + timedelta(seconds=i), kinds) for i in range(n))


def _decode(data: bytes) -> tuple[list[Fix], Decoder]:
    dec = Decoder("t")
    fixes = dec.feed(data, datetime.now(UTC), time.monotonic()) + dec.flush()
    return fixes, dec


def test_fault_kinds_change_the_bytes_as_field_hardware_does(tmp_path: Path) -> None:
    with PtyGps(tmp_path / "tty") as pty:  # never opened: only epoch_bytes is used
        rx = SimulatedReceiver(pty, ROUTES["kota-gorontalo-loop"], 40, 1.0, "GN", rng=random.Random(1))
    clean, dec = _decode(_epochs(10, rx, frozenset()))
    assert len(clean) == 10 and dec.checksum_errors == 0 and dec.garbage_bytes == 0

    noisy_bytes = _epochs(10, rx, frozenset({"noise"}))
    noisy, dec = _decode(noisy_bytes)
    assert len(noisy) == 10, "noise between sentences must not destroy the sentences"
    assert dec.garbage_bytes > 0 or dec.checksum_errors > 0
    assert any(b in noisy_bytes for b in (b"\x00", b"\x02", b"\x03", b"$$")) or dec.garbage_bytes > 20

    bad, dec = _decode(_epochs(10, rx, frozenset({"bad_checksum"})))
    assert bad == [] and dec.sentences == 0 and dec.checksum_errors >= 60

    nofix, dec = _decode(_epochs(10, rx, frozenset({"no_fix"})))
    assert nofix == [] and dec.sentences >= 50 and dec.rejected_fixes == 10


def test_corrupt_checksums_and_noise_helpers() -> None:
    rng = random.Random(7)
    data = b"$GPGGA,1*00\r\n$GPRMC,2*11\r\n"
    bad = corrupt_checksums(data, rng)
    assert bad.count(b"\r\n") == 2 and b"*00" not in bad and b"*11" not in bad
    assert add_noise(data, rng).count(b"$GPGGA,1*00\r\n") == 1
    assert set(FAULT_KINDS) == {"unplug", "noise", "bad_checksum", "no_fix", "emergency"}


def test_a_simulated_base_radio_relays_each_radio_and_the_emergency(tmp_path: Path) -> None:
    """A base radio (`radios`): per interval one STX/ETX-framed report per radio, apart on the route."""
    with PtyGps(tmp_path / "tty") as pty:
        rx = SimulatedReceiver(pty, ROUTES["kota-gorontalo-loop"], 5.0, 5.0, radios=("100-1001", "U00017"))
    data = _epochs(3, rx, frozenset())
    assert data.count(b"\x02$PKLDS,") == 3 and data.count(b"\x02$PKNDS,") == 3 and data.count(b"\x03\r\n") == 6
    records, dec = _decode(data)
    fixes = [r for r in records if isinstance(r, Fix)]
    codes = [(r.radio, r.code) for r in records if isinstance(r, RadioStatus)]
    assert dec.checksum_errors == 0 and dec.garbage_bytes == 0
    assert [f.radio for f in fixes] == ["100-1001", "U00017"] * 3
    assert haversine_m(fixes[0].lat, fixes[0].lon, fixes[1].lat, fixes[1].lon) > 50  # not on top of each other
    assert codes == [("100-1001", 10), ("U00017", 10)] * 3
    assert [r.radio for r in records if isinstance(r, RadioHeard)] == ["100-1001", "U00017"] * 3  # caller-ID frames
    assert dec.caller_ids == 12
    records, _ = _decode(_epochs(1, rx, frozenset({"emergency"})))
    assert [(r.radio, r.code) for r in records if isinstance(r, RadioStatus)] == [("100-1001", 99), ("U00017", 10)]


# --- the pty ----------------------------------------------------------------------------------


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[PtyGps]:
    p = PtyGps(tmp_path / "dev" / "ttyGPS0")
    try:
        yield p
    finally:
        p.close()


def _open(link: Path) -> serial.Serial:
    return serial.Serial(str(link), 9600, timeout=0.2, exclusive=True)


def _read_until(port: serial.Serial, needle: bytes, timeout: float = 5.0) -> bytes:
    buf = b""
    end = time.monotonic() + timeout
    while needle not in buf and time.monotonic() < end:
        buf += port.read(port.in_waiting or 1)
    assert needle in buf, f"did not read {needle!r}; got {buf!r}"
    return buf


def test_pty_write_and_read_back_through_the_symlink(pty: PtyGps) -> None:
    assert pty.link.is_symlink() and Path(os.readlink(pty.link)) == Path(pty.slave_name)
    assert pty.write(b"nobody listens\r\n") == 0 and pty.dropped_bytes == 16  # no reader: dropped, not queued
    with _open(pty.link) as port:
        data = b"$GPTXT,01,01,02,hello*00\r\n" + bytes(range(256))  # raw mode: every byte passes unchanged
        assert pty.write(data) == len(data)
        got = _read_until(port, bytes(range(200, 256)))
        assert got == data
    assert pty.written_bytes == len(data)


def test_pty_write_never_blocks_when_the_reader_does_not_read(pty: PtyGps) -> None:
    with _open(pty.link):
        chunk = b"x" * 4096
        for _ in range(200):  # 800 KiB: far beyond any tty buffer
            pty.write(chunk)
        assert pty.dropped_bytes > 0
        assert pty.written_bytes + pty.dropped_bytes == 200 * 4096


def test_unplug_removes_the_port_and_replug_brings_it_back(pty: PtyGps) -> None:
    link = pty.link
    first = pty.slave_name
    port = _open(link)
    try:
        pty.write(b"before\n")
        _read_until(port, b"before\n")
        pty.unplug()
        assert not pty.plugged and not link.exists() and not link.is_symlink()
        with pytest.raises(serial.SerialException):
            for _ in range(10):
                port.read(1)
        assert pty.write(b"lost\n") == 0
    finally:
        port.close()
    with pytest.raises(serial.SerialException):
        _open(link)

    pty.replug()
    assert pty.plugged and link.is_symlink() and pty.plugs == 2
    assert Path(os.readlink(link)) == Path(pty.slave_name)
    with _open(link) as port:
        pty.write(b"after\n")
        assert _read_until(port, b"after\n").endswith(b"after\n")
    assert first  # the new pty may or may not reuse the old number; the path is what stays


def test_pty_refuses_to_replace_a_real_file(tmp_path: Path) -> None:
    f = tmp_path / "ttyUSB0"
    f.write_text("not a link")
    with pytest.raises(FileExistsError):
        PtyGps(f)
    assert f.read_text() == "not a link"


# --- receiver + the real serial driver --------------------------------------------------------


class Collector:
    def __init__(self) -> None:
        self.records: list[Record] = []
        self._lock = threading.Lock()

    def __call__(self, r: Record) -> None:
        with self._lock:
            self.records.append(r)

    def fixes(self) -> list[Fix]:
        with self._lock:
            return [r for r in self.records if isinstance(r, Fix)]

    def states(self) -> list[DeviceState]:
        with self._lock:
            return [r.state for r in self.records if isinstance(r, DeviceStatus)]


def test_receiver_through_the_nmea_serial_driver_yields_fixes_on_the_route_and_survives_unplug(tmp_path: Path) -> None:
    route = ROUTES["bone-bolango-coast"]
    link = tmp_path / "ttyGPS0"
    pty = PtyGps(link)
    rx = SimulatedReceiver(pty, route, speed_kmh=60, interval_s=0.1, talker="GN",
                           faults=[parse_fault("1.0+0.5:unplug")], start_offset_s=300, name="gps0")
    drv = NmeaSerial("gps0", NmeaOptions(url=str(link), reconnect_max_s=0.5))
    out = Collector()
    stop = threading.Event()
    t = threading.Thread(target=drv.run, args=(stop, out), daemon=True)
    rx.start()
    t.start()
    try:
        wait_until(lambda: DeviceState.DISCONNECTED in out.states(), what="disconnected on unplug")
        i = out.states().index(DeviceState.DISCONNECTED)
        wait_until(lambda: DeviceState.CONNECTED in out.states()[i:], what="connected again after replug")
        n = len(out.fixes())
        wait_until(lambda: len(out.fixes()) >= n + 5, what="fixes after the replug")
    finally:
        stop.set()
        rx.stop()
        t.join(5)
        pty.close()
    assert not t.is_alive()
    fixes = out.fixes()
    for f in fixes:
        assert distance_to_route_m(route, f.lat, f.lon) < 5.0
        assert f.device == "gps0" and f.mode == 3 and f.speed_kmh is not None and abs(f.speed_kmh - 60) < 0.1
    times = [f.time for f in fixes]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert drv.counters().reconnects >= 1 and pty.plugs >= 2


def test_simulator_driver_runs_the_real_serial_path_and_cleans_up() -> None:
    opts = SimulatorOptions(route="tilamuta-town", interval_s=0.1, talker="GA", faults=("0.6+0.3:bad_checksum",))
    drv = SimulatorDriver("sim-01", opts)
    out = Collector()
    stop = threading.Event()
    t = threading.Thread(target=drv.run, args=(stop, out), daemon=True)
    t.start()
    try:
        wait_until(lambda: len(out.fixes()) >= 15, what="15 fixes")
        wait_until(lambda: drv.counters().checksum_errors > 0, what="the bad_checksum window")
    finally:
        stop.set()
        t.join(5)
    assert not t.is_alive()
    statuses = [r for r in out.records if isinstance(r, DeviceStatus)]
    assert statuses and statuses[0].driver == "simulator" and statuses[0].state is DeviceState.WAITING
    assert drv.last_data() is not None
    c = drv.counters()
    assert c.fixes >= 15 and c.sentences > 0
    assert isinstance(drv.link, Path) and not drv.link.parent.exists(), "the private link directory is removed"
    for f in out.fixes():
        assert distance_to_route_m(ROUTES["tilamuta-town"], f.lat, f.lon) < 5.0


def test_simulator_driver_reports_a_link_it_cannot_create(tmp_path: Path) -> None:
    occupied = tmp_path / "ttyUSB0"
    occupied.write_text("a real file")
    drv = DRIVER.create("sim-01", SimulatorOptions(link=str(occupied)))
    out = Collector()
    stop = threading.Event()
    t = threading.Thread(target=drv.run, args=(stop, out), daemon=True)
    t.start()
    wait_until(lambda: DeviceState.DISCONNECTED in out.states(), what="disconnected")
    stop.set()
    t.join(5)
    assert not t.is_alive() and occupied.read_text() == "a real file"


# --- standalone ---------------------------------------------------------------------------------


def test_standalone_mode_writes_nmea_until_interrupted(tmp_path: Path) -> None:
    link = tmp_path / "ttyGPS9"
    proc = subprocess.Popen(
        [sys.executable, "-m", "alkomd.drivers.simulator", "--route", "marisa-town", "--link", str(link),
         "--interval", "0.1", "--talker", "GN", "--faults", "100+1:noise"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_until(lambda: link.is_symlink() or proc.poll() is not None, what="the link")
        assert proc.poll() is None
        with _open(link) as port:
            data = b""
            while data.count(b"$GNGLL") < 3:  # at least one whole epoch between two ends of epoch
                data += _read_until(port, b"$GNGLL")
                data += _read_until(port, b"\n")
        fixes, _ = _decode(data)
        assert fixes and all(distance_to_route_m(ROUTES["marisa-town"], f.lat, f.lon) < 5.0 for f in fixes)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert str(link) in out and "stopped after" in out
    assert not link.exists() and not link.is_symlink()


def test_standalone_mode_rejects_a_bad_fault(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "alkomd.drivers.simulator", "--link", str(tmp_path / "x"), "--faults", "5+5:explode"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert r.returncode == 2 and "explode" in r.stderr
    assert not (tmp_path / "x").exists()

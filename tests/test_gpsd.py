"""The gpsd driver against a real gpsd on a private port, reading real ptys fed with NMEA."""

from __future__ import annotations

import itertools
import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import free_port, wait_until
from test_nmea_net import Saturated

from alkomd.daemon.records import DeviceState, DeviceStatus, Fix, Record
from alkomd.drivers.gpsd import MAX_LINE, GpsdClient, GpsdOptions, GpsdStream, TpvReject, watch_command
from alkomd.drivers.nmea_writer import EpochSpec, epoch
from alkomd.drivers.simulator import PtyGps

GPSD = shutil.which("gpsd") or "/usr/sbin/gpsd"


class Gpsd:
    """A private gpsd: foreground, no waiting for clients, read-only, on a free loopback port."""

    def __init__(self, workdir: Path, devices: list[Path], port: int | None = None) -> None:
        self.port = port or free_port()
        self.control = workdir / f"gpsd-{self.port}.sock"
        self.devices = devices
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Gpsd:
        cmd = [GPSD, "-N", "-n", "-b", "-S", str(self.port), "-F", str(self.control), *map(str, self.devices)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._listening, 10, "gpsd listening")
        return self

    def _listening(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, "gpsd exited at start"
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def gpsds(tmp_path: Path) -> Iterator[Callable[..., Gpsd]]:
    made: list[Gpsd] = []

    def make(devices: list[Path], port: int | None = None) -> Gpsd:
        g = Gpsd(tmp_path, devices, port).start()
        made.append(g)
        return g

    yield make
    for g in made:
        g.kill()


class Feed:
    """Writes one NMEA epoch every `gap_s` into a pty (each 1 s later, moving north); dropped while nobody reads."""

    def __init__(self, pty: PtyGps, lat: float = 0.5412, lon: float = 123.0595, gap_s: float = 0.2) -> None:
        self.pty, self.lat, self.lon, self.gap_s = pty, lat, lon, gap_s
        self.t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
        self.valid = True
        self.paused = False
        self.sent: dict[datetime, tuple[float, float]] = {}  # time -> position of epochs gpsd could read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.gap_s):
            if self.paused:
                continue
            self.t += timedelta(seconds=1)
            self.lat += 0.0001
            if self.valid:  # noted before the write: gpsd may deliver the fix before this thread runs again
                self.sent[self.t] = (self.lat, self.lon)
            if not self.pty.write(epoch(EpochSpec(self.t, self.lat, self.lon, speed_kmh=40, course=10, valid=self.valid))):
                self.sent.pop(self.t, None)  # nobody had the port open: gpsd never saw it

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def feeds() -> Iterator[Callable[..., Feed]]:
    made: list[Feed] = []

    def make(pty: PtyGps, **kw: float) -> Feed:
        f = Feed(pty, **kw)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


class Run:
    """The driver in its own thread, as the runtime runs it."""

    def __init__(self, port: int, **opts: object) -> None:
        self.records: list[Record] = []
        self.driver = GpsdClient("gpsd0", GpsdOptions(port=port, **opts))  # type: ignore[arg-type]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.driver.run, args=(self.stop, self.records.append), daemon=True)
        self.thread.start()

    def statuses(self) -> list[DeviceStatus]:
        return [r for r in self.records if isinstance(r, DeviceStatus)]

    def states(self) -> list[DeviceState]:
        return [s.state for s in self.statuses()]

    def fixes(self) -> list[Fix]:
        return [r for r in self.records if isinstance(r, Fix)]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        assert not self.thread.is_alive(), "the driver must stop within about a second"
        seen = [(s.state, s.detail) for s in self.statuses()]
        assert all(a != b for a, b in itertools.pairwise(seen)), "a state is reported on change only"


def _check_against_feed(fixes: list[Fix], feed: Feed) -> None:
    for f in fixes:
        assert f.time in feed.sent, f"fix at {f.time} was never written"
        lat, lon = feed.sent[f.time]
        assert abs(f.lat - lat) < 2e-6 and abs(f.lon - lon) < 2e-6  # NMEA keeps 1e-4 minutes
        assert f.device == "gpsd0" and f.radio is None
    times = [f.time for f in fixes]
    assert times == sorted(set(times)), "fixes never repeat a time or go back"


def test_fixes_arrive_through_a_real_gpsd(tmp_path: Path, gpsds: Callable[..., Gpsd], feeds: Callable[..., Feed]) -> None:
    pty = PtyGps(tmp_path / "ttyGPS0")
    try:
        gpsd = gpsds([pty.link])
        feed = feeds(pty)
        run = Run(gpsd.port)
        try:
            wait_until(lambda: sum(f.hdop is not None for f in run.fixes()) >= 3, 20, "fixes with SKY data")
        finally:
            run.close()
        fixes = run.fixes()
        _check_against_feed(fixes, feed)
        full = [f for f in fixes if f.hdop is not None]
        for f in full:
            assert f.mode == 3 and f.alt == 25.0  # MSL altitude, as GGA has it
            assert f.speed_kmh is not None and abs(f.speed_kmh - 40.0) < 0.05  # m/s from gpsd, back to km/h
            assert f.course == 10.0 and f.hdop == 0.9 and f.sats == 9
        c = run.driver.counters()
        assert c.fixes == len(fixes) and c.sentences > len(fixes) and c.parse_errors == 0 and c.bytes > 0
        assert run.statuses()[0].state is DeviceState.WAITING
        assert run.statuses()[-1].state is DeviceState.CONNECTED and run.statuses()[-1].detail == ""
    finally:
        pty.unplug()


def test_no_fix_then_silent_then_connected(tmp_path: Path, gpsds: Callable[..., Gpsd], feeds: Callable[..., Feed]) -> None:
    pty = PtyGps(tmp_path / "ttyGPS0")
    try:
        gpsd = gpsds([pty.link])
        feed = feeds(pty)
        feed.valid = False  # a receiver without a fix: gpsd sends TPV mode 1
        run = Run(gpsd.port, silent_after_s=1.5, no_fix_after_s=1.0)
        try:
            # no_fix comes after no_fix_after_s whether or not gpsd has sent its first TPV yet.
            wait_until(lambda: DeviceState.NO_FIX in run.states() and run.driver.stream.rejected.get(TpvReject.NO_FIX, 0) >= 1,
                       15, "no_fix, and a TPV without a fix rejected")
            assert not run.fixes()
            feed.paused = True  # the receiver goes quiet: gpsd sends nothing at all
            wait_until(lambda: run.states()[-1] is DeviceState.SILENT, 15, "silent")
            feed.valid, feed.paused = True, False
            wait_until(lambda: len(run.fixes()) >= 2 and run.states()[-1] is DeviceState.CONNECTED, 15, "fixes again")
        finally:
            run.close()
        _check_against_feed(run.fixes(), feed)
    finally:
        pty.unplug()


def test_gpsd_killed_and_restarted_the_driver_reconnects(tmp_path: Path, gpsds: Callable[..., Gpsd], feeds: Callable[..., Feed]) -> None:
    pty = PtyGps(tmp_path / "ttyGPS0")
    try:
        gpsd = gpsds([pty.link])
        feed = feeds(pty)
        run = Run(gpsd.port, reconnect_max_s=1.0)
        try:
            wait_until(lambda: len(run.fixes()) >= 2, 20, "fixes")
            gpsd.kill()
            wait_until(lambda: DeviceState.DISCONNECTED in run.states(), 10, "disconnected")
            lost = next(s for s in run.statuses() if s.state is DeviceState.DISCONNECTED)
            assert lost.detail.startswith(f"gpsd at 127.0.0.1:{gpsd.port}: ")
            before = len(run.fixes())
            gpsds([pty.link], port=gpsd.port)  # gpsd comes back on the same port
            wait_until(lambda: len(run.fixes()) >= before + 2, 20, "fixes after gpsd restarted")
            wait_until(lambda: run.states()[-1] is DeviceState.CONNECTED, 10, "connected again")
        finally:
            run.close()
        _check_against_feed(run.fixes(), feed)
        assert run.driver.counters().reconnects >= 1
    finally:
        pty.unplug()


def test_gpsd_absent_is_disconnected_with_the_reason() -> None:
    port = free_port()  # nothing listens there
    run = Run(port, reconnect_max_s=1.0)
    try:
        wait_until(lambda: bool(run.statuses()), 10, "a state")
    finally:
        run.close()
    first = run.statuses()[0]
    assert first.state is DeviceState.DISCONNECTED
    assert first.detail.startswith(f"gpsd at 127.0.0.1:{port}: connection refused")
    assert run.driver.last_data() is None and not run.fixes()


def test_stops_while_a_connect_to_gpsd_hangs() -> None:
    """gpsd's host drops connection attempts (a full backlog here): a stop is still honoured at once."""
    sat = Saturated()
    try:
        run = Run(sat.port)
        wait_until(lambda: run.thread.is_alive(), 5, "driver running")
        # Run.close() bounds the stop (its join would outlast a 5 s connect timeout otherwise).
        run.close()
        assert not run.statuses() and not run.fixes()
    finally:
        sat.close()


def test_gpsd_device_takes_one_receiver_of_several(tmp_path: Path, gpsds: Callable[..., Gpsd], feeds: Callable[..., Feed]) -> None:
    a, b = PtyGps(tmp_path / "ttyA"), PtyGps(tmp_path / "ttyB")
    try:
        gpsd = gpsds([a.link, b.link])
        feeds(a, lat=-6.2)  # Jakarta
        feed_b = feeds(b, lat=0.54)  # Gorontalo
        run = Run(gpsd.port, gpsd_device=str(b.link))
        try:
            wait_until(lambda: len(run.fixes()) >= 3, 20, "fixes of receiver B")
        finally:
            run.close()
        _check_against_feed(run.fixes(), feed_b)
        assert all(f.lat > 0 for f in run.fixes())
    finally:
        a.unplug()
        b.unplug()


def test_garbage_from_the_socket_is_counted_not_fatal() -> None:
    """A loopback server speaking gpsd's framing sends bad JSON, an overlong line, then a good TPV."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    run = Run(port)
    now = datetime.now(UTC).replace(microsecond=0)
    tpv = {"class": "TPV", "device": "/dev/ttyX", "mode": 2, "time": _z(now), "lat": 0.55, "lon": 123.06}
    try:
        conn, _ = srv.accept()
        conn.settimeout(5)
        assert conn.recv(200) == watch_command("")
        conn.sendall(b'{"class":"VERSION","release":"3.22"}\n{"class":"TPV",\n[1,2]\n"just a string"\n\xff\xfe\n')
        conn.sendall(b"{" + b"x" * (MAX_LINE + 10))  # a line that never ends within bounds
        conn.sendall(b"y" * 1000 + b"\n" + json.dumps(tpv).encode() + b"\n")
        wait_until(lambda: len(run.fixes()) == 1, 10, "the good TPV after the garbage")
        c = run.driver.counters()
        assert c.parse_errors == 5 and c.garbage_bytes > MAX_LINE and c.sentences == 1
        assert run.driver.stream.version == "3.22"
        conn.close()
        wait_until(lambda: DeviceState.DISCONNECTED in run.states(), 10, "disconnected")
        assert run.statuses()[-1].detail == f"gpsd at 127.0.0.1:{port}: connection closed by gpsd"
    finally:
        run.close()
        srv.close()


T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


def _z(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _tpv(**kw: object) -> bytes:
    obj: dict[str, object] = {"class": "TPV", "device": "/dev/x", "mode": 3, "time": _z(T0)}
    obj.update(lat=0.55, lon=123.06, altHAE=43.5, altMSL=25.0, speed=10.0, track=350.0)
    obj.update(kw)
    return json.dumps({k: v for k, v in obj.items() if v is not None}).encode() + b"\n"


@pytest.mark.parametrize(
    ("tpv", "why"),
    [
        (_tpv(mode=1), TpvReject.NO_FIX),
        (_tpv(mode=True), TpvReject.NO_FIX),
        (_tpv(status=8), TpvReject.BAD_STATUS),  # simulated
        (_tpv(status=5), TpvReject.BAD_STATUS),  # dead reckoning only
        (_tpv(lat=None), TpvReject.NO_POSITION),
        (_tpv(lat=0.0, lon=0.0), TpvReject.ZERO),
        (_tpv(lat=91.0), TpvReject.OUT_OF_RANGE),
        (_tpv(lon="123.06"), TpvReject.OUT_OF_RANGE),
        (b'{"class":"TPV","mode":3,"lat":0.55,"lon":NaN,"time":"2024-01-01T00:00:00.000Z"}\n', TpvReject.OUT_OF_RANGE),
        (_tpv(time=None), TpvReject.NO_TIME),
        (_tpv(time="yesterday"), TpvReject.NO_TIME),
        (_tpv(time=_z(datetime.now(UTC) + timedelta(days=2))), TpvReject.FUTURE),
    ],
)
def test_tpv_gates(tpv: bytes, why: TpvReject) -> None:
    s = GpsdStream("g", max_hdop=5.0)
    assert s.feed(tpv, datetime.now(UTC), 1.0) == []
    assert s.rejected == {why: 1} and s.fixes == 0 and s.parse_errors == 0


def test_sky_hdop_gates_and_fills_the_fix_and_repeats_are_dropped() -> None:
    s = GpsdStream("g", max_hdop=5.0)
    now = datetime.now(UTC)
    sky = {"class": "SKY", "device": "/dev/x", "hdop": 7.5, "uSat": 4}
    assert s.feed(json.dumps(sky).encode() + b"\n" + _tpv(), now, 1.0) == []
    assert s.rejected == {TpvReject.HDOP: 1}
    sky.update(hdop=1.2, uSat=None, satellites=[{"PRN": 1, "used": True}, {"PRN": 2, "used": False}, {"PRN": 3, "used": True}])
    (fix,) = s.feed(json.dumps(sky).encode() + b"\n" + _tpv(), now, 2.0)
    assert (fix.hdop, fix.sats, fix.mode, fix.alt, fix.course) == (1.2, 2, 3, 25.0, 350.0)
    assert fix.speed_kmh is not None and abs(fix.speed_kmh - 36.0) < 1e-9
    # gpsd repeats a time while it learns the cycle: the first one is the fix, repeats are not.
    assert s.feed(_tpv(mode=2) + _tpv(), now, 2.1) == [] and s.duplicates == 2
    # A stale SKY (older than a few seconds) no longer fills in HDOP and satellites.
    (fix2,) = s.feed(_tpv(time=_z(T0 + timedelta(seconds=1))), now, 60.0)
    assert fix2.hdop is None and fix2.sats is None
    # A no-fix SKY (no satellite used, hdop 99.99) gates nothing.
    s.feed(b'{"class":"SKY","device":"/dev/x","hdop":99.99,"uSat":0}\n', now, 61.0)
    (fix3,) = s.feed(_tpv(time=_z(T0 + timedelta(seconds=2))), now, 61.5)
    assert fix3.hdop is None and s.fixes == 3


def test_one_fix_dated_hours_ahead_does_not_hide_the_fixes_after_it() -> None:
    """A receiver's time glitch (within the future bound) is one fix; the right times after it still count."""
    s = GpsdStream("g")
    now = datetime.now(UTC)
    (glitch,) = s.feed(_tpv(time=_z(T0 + timedelta(hours=5))), now, 1.0)
    assert glitch.time == T0 + timedelta(hours=5)  # within the future bound: the station's gate judges it
    fixes = s.feed(b"".join(_tpv(time=_z(T0 + timedelta(seconds=i)), lat=0.55 + i * 1e-4) for i in range(1, 4)), now, 2.0)
    assert [f.time for f in fixes] == [T0 + timedelta(seconds=i) for i in range(1, 4)]
    assert s.fixes == 4 and s.duplicates == 0


def test_line_buffer_is_bounded_across_chunks() -> None:
    s = GpsdStream("g")
    now = datetime.now(UTC)
    for _ in range(10):
        s.feed(b"z" * 20000, now, 1.0)
        assert len(s._pending) <= MAX_LINE + 20000
    (fix,) = s.feed(b"tail of the long line\n" + _tpv(), now, 1.0)
    assert s.parse_errors == 1 and s.garbage_bytes == 200000 + len(b"tail of the long line") and fix.lat == 0.55

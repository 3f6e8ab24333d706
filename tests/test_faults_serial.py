"""Fault matrix S3, S6, S7 (reliability-anchors.md section 8) on a real daemon, real ptys and a private broker.

S3: the configured port's path is taken over by another receiver while an unconfigured pty gets
the old device node. S6: a baud mismatch (high-bit garbage at the line's normal byte rate).
S7: sentences with valid checksums and impossible meaning. Plus the plausibility gate
(`daemon/plausibility.py`) on its own, without a daemon.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import NODE, Daemon, Station, Subscriber, wait_until
from helpers_faults import NotifySocket

from alkomd.daemon import control
from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.daemon.geodesy import haversine_m
from alkomd.daemon.positions.plausibility import REANCHOR_FIXES, Outcome, Track, judge
from alkomd.daemon.records import Fix
from alkomd.drivers.nmea_writer import EpochSpec, epoch, lat_field, lon_field, sentence, tod
from alkomd.drivers.simulator import PtyGps

HOME = (0.5412, 123.0595)  # Kota Gorontalo


class Receiver:
    """A GPS receiver on a pty: epochs one second apart (receiver time), moving 11 m north each."""

    def __init__(self, pty: PtyGps, t: datetime, lat: float, lon: float, talker: str = "GP") -> None:
        self.pty, self.t, self.lat, self.lon, self.talker = pty, t, lat, lon, talker
        self.times: list[datetime] = []

    def write(self, n: int = 1, gap_s: float = 0.1) -> None:
        for _ in range(n):
            self.t += timedelta(seconds=1)
            self.lat += 0.0001
            spec = EpochSpec(self.t, self.lat, self.lon, speed_kmh=40, course=0, talker=self.talker)
            assert self.pty.write(epoch(spec)) > 0, "nobody has the pty open"
            self.times.append(self.t)
            time.sleep(gap_s)


def _rmc_gga(t: datetime, lat: float, lon: float, status: str = "A", quality: str = "1", ddmmyy: str | None = None) -> bytes:
    """One epoch as RMC + GGA with correct checksums and whatever meaning the test wants (lat may be > 90)."""
    la, ns = lat_field(lat)
    lo, ew = lon_field(lon)
    hms = tod(t)
    date = ddmmyy or t.strftime("%d%m%y")
    return sentence(f"GPRMC,{hms},{status},{la},{ns},{lo},{ew},21.598,0.00,{date},,,A") + sentence(
        f"GPGGA,{hms},{la},{ns},{lo},{ew},{quality},09,0.90,25.0,M,18.5,M,,"
    )


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _positions(sub: Subscriber, unit: str = "R2-00") -> list[dict[str, object]]:
    return [m.payload for m in sub.on(f"/unit/{unit}/position")]


def _device_states(sub: Subscriber, device: str = "gps0") -> list[tuple[str, str]]:
    return [(str(m.payload["state"]), str(m.payload["detail"])) for m in sub.on(f"/device/{device}/status")]


def _fix(seconds: float, lat: float, lon: float = HOME[1], received_days_later: float = 0.0) -> Fix:
    t = datetime(2026, 11, 22, 7, 0, tzinfo=UTC) + timedelta(seconds=seconds)
    return Fix("gps0", t, lat, lon, 3, t + timedelta(days=received_days_later, milliseconds=300), seconds)


# -- the gate alone ------------------------------------------------------------------------------


def test_plausibility_gate_rejects_a_1980_date_and_a_500_km_jump_and_takes_a_consistent_new_track() -> None:
    """Pass: the 1980-dated fix and the 500 km/1 s jump are rejected (2 of 2); ordinary driving at 40-250 km/h is
    accepted (6 of 6); after REANCHOR_FIXES (3) consistent fixes on a new track, the third is accepted."""
    track: Track | None = None
    for i in range(3):  # 40 km/h north: 11 m a second
        j = judge(track, _fix(i, HOME[0] + i * 0.0001), 300)
        assert j.outcome is Outcome.ACCEPTED
        track = j.track
    assert judge(track, _fix(3, HOME[0] + 0.0003, received_days_later=46 * 365), 300).outcome is Outcome.TIME
    jump = judge(track, _fix(3, HOME[0] + 4.5), 300)  # 500 km in one second
    assert jump.outcome is Outcome.JUMP and 499_000 < jump.distance_m < 502_000 and jump.speed_kmh > 1_000_000
    assert jump.track is not None and jump.track.last == track.last  # the rejected fix is not the reference
    for i, lat in ((4, HOME[0] + 0.0004), (5, HOME[0] + 0.0004 + 0.00062), (6, HOME[0] + 0.0010 + 0.00062)):
        j = judge(jump.track if i == 4 else track, _fix(i, lat), 300)  # 4: after the glitch; 5, 6: 250 km/h
        assert j.outcome is Outcome.ACCEPTED, (i, j)
        track = j.track
    # A receiver swapped for another car's, 30 km away: rejected until 3 consistent fixes make the new track.
    outcomes = []
    for i in range(REANCHOR_FIXES):
        j = judge(track, _fix(7 + i, HOME[0] + 0.27 + i * 0.0001), 300)
        outcomes.append(j.outcome)
        track = j.track
    assert outcomes == [Outcome.JUMP] * (REANCHOR_FIXES - 1) + [Outcome.REANCHORED]
    assert track is not None and track.doubts == () and track.last.lat == pytest.approx(HOME[0] + 0.27 + 0.0002)
    # Jumps that disagree with each other never make a track: each one starts a new chain.
    scatter = [judge(track, _fix(20 + i, HOME[0] + 0.27 + (-1) ** i * 3.0), 300) for i in range(6)]
    assert all(j.outcome is Outcome.JUMP for j in scatter)


def test_a_boat_is_held_to_its_own_bound() -> None:
    """Pass: 170 km/h is accepted for a car (bound 300) and rejected for a boat (bound 150)."""
    start = judge(None, _fix(0, HOME[0]), 150).track
    step = 170 / 3.6 * 10 + 250  # 10 s at 170 km/h, beyond the 200 m of GPS slack
    fast = _fix(10, HOME[0] + step / 111_195)
    assert judge(start, fast, 300).outcome is Outcome.ACCEPTED
    assert judge(start, fast, 150).outcome is Outcome.JUMP


# -- S7: valid checksums, bad semantics, through the daemon ------------------------------------------


def _configure(station: Station) -> None:
    station.write_config()
    station.config.write_text(station.config.read_text() + "\n[recommend]\nmax_fix_age_s = 3600\n")


def test_s7_valid_checksum_bad_semantics_never_become_a_position_nor_a_candidate(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    """S7. Injected with valid checksums, one epoch each, between good fixes: a 500 km jump in 1 s, RMC status V,
    GGA quality 0, lat 91, a 1980-01-06 date. Pass: positions published from the 5 bad epochs: 0 (every published
    position is one of the 6 good fixes, all 6 are published); position rows stored from them: 0; the decoder
    counts >= 3 rejected fixes (V, 0, 91) and the daemon logs the 1980 and the jump rejections; both are counted
    where a technician looks: implausible_fixes = 2 in <node>/health (and for gps0), in `alkomctl status` and for
    R2-00 in `alkomctl units`; a call at the jump's place gets 0 candidates, a call at the unit's true place gets
    the unit (the bad fix was never used for matching)."""
    _configure(station)
    sub = subscriber_factory(broker.port)
    pty = ptys(station.links[0])
    d = daemons(station.config)
    wait_until(lambda: "gps0: starting -> waiting" in d.log, what="port open")
    rx = Receiver(pty, datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10), *HOME)
    rx.write(3, gap_s=0.2)
    wait_until(lambda: len(_positions(sub)) == 3, what="3 good positions")

    far = rx.lat + 4.5  # about 500 km north, one second later
    bad = [
        _rmc_gga(rx.t + timedelta(seconds=1), far, rx.lon),
        _rmc_gga(rx.t + timedelta(seconds=2), far, rx.lon, status="V", quality="1"),
        _rmc_gga(rx.t + timedelta(seconds=3), far, rx.lon, status="A", quality="0"),
        _rmc_gga(rx.t + timedelta(seconds=4), 91.0, rx.lon),
        _rmc_gga(rx.t + timedelta(seconds=5), rx.lat + 0.0001, rx.lon, ddmmyy="060180"),
    ]
    for chunk in bad:
        assert pty.write(chunk) > 0
        time.sleep(0.5)  # each epoch closes when the line goes quiet
    rx.t += timedelta(seconds=5)
    rx.write(3, gap_s=0.2)
    wait_until(lambda: len(_positions(sub)) >= 6, what="the good fixes after the bad ones")
    wait_until(lambda: "fix rejected: " in d.log and d.log.count("fix rejected") >= 2, what="rejections logged")
    time.sleep(0.5)

    good = {_iso(t) for t in rx.times}
    published = _positions(sub)
    assert [p["time"] for p in published] == sorted(good), "exactly the 6 good fixes, in order"
    assert all(float(p["lat"]) < 1.0 for p in published)  # type: ignore[arg-type]
    assert "fix time more than a day before it was read" in d.log
    assert "km from its last position in 1.0 s" in d.log
    rows = station.query("SELECT time, lat FROM positions WHERE unit = 'R2-00'")
    assert len(rows) == 6 and all(lat < 1.0 and t >= "2020" for t, lat in rows)
    wait_until(lambda: any(m.payload["devices"]["gps0"]["rejected_fixes"] >= 3 for m in sub.on(f"{NODE}/health")),
               what="rejected fixes counted by the decoder")
    wait_until(lambda: any(m.payload["implausible_fixes"] == 2 for m in sub.on(f"{NODE}/health")), what="health counts both")
    health = sub.on(f"{NODE}/health")[-1].payload
    assert health["implausible_fixes"] == 2 and health["devices"]["gps0"]["implausible_fixes"] == 2, health
    sock = control.socket_path(station.db)
    assert control.query_status(sock).implausible_fixes == 2
    assert [(u.id, u.implausible_fixes) for u in control.query(sock, "units")] == [("R2-00", 2)]

    now = datetime.now(UTC)
    for call_id, lat in (("S7-FAR", far), ("S7-HOME", rx.lat)):
        body = {"call_id": call_id, "caller": "+6281234567890", "lat": lat, "lon": rx.lon, "accuracy_m": 10,
                "received_at": _iso(now), "category": "pencurian"}
        sub.client.publish(f"{NODE}/call/new", json.dumps(body), qos=1)
    wait_until(lambda: bool(sub.on("/call/S7-FAR")) and bool(sub.on("/call/S7-HOME")), what="both calls offered")
    assert sub.on("/call/S7-FAR")[-1].payload["candidates"] == []
    home = sub.on("/call/S7-HOME")[-1].payload["candidates"]
    assert [c["unit"] for c in home] == ["R2-00"] and home[0]["distance_m"] < 100  # type: ignore[index, union-attr]


# -- S6: baud mismatch ---------------------------------------------------------------------------


def _garbage(rng: random.Random, n: int) -> bytes:
    """What a 9600-baud receiver looks like to a port set to another rate: mostly high-bit bytes, in lines,
    some of which start with a '$' that survived (so the decoder sees corrupt sentences, not only noise)."""
    out = bytearray()
    while len(out) < n:
        body = bytes(b | 0x80 if rng.random() < 0.85 else b for b in rng.randbytes(rng.randint(40, 80)))
        out += (b"$" if rng.random() < 0.6 else b"") + body + b"\r\n"
    return bytes(out[:n])


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    n = NotifySocket(tmp_path / "notify.sock")
    yield n
    n.close()


def test_s6_baud_mismatch_is_reported_with_its_reason_and_the_device_recovers(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber], notify: NotifySocket, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """S6, scaled down: 5 s of high-bit garbage at 9600 baud's byte rate (about 960 bytes/s, 96 bytes every 0.1 s;
    the matrix says 30 s) between clean data, silent_after_s = 2. Pass: the device goes degraded and/or silent
    with its reason in `detail` (checksum errors or no valid sentence), the daemon's sd_notify STATUS= names it
    (`gps0 silent` or `gps0 degraded`) within 10 s, positions published from the garbage: 0, and when clean data
    resumes the device is connected again, STATUS= says 1/1 connected and new fixes are published."""
    _configure(station)
    monkeypatch.setenv("NOTIFY_SOCKET", notify.address)  # inherited by the daemon started below
    sub = subscriber_factory(broker.port)
    pty = ptys(station.links[0])
    d = daemons(station.config)
    wait_until(lambda: "gps0: starting -> waiting" in d.log, what="port open")
    rx = Receiver(pty, datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10), *HOME)
    rx.write(5, gap_s=0.2)
    wait_until(lambda: len(_positions(sub)) == 5, what="clean positions")
    wait_until(lambda: any("devices 1/1 connected" in s for s in notify.fields("STATUS")), what="STATUS connected")

    rng = random.Random(6)
    before = len(_positions(sub))
    end = time.monotonic() + 5.0
    while time.monotonic() < end:
        assert pty.write(_garbage(rng, 96)) > 0
        time.sleep(0.1)
    wait_until(lambda: any(s in ("silent", "degraded") for s, _ in _device_states(sub)), what="silent or degraded")
    wait_until(lambda: any("gps0 silent" in s or "gps0 degraded" in s for s in notify.fields("STATUS")), 10, "STATUS names it")
    assert len(_positions(sub)) == before, "no position from garbage"
    reasons = {s: detail for s, detail in _device_states(sub) if s in ("silent", "degraded")}
    assert "silent" not in reasons or "no valid sentence" in reasons["silent"]
    assert "degraded" not in reasons or "check baud rate" in reasons["degraded"]
    marker = len(notify.fields("STATUS"))

    rx.write(5, gap_s=0.2)
    wait_until(lambda: _device_states(sub)[-1][0] == "connected", what="connected again")
    wait_until(lambda: len(_positions(sub)) == before + 5, what="positions from the clean data")
    wait_until(lambda: any("devices 1/1 connected" in s and "(" not in s for s in notify.fields("STATUS")[marker:]),
               what="STATUS connected again")
    health = [m.payload["devices"]["gps0"] for m in sub.on(f"{NODE}/health")]
    assert health[-1]["checksum_errors"] > 0 and health[-1]["garbage_bytes"] > 1000


# -- S3: device path reuse or swap ---------------------------------------------------------------


def _open_ttys(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/dev/pts/"):
            out.add(target)
    return out


def test_s3_path_taken_over_by_another_receiver_the_daemon_follows_the_configured_path_and_logs_the_new_track(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], subscriber_factory: Callable[..., Subscriber],
    tmp_path: Path,
) -> None:
    """S3. Receiver A (talker GP) on the configured path is unplugged; an unconfigured pty C is created first (so it
    can get A's old /dev/pts number) and fed a position 160 km away; then receiver B (talker GN, another car 30 km
    away) appears on the configured path. Pass: the daemon holds B's pty open and never C's; positions published
    from C: 0; B's first 2 fixes are rejected as a jump and the 3rd becomes the unit's new track with a warning
    naming the distance (the identity change, logged); B's later fixes are published."""
    _configure(station)
    sub = subscriber_factory(broker.port)
    a = PtyGps(station.links[0])
    c: PtyGps | None = None
    b: PtyGps | None = None
    try:
        d = daemons(station.config)
        assert d.proc is not None
        wait_until(lambda: "gps0: starting -> waiting" in d.log, what="port open")
        rx_a = Receiver(a, datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10), *HOME)
        rx_a.write(3, gap_s=0.2)
        wait_until(lambda: len(_positions(sub)) == 3, what="A's positions")
        old_node = a.slave_name
        assert _open_ttys(d.proc.pid) == {old_node}

        a.unplug()
        wait_until(lambda: _device_states(sub)[-1][0] == "disconnected", what="A gone")
        wait_until(lambda: old_node not in _open_ttys(d.proc.pid), what="A's node closed")  # type: ignore[union-attr]
        c = PtyGps(tmp_path / "ttyOTHER")
        b = PtyGps(station.links[0])
        wait_until(lambda: _device_states(sub)[-1][0] == "waiting", 15, "reopened on the configured path")
        rx_b = Receiver(b, rx_a.t, HOME[0] + 0.27, HOME[1], talker="GN")
        for i in range(6):
            c.write(epoch(EpochSpec(rx_a.t + timedelta(seconds=i + 1), HOME[0] + 1.44, HOME[1])))  # nobody reads C
            rx_b.write(1, gap_s=0.2)
        wait_until(lambda: len(_positions(sub)) >= 3 + 6 - (REANCHOR_FIXES - 1), what="B's track")
        time.sleep(0.5)
        assert _open_ttys(d.proc.pid) == {b.slave_name} and c.slave_name not in _open_ttys(d.proc.pid)
        published = _positions(sub)
        assert [p["time"] for p in published[3:]] == [_iso(t) for t in rx_b.times[REANCHOR_FIXES - 1 :]]
        assert all(haversine_m(float(p["lat"]), float(p["lon"]), HOME[0] + 1.44, HOME[1]) > 100_000 for p in published)  # type: ignore[arg-type]
        assert "fixes in a row 30.0 km from its last position: taken as its new track" in d.log
        assert "gps0: opened " + str(station.links[0]) in d.log and "ttyOTHER" not in d.log
        print(f"S3: A was {old_node}; C (unconfigured) got {c.slave_name}; B (configured) got {b.slave_name}")
    finally:
        for p in (a, b, c):
            if p is not None:
                p.unplug()

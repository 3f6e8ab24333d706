"""S9: a fix dated ahead of the station's clock (a receiver's clock or week-rollover bug) never freezes its unit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from alkomd.daemon.config import parse
from alkomd.daemon.mqtt.publisher import Publisher
from alkomd.daemon.positions import plausibility
from alkomd.daemon.positions.station import Station
from alkomd.daemon.records import Fix, UnitPosition
from alkomd.daemon.store.database import Store
from alkomd.drivers.nmea import Decoder
from alkomd.drivers.nmea_writer import EpochSpec, epoch

UTC = timezone.utc
T0 = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def _station(tmp_path: Path, store: Store, loop: asyncio.AbstractEventLoop, clock: list[datetime]) -> Station:
    cfg = parse({"node": {"path": "gorontalo/bone-bolango"}, "device": [{"id": "gps1", "driver": "nmea", "url": "/dev/null"}],
                 "unit": [{"id": "R2-01", "device": "gps1"}]}, tmp_path / "alkomd.toml")
    return Station(cfg, store, Publisher(store, loop), loop, now=lambda: clock[0])


def _decoded(fix_time: datetime, received: datetime, lat: float) -> Fix:
    """One epoch as a receiver writes it (RMC, GGA, ...), decoded by the daemon's own decoder at `received`."""
    dec = Decoder("gps1")
    data = epoch(EpochSpec(fix_time, lat, 123.06, speed_kmh=30.0, course=90.0))
    out = [r for r in dec.feed(data, received, 1.0) + dec.close_epoch() if isinstance(r, Fix)]
    assert len(out) == 1, out
    return out[0]


def test_s9_a_fix_20_hours_ahead_is_rejected_and_the_unit_moves_on(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    """The decoder passes a fix 20 h ahead (its own gate is a day, for receivers without a date), the station does
    not: it is counted with its reason and never becomes the unit's newest, so the next correct fix is the unit's
    position, not history. Before this gate the unit froze: every later fix looked older than the bad one."""
    store = Store(tmp_path / "a.db")
    clock = [T0]
    st = _station(tmp_path, store, loop, clock)
    for i, (ahead, lat) in enumerate(((0, 0.5450), (20 * 3600, 0.5460), (0, 0.5452), (0, 0.5454))):
        clock[0] = T0 + timedelta(seconds=i)
        st.submit(_decoded(clock[0] + timedelta(seconds=ahead), clock[0], lat))
        st.flush()
    latest = st.latest["R2-01"]
    assert latest.fix.time == T0 + timedelta(seconds=3) and latest.fix.lat == pytest.approx(0.5454)
    assert st.implausible_fixes == 1 and st.implausible_by_device == {"gps1": 1} and st.stale_fixes == 0
    assert store.conn.execute("SELECT count(*) FROM positions WHERE unit = 'R2-01'").fetchone()[0] == 3
    assert store.conn.execute("SELECT max(time) FROM positions").fetchone()[0] == "2026-11-22T07:00:03.000Z"
    store.close()


def test_s9_a_future_fix_stored_by_an_older_daemon_is_set_back_at_start(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    """A database whose newest fix of a unit is 20 h ahead (accepted before this gate existed): at start the unit's
    newest is set back to its newest plausible fix, and the next correct fix becomes its position."""
    store = Store(tmp_path / "a.db")
    good = _decoded(T0, T0, 0.5450)
    bad = _decoded(T0 + timedelta(hours=20), T0 + timedelta(seconds=1), 0.5460)
    store.sync_units([("R2-01", "", "car", "gps1")])
    store.record([(UnitPosition("R2-01", good), None), (UnitPosition("R2-01", bad), None)], [], T0)
    store.conn.execute("UPDATE units SET last_fix_time = ?", ("2026-11-23T03:00:00.000Z",))
    clock = [T0 + timedelta(seconds=2)]
    st = _station(tmp_path, store, loop, clock)
    assert st.last_fix_time["R2-01"] == "2026-11-22T07:00:00.000Z"
    st.submit(_decoded(clock[0], clock[0], 0.5452))
    st.flush()
    assert st.latest["R2-01"].fix.time == clock[0]
    store.close()


def test_the_lead_gate_allows_a_small_clock_difference() -> None:
    f = _decoded(T0 + timedelta(seconds=90), T0, 0.545)
    assert plausibility.time_wrong(f) is None
    assert plausibility.time_wrong(_decoded(T0 + plausibility.MAX_LEAD + timedelta(seconds=1), T0, 0.545)) is plausibility.Outcome.AHEAD
    assert plausibility.time_wrong(_decoded(T0 - timedelta(days=2), T0, 0.545)) is plausibility.Outcome.TIME

"""Following the units below at the floor: the fast position reader, the jurisdiction cell cache, the in-place index
move and the inbox's lanes give the same answers as the slow paths they replace."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alkomd.daemon.calls.below import BelowUnits
from alkomd.daemon.calls.jurisdictions import JurisdictionIndex, JurisdictionOptions, load
from alkomd.daemon.calls.recommend import RecommendOptions, UnitIndex, brute_force, recommend
from alkomd.daemon.calls.types import Location, LocationStatus, Placement, UnitSnapshot
from alkomd.daemon.mqtt import contract
from alkomd.daemon.mqtt.contract.inbound import parse_below_fix
from alkomd.daemon.mqtt.inbox import BATCH, Inbox
from alkomd.daemon.records import Fix, UnitPosition, UnitStatus
from alkomd.daemon.store.database import Store

ROOT = Path(__file__).resolve().parents[1]
JUR = ROOT / "config" / "jurisdictions" / "gorontalo-adm2.geojson"
NODE = "polri110/gorontalo"


@pytest.fixture(scope="module")
def gorontalo() -> JurisdictionIndex:
    return load(JurisdictionOptions(file=JUR, include_property="level", include_values=("regency", "city")))


def _slow(payload: bytes) -> tuple[float, float, int, str | None] | None:
    pos = contract.parse_below_position(payload)
    return None if pos is None else (pos.lat, pos.lon, contract.epoch_us(pos.time), pos.type)


def _node_payload(rng: random.Random, label: bool) -> bytes:
    t = datetime(2026, 11, 22, 7, 0, tzinfo=UTC) + timedelta(microseconds=rng.randrange(10**11))
    fix = Fix(device="gps0", time=t, received=t, received_mono=0.0, lat=rng.uniform(-11, 6), lon=rng.uniform(95, 141),
              speed_kmh=12.0, course=3.0, hdop=0.9, sats=9, mode=3, alt=12.0)
    lbl = contract.UnitLabel(rng.choice(contract.UNIT_TYPES), "Macan 01") if label else None
    return contract.position_message(NODE + "/p", UnitPosition("R2-01", fix), lbl).payload.encode()


def test_the_fast_position_reader_gives_what_json_gives_for_every_form() -> None:
    """A node's own payloads (fast path) and every other form (json path): the same lat, lon, microsecond and type."""
    rng = random.Random(7)
    payloads = [_node_payload(rng, label=i % 2 == 0) for i in range(300)]
    base = json.loads(payloads[0])
    variants: list[dict[str, Any] | str] = [
        {**base, "time": "2026-11-22T07:00:01Z"}, {**base, "time": "2026-11-22T07:00:01.5Z"},
        {**base, "time": "2026-11-22T07:00:01.123456+00:00"}, {**base, "time": "2026-11-22T07:00:01"},
        {**base, "time": "2026-13-22T07:00:01.000Z"}, {**base, "type": "truck"}, {**base, "type": None},
        {**base, "type": 3}, {**base, "lat": "0.5"}, {**base, "lat": 91.0}, {**base, "lon": -181.0},
        {k: v for k, v in base.items() if k != "type"}, {k: v for k, v in base.items() if k != "time"},
        {"lat": base["lat"], "unit": "x", "lon": base["lon"], "time": base["time"]}, {**base, "unit": 'a"b\\c'},
        "not json", "[1, 2]", "{}", '{"unit":"U","lat":1e400,"lon":2,"time":"2026-11-22T07:00:01.000Z"}',
        '{"unit":"U","lat":1,"lon":2,"time":"2026-11-22T07:00:01.000Z","type":"boat"}',
        '{"unit":"U","lat":-0.0,"lon":2E1,"time":"2026-11-22T07:00:59.9Z","callsign":"\\",\\"type\\":\\"boat\\""}',
        '{"unit":"U","lat":1,"lon":2,"time":"2026-11-22T07:00:01.000Z"',
    ]
    for v in variants:
        payloads.append((v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))).encode())
        payloads.append((v if isinstance(v, str) else json.dumps(v)).encode())
    fast = 0
    for p in payloads:
        assert parse_below_fix(p) == _slow(p), p
        fast += contract.inbound._POSITION_HEAD.match(p) is not None
    assert fast >= 300  # every node payload took the fast path


@pytest.mark.parametrize("after", [1, 4])
def test_the_jurisdiction_cell_cache_answers_as_the_polygons_do(gorontalo: JurisdictionIndex, after: int,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Random points over Gorontalo and the sea around it, and the polygons' own vertices (on a border): the same id,
    from cells, from the parts of border cells (`after` 1: every border cell is cut into parts at once), and from
    polygon tests."""
    from alkomd.daemon.calls import jurisdictions

    monkeypatch.setattr(jurisdictions, "SUBCELLS_AFTER", after)
    gorontalo._cells.clear()
    gorontalo._borders.clear()
    gorontalo._tested.clear()
    rng = random.Random(3)
    points = [(rng.uniform(0.2, 1.1), rng.uniform(121.1, 123.6)) for _ in range(4000)]
    for jid in gorontalo.ids:
        geom = gorontalo.jurisdiction(jid).geometry
        coords = [c for poly in getattr(geom, "geoms", [geom]) for c in poly.exterior.coords]
        points += [(lat, lon) for lon, lat in coords[:: max(1, len(coords) // 200)]]
    points += [(float("nan"), 123.0), (0.5, float("inf")), (91.0, 0.0)]
    for _ in range(3):  # cold, then from the cache (and the parts of border cells)
        for lat, lon in points:
            assert gorontalo.jurisdiction_at(lat, lon) == gorontalo.jurisdiction_of(lat, lon), (lat, lon)
    assert any(subs is not None for _, _, subs in gorontalo._borders.values())


def test_moving_a_unit_in_place_ranks_as_a_new_snapshot_would(gorontalo: JurisdictionIndex) -> None:
    """UnitIndex.move (in place) against update (a new snapshot): recommend equals brute force over the snapshots."""
    rng = random.Random(11)
    now = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)
    index = UnitIndex()
    for i in range(400):
        lat, lon = rng.uniform(0.3, 1.0), rng.uniform(122.0, 123.3)
        index.update(UnitSnapshot(f"U{i}", "car", UnitStatus.AVAILABLE, lat, lon, now, gorontalo.jurisdiction_of(lat, lon)))
    moved = 0
    for step in range(3000):
        unit = f"U{rng.randrange(400)}"
        old = index.get(unit)
        assert old is not None and old.lat is not None and old.lon is not None
        lat, lon = old.lat + rng.gauss(0, 0.01), old.lon + rng.gauss(0, 0.01)
        t = now + timedelta(seconds=step)
        jur = gorontalo.jurisdiction_at(lat, lon)
        if index.move(unit, lat, lon, contract.epoch_us(t), jur):
            moved += 1
        else:
            index.update(UnitSnapshot(unit, "car", UnitStatus.AVAILABLE, lat, lon, t, jur))
        snap = index.get(unit)
        assert snap is not None and (snap.lat, snap.lon, snap.fix_time, snap.jurisdiction) == (lat, lon, t, jur)
    assert moved > 2000
    opts = RecommendOptions(max_fix_age_s=86400)
    for _ in range(50):
        loc = Location(rng.uniform(0.3, 1.0), rng.uniform(122.0, 123.3), None)
        place = gorontalo.locate(loc)
        when = now + timedelta(seconds=3000)
        assert recommend(index, loc, place, when, opts) == brute_force(list(index.snapshots()), loc, place, when, opts)


def test_the_inbox_wakes_the_loop_once_per_batch_and_puts_calls_first() -> None:
    """10 batches of positions then one call, put from paho's side: one wake-up for the positions, the call first."""
    loop = asyncio.new_event_loop()
    posts = 0
    original = loop.call_soon_threadsafe

    def counting(*args: Any, **kw: Any) -> Any:
        nonlocal posts
        posts += 1
        return original(*args, **kw)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    order: list[str] = []
    inbox = Inbox(loop, lambda topic, payload, retain: order.append(topic), lambda batch: order.extend(t for t, _ in batch))
    n = 10 * BATCH
    for i in range(n):
        inbox.put(f"{NODE}/p/unit/U{i}/position", b"{}", True)
    inbox.put(f"{NODE}/call/new", b"{}", False)

    async def settle() -> None:
        while len(order) < n + 1:
            await asyncio.sleep(0.01)

    loop.run_until_complete(asyncio.wait_for(settle(), 10))
    loop.close()
    assert posts == 2  # one for the positions, one for the call
    assert order[0] == f"{NODE}/call/new" and order[1:] == [f"{NODE}/p/unit/U{i}/position" for i in range(n)]


def test_the_snapshot_of_the_units_below_is_loaded_as_it_was_saved(tmp_path: Path, gorontalo: JurisdictionIndex) -> None:
    """Positions and statuses taken in, saved (in chunks and at stop), loaded by a new follower: the same units, places,
    statuses and owners, in the same jurisdictions."""
    store = Store(tmp_path / "alkomd.db")
    index, owner = UnitIndex(), {}
    follow = BelowUnits(NODE, index, owner, gorontalo, lambda: None, store)
    t = "2026-11-22T07:00:01.250Z"
    batch = []
    for i in range(1500):
        topic = f"{NODE}/p{i % 3}/unit/U{i}"
        batch.append((f"{topic}/status", json.dumps({"status": "available" if i % 4 else "assigned", "type": "boat"}).encode()))
        batch.append((f"{topic}/position", json.dumps({"unit": f"U{i}", "lat": 0.5 + i * 1e-4, "lon": 123.0, "time": t},
                                                      separators=(",", ":")).encode()))
    assert follow.take([*batch, (f"{NODE}/call/status", b"{}")]) == [(f"{NODE}/call/status", b"{}")]
    asyncio.run(follow.save())
    follow.take([(f"{NODE}/p0/unit/U0/position", batch[1][1].replace(b'"lat":0.5', b'"lat":0.6'))])
    follow.save_all()
    again = BelowUnits(NODE, UnitIndex(), {}, gorontalo, lambda: None, store)
    assert again.load() == 1500 and again.located == 1500 and again.snapshot_time is not None
    for i in (0, 1, 777, 1499):
        a, b = index.get(f"U{i}"), again.index.get(f"U{i}")
        assert a == b and a is not None and a.type == "boat", i
    assert again.owner == owner
    when = datetime(2026, 11, 22, 7, 0, 2, tzinfo=UTC)
    loc = Location(0.55, 123.0, None)
    opts = RecommendOptions()
    assert recommend(again.index, loc, Placement(LocationStatus.OK, gorontalo.jurisdiction_of(0.55, 123.0)), when, opts) \
        == recommend(index, loc, Placement(LocationStatus.OK, gorontalo.jurisdiction_of(0.55, 123.0)), when, opts)
    store.close()


def test_a_backlog_keeps_one_drain_per_lane_waiting_so_the_timers_keep_their_turn() -> None:
    """A backlog of calls slower to handle than they arrive (each takes 2 ms, put from another thread while the loop
    drains): at no time are two drains of a lane waiting in the loop. Before the fix every drain left with a backlog
    scheduled one more, on top of the one paho's thread had scheduled: the waiting drains grew by one per loop turn,
    each took its time slice, and the watchdog's timer waited seconds (fault-matrix I6)."""
    loop = asyncio.new_event_loop()
    waiting = {"urgent": 0, "bulk": 0}
    most = {"urgent": 0, "bulk": 0}
    handled: list[str] = []

    def handle(topic: str, payload: bytes, retain: bool) -> None:
        time.sleep(0.002)
        handled.append(topic)

    inbox = Inbox(loop, handle, lambda batch: [time.sleep(0.0001) for _ in batch])
    for post in ("call_soon", "call_soon_threadsafe", "call_later"):
        original = getattr(loop, post)

        def scheduling(*args: Any, _original: Any = original, **kw: Any) -> Any:
            delayed = isinstance(args[0], float | int)
            fn, rest = (args[1], args[2:]) if delayed else (args[0], args[1:])
            for lane, name in (("urgent", "drain_urgent"), ("bulk", "drain_bulk")):
                if fn == getattr(inbox, name):
                    waiting[lane] += 1
                    most[lane] = max(most[lane], waiting[lane])

                    def ran(*a: Any, _fn: Any = fn, _lane: str = lane) -> None:
                        waiting[_lane] -= 1
                        _fn(*a)

                    return _original(*((args[0], ran) if delayed else (ran,)), *rest, **kw)
            return _original(*args, **kw)

        setattr(loop, post, scheduling)

    def paho() -> None:
        for i in range(300):
            inbox.put(f"{NODE}/call/new", b"{}", False)
            inbox.put(f"{NODE}/p/unit/U{i}/position", b"{}", True)
            time.sleep(0.0005)

    feeder = threading.Thread(target=paho)

    async def run() -> None:
        feeder.start()
        while len(handled) < 300:
            await asyncio.sleep(0.005)

    loop.run_until_complete(asyncio.wait_for(run(), 60))
    feeder.join()
    loop.close()
    assert most["urgent"] <= 2 and most["bulk"] <= 2, most  # the one scheduled, and at most one more from paho's thread

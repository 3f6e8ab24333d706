"""Store and station rules on real SQLite files: migrations, transactions, never moving back."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from alkomd.daemon.config import parse
from alkomd.daemon.mqtt import contract
from alkomd.daemon.mqtt.publisher import Publisher
from alkomd.daemon.positions.station import Station
from alkomd.daemon.records import Counters, DeviceState, DeviceStatus, Fix, UnitPosition
from alkomd.daemon.store.database import Message, Store, StoreError
from alkomd.daemon.store.migrations import MIGRATIONS

T0 = datetime(2026, 11, 22, 7, 0, tzinfo=timezone.utc)
NODE = "polri110/gorontalo/bone-bolango"


def fix(device: str, seconds: int, lat: float = 0.55) -> Fix:
    t = T0 + timedelta(seconds=seconds)
    return Fix(device=device, time=t, lat=lat, lon=123.1, mode=3, received=t, received_mono=float(seconds))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "a.db")
    yield s
    s.close()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def make_station(tmp_path: Path, store: Store, loop: asyncio.AbstractEventLoop) -> Station:
    cfg = parse(
        {
            "node": {"path": "gorontalo/bone-bolango"},
            "device": [{"id": "gps1", "driver": "nmea", "url": "/dev/null"}],
            "unit": [{"id": "R2-01", "device": "gps1"}, {"id": "SPKT-1", "type": "foot"}],
        },
        tmp_path / "alkomd.toml",
    )
    return Station(cfg, store, Publisher(store, loop), loop, now=lambda: T0)


def test_schema_is_versioned_and_a_newer_database_is_refused(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    assert s.schema_version == len(MIGRATIONS)
    assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    s.conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    s.close()
    with pytest.raises(StoreError, match="newer than this alkomd"):
        Store(tmp_path / "a.db")


def test_reopening_keeps_data_and_runs_no_migration_twice(tmp_path: Path) -> None:
    s = Store(tmp_path / "a.db")
    s.record([], [Message("m1", "device_status", "t/x", "{}", 1, True)], T0)
    s.close()
    s = Store(tmp_path / "a.db")
    assert s.outbox_depth() == 1 and s.schema_version == len(MIGRATIONS)
    s.close()


def test_position_and_outbox_row_commit_together_or_not_at_all(store: Store) -> None:
    up = UnitPosition("R2-01", fix("gps1", 1))
    msg = contract.position_message(NODE, up)
    store.record([(up, msg)], [], T0)
    assert store.conn.execute("SELECT msg_id FROM positions").fetchall() == [(msg.msg_id,)]
    # A duplicate msg_id violates the outbox's unique index: the position must not stay either.
    with pytest.raises(StoreError):
        store.record([(UnitPosition("R2-01", fix("gps1", 2)), msg)], [], T0)
    assert store.conn.execute("SELECT count(*) FROM positions").fetchone()[0] == 1
    assert store.outbox_depth() == 1


def test_unit_never_moves_back_and_duplicates_are_dropped(tmp_path: Path, store: Store, loop: asyncio.AbstractEventLoop) -> None:
    st = make_station(tmp_path, store, loop)
    for s in (10, 12, 11, 12):  # a late fix (11) and a repeat (12)
        st.submit(fix("gps1", s))
    st.flush()
    topics = store.conn.execute("SELECT payload FROM outbox WHERE kind = 'position' ORDER BY id").fetchall()
    times = [json.loads(p)["time"] for (p,) in topics]
    assert times == ["2026-11-22T07:00:10.000Z", "2026-11-22T07:00:12.000Z"]
    history = [t for (t,) in store.conn.execute("SELECT time FROM positions ORDER BY id")]
    assert history == ["2026-11-22T07:00:10.000Z", "2026-11-22T07:00:12.000Z", "2026-11-22T07:00:11.000Z"]
    assert st.latest["R2-01"].fix.time == T0 + timedelta(seconds=12)
    assert st.stale_fixes == 2


def test_never_moving_back_survives_a_restart(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    s1 = Store(tmp_path / "a.db")
    st = make_station(tmp_path, s1, loop)
    st.submit(fix("gps1", 20))
    st.flush()
    s1.close()
    s2 = Store(tmp_path / "a.db")
    st2 = make_station(tmp_path, s2, loop)
    st2.submit(fix("gps1", 19))
    st2.flush()
    assert s2.conn.execute("SELECT count(*) FROM outbox WHERE kind = 'position'").fetchone()[0] == 1
    s2.close()


def test_fixes_of_an_unmapped_device_are_counted_not_stored(tmp_path: Path, store: Store, loop: asyncio.AbstractEventLoop) -> None:
    st = make_station(tmp_path, store, loop)
    st.submit(fix("stray", 1))
    st.flush()
    assert st.unmapped_fixes == 1
    assert store.conn.execute("SELECT count(*) FROM positions").fetchone()[0] == 0


def test_device_status_is_stored_for_publishing(tmp_path: Path, store: Store, loop: asyncio.AbstractEventLoop) -> None:
    st = make_station(tmp_path, store, loop)
    st.submit(DeviceStatus("gps1", "nmea", DeviceState.NO_FIX, T0, Counters(sentences=5), "no valid fix for 30 s"))
    st.flush()
    (topic, payload, retain), = store.conn.execute("SELECT topic, payload, retain FROM outbox").fetchall()
    assert topic == f"{NODE}/device/gps1/status" and retain == 1
    body = json.loads(payload)
    assert body["state"] == "no_fix" and body["counters"]["sentences"] == 5 and body["detail"]


def test_a_full_disk_keeps_records_in_memory_and_retries(tmp_path: Path, store: Store, loop: asyncio.AbstractEventLoop) -> None:
    st = make_station(tmp_path, store, loop)
    store.conn.execute(f"PRAGMA max_page_count={store.conn.execute('PRAGMA page_count').fetchone()[0]}")
    for s in range(200):
        st.submit(fix("gps1", s, lat=0.5 + s * 1e-5))
    st.flush()  # SQLITE_FULL: nothing is lost, the batch waits
    assert store.conn.execute("SELECT count(*) FROM positions").fetchone()[0] == 0
    store.conn.execute("PRAGMA max_page_count=1073741823")
    st.flush()
    assert store.conn.execute("SELECT count(*) FROM positions").fetchone()[0] == 200
    assert sqlite3.connect(store.path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_unsent_leaves_out_the_rows_in_flight_or_held_and_keeps_the_order(store: Store) -> None:
    """`unsent(limit, skip)` (ids first, then the rows kept) against every unsent row read whole and filtered."""
    store.record([], [Message(f"m{i}", "call_state", f"t/{i}", json.dumps({"i": i}), 1, i % 3 == 0) for i in range(60)], T0)
    ids = [r[0] for r in store.conn.execute("SELECT id FROM outbox ORDER BY id")]
    store.mark_sent(ids[5:15], T0)
    unsent = [r for r in store.unsent(1000) if r.id not in ids[5:15]]
    assert [r.id for r in unsent] == ids[:5] + ids[15:]
    for limit in (1, 3, 20, 60):
        for skip in (frozenset(), frozenset(ids[:5]), frozenset(ids[::2]), frozenset(ids[:40]), frozenset(ids)):
            assert store.unsent(limit, skip) == [r for r in unsent if r.id not in skip][:limit], (limit, len(skip))
    assert store.unsent(0) == []


def test_superseded_and_prune_keep_the_retained_position_correct(store: Store) -> None:
    a = contract.position_message(NODE, UnitPosition("R2-01", fix("gps1", 1)))
    b = contract.position_message(NODE, UnitPosition("R2-01", fix("gps1", 2)))
    store.record([(UnitPosition("R2-01", fix("gps1", 1)), a), (UnitPosition("R2-01", fix("gps1", 2)), b)], [], T0)
    rows = store.unsent(10)
    assert [store.superseded(r) for r in rows] == [True, False]
    assert [r.id for r in store.newest_unsent_positions()] == [rows[1].id]
    # The newest is acknowledged long ago, the older one is still unsent: prune keeps the newest,
    # so the older one is still known to be superseded (it must not become the retained one).
    store.mark_sent([rows[1].id], T0 - timedelta(days=3))
    store.prune(T0, timedelta(hours=1), timedelta(days=90))
    assert store.superseded(rows[0])
    store.mark_sent([rows[0].id], T0 - timedelta(days=3))
    out, _ = store.prune(T0, timedelta(hours=1), timedelta(days=90))
    assert out == 1 and store.outbox_depth() == 0  # the newest row stays, sent: ids never go back
    store.record([(UnitPosition("R2-01", fix("gps1", 3)), contract.position_message(NODE, UnitPosition("R2-01", fix("gps1", 3))))],
                 [], T0)
    assert [r.id for r in store.unsent(10)] == [rows[1].id + 1]  # above every id before it: the publisher's cursor sees it


def test_position_payload_matches_the_contract(store: Store) -> None:
    f = Fix("gps1", T0, -0.123456789, 123.05, 3, T0 + timedelta(milliseconds=40), 0.0, alt=12.34, speed_kmh=50.04,
            course=359.95, hdop=0.8, sats=11, radio=None)
    m = contract.position_message(NODE, UnitPosition("R2-01", f))
    p = json.loads(m.payload)
    assert m.topic == f"{NODE}/unit/R2-01/position" and m.retain and m.qos == 1
    assert set(p) >= {"unit", "lat", "lon", "time", "received", "speed_kmh", "course", "hdop", "sats", "fix", "source", "msg_id"}
    assert p["lat"] == -0.1234568 and p["time"] == "2026-11-22T07:00:00.000Z" and p["received"] == "2026-11-22T07:00:00.040Z"
    assert p["fix"] == "3d" and p["source"] == "gps1" and p["msg_id"] == m.msg_id


def test_a_corrupt_database_is_quarantined_not_deleted(tmp_path: Path) -> None:
    """D4: bytes overwritten in the page area while the daemon was stopped."""
    path = tmp_path / "alkomd.db"
    s = Store(path)
    s.record([], [Message(f"m{i}", "device_status", "t/x", "{}" * 200, 1, True) for i in range(200)], T0)
    s.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    s.close()
    size = path.stat().st_size
    with path.open("r+b") as fh:  # leave the header (page 1) intact, smash pages further in
        fh.seek(4096 * 2)
        fh.write(b"\xde\xad\xbe\xef" * 2048)
    corrupt_bytes = path.read_bytes()
    s2 = Store(path)
    assert s2.quarantined is not None and s2.quarantined.read_bytes() == corrupt_bytes
    assert s2.quarantined.name.startswith("alkomd.db.corrupt-") and size > 0
    assert s2.schema_version == len(MIGRATIONS) and s2.outbox_depth() == 0  # a fresh database that works
    s2.record([], [Message("after", "device_status", "t/x", "{}", 1, True)], T0)
    assert s2.outbox_depth() == 1
    s2.close()
    assert Store(path).quarantined is None  # a sound database stays where it is


def test_the_unsent_byte_figure_counts_the_audit_anchor_too(tmp_path: Path) -> None:
    """The anchor message queued with every audited transaction is counted in unsent_bytes like any other (it was
    not, and acknowledging it drove the figure below zero)."""
    from alkomd.daemon.store.audit import AuditEntry

    s = Store(tmp_path / "a.db")
    s.anchor = lambda head: contract.audit_head_message(NODE, head)
    s.record([], [], T0, [AuditEntry(T0, "call.received", "C-1", "", "{}")])
    (size,) = s.conn.execute("SELECT coalesce(sum(length(CAST(payload AS BLOB))), 0) FROM outbox WHERE sent IS NULL").fetchone()
    assert size > 0 and s.unsent_bytes == size
    s.mark_sent([i for (i,) in s.conn.execute("SELECT id FROM outbox")], T0)
    assert s.unsent_bytes == 0
    s.close()

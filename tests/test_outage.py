"""The long-outage policy (matrix row B6): the outbox disk budget thins old position messages, nothing else.

Store-level tests run the real thinning code on real SQLite files; the last test runs the daemon
as a process with a tiny budget, the broker killed, and fast GPS feeds through ptys.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Daemon, Feeder, Station, Subscriber, wait_until
from helpers_faults import configure, unsent_bytes

from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.daemon.mqtt import contract
from alkomd.daemon.records import Fix, UnitPosition
from alkomd.daemon.store import budget as outbox_budget
from alkomd.daemon.store.budget import CHECK_S, STEPS_S, OutboxBudget
from alkomd.daemon.store.database import Message, Store
from alkomd.drivers.simulator import PtyGps

T0 = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)
NODE = "polri110/gorontalo/bone-bolango"
UNITS = ("R2-01", "R2-02", "R2-03")
NEVER_THINNED = ("call_state", "alert", "escalation", "call_handoff", "unit_status", "device_status", "emergency",
                 "unit_status_set")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "alkomd.db", synchronous="normal")  # FULL fsyncs each of the many transactions
    yield s
    s.close()


def position(unit: str, second: int) -> tuple[UnitPosition, Message]:
    t = T0 + timedelta(seconds=second)
    up = UnitPosition(unit, Fix(f"gps-{unit}", t, 0.55 + second * 1e-6, 123.05, 3, t, float(second), speed_kmh=40.0))
    return up, contract.position_message(NODE, up)


def other(kind: str, n: int) -> Message:
    """A message of a kind that must never be thinned (a call state, an alert, a status ...)."""
    body = json.dumps({"kind": kind, "n": n, "note": "Jl. Nani Wartabone, depan Masjid é", "msg_id": f"{kind}-{n}"}, ensure_ascii=False)
    return Message(f"{kind}-{n}", kind, f"{NODE}/test/{kind}/{n}", body, 1, kind.endswith("status"))


def fill(store: Store, seconds: int, every_other: int = 20) -> tuple[list[str], dict[str, str]]:
    """Positions of every unit, one a second of fix time, with other messages in between.

    Returns the other messages' ids and the newest position msg_id per unit.
    """
    others: list[str] = []
    newest: dict[str, str] = {}
    for start in range(0, seconds, 60):  # a minute per transaction (the order of ids is that of a live station)
        batch: list[tuple[UnitPosition, Message | None]] = []
        extra: list[Message] = []
        for s in range(start, min(start + 60, seconds)):
            batch += [position(u, s) for u in UNITS]
            if s % every_other == 0:
                extra.append(other(NEVER_THINNED[s // every_other % len(NEVER_THINNED)], s))
        store.record(batch, extra, T0 + timedelta(seconds=start))
        others += [m.msg_id for m in extra]
        newest.update({up.unit: m.msg_id for up, m in batch if m is not None})
    return others, newest


def sql_unsent_bytes(store: Store) -> int:
    return int(store.conn.execute("SELECT coalesce(sum(length(CAST(payload AS BLOB))), 0) FROM outbox WHERE sent IS NULL").fetchone()[0])


def unsent(store: Store) -> list[tuple[int, str, str, str]]:
    """(id, msg_id, kind, topic) of every unsent row, oldest first."""
    return list(store.conn.execute("SELECT id, msg_id, kind, topic FROM outbox WHERE sent IS NULL ORDER BY id"))


def slot_counts(store: Store, step: int, upto_id: int) -> Counter[tuple[str, int]]:
    rows = store.conn.execute(
        "SELECT topic, json_extract(payload, '$.time') FROM outbox WHERE sent IS NULL AND kind = 'position' AND id <= ?",
        (upto_id,),
    )
    return Counter((topic, int(datetime.fromisoformat(t).timestamp()) // step) for topic, t in rows)


def thin(store: Store, budget: int, protected: set[int] | None = None) -> OutboxBudget:
    b = OutboxBudget(store, lambda: budget, lambda: set(protected or ()))
    asyncio.run(b.thin_round())
    return b


def test_unsent_bytes_is_a_running_sum_of_unsent_payload_bytes(tmp_path: Path, store: Store) -> None:
    """The figure the budget uses equals SQL's sum over unsent payloads (UTF-8) after every kind of write."""
    fill(store, 200)
    assert store.unsent_bytes == sql_unsent_bytes(store) > 0
    rows = unsent(store)
    store.mark_sent([r[0] for r in rows[:50]], T0)
    store.mark_sent([r[0] for r in rows[40:60]], T0)  # some twice: a duplicate PUBACK
    assert store.unsent_bytes == sql_unsent_bytes(store)
    thinned, freed = store.thin([r[0] for r in rows])  # asks for everything: only unsent positions go
    assert store.unsent_bytes == sql_unsent_bytes(store)
    assert thinned == sum(1 for r in rows[60:] if r[2] == "position") and freed > 0
    left = unsent(store)
    assert {r[1] for r in left} == {r[1] for r in rows[60:] if r[2] != "position"}  # every other kind stayed
    assert store.conn.execute("SELECT count(*) FROM outbox WHERE sent IS NOT NULL").fetchone()[0] == 60
    assert store.conn.execute("SELECT count(*) FROM positions").fetchone()[0] == 600  # the history is whole
    store.close()
    again = Store(tmp_path / "alkomd.db")
    assert again.unsent_bytes == sql_unsent_bytes(again) and "é" in again.unsent(1000)[-1].message.payload
    again.close()


def test_a_round_thins_old_positions_oldest_first_to_one_a_minute_and_keeps_everything_else(store: Store) -> None:
    """Pass criterion: unsent bytes <= budget; 0 non-position messages removed; the newest position of each
    unit kept; the removed rows are the oldest (a contiguous recent tail stays at full resolution) and
    the thinned part keeps exactly one position per unit and minute; the history keeps all 3 x 1800 fixes."""
    others, newest = fill(store, 1800)
    before = {r[1]: r for r in unsent(store)}
    total = store.unsent_bytes
    budget = total // 2
    b = thin(store, budget)
    after = {r[1]: r for r in unsent(store)}
    assert store.unsent_bytes <= budget and store.unsent_bytes == sql_unsent_bytes(store)
    assert set(others) <= set(after) and set(newest.values()) <= set(after)
    removed = set(before) - set(after)
    assert removed and all(before[m][2] == "position" for m in removed)
    assert b.thinned_rows == len(removed) and b.rounds == 1
    last_removed = max(before[m][0] for m in removed)
    assert all(m in after for m, r in before.items() if r[0] > last_removed)  # the recent tail is untouched
    counts = slot_counts(store, STEPS_S[0], last_removed)
    assert counts and max(counts.values()) == 1
    assert store.conn.execute("SELECT count(*) FROM positions").fetchone()[0] == 3 * 1800


def test_when_a_minute_is_not_enough_the_oldest_go_to_coarser_steps(store: Store) -> None:
    """3 units x 4 h of 1 s fixes against a budget one-a-minute cannot meet: 5-minute (and coarser) slots follow."""
    others, newest = fill(store, 4 * 3600, every_other=600)
    per_minute = 3 * 4 * 60 * len(store.unsent(1)[0].message.payload)
    b = thin(store, per_minute // 2)
    assert store.unsent_bytes <= per_minute // 2
    kept = {r[1] for r in unsent(store)}
    assert set(others) <= kept and set(newest.values()) <= kept
    oldest_third = store.conn.execute("SELECT max(id) FROM outbox WHERE kind = 'position'").fetchone()[0] // 3
    counts = slot_counts(store, STEPS_S[1], oldest_third)
    assert max(counts.values()) == 1, "the oldest backlog keeps one position per 5 minutes per unit"
    assert b.thinned_rows == 3 * 4 * 3600 - sum(1 for r in unsent(store) if r[2] == "position")


def test_messages_that_are_never_thinned_may_keep_the_outbox_over_budget(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """A budget smaller than the calls, alerts and statuses alone: they all stay, positions go down to one an
    hour plus the newest of each unit, the error is logged once (not at every round)."""
    others, newest = fill(store, 2 * 3600, every_other=2)
    non_position = sum(len(other(k, 0).payload) for k in NEVER_THINNED)  # a lower bound is enough here
    caplog.set_level(logging.INFO, logger="alkomd.daemon.store.budget")
    b = OutboxBudget(store, lambda: non_position, set)
    first = asyncio.run(b.thin_round())
    second = asyncio.run(b.thin_round())
    assert not first.under_budget and first.step_s == STEPS_S[-1] and second.rows == 0
    kept = unsent(store)
    assert set(others) <= {r[1] for r in kept} and set(newest.values()) <= {r[1] for r in kept}
    positions = [r for r in kept if r[2] == "position"]
    assert len(positions) <= 3 * (2 + 1)  # one per unit and hour (two hours), plus the newest
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "never thinned" in errors[0].getMessage()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "thinned" in warnings[0].getMessage()  # one line per round that did something


def test_rows_in_flight_are_left_alone(store: Store) -> None:
    fill(store, 600)
    rows = [r[0] for r in unsent(store) if r[2] == "position"][:40]  # the oldest: first in line to go
    thin(store, store.unsent_bytes // 4, protected=set(rows))
    left = {r[0] for r in unsent(store)}
    assert set(rows) <= left


def test_a_position_row_that_is_not_json_is_left_alone_and_the_rest_is_thinned(store: Store) -> None:
    """A "position" row whose payload is not JSON (not one this daemon wrote) stays, and the others are thinned as
    usual (json_extract failed the whole query on it: no round could ever run again)."""
    store.record([], [Message("odd-1", "position", f"{NODE}/unit/R2-01/position", "{not json", 1, True)], T0)
    fill(store, 600)
    budget = store.unsent_bytes // 2
    b = thin(store, budget)
    assert b.thinned_rows > 0 and store.unsent_bytes <= budget
    assert "odd-1" in {r[1] for r in unsent(store)}


def test_the_budget_task_outlives_a_failing_round_and_logs_it_once(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Rounds that raise (here: the in-flight ids cannot be read) are logged once, not at every check, and the task
    goes on: once they work again the outbox is thinned under its budget, and that is logged too."""
    monkeypatch.setattr(outbox_budget, "CHECK_S", 0.05)
    fill(store, 600)
    budget = store.unsent_bytes // 2
    broken = [True]

    def in_flight() -> set[int]:
        if broken[0]:
            raise RuntimeError("in-flight ids unavailable")
        return set()

    b = OutboxBudget(store, lambda: budget, in_flight)
    caplog.set_level(logging.INFO, logger="alkomd.daemon.store.budget")

    async def main() -> None:
        task = asyncio.create_task(b.run())
        while not any("thinning failed" in r.getMessage() for r in caplog.records) and not task.done():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # several more checks, all failing
        assert not task.done()
        broken[0] = False
        while not any("works again" in r.getMessage() for r in caplog.records) and not task.done():
            await asyncio.sleep(0.01)
        assert not task.done()
        task.cancel()

    asyncio.run(asyncio.wait_for(main(), 60))
    failed = [r for r in caplog.records if "thinning failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is not None
    assert b.thinned_rows > 0 and store.unsent_bytes <= budget


def test_a_round_yields_to_the_loop_between_transactions(store: Store) -> None:
    """Fixes keep being stored while a round runs: the loop turns between two bounded transactions."""
    fill(store, 3000, every_other=100)
    ticks = 0

    async def main() -> None:
        nonlocal ticks
        b = OutboxBudget(store, lambda: store.unsent_bytes // 10, set)
        task = asyncio.create_task(b.thin_round())
        while not task.done():
            ticks += 1
            await asyncio.sleep(0)
        assert task.result().rows > 1000

    asyncio.run(main())
    assert ticks >= 3


def test_the_budget_is_a_strict_config_key_and_reaches_the_store_config(tmp_path: Path) -> None:
    from alkomd.daemon.config import parse
    from alkomd.daemon.schema import ConfigError

    cfg = parse({"node": {"path": "gorontalo/bone-bolango"}}, tmp_path / "a.toml")
    assert cfg.store.outbox_budget_mb == 500.0 and cfg.store.outbox_budget_bytes == 500_000_000
    assert parse({"node": {"path": "x"}, "store": {"outbox_budget_mb": 2}}, tmp_path / "a.toml").store.outbox_budget_bytes == 2_000_000
    with pytest.raises(ConfigError, match=r"store\.outbox_budget_mb"):
        parse({"node": {"path": "x"}, "store": {"outbox_budget_mb": 0}}, tmp_path / "a.toml")
    with pytest.raises(ConfigError, match=r"store\.outbox_budget_mb"):
        parse({"node": {"path": "x"}, "store": {"outbox_budget_mb": "500"}}, tmp_path / "a.toml")


# -- the daemon as a process -----------------------------------------------------------------------

BUDGET_MB = 0.06
FIXES_PER_UNIT = 300


def test_b6_long_outage_with_a_tiny_budget_loses_no_call_status_or_newest_position(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    """B6. Broker SIGKILLed, 3 units fed fast (3 x 300 fixes) with pauses that make devices silent and
    units offline, `outbox_budget_mb = 0.06`.

    Pass criteria: the sampled unsent bytes never exceed the budget + 2 x CHECK_S x the feed's byte
    rate, and are <= the budget once the feed stops; every non-position message is kept; the newest
    position of every unit is kept; history rows = fixes fed (900); after the broker returns every
    kept message reaches the consumer (non-position lost: 0) and health reports the thinned count.
    """
    configure(
        station, devices=3, store=f"outbox_budget_mb = {BUDGET_MB}\n",
        extra="[availability]\nmissed_reports = 2\ninterval_car_s = 0.5\n",
    )
    sub = subscriber_factory(broker.port)
    pads = [ptys(link) for link in station.links]
    d = daemons(station.config)
    wait_until(lambda: len({m.topic for m in sub.on("/status") if "/device/" in m.topic}) == 3, what="3 devices open")
    feeds = [Feeder(p, lat=0.54 + i / 100) for i, p in enumerate(pads)]
    for f in feeds:
        f.write(1)
    wait_until(lambda: len({m.topic for m in sub.on("/position")}) == 3, what="a first position of each unit")
    broker.kill()

    budget = int(BUDGET_MB * 1_000_000)
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(unsent_bytes(station))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    for i in range(1, FIXES_PER_UNIT):
        for n, f in enumerate(feeds):
            if not (i % 100 in range(30, 90) and i // 100 == n):  # unit n pauses once, for 60 rounds (> 3 s)
                f.write(1)
        time.sleep(0.05)
    feed_s = time.monotonic() - started
    fed = sum(len(f.times) for f in feeds)
    rate = fed * 300 / feed_s  # bytes/s of position payload (a position is < 300 bytes)
    time.sleep(2 * CHECK_S + 1)  # the last round has run
    stop.set()
    sampler.join()
    assert max(samples) <= budget + 2 * CHECK_S * rate, (max(samples), budget, rate)
    assert unsent_bytes(station) <= budget

    assert station.query("SELECT count(*) FROM positions")[0][0] == fed
    kept = station.query("SELECT msg_id, kind FROM outbox WHERE sent IS NULL")
    kept_ids = {m for m, _ in kept}
    non_position = {m for m, k in kept if k != "position"}
    kinds = Counter(k for _, k in kept)
    assert kinds["device_status"] >= 6 and kinds["unit_status"] >= 6, kinds  # silent/offline and back, per unit
    for unit in ("R2-00", "R2-01", "R2-02"):
        (newest,) = station.query("SELECT msg_id FROM positions WHERE unit = ? ORDER BY time DESC LIMIT 1", (unit,))
        assert newest[0] in kept_ids, f"the newest position of {unit} was thinned"
    thinned = fed - station.query("SELECT count(*) FROM outbox WHERE kind = 'position'")[0][0]
    assert thinned > 0 and "thinned" in d.log

    broker.restart()
    wait_until(lambda: kept_ids <= {m.payload.get("msg_id") for m in sub.messages}, 60, "every kept message delivered")
    got = {m.payload.get("msg_id") for m in sub.messages}
    assert not non_position - got
    wait_until(lambda: any(m.payload.get("outbox_depth") == 0 for m in sub.on("/health")), 30, "a health after draining")
    health = [m.payload for m in sub.on("/health") if m.payload.get("outbox_depth") == 0][-1]
    assert health["outbox_bytes"] == 0 and health["outbox_thinned"] == thinned
    print(f"\nB6: fed {fed} fixes in {feed_s:.1f} s, budget {budget} B, max unsent {max(samples)} B, "
          f"thinned {thinned}, kept {len(kept_ids)} ({len(non_position)} non-position), all delivered")


def test_the_helper_measures_what_the_daemon_limits(tmp_path: Path, store: Store) -> None:
    """The e2e test's own measure equals the store's running figure (so its pass criterion means something)."""
    fill(store, 30)
    assert unsent_bytes(Station(tmp_path, 0)) == store.unsent_bytes > 0

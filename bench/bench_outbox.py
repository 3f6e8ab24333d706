#!/usr/bin/env python3
"""Outbox disk budget: how big a long outage gets, what the budget keeps of it, and what thinning costs.

Prints:
1. the payload and on-disk size of one position message (median over realistic fixes), and what
   a busy Polres (500 units every 10 s) adds to the outbox per day while its broker is away;
2. a week-long outage of that station against the default budget (500 MB), run through the real
   thinning code on a real SQLite file (one unit against budget/500: units are thinned
   independently, so this is the same policy at 1/500 of the size): the unsent megabytes and the
   positions kept per unit and hour, by age;
3. the cost of a thinning round on a 300,000-message backlog: rows/s, and the longest time the
   event loop waits for one bounded transaction (a ticker task measures the gaps);
4. the cost of keeping the running byte figure on the acknowledgement path (mark_sent of a
   20-message window) against a plain UPDATE, interleaved, median of per-repeat ratios;
5. how fast the daemon drains a 20,000-message backlog into a private mosquitto on loopback once
   the broker is back (the upper bound; over a WAN the in-flight window / round-trip time bounds it).

    python bench/bench_outbox.py [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
from benchlib import Daemon, Mosquitto, daemon_config, dump_json, machine, median, table
from paho.mqtt.enums import CallbackAPIVersion

from alkomd.daemon.config import StoreConfig
from alkomd.daemon.mqtt import contract
from alkomd.daemon.records import Fix, UnitPosition
from alkomd.daemon.store.budget import STEPS_S, OutboxBudget
from alkomd.daemon.store.database import Message, Store

NODE = "polri110/gorontalo/bone-bolango"
T0 = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
UNITS = 500
PERIOD_S = 10
DAY = 86400


def fix_message(rng: random.Random, unit: int, t: datetime) -> tuple[UnitPosition, Message]:
    relayed = unit % 3 == 0  # a third of the units are handhelds heard through a base radio
    f = Fix(
        device="base-radio" if relayed else f"car{unit}-gps", time=t, lat=0.5 + rng.uniform(-0.3, 0.3),
        lon=123.0 + rng.uniform(-0.5, 0.5), mode=3, received=t + timedelta(milliseconds=rng.randint(20, 900)),
        received_mono=0.0, alt=round(rng.uniform(0, 400), 1), speed_kmh=rng.uniform(0, 90), course=rng.uniform(0, 360),
        hdop=rng.uniform(0.6, 3), sats=rng.randint(5, 14), radio=f"100-{1000 + unit}" if relayed else None,
    )
    up = UnitPosition(f"R2-{unit:03d}", f)
    return up, contract.position_message(NODE, up)


def sizes(tmp: Path, rng: random.Random, n: int = 60_000) -> dict[str, float]:
    """Payload bytes, and on-disk bytes of the outbox (table + indexes) per unsent position message."""
    store = Store(tmp / "sizes.db", synchronous="normal")
    payloads = []
    for start in range(0, n, 1000):
        batch = [fix_message(rng, i % UNITS, T0 + timedelta(seconds=PERIOD_S * (i // UNITS))) for i in range(start, start + 1000)]
        payloads += [len(m.payload.encode()) for _, m in batch]
        store.record(batch, [], T0)
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = dict(store.conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
    store.close()
    outbox = sum(v for k, v in pages.items() if k == "outbox" or k.startswith("outbox_"))
    history = sum(v for k, v in pages.items() if k == "positions" or k.startswith("positions_"))
    return {"payload_median": median(payloads), "payload_max": max(payloads), "outbox_disk_per_row": outbox / n,
            "history_disk_per_row": history / n}


def week(tmp: Path, rng: random.Random, budget_mb: float) -> dict[str, object]:
    """One unit's week-long outage against budget/UNITS, through the real thinning code."""
    store = Store(tmp / "week.db", synchronous="normal")
    budget = OutboxBudget(store, lambda: int(budget_mb * 1e6 / UNITS), set)
    per_hour = 3600 // PERIOD_S
    rounds = 0
    peak = 0
    for hour in range(7 * 24):
        batch = [fix_message(rng, 1, T0 + timedelta(seconds=hour * 3600 + PERIOD_S * k)) for k in range(per_hour)]
        store.record(batch, [], T0)
        peak = max(peak, store.unsent_bytes)
        if budget.over():  # the daemon checks every 2 s; an hour at a time only makes the peaks higher
            asyncio.run(budget.thin_round())
            rounds += 1
    kept = [datetime.fromisoformat(t) for (t,) in store.conn.execute(
        "SELECT json_extract(payload, '$.time') FROM outbox WHERE sent IS NULL AND kind = 'position'")]
    unsent = store.unsent_bytes
    store.close()
    end = T0 + timedelta(days=7)
    by_age: dict[str, float] = {}
    for label, lo, hi in (("last 6 h", 0, 6), ("6-24 h", 6, 24), ("day 2", 24, 48), ("days 3-4", 48, 96), ("days 5-7", 96, 168)):
        n = sum(1 for t in kept if lo * 3600 <= (end - t).total_seconds() < hi * 3600)
        by_age[label] = n / (hi - lo)
    return {"unsent_mb_500_units": unsent * UNITS / 1e6, "peak_mb_500_units": peak * UNITS / 1e6, "rounds": rounds,
            "positions_per_unit_hour_by_age": by_age, "raw_mb_500_units": 7 * 24 * per_hour * UNITS * 270 / 1e6}


def round_cost(tmp: Path, rng: random.Random, n: int = 300_000) -> dict[str, float]:
    store = Store(tmp / "round.db", synchronous="full")
    for start in range(0, n, 5000):
        store.record([fix_message(rng, i % 50, T0 + timedelta(seconds=i // 50)) for i in range(start, start + 5000)], [], T0)
    gaps: list[float] = []

    async def main() -> tuple[int, float]:
        budget = OutboxBudget(store, lambda: store.unsent_bytes // 10, set)
        task = asyncio.create_task(budget.thin_round())
        last = time.perf_counter()
        t0 = last
        while not task.done():
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
        return task.result().rows, time.perf_counter() - t0

    rows, elapsed = asyncio.run(main())
    store.close()
    return {"backlog": n, "rows_thinned": rows, "seconds": elapsed, "rows_per_s": rows / elapsed,
            "longest_loop_wait_ms": max(gaps) * 1000, "median_loop_wait_ms": median(gaps) * 1000}


def ack_cost(tmp: Path, rng: random.Random, repeats: int) -> dict[str, float]:
    """mark_sent of 20 ids (one UPDATE ... RETURNING the bytes freed) against the plain UPDATE it replaced."""
    store = Store(tmp / "ack.db", synchronous="full")
    n = 20 * 200 * repeats * 2
    for start in range(0, n, 5000):
        store.record([fix_message(rng, i % 50, T0 + timedelta(seconds=i)) for i in range(start, start + 5000)], [], T0)
    ids = [r[0] for r in store.conn.execute("SELECT id FROM outbox ORDER BY id")]
    windows = [ids[i : i + 20] for i in range(0, len(ids), 20)]
    plain: list[float] = []
    ours: list[float] = []
    ratios: list[float] = []
    stamp = "2026-11-22T00:00:00.000Z"
    for r in range(repeats):
        a = windows[r * 400 : r * 400 + 200]
        b = windows[r * 400 + 200 : r * 400 + 400]
        t0 = time.perf_counter()
        for w in a:
            with store.db.atomic():
                store.conn.executemany("UPDATE outbox SET sent = ? WHERE id = ?", [(stamp, i) for i in w])
        t1 = time.perf_counter()
        for w in b:
            store.mark_sent(w, T0)
        t2 = time.perf_counter()
        plain.append((t1 - t0) / len(a) * 1e6)
        ours.append((t2 - t1) / len(b) * 1e6)
        ratios.append(ours[-1] / plain[-1])
    store.close()
    return {"plain_update_us": median(plain), "mark_sent_us": median(ours), "ratio": median(ratios)}


def drain(tmp: Path, rng: random.Random, n: int = 20_000) -> dict[str, float]:
    """Seconds for the daemon to empty an outbox of n position messages into a broker with a consumer."""
    db = tmp / "drain.db"
    store = Store(db, synchronous="full")
    for start in range(0, n, 5000):
        store.record([fix_message(rng, i % 50, T0 + timedelta(seconds=i)) for i in range(start, start + 5000)], [], T0)
    store.close()
    got = 0
    with Mosquitto(tmp) as broker:
        consumer = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-consumer")

        def on_message(c: paho.Client, u: object, m: paho.MQTTMessage) -> None:
            nonlocal got
            got += 1

        consumer.on_message = on_message
        consumer.connect("127.0.0.1", broker.port)
        consumer.subscribe("polri110/#", qos=1)
        consumer.loop_start()
        time.sleep(0.5)
        d = Daemon(daemon_config(tmp / "drain.toml", db, broker.port, [], [])).start()
        d.wait_ready()
        if not d.wait_line("mqtt: connected", 15):
            raise RuntimeError("daemon did not connect:\n" + d.log_tail())
        t0 = time.perf_counter()
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        while con.execute("SELECT count(*) FROM outbox WHERE sent IS NULL").fetchone()[0] > 0:
            time.sleep(0.05)
            if time.perf_counter() - t0 > 600:
                raise RuntimeError("drain did not finish in 10 min")
        elapsed = time.perf_counter() - t0
        con.close()
        d.stop()
        consumer.loop_stop()
    return {"messages": n, "seconds": elapsed, "msgs_per_s": n / elapsed, "received": got}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rng = random.Random(110)
    budget_mb = StoreConfig().outbox_budget_mb
    with tempfile.TemporaryDirectory(prefix="alkomd-bench-outbox-", dir="/tmp") as d:
        tmp = Path(d)
        s = sizes(tmp, rng)
        w = week(tmp, rng, budget_mb)
        rc = round_cost(tmp, rng)
        ac = ack_cost(tmp, rng, args.repeats)
        dr = drain(tmp, rng)
    per_day = UNITS * DAY / PERIOD_S
    result = {"machine": machine(), "sizes": s, "per_day_500_units": {
        "messages": per_day, "payload_mb": per_day * s["payload_median"] / 1e6,
        "outbox_disk_mb": per_day * s["outbox_disk_per_row"] / 1e6, "history_disk_mb": per_day * s["history_disk_per_row"] / 1e6,
        "days_to_reach_default_budget": budget_mb * 1e6 / (per_day * s["payload_median"])},
        "week_outage_default_budget": w, "round": rc, "ack": ac, "drain": dr, "budget_mb": budget_mb, "steps_s": STEPS_S}
    if args.json:
        print(dump_json(result))
        return 0
    pd = result["per_day_500_units"]
    print(f"position message: payload {s['payload_median']:.0f} B median ({s['payload_max']} max); on disk "
          f"{s['outbox_disk_per_row']:.0f} B per unsent row (outbox table + indexes), "
          f"{s['history_disk_per_row']:.0f} B per history row")
    print(f"500 units every 10 s, per day of outage: {pd['messages']:,.0f} messages, {pd['payload_mb']:,.0f} MB payload, "
          f"{pd['outbox_disk_mb']:,.0f} MB outbox on disk (+{pd['history_disk_mb']:,.0f} MB of history, kept anyway); "
          f"the {budget_mb:.0f} MB budget is reached after {pd['days_to_reach_default_budget'] * 24:.1f} h")
    print(f"\nweek-long outage, 500 units, budget {budget_mb:.0f} MB (raw {w['raw_mb_500_units']:,.0f} MB): "
          f"{w['unsent_mb_500_units']:.0f} MB unsent at the end, peak {w['peak_mb_500_units']:.0f} MB, {w['rounds']} rounds")
    ages = w["positions_per_unit_hour_by_age"]
    assert isinstance(ages, dict)
    print(table(["age of the fix", "positions kept per unit and hour"], [[k, f"{v:.1f}"] for k, v in ages.items()]))
    print(f"\nthinning round on a {rc['backlog']:,} message backlog: {rc['rows_thinned']:,.0f} rows in {rc['seconds']:.2f} s "
          f"({rc['rows_per_s']:,.0f} rows/s); longest wait of the event loop {rc['longest_loop_wait_ms']:.1f} ms, "
          f"median {rc['median_loop_wait_ms']:.2f} ms")
    print(f"ack path: mark_sent of 20 ids {ac['mark_sent_us']:.0f} us vs plain UPDATE {ac['plain_update_us']:.0f} us: "
          f"ratio {ac['ratio']:.2f} (median of {args.repeats} interleaved repeats, synchronous=full)")
    print(f"drain after the outage, loopback mosquitto, inflight 20: {dr['messages']:,.0f} messages in {dr['seconds']:.1f} s "
          f"({dr['msgs_per_s']:,.0f} msg/s); the default budget holds about {budget_mb * 1e6 / s['payload_median']:,.0f} "
          f"messages: {budget_mb * 1e6 / s['payload_median'] / dr['msgs_per_s'] / 60:.0f} min at this rate, "
          f"{budget_mb * 1e6 / s['payload_median'] / 200 / 3600:.1f} h at 200 msg/s (20 in flight, 100 ms round trip)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

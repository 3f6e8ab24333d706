"""Central history: how fast alkomd-history workers store the positions of the units below, one worker and two.

Setup: a private mosquitto with the central broker's in-flight window (max_inflight_messages 100,
as config/mosquitto/central.conf); W history workers of a Polda (real `alkomd-history`
processes sharing `$share/alkomd-history-.../unit/+/position`) and, as the baseline in the same
run, a bare paho subscriber process on the same topics at QoS 1 that does nothing but
`json.loads`. A publisher process floods N positions of U units as fast as it can. Measured: the
time until the history file holds all N (and the bare subscriber got all N), the positions
stored per second, and the CPU each side spent per position (user + system, /proc), as a ratio
to the bare subscriber. Goal (issue 15, part 4): the history keeps up with Mabes's peak of
10,000 positions a second on a few workers, and nothing is lost or stored twice.

    python bench/bench_history.py [--positions 60000] [--units 5000] [--workers 1,2] [--dsn DSN] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import VENV_BIN, Mosquitto, dump_json, machine, proc_cpu_s, stop_pid, table

POLDA = "polri110/gorontalo"


def client(port: int, cid: str) -> paho.Client:
    c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=cid, protocol=MQTTProtocolVersion.MQTTv5)
    c.connect("127.0.0.1", port)
    return c


def bare(port: int, ready: Any, count: Any) -> None:
    """The baseline: subscribe to the same positions at QoS 1 and only decode them."""
    c = client(port, "bench-bare")
    n = [0]

    def on(cl: paho.Client, ud: object, m: paho.MQTTMessage) -> None:
        json.loads(m.payload)
        n[0] += 1
        if n[0] % 500 == 0:
            count.value = n[0]

    c.on_message = on
    c.subscribe(f"{POLDA}/+/unit/+/position", qos=1)
    ready.set()
    while True:
        c.loop(0.05)
        count.value = n[0]


def flood(port: int, units: int, n: int, tag: str) -> None:
    c = client(port, f"bench-flood-{tag}")
    c.loop_start()
    last = None
    for i in range(n):
        unit = f"U{i % units:05d}"
        t = f"2026-12-07T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z"
        body = {"unit": unit, "lat": -6.2 + (i % 1000) / 10000, "lon": 106.8 + (i % 777) / 10000, "time": t, "received": t,
                "speed_kmh": 30.0, "course": 90.0, "hdop": 1.0, "sats": 9, "fix": "3d", "source": "bench", "msg_id": f"{tag}-{i}",
                "alt": None}
        last = c.publish(f"{POLDA}/p{i % 20:02d}/unit/{unit}/position", json.dumps(body), qos=1)
        if i % 2000 == 1999:
            last.wait_for_publish(60)
    if last is not None:
        last.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()


class History:
    """Reads the history the workers write: the SQLite file, or PostgreSQL (`dsn`)."""

    def __init__(self, db: Path, dsn: str) -> None:
        self.db, self.dsn = db, dsn
        if dsn:  # a fresh table for this run
            import psycopg

            with psycopg.connect(dsn, autocommit=True) as pg:
                pg.execute("DROP TABLE IF EXISTS below_positions")

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.dsn:
            import psycopg

            try:
                with psycopg.connect(self.dsn, autocommit=True) as pg:
                    return pg.execute(sql).fetchall()  # type: ignore[arg-type]
            except psycopg.errors.UndefinedTable:
                return []
        try:
            conn = sqlite3.connect(self.db, timeout=10)
            try:
                return conn.execute(sql).fetchall()
            finally:
                conn.close()
        except sqlite3.OperationalError:
            return []

    def stored(self, tag: str) -> int:
        got = self.rows(f"SELECT count(*) FROM below_positions WHERE msg_id LIKE '{tag}-%'")
        return int(got[0][0]) if got else 0


def run(workers: int, positions: int, units: int, work: Path, dsn: str) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    (work / f"broker-{workers}").mkdir()
    with Mosquitto(work / f"broker-{workers}", "max_inflight_messages 100\n") as broker:
        db = work / f"history-{workers}.db"
        history = History(db, dsn)
        cfg = work / f"polda-{workers}.toml"
        cfg.write_text(f'[node]\npath = "gorontalo"\ntier = "polda"\n[store]\npath = "{work}/polda.db"\nsynchronous = "full"\n'
                       f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\ntls = false\n[log]\nlevel = "warning"\n'
                       "[history]\n" + (f'dsn = "{dsn}"\n' if dsn else f'path = "{db}"\n'))
        procs = [subprocess.Popen([str(VENV_BIN / "alkomd-history"), "--config", str(cfg), "--name", f"w{k}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for k in range(workers)]
        ready, count = ctx.Event(), ctx.Value("q", 0)
        base = ctx.Process(target=bare, args=(broker.port, ready, count), daemon=True)
        base.start()
        ready.wait(30)
        # Shared subscriptions get no retained messages: warm up until every worker stored one.
        warm = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            flood(broker.port, units, 50, f"warm{warm}")
            warm += 1
            seen = history.rows("SELECT count(DISTINCT worker) FROM below_positions")
            if seen and seen[0][0] == workers:
                break
        time.sleep(0.5)
        c0 = [proc_cpu_s(p.pid) for p in procs]
        b0, n0 = proc_cpu_s(base.pid), count.value
        t0 = time.monotonic()
        pub = ctx.Process(target=flood, args=(broker.port, units, positions, "f"))
        pub.start()
        end = time.monotonic() + 600
        done_s = float("nan")
        while time.monotonic() < end:
            if history.stored("f") >= positions:
                done_s = time.monotonic() - t0
                break
            time.sleep(0.05)
        pub.join(60)
        while time.monotonic() < end and count.value - n0 < positions:
            time.sleep(0.05)
        cpu = sum(proc_cpu_s(p.pid) - c for p, c in zip(procs, c0, strict=True))
        bcpu = proc_cpu_s(base.pid) - b0
        got = history.stored("f")
        dupes = history.rows("SELECT count(*) - count(DISTINCT msg_id) FROM below_positions")[0][0]
        shares = [n for (n,) in history.rows("SELECT count(*) FROM below_positions WHERE msg_id LIKE 'f-%' GROUP BY worker")]
        for p in procs:
            stop_pid(p)
        base.kill()
    return {"workers": workers, "positions": positions, "stored": got, "lost": positions - got, "stored_twice": dupes,
            "shares": shares, "seconds": round(done_s, 2), "stored_per_s": round(got / done_s) if done_s == done_s else None,
            "worker_cpu_us_per_position": round(cpu / positions * 1e6, 1),
            "bare_cpu_us_per_position": round(bcpu / positions * 1e6, 1),
            "ratio": round(cpu / max(bcpu, 1e-9), 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positions", type=int, default=60_000)
    ap.add_argument("--units", type=int, default=5_000)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts, one run each")
    ap.add_argument("--dsn", default="", help="store in PostgreSQL (a libpq connection string) instead of an SQLite file; "
                    "its below_positions table is dropped before each run")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="alkomd-bench-history-") as tmp:
        results = [run(int(w), a.positions, a.units, Path(tmp), a.dsn) for w in a.workers.split(",")]
    if a.json:
        print(dump_json({"machine": machine(), "runs": results}))
        return 0
    where = "PostgreSQL" if a.dsn else "one SQLite file (synchronous=full)"
    print(f"\ncentral history: {a.positions:,} positions of {a.units:,} units flooded as fast as one publisher can, "
          f"stored by alkomd-history workers in {where}; baseline: a bare paho subscriber (json.loads) in the same run\n")
    rows = [[r["workers"], f"{r['stored']:,}", r["lost"], r["stored_twice"], "/".join(f"{s:,}" for s in r["shares"]),
             r["seconds"], f"{r['stored_per_s'] or 0:,}", r["worker_cpu_us_per_position"], r["bare_cpu_us_per_position"],
             f"{r['ratio']}x"] for r in results]
    print(table(["workers", "stored", "lost", "twice", "shares", "s", "stored/s", "worker CPU us/pos", "bare CPU us/pos",
                 "ratio"], rows))
    print("\nmachine:", json.dumps(machine()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Fault matrix, disk rows D1 and D3 against the daemon as a process (D4: tests/test_station_e2e.py and
tests/test_store_station.py; D2, D5: docs/fault-matrix.md says why they are not automated here).

D1 SIGKILLs the daemon at random moments while two units stream; D3 makes the filesystem refuse
to grow the database's files (RLIMIT_FSIZE on the running daemon: writes beyond the limit fail
with EFBIG, which SQLite reports as a disk I/O error) and then gives the space back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import resource
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import NODE, Daemon, Feeder, Station, Subscriber, wait_until
from helpers_faults import FeedThread, configure, outbox_ids, received_ids

from alkomd.daemon.config import parse
from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.daemon.mqtt.publisher import Publisher
from alkomd.daemon.positions import batch as batch_mod
from alkomd.daemon.positions import station as station_mod
from alkomd.daemon.records import Fix, RadioStatus
from alkomd.daemon.store.database import Store
from alkomd.drivers.simulator import PtyGps


def integrity(db: Path) -> str:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return str(con.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        con.close()


def audit_verify(db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", "audit", "verify", "--db", str(db)],
                          capture_output=True, text=True, timeout=60)


def contiguous(station: Station, table: str) -> bool:
    n, lo, hi = station.query(f"SELECT count(*), min(id), max(id) FROM {table}")[0]
    return n == 0 or n == hi - lo + 1


class Dispatcher:
    """A dispatcher console setting unit R2-01 unavailable and available again every 0.25 s over MQTT
    (`status/set`): each change is an audit entry, written while the daemon is being killed (the
    broker keeps the requests for the daemon's persistent session while it is down)."""

    def __init__(self, sub: Subscriber) -> None:
        self.sub = sub
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            status = ("unavailable", "available")[self.sent % 2]
            body = json.dumps({"status": status, "by": "console-1"})
            self.sub.client.publish(f"{NODE}/unit/R2-01/status/set", body, qos=1)
            self.sent += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


KILLS = 10


def test_d1_sigkill_at_random_moments_while_writing_loses_no_commit(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    """D1. The daemon is SIGKILLed 10 times at random moments (0.2-1.5 s after it is ready) while
    two units stream 40 fixes/s each and a dispatcher sets R2-01 unavailable and back 4 times a
    second (each change is an audit entry).

    Pass criteria, after every kill: `PRAGMA integrity_check` = ok; every position, outbox row and
    audit entry that a reader saw committed just before the kill is still there (lost 0); ids
    have no gaps. At the end: `alkomctl audit verify` exits 0 and every outbox message reaches the
    consumer (lost 0).
    """
    configure(station, devices=2)
    sub = subscriber_factory(broker.port)
    pads = [ptys(link) for link in station.links]
    feeds = [Feeder(p, lat=0.54 + i / 100) for i, p in enumerate(pads)]
    rng = random.Random(61)
    d = daemons(station.config)
    stream = FeedThread(feeds, period_s=0.025).start()
    dispatcher = Dispatcher(sub)
    seen: dict[str, set[str]] = {"positions": set(), "outbox": set(), "audit": set()}
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.2, 1.5))
            snapshot = {
                "positions": {r[0] for r in station.query("SELECT msg_id FROM positions")},
                "outbox": outbox_ids(station),
                "audit": {r[0] for r in station.query("SELECT hash FROM audit")},
            }
            d.kill()
            assert integrity(station.db) == "ok"
            for table, ids in snapshot.items():
                seen[table] |= ids
            d = daemons(station.config)  # recovery happens on open
            for table, col in (("positions", "msg_id"), ("outbox", "msg_id"), ("audit", "hash")):
                now = {r[0] for r in station.query(f"SELECT {col} FROM {table}")}
                assert not seen[table] - now, f"committed {table} rows lost after a kill"
            assert contiguous(station, "positions") and contiguous(station, "audit")
    finally:
        fed = stream.stop()
        dispatcher.stop()
    verify = audit_verify(station.db)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    wait_until(lambda: station.query("SELECT count(*) FROM outbox WHERE sent IS NULL")[0][0] == 0, 60, "outbox drained")
    stored = outbox_ids(station)
    wait_until(lambda: stored <= set(received_ids(sub)), 60, "every committed message at the consumer")
    audits = station.query("SELECT count(*) FROM audit")[0][0]
    print(f"\nD1: {KILLS} SIGKILLs, integrity ok every time; {len(seen['positions'])} positions, {len(seen['outbox'])} "
          f"outbox rows and {len(seen['audit'])} audit entries seen committed before a kill, lost 0; {fed} fixes fed, "
          f"{len(stored)} messages delivered, {audits} audit entries verified")
    assert len(seen["audit"]) >= 10 and audits >= len(seen["audit"])


def test_d3_disk_full_keeps_records_in_memory_sends_nothing_twice_and_recovers(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    """D3. 20 positions wait in the outbox (broker down); then the database's files may not be written
    (RLIMIT_FSIZE on the daemon) while the broker comes back and 20 more fixes arrive; 4 s later
    the space is back.

    Pass criteria: the daemon keeps running; the write error is logged once by the station and
    once by the publisher; each acknowledged message reaches the consumer at most twice while its
    row cannot be marked sent (no resend loop); afterwards all 50 fixes are stored, integrity_check
    is ok, and every message reaches the consumer (lost 0).
    """
    configure(station)
    sub = subscriber_factory(broker.port)
    feed = Feeder(ptys(station.links[0]))
    d = daemons(station.config)
    wait_until(lambda: bool(sub.on("/device/gps0/status")), what="device open")
    feed.write(10, gap_s=0.02)
    wait_until(lambda: len(sub.on("/unit/R2-00/position")) == 10, what="10 positions delivered")
    broker.kill()
    feed.write(20, gap_s=0.02)
    wait_until(lambda: station.query("SELECT count(*) FROM outbox WHERE kind = 'position' AND sent IS NULL")[0][0] == 20,
               what="20 positions waiting")
    backlog = outbox_ids(station, "kind = 'position' AND sent IS NULL")
    assert d.proc is not None
    # Every write past the first 4 KiB of any file fails (EFBIG): a cap at the files' current sizes is not a full disk
    # any more, because the daemon's checkpoint thread folds the WAL back and SQLite then rewrites it from its start.
    limit = 4096
    resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))  # soft: can be raised again
    try:
        broker.start()
        feed.write(20, gap_s=0.02)
        wait_until(lambda: "cannot write to" in d.log, 20, "the write error logged")
        wait_until(lambda: backlog <= set(received_ids(sub)), 20, "the backlog delivered although it cannot be marked")
        time.sleep(4)
        assert d.proc.poll() is None, "the daemon must keep running"
        during = received_ids(sub)
        stored_during = station.query("SELECT count(*) FROM positions")[0][0]
    finally:
        resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert max(during[m] for m in backlog) <= 2, "acknowledged messages were sent again and again"
    assert stored_during == 30
    wait_until(lambda: station.query("SELECT count(*) FROM positions")[0][0] == 50, 20, "the 20 kept in memory stored")
    wait_until(lambda: station.query("SELECT count(*) FROM outbox WHERE sent IS NULL")[0][0] == 0, 30, "outbox drained")
    wait_until(lambda: outbox_ids(station) <= set(received_ids(sub)), 30, "every message at the consumer")
    assert integrity(station.db) == "ok"
    errors = [ln for ln in d.lines if " ERROR " in ln and "cannot write to" in ln]
    assert len(errors) == 2, errors  # one from the station, one from the publisher: state changes, not repetitions
    assert "database writable again" in d.log and "Traceback" not in d.log
    print(f"\nD3: files capped at {limit} bytes for ~5 s: daemon alive, 20 fixes kept in memory then stored, "
          f"backlog sent at most {max(during[m] for m in backlog)} time(s) each, lost 0")


def test_d3_a_batch_the_database_refuses_is_counted_and_logged_once_when_it_commits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """D3, in the station: another connection holds the database's write lock, so the station's commit fails and
    is retried every RETRY_STORE_S, while the batch holds a 500 km jump, a refused status/set, an emergency and a
    fix no unit maps to. Pass: nothing is counted or logged per item while it cannot commit (the write error
    once); once the lock is gone each item is logged once and counted once (1, not 1 + the retries), and the
    audit record holds one refusal and one emergency."""
    cfg = parse({"node": {"path": "gorontalo/bone-bolango"}, "device": [{"id": "gps1", "driver": "nmea", "url": "/dev/null"}],
                 "unit": [{"id": "R2-01", "device": "gps1"}, {"id": "HT-1", "type": "foot", "radio": "100-1001"}]},
                tmp_path / "alkomd.toml")
    store = Store(tmp_path / "alkomd.db", "normal")
    loop = asyncio.new_event_loop()
    blocker = sqlite3.connect(store.path, isolation_level=None)
    try:
        st = station_mod.Station(cfg, store, Publisher(store, loop), loop)
        now = datetime.now(UTC)
        st.submit(Fix("gps1", now, 0.55, 123.06, 3, now, 0.0))
        st.flush()
        assert st.latest["R2-01"].fix.lat == 0.55
        store.conn.execute("PRAGMA busy_timeout=0")  # the refused commit fails at once, not after 5 s
        blocker.execute("BEGIN IMMEDIATE")
        caplog.set_level(logging.INFO, logger="alkomd.daemon.positions.station")
        later = now + timedelta(seconds=1)
        st.submit(Fix("gps1", later, 5.05, 123.06, 3, later, 1.0))  # 500 km in 1 s
        st.submit(batch_mod.StatusRequest("R2-01", b'{"status": "offline", "by": "console-1"}'))
        st.submit(RadioStatus("base", "100-1001", 99, later, 1.0))
        st.submit(Fix("stray", later, 0.55, 123.06, 3, later, 1.0))
        loop.run_until_complete(asyncio.sleep(2 * station_mod.RETRY_STORE_S + 0.5))  # the first try, then retries
        messages = [r.getMessage() for r in caplog.records]
        assert len([m for m in messages if "cannot write to" in m]) == 1, messages
        assert not [m for m in messages if "refused" in m or "EMERGENCY" in m or "fix rejected" in m], messages
        assert (st.implausible_fixes, st.refused_requests, st.emergencies, st.unmapped_fixes) == (0, 0, 0, 0)

        blocker.execute("ROLLBACK")
        loop.run_until_complete(asyncio.sleep(station_mod.RETRY_STORE_S + 0.5))
        messages = [r.getMessage() for r in caplog.records]
        assert "database writable again" in messages
        for text in ("status/set refused", "EMERGENCY from radio 100-1001", "fix rejected: 500"):
            assert len([m for m in messages if text in m]) == 1, (text, messages)
        assert (st.implausible_fixes, st.refused_requests, st.emergencies, st.unmapped_fixes) == (1, 1, 1, 1)
        assert st.implausible_by_unit == {"R2-01": 1} and st.implausible_by_device == {"gps1": 1}
        kinds = [k for (k,) in store.conn.execute("SELECT kind FROM audit WHERE kind != 'unit.status' ORDER BY id")]
        assert kinds == ["unit.status_set_refused", "unit.emergency"]
    finally:
        blocker.close()
        store.close()
        loop.close()

"""Fault matrix Y2 (reliability-anchors.md section 8): a hung event loop stops the watchdog pings, and they resume after.

The daemon pings systemd (WATCHDOG=1) from a task on its event loop, never from a thread, so
the pings prove the loop turns. Injection: the test holds SQLite's write lock on the daemon's
database (BEGIN EXCLUSIVE) while fixes arrive: the loop's commit waits in SQLite's busy handler
(busy_timeout 5 s), a real blocking call on the loop thread.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Daemon, Station, Subscriber, wait_until
from helpers_faults import NotifySocket

from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.drivers.nmea_writer import EpochSpec, epoch
from alkomd.drivers.simulator import PtyGps

WATCHDOG_USEC = 1_000_000  # WatchdogSec=1s: pings every 0.5 s
HOLD_S = 3.0  # the lock is held this long: under the daemon's 5 s busy timeout, so its commit waits, then succeeds


def test_y2_a_blocked_event_loop_stops_the_watchdog_pings_until_it_turns_again(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Y2. WATCHDOG_USEC = 1 s (pings every 0.5 s); the test holds the database's write lock for 3 s while a receiver
    sends 5 fixes a second. Pass: a gap of at least 2 s (twice WatchdogSec: systemd would have killed and restarted
    the daemon) with no WATCHDOG=1, which ends only after the lock was released; pings resume (3 more within
    10 s); the daemon is still running; every fix sent during the stall is stored once the lock is free (0 lost),
    and no write failed (the commit waited, it did not give up)."""
    station.write_config()
    notify = NotifySocket(tmp_path / "notify.sock")
    try:
        with monkeypatch.context() as m:
            m.setenv("NOTIFY_SOCKET", notify.address)
            m.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
            pty = ptys(station.links[0])
            d = daemons(station.config)
        sub = subscriber_factory(broker.port)
        wait_until(lambda: "gps0: starting -> waiting" in d.log, what="port open")
        t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
        sent: list[datetime] = []
        stop = threading.Event()

        def feed() -> None:
            nonlocal t
            lat = 0.5412
            while not stop.is_set():
                t += timedelta(seconds=1)
                lat += 0.0001
                if pty.write(epoch(EpochSpec(t, lat, 123.0595, speed_kmh=40))) > 0:
                    sent.append(t)
                stop.wait(0.2)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        wait_until(lambda: len(sub.on("/unit/R2-00/position")) >= 3 and len(notify.pings) >= 3, what="positions and pings")

        lock = sqlite3.connect(str(station.db), timeout=5, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        held = time.monotonic()
        time.sleep(HOLD_S)
        lock.execute("ROLLBACK")
        released = time.monotonic()
        lock.close()
        wait_until(lambda: len([p for p in notify.pings if p > released]) >= 3, 10, "pings after the stall")
        stop.set()
        feeder.join(5)
        assert d.proc is not None and d.proc.poll() is None, "the daemon is still running"

        pings = notify.pings
        gaps = [(b - a, a, b) for a, b in itertools.pairwise(pings)]
        gap, before, after = max(gaps)
        assert gap >= 2 * WATCHDOG_USEC / 1e6, f"largest gap between pings {gap:.2f} s"
        assert after >= released and before >= held - WATCHDOG_USEC / 1e6, (before - held, after - released)
        normal = [g for g, a, _ in gaps if a < held - 1.0 or a > released]
        print(f"Y2: lock held {released - held:.2f} s; pings stopped for {gap:.2f} s (from {before - held:+.2f} s to "
              f"{after - released:+.2f} s after release); other gaps at most {max(normal):.2f} s")

        stamp = {t.strftime("%Y-%m-%dT%H:%M:%S.000Z") for t in sent}
        wait_until(lambda: len(stamp - {r[0] for r in station.query("SELECT time FROM positions")}) == 0, 10, "every fix stored")
        assert "cannot write" not in d.log
    finally:
        notify.close()

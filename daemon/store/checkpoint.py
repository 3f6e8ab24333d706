"""The WAL checkpoint, run from its own thread and connection so that no commit on the event loop pays for one.

SQLite's automatic checkpoint runs inside the commit that crosses `wal_autocheckpoint` pages: that
commit copies the WAL back into the database file and syncs it, and a call that happens to be the
one took 3-4 ms longer (`bench/bench_calls.py`). The store switches the automatic checkpoint off
and this thread does it instead, PASSIVE (it never blocks a writer or a reader; what it cannot copy
yet is copied next time), every INTERVAL_S. The WAL file is cut back to JOURNAL_LIMIT_BYTES after
a checkpoint that reached its end (`journal_size_limit`).

A process without this thread (an alkomctl tool) still gets its WAL folded back when its
last connection closes, as SQLite always does.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)

INTERVAL_S = 1.0
JOURNAL_LIMIT_BYTES = 64 * 1024 * 1024


class Checkpointer:
    """A daemon thread that checkpoints `path`'s WAL every INTERVAL_S until `stop`."""

    def __init__(self, path: Path, interval_s: float = INTERVAL_S) -> None:
        self.path = path
        self.interval_s = interval_s
        self.checkpoints = 0
        self.last: tuple[int, int] = (0, 0)  # the last checkpoint's WAL frames and frames copied back
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=True)
        except sqlite3.Error as exc:
            log.error("wal checkpoint: cannot open %s: %s; SQLite checkpoints when the database closes", self.path, exc)
            return
        try:
            conn.execute("PRAGMA busy_timeout=1000")
            conn.execute(f"PRAGMA journal_size_limit={JOURNAL_LIMIT_BYTES}")
            while not self._stop.wait(self.interval_s):
                self._once(conn)
        finally:
            conn.close()

    def _once(self, conn: sqlite3.Connection) -> None:
        try:
            row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            if not self._failing:
                log.warning("wal checkpoint of %s failed: %s (tried again every %.0f s)", self.path, exc, self.interval_s)
            self._failing = True
            return
        if self._failing:
            log.info("wal checkpoint of %s works again", self.path)
        self._failing = False
        self.checkpoints += 1
        self.last = (int(row[1]), int(row[2]))

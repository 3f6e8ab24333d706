"""The central history: positions of the units below a Polda or Mabes, in an SQLite file of their own.

Written by the history workers (`alkomd-history`, daemon/central/), never by the daemon: its
calls' commits never wait for this file's lock. Several workers of one node may write to the same
file (WAL: one writer at a time, each batch one short transaction). A position is stored once:
a redelivered message (a worker killed before its acknowledgement reached the broker) hits the
unique key (owner, unit, time, msg_id) and is ignored.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from alkomd.daemon.mqtt.contract.history import HistoryFix
from alkomd.daemon.records import utc_iso
from alkomd.daemon.store.database import StoreError

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS below_positions (
    id INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    unit TEXT NOT NULL,
    time TEXT NOT NULL,
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    msg_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    worker TEXT NOT NULL,
    stored TEXT NOT NULL,
    UNIQUE (owner, unit, time, msg_id)
);
CREATE INDEX IF NOT EXISTS below_positions_unit_time ON below_positions (unit, time);
CREATE INDEX IF NOT EXISTS below_positions_stored ON below_positions (stored);
"""
_INSERT = ("INSERT OR IGNORE INTO below_positions (owner, unit, time, lat, lon, msg_id, payload, worker, stored) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


class HistoryStore:
    """One connection to the history file (use it from one thread)."""

    def __init__(self, path: Path, synchronous: str = "full") -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), isolation_level=None)
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StoreError(f"history {path} has schema version {version}, newer than this alkomd knows ({SCHEMA_VERSION})")
            conn.executescript(_SCHEMA + f"PRAGMA user_version={SCHEMA_VERSION};")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the history {path}: {exc}") from exc
        self.conn = conn

    def add(self, fixes: Sequence[HistoryFix], worker: str, now: datetime) -> int:
        """Store a batch in one transaction; returns how many were new (the rest were there already)."""
        stored = utc_iso(now)
        rows = [(f.owner, f.unit, f.time, f.lat, f.lon, f.msg_id, f.payload, worker, stored) for f in fixes]
        try:
            before = self.conn.total_changes
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.executemany(_INSERT, rows)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            return self.conn.total_changes - before
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to the history {self.path}: {exc}") from exc

    def prune(self, before: datetime) -> int:
        """Delete what was stored before `before` (the retention); returns how many rows went."""
        try:
            return self.conn.execute("DELETE FROM below_positions WHERE stored < ?", (utc_iso(before),)).rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"cannot prune the history {self.path}: {exc}") from exc

    def close(self) -> None:
        self.conn.close()

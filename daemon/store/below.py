"""The snapshot of the units a Polda or Mabes follows below (table `units_below`): written in batches, read at start."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from alkomd.daemon.store.database import Store, StoreError

BelowRow = tuple[str, str, str, str, float | None, float | None, int | None]
"""unit, owner node, type, status, lat, lon, fix time (microseconds since the Unix epoch, UTC)."""

_UPSERT = (
    "INSERT INTO units_below (unit, owner, type, status, lat, lon, fix_us, saved) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(unit) DO UPDATE SET owner = excluded.owner, type = excluded.type, status = excluded.status, "
    "lat = excluded.lat, lon = excluded.lon, fix_us = excluded.fix_us, saved = excluded.saved"
)


@dataclass(frozen=True)
class BelowSnapshot:
    rows: list[BelowRow]
    saved: str | None  # UTC time of the newest row's write (None: no rows)


def save_below(store: Store, rows: Sequence[BelowRow], saved: str) -> None:
    """Insert or update these units' rows, in one transaction."""
    try:
        with store.db.atomic():
            store.conn.executemany(_UPSERT, [(*r, saved) for r in rows])
    except sqlite3.Error as exc:
        raise StoreError(f"cannot write the units below to {store.path}: {exc}") from exc


def load_below(store: Store) -> BelowSnapshot:
    """Every unit of the snapshot, and when it was written."""
    try:
        rows: list[BelowRow] = store.conn.execute(
            "SELECT unit, owner, type, status, lat, lon, fix_us FROM units_below"
        ).fetchall()
        saved = store.conn.execute("SELECT max(saved) FROM units_below").fetchone()[0]
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the units below from {store.path}: {exc}") from exc
    return BelowSnapshot(rows, saved)

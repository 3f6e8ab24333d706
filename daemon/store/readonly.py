"""What alkomctl reads from a database file it opens read-only (the daemon's live one, a backup, a copy): every such query.

The daemon's own `Store` opens read-write and migrates; the technician's tools must never write
(a running daemon is not disturbed: WAL readers do not block its writer), and may meet a file of an
older schema, a backup, or something that is not a station's database at all. These functions take
a connection from `connect` and raise `sqlite3.Error` as sqlite3 does; the tools decide what to say.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

AuditRow = tuple[int, str, str, str, str, str, str, str]  # id, time, kind, call_id, unit, detail, prev_hash, hash (audit.verify)
CallRowData = tuple[str, str, int, str, str]  # call_id, state, open, updated, call (the stored JSON)
UNIT_COLUMNS = ("id", "type", "device", "status", "status_since", "last_fix_time")  # what a support bundle lists


def connect(db: Path, timeout_s: float = 5.0, autocommit: bool = False) -> sqlite3.Connection:
    """`db` opened read-only (SQLite refuses every write; also the daemon's corruption check before it opens the store);
    `autocommit`: transactions only when asked for (BEGIN)."""
    uri = db.resolve().as_uri() + "?mode=ro"
    if autocommit:
        return sqlite3.connect(uri, uri=True, timeout=timeout_s, isolation_level=None)
    return sqlite3.connect(uri, uri=True, timeout=timeout_s)


def require_table(conn: sqlite3.Connection, table: str) -> None:
    """Raise sqlite3.Error unless `table` (audit, calls: a fixed name, never input) can be read."""
    conn.execute(f"SELECT 1 FROM {table} LIMIT 1")


def tables(conn: sqlite3.Connection) -> set[str]:
    return {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def integrity_problems(conn: sqlite3.Connection) -> list[str]:
    """SQLite's integrity check: ["ok"] when the file is sound."""
    return [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]


def audit_rows(conn: sqlite3.Connection) -> list[AuditRow]:
    """The whole audit record in order, as `store.audit.verify` checks it."""
    return conn.execute("SELECT id, time, kind, call_id, unit, detail, prev_hash, hash FROM audit ORDER BY id").fetchall()


def call_timeline(conn: sqlite3.Connection, call_id: str) -> list[tuple[int, str, str, str, str]]:
    """One call's audit entries in order: id, time, kind, unit, detail."""
    return conn.execute("SELECT id, time, kind, unit, detail FROM audit WHERE call_id = ? ORDER BY id", (call_id,)).fetchall()


def call_state(conn: sqlite3.Connection, call_id: str) -> tuple[str, str] | None:
    """A call's last stored state and its JSON, None when it was never stored."""
    row = conn.execute("SELECT state, call FROM calls WHERE call_id = ?", (call_id,)).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def calls(conn: sqlite3.Connection, only_open: bool, limit: int) -> list[CallRowData]:
    """Stored calls, newest received first (a body that is not JSON last); `limit` > 0 caps all calls, not the open ones."""
    sql = "SELECT call_id, state, open, updated, call FROM calls" + (" WHERE open = 1" if only_open else "")
    received = "CASE WHEN json_valid(call) THEN json_extract(call, '$.request.received_at') END"
    capped = limit > 0 and not only_open
    sql += f" ORDER BY {received} DESC, updated DESC" + (" LIMIT ?" if capped else "")
    return conn.execute(sql, (limit,) if capped else ()).fetchall()


def count_calls(conn: sqlite3.Connection, only_open: bool = False) -> int:
    return int(conn.execute("SELECT count(*) FROM calls" + (" WHERE open = 1" if only_open else "")).fetchone()[0])


def count_positions(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM positions").fetchone()[0])


def newest_position(conn: sqlite3.Connection) -> str | None:
    value = conn.execute("SELECT max(time) FROM positions").fetchone()[0]
    return None if value is None else str(value)


def count_units(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM units").fetchone()[0])


def units(conn: sqlite3.Connection) -> list[dict[str, object]] | None:
    """The units table's rows, with those of UNIT_COLUMNS this schema has (an older file may lack some); None: no such table."""
    have = {r[1] for r in conn.execute("PRAGMA table_info(units)").fetchall()}
    wanted = [c for c in UNIT_COLUMNS if c in have]
    if not wanted:
        return None
    return [dict(zip(wanted, r, strict=True)) for r in conn.execute(f"SELECT {', '.join(wanted)} FROM units ORDER BY id")]


def unsent_by_kind(conn: sqlite3.Connection) -> dict[str, int]:
    """Outbox rows not yet acknowledged by the broker, by kind."""
    return {str(k): int(n) for k, n in conn.execute("SELECT kind, count(*) FROM outbox WHERE sent IS NULL GROUP BY kind")}


def oldest_unsent(conn: sqlite3.Connection) -> str | None:
    value = conn.execute("SELECT min(created) FROM outbox WHERE sent IS NULL").fetchone()[0]
    return None if value is None else str(value)


def last_device_statuses(conn: sqlite3.Connection) -> list[str]:
    """The payload of each device's last status message in the outbox."""
    sql = "SELECT payload FROM outbox WHERE id IN (SELECT max(id) FROM outbox WHERE kind = 'device_status' GROUP BY topic)"
    return [str(p) for (p,) in conn.execute(sql)]


def copy_snapshot(src: sqlite3.Connection, dst: sqlite3.Connection, step_pages: int, progress: Callable[[int, int, int], object]) -> None:
    """Every page of one read snapshot of `src` (opened with autocommit) into `dst`, as a self-contained file (no WAL)."""
    src.execute("BEGIN")
    src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the read snapshot starts here
    src.backup(dst, pages=step_pages, progress=progress)
    src.execute("COMMIT")
    dst.execute("PRAGMA journal_mode=DELETE")

"""The central history in PostgreSQL: the same rows as the SQLite history, for workers on several hosts and long retention.

`[history] dsn` selects it (daemon/central/history.py opens one or the other). Every worker of the
node, on any host, writes to the same table; a batch is one statement (`INSERT ... SELECT FROM
unnest(...)`) in one transaction, committed before the worker acknowledges the batch to the broker.
A position is stored once: a redelivered message hits the unique key (owner, unit, time, msg_id)
and is skipped (`ON CONFLICT DO NOTHING`). The schema is created by the first worker that connects
(under an advisory lock, so two starting at once do not race) and carries its version in
`alkomd_history_schema`. A lost connection is opened again at the next batch; until then the
worker's batches are not acknowledged, so the broker keeps them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import psycopg

from alkomd.daemon.mqtt.contract.history import HistoryFix
from alkomd.daemon.store.database import StoreError

SCHEMA_VERSION = 1
_SCHEMA_LOCK = 0x616C6B6F  # pg_advisory_xact_lock key held while the schema is checked and created ("alko")
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS alkomd_history_schema (version integer NOT NULL)",
    """CREATE TABLE IF NOT EXISTS below_positions (
        id bigserial PRIMARY KEY,
        owner text NOT NULL,
        unit text NOT NULL,
        time timestamptz NOT NULL,
        lat double precision NOT NULL,
        lon double precision NOT NULL,
        msg_id text NOT NULL,
        payload text NOT NULL,
        worker text NOT NULL,
        stored timestamptz NOT NULL,
        UNIQUE (owner, unit, time, msg_id)
    )""",
    "CREATE INDEX IF NOT EXISTS below_positions_unit_time ON below_positions (unit, time)",
    "CREATE INDEX IF NOT EXISTS below_positions_stored ON below_positions (stored)",
)
_INSERT = (
    "INSERT INTO below_positions (owner, unit, time, lat, lon, msg_id, payload, worker, stored) "
    "SELECT o, u, t::timestamptz, la, lo, m, p, %s, %s "
    "FROM unnest(%s::text[], %s::text[], %s::text[], %s::float8[], %s::float8[], %s::text[], %s::text[]) AS b(o, u, t, la, lo, m, p) "
    "ON CONFLICT DO NOTHING"
)


class PgHistoryStore:
    """One connection to the history database (use it from one thread); the same methods as `HistoryStore`."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.where = _describe(dsn)
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._connect()

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        try:
            conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10, application_name="alkomd-history")
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                for statement in _SCHEMA:
                    conn.execute(statement)
                row = conn.execute("SELECT max(version) FROM alkomd_history_schema").fetchone()
                version = row[0] if row else None
                if version is None:
                    conn.execute("INSERT INTO alkomd_history_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
                elif int(str(version)) > SCHEMA_VERSION:
                    conn.close()
                    raise StoreError(f"history {self.where} has schema version {version}, newer than this alkomd knows "
                                     f"({SCHEMA_VERSION})")
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the history {self.where}: {exc}") from exc
        self._conn = conn
        return conn

    def add(self, fixes: Sequence[HistoryFix], worker: str, now: datetime) -> int:
        """Store a batch in one transaction; returns how many were new (the rest were there already)."""
        conn = self._connect()
        columns = ([f.owner for f in fixes], [f.unit for f in fixes], [f.time for f in fixes], [f.lat for f in fixes],
                   [f.lon for f in fixes], [f.msg_id for f in fixes], [f.payload for f in fixes])
        try:
            with conn.transaction():
                cur = conn.execute(_INSERT, (worker, now, *columns))
                return max(0, cur.rowcount)
        except psycopg.Error as exc:
            raise StoreError(f"cannot write to the history {self.where}: {exc}") from exc

    def prune(self, before: datetime) -> int:
        """Delete what was stored before `before` (the retention); returns how many rows went."""
        conn = self._connect()
        try:
            with conn.transaction():
                return max(0, conn.execute("DELETE FROM below_positions WHERE stored < %s", (before,)).rowcount)
        except psycopg.Error as exc:
            raise StoreError(f"cannot prune the history {self.where}: {exc}") from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def _describe(dsn: str) -> str:
    """The database a DSN names, without its password (for messages)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "(an unreadable dsn)"
    host = info.get("host") or "localhost"
    return f"postgresql {info.get('dbname') or info.get('user') or ''} on {host}:{info.get('port') or 5432}"

"""SQLite storage (via sqlite-utils): schema migrations, position history, units and the outbox.

One connection, owned by the event-loop thread (the daemon checkpoints the WAL from a thread of its
own: checkpoint.py). WAL journal; `synchronous=FULL` by default so a commit survives power loss.
A position row and its outbox row are committed together (`record`), so whatever the daemon
acknowledged locally is published eventually, even after a kill: the publisher marks an outbox
row sent only when the broker acknowledged it.

`unsent_bytes` is a running figure of the UTF-8 payload bytes of the unsent outbox (counted once
at open, then kept up to date by every write), so the disk budget (`outbox_budget`) is checked
without touching the database.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlite_utils

from alkomd.daemon.records import UnitPosition, UnitState, UnitStatus, utc_iso
from alkomd.daemon.store import readonly
from alkomd.daemon.store.audit import GENESIS, AuditEntry, AuditHead, entry_hash
from alkomd.daemon.store.checkpoint import Checkpointer
from alkomd.daemon.store.migrations import MIGRATIONS

log = logging.getLogger(__name__)


class StoreError(Exception):
    """The database cannot be opened or written (disk full, corrupt, read-only)."""


@dataclass(frozen=True, slots=True)
class Message:
    """An outbound MQTT message, before it has an outbox row."""

    msg_id: str
    kind: str  # position | device_status | ... (used for ordering and thinning policies)
    topic: str
    payload: str
    qos: int = 1
    retain: bool = False
    clear_after: datetime | None = None  # a retained message: clear its topic on the broker at this time (not stored)


@dataclass(frozen=True, slots=True)
class StoredCall:
    """A call's row: its state name, whether it is still open, and the whole call as JSON."""

    call_id: str
    state: str
    open: bool
    body: str
    event_id: str = ""  # the event (its msg_id) this step applied: stored with it, so it is never applied twice


@dataclass(frozen=True, slots=True)
class StoredFix:
    """A unit's newest fix as the position history holds it."""

    time: str  # ISO 8601 UTC
    lat: float
    lon: float
    device: str


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    message: Message


@dataclass(frozen=True, slots=True)
class UnsentPosition:
    """What the disk budget needs to know about one unsent position message."""

    id: int
    topic: str
    time: str  # the fix time in the payload (ISO 8601 UTC)
    size: int  # payload bytes (UTF-8)


def payload_size(payload: str) -> int:
    """UTF-8 length of a payload (the length itself for the usual all-ASCII JSON)."""
    return len(payload) if payload.isascii() else len(payload.encode("utf-8"))


# The hot path (a fix arrives) uses prepared statements: sqlite-utils' insert_all builds its SQL
# and converts every value on each call, which was half of a fix's time in the store.
_INSERT_POSITION = (
    "INSERT INTO positions (unit, device, time, received, lat, lon, alt, speed_kmh, course, hdop, sats, mode, msg_id, radio, "
    "accuracy_m) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_OUTBOX = "INSERT INTO outbox (msg_id, kind, topic, payload, qos, retain, created, sent) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)"
_INSERT_EVENT = "INSERT OR IGNORE INTO call_events (event_id, call_id, time) VALUES (?, ?, ?)"
_ADVANCE_UNIT = "UPDATE units SET last_fix_time = ? WHERE id = ? AND (last_fix_time IS NULL OR last_fix_time < ?)"
_SET_UNIT_STATE = "UPDATE units SET status = ?, status_since = ?, call_id = ?, resume_status = ? WHERE id = ?"
_UPSERT_CALL = (
    "INSERT INTO calls (call_id, state, open, updated, call) VALUES (?, ?, ?, ?, ?) ON CONFLICT(call_id) DO UPDATE SET "
    "state = excluded.state, open = excluded.open, updated = excluded.updated, call = excluded.call"
)
_SCHEDULE_CLEAR = "INSERT INTO retained_clears (topic, due) VALUES (?, ?) ON CONFLICT(topic) DO UPDATE SET due = excluded.due"
EVENT_RETENTION = timedelta(days=7)  # applied call events are remembered this long (a resend comes within minutes)
_ID_CHUNK = 500  # ids per `IN (...)` list (SQLite allows 32766 parameters; small lists plan well)
_INSERT_AUDIT = "INSERT INTO audit (time, kind, call_id, unit, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)"


def quarantine_if_corrupt(path: Path, now: datetime) -> Path | None:
    """Move a database that fails `PRAGMA quick_check` aside (never delete a 110 record).

    The file and its -wal/-shm companions are renamed `<name>.corrupt-<UTC time>` next to it,
    so the daemon starts on a fresh database and a human can still recover the old one.
    Returns the quarantined path, or None when the database is sound or absent.
    """
    if not path.exists():
        return None
    problem = ""
    try:
        conn = readonly.connect(path)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
            if rows != [("ok",)]:
                problem = "; ".join(str(r[0]) for r in rows[:3])
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        problem = str(exc)
    if not problem:
        return None
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(path) + suffix)
        if src.exists():
            src.rename(Path(str(target) + suffix))
    log.error("database %s is corrupt (%s): moved to %s; starting on a fresh database", path, problem, target)
    return target


class Store:
    """The daemon's database. Not thread-safe: use it from one thread (the event loop)."""

    def __init__(self, path: Path, synchronous: str = "full", background_checkpoint: bool = False) -> None:
        """`background_checkpoint`: the WAL is checkpointed by a thread of its own, never inside a commit (the daemon)."""
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.quarantined = quarantine_if_corrupt(path, datetime.now(UTC))
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            if background_checkpoint:
                conn.execute("PRAGMA wal_autocheckpoint=0")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self._migrate()
        self.unsent_bytes = int(
            conn.execute("SELECT coalesce(sum(length(CAST(payload AS BLOB))), 0) FROM outbox WHERE sent IS NULL").fetchone()[0]
        )
        last = conn.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        self._audit_head = last[0] if last else GENESIS
        self._audit_count = int(conn.execute("SELECT count(*) FROM audit").fetchone()[0])
        # The anchor: set, every transaction that appends to the audit record also queues the chain's new head
        # (count, hash) as a message, so the record's end is known outside this file (audit.py).
        self.anchor: Callable[[AuditHead], Message] | None = None
        self._checkpointer = Checkpointer(path) if background_checkpoint else None
        if self._checkpointer is not None:
            self._checkpointer.start()

    def _migrate(self) -> None:
        version = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise StoreError(
                f"database {self.path} has schema version {version}, newer than this alkomd "
                f"knows ({len(MIGRATIONS)}): downgrade refused"
            )
        for i in range(version, len(MIGRATIONS)):
            with self.db.atomic():
                MIGRATIONS[i](self.db)
                self.conn.execute(f"PRAGMA user_version={i + 1}")
        if 0 < version < len(MIGRATIONS):  # an upgrade: older versions of alkomd now refuse this file
            log.warning("database %s upgraded from schema version %d to %d", self.path, version, len(MIGRATIONS))

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self.conn.close()

    # -- units -------------------------------------------------------------------------------

    def sync_units(self, units: Iterable[tuple[str, str, str, str]]) -> None:
        """Insert or update the configured units (id, callsign, type, device)."""
        rows = [{"id": u, "callsign": c, "type": t, "device": d} for u, c, t, d in units]
        with self.db.atomic():
            self.db["units"].upsert_all(rows, pk="id")

    def last_fix_times(self, not_after: datetime | None = None) -> dict[str, str]:
        """Unit id -> ISO time of its newest stored fix (so a restart never moves a unit back).

        A newest time later than `not_after` (a fix from the future an older alkomd accepted) is set
        back to the unit's newest stored fix not after it, so the unit does not stay frozen on it.
        """
        if not_after is not None:
            limit = utc_iso(not_after)
            try:
                with self.db.atomic():
                    fixed = self.conn.execute(
                        "UPDATE units SET last_fix_time = (SELECT max(p.time) FROM positions p WHERE p.unit = units.id "
                        "AND p.time <= ?) WHERE last_fix_time > ? RETURNING id",
                        (limit, limit),
                    ).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write to {self.path}: {exc}") from exc
            if fixed:
                log.warning("%d units had a newest fix dated after %s (a receiver's clock bug): set back to their newest "
                            "plausible fix: %s", len(fixed), limit, ", ".join(sorted(u for (u,) in fixed)))
        rows = self.conn.execute("SELECT id, last_fix_time FROM units WHERE last_fix_time IS NOT NULL")
        return {unit: t for unit, t in rows}

    # -- writes ------------------------------------------------------------------------------

    def record(
        self,
        positions: Sequence[tuple[UnitPosition, Message | None]],
        messages: Sequence[Message],
        now: datetime,
        audits: Sequence[AuditEntry] = (),
        unit_states: Sequence[UnitState] = (),
        calls: Sequence[StoredCall] = (),
        cleared: Sequence[str] = (),
    ) -> None:
        """One transaction: positions, their outbox rows, other messages, audit entries, unit states, calls; a message
        with `clear_after` schedules its topic's clearing, a topic in `cleared` has had its clearing queued."""
        created = utc_iso(now)
        pos_rows = []
        out_rows = []
        latest: dict[str, str] = {}
        for up, msg in positions:
            f = up.fix
            t = utc_iso(f.time)
            pos_rows.append(
                (up.unit, f.device, t, utc_iso(f.received), f.lat, f.lon, f.alt, f.speed_kmh, f.course, f.hdop, f.sats,
                 f.mode, msg.msg_id if msg else "", f.radio, f.accuracy_m)
            )
            if msg is not None:
                out_rows.append((msg.msg_id, msg.kind, msg.topic, msg.payload, msg.qos, int(msg.retain), created))
                if t > latest.get(up.unit, ""):
                    latest[up.unit] = t
        for msg in messages:
            out_rows.append((msg.msg_id, msg.kind, msg.topic, msg.payload, msg.qos, int(msg.retain), created))
        head = self._audit_head
        audit_rows = []
        for a in audits:
            t = utc_iso(a.time)
            h = entry_hash(head, t, a.kind, a.call_id, a.unit, a.detail)
            audit_rows.append((t, a.kind, a.call_id, a.unit, a.detail, head, h))
            head = h
        if audit_rows and self.anchor is not None:
            m = self.anchor(AuditHead(self._audit_count + len(audit_rows), head, now))
            out_rows.append((m.msg_id, m.kind, m.topic, m.payload, m.qos, int(m.retain), created))
        added = sum(payload_size(r[3]) for r in out_rows)  # the running figure of unsent bytes, the anchor included
        conn = self.conn
        try:
            with self.db.atomic():
                if pos_rows:
                    conn.executemany(_INSERT_POSITION, pos_rows)
                if out_rows:
                    conn.executemany(_INSERT_OUTBOX, out_rows)
                for unit, t in latest.items():
                    conn.execute(_ADVANCE_UNIT, (t, unit, t))
                for s in unit_states:
                    conn.execute(
                        _SET_UNIT_STATE,
                        (s.status.value, utc_iso(s.since), s.call_id, s.resume.value if s.resume else None, s.unit),
                    )
                if audit_rows:
                    conn.executemany(_INSERT_AUDIT, audit_rows)
                for c in calls:
                    conn.execute(_UPSERT_CALL, (c.call_id, c.state, int(c.open), created, c.body))
                    if c.event_id:
                        conn.execute(_INSERT_EVENT, (c.event_id, c.call_id, created))
                for msg in messages:
                    if msg.clear_after is not None:
                        conn.execute(_SCHEDULE_CLEAR, (msg.topic, utc_iso(msg.clear_after)))
                if cleared:
                    conn.executemany("DELETE FROM retained_clears WHERE topic = ?", [(topic,) for topic in cleared])
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to {self.path}: {exc}") from exc
        self._audit_head = head
        self._audit_count += len(audit_rows)
        self.unsent_bytes += added

    def newest_fixes(self) -> dict[str, StoredFix]:
        """Each unit's newest stored fix (what a restarted daemon knows before the first new fix)."""
        rows = self.conn.execute(
            "SELECT p.unit, p.time, p.lat, p.lon, p.device FROM units u CROSS JOIN positions p "
            "ON p.unit = u.id AND p.time = u.last_fix_time"  # CROSS: units outside, an index search per unit
        )
        return {unit: StoredFix(t, lat, lon, dev) for unit, t, lat, lon, dev in rows}

    def unit_states(self) -> list[UnitState]:
        """The stored status of every unit that has one (restored at start)."""
        rows = self.conn.execute(
            "SELECT id, status, status_since, call_id, resume_status FROM units WHERE status IS NOT NULL"
        )
        return [
            UnitState(u, UnitStatus(st), datetime.fromisoformat(since.replace("Z", "+00:00")), cid,
                      UnitStatus(res) if res else None)
            for u, st, since, cid, res in rows
        ]

    def open_calls(self) -> list[str]:
        """The stored JSON of every call still open (reloaded at start: timers are re-armed)."""
        return [body for (body,) in self.conn.execute("SELECT call FROM calls WHERE open = 1 ORDER BY updated")]

    def recent_callers(self, since: datetime) -> list[tuple[str, datetime]]:
        """(caller, when the call was taken in) of the calls taken in since `since` with a known number, oldest first."""
        rows = self.conn.execute(
            "SELECT json_extract(call, '$.request.caller'), json_extract(call, '$.created') FROM calls "
            "WHERE updated >= ? AND json_valid(call) AND json_extract(call, '$.format') IS NOT NULL",
            (utc_iso(since),),
        )
        out = []
        for caller, created in rows:
            if not caller or not isinstance(created, str):
                continue
            try:
                t = datetime.fromisoformat(created)
            except ValueError:
                continue
            if t.tzinfo is not None and t >= since:
                out.append((str(caller), t))
        return sorted(out, key=lambda row: row[1])

    def audit_head(self, now: datetime) -> AuditHead:
        """The chain's end as it is now."""
        return AuditHead(self._audit_count, self._audit_head, now)

    def keep_anchor(self, node: str, head: AuditHead, received: datetime) -> AuditHead | None:
        """Keep a node below's newest audit anchor; the one kept before (None: the first)."""
        try:
            with self.db.atomic():
                row = self.conn.execute("SELECT count, hash, time FROM anchors WHERE node = ?", (node,)).fetchone()
                self.conn.execute(
                    "INSERT INTO anchors (node, count, hash, time, received) VALUES (?, ?, ?, ?, ?) ON CONFLICT(node) DO UPDATE "
                    "SET count = excluded.count, hash = excluded.hash, time = excluded.time, received = excluded.received",
                    (node, head.count, head.hash, utc_iso(head.time), utc_iso(received)),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to {self.path}: {exc}") from exc
        if row is None:
            return None
        return AuditHead(int(row[0]), str(row[1]), datetime.fromisoformat(str(row[2]).replace("Z", "+00:00")))

    def due_clears(self, now: datetime, limit: int = 500) -> list[str]:
        """Retained topics whose clearing is due (oldest first, at most `limit`)."""
        try:
            rows = self.conn.execute("SELECT topic FROM retained_clears WHERE due <= ? ORDER BY due LIMIT ?", (utc_iso(now), limit))
            return [str(topic) for (topic,) in rows]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from exc

    def event_applied(self, event_id: str) -> bool:
        """Whether a call event with this id (its msg_id) was applied (kept EVENT_RETENTION)."""
        return self.conn.execute("SELECT 1 FROM call_events WHERE event_id = ?", (event_id,)).fetchone() is not None

    def has_call(self, call_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM calls WHERE call_id = ?", (call_id,)).fetchone() is not None

    def audit_rows(self) -> list[tuple[int, str, str, str, str, str, str, str]]:
        """The whole audit record in order (for `verify`)."""
        return list(self.conn.execute("SELECT id, time, kind, call_id, unit, detail, prev_hash, hash FROM audit ORDER BY id"))

    # -- outbox ------------------------------------------------------------------------------

    def unsent(self, limit: int, skip: Container[int] = frozenset(), after: int = 0) -> list[OutboxRow]:
        """The oldest unsent rows with an id above `after`, in order, leaving out `skip` (rows in flight or held).

        The ids come first (from the index alone, read only as far as needed), then the rows of the ids kept. The
        publisher asks with `after` the last id it has looked at, so what it has handed out or holds is not read again
        at every PUBACK (with 931 rows held for 0x10 in the first minute after a connect, reading them cost the loop
        0.3 to 1.8 ms a PUBACK)."""
        want: list[int] = []
        if limit > 0:
            ids = self.conn.execute("SELECT id FROM outbox WHERE sent IS NULL AND id > ? ORDER BY id", (after,))
            try:
                for (i,) in ids:
                    if i not in skip:
                        want.append(i)
                        if len(want) == limit:
                            break
            finally:
                ids.close()  # the rest is never read
        return self.outbox_rows(want)

    def outbox_rows(self, ids: Sequence[int]) -> list[OutboxRow]:
        """The outbox rows of these ids that are still there, in id order (at most the in-flight window's worth)."""
        if not ids:
            return []
        cur = self.conn.execute(
            "SELECT id, msg_id, kind, topic, payload, qos, retain FROM outbox "
            f"WHERE id IN ({', '.join('?' * len(ids))}) ORDER BY id",  # placeholders only
            list(ids),
        )
        return [_outbox_row(r) for r in cur]

    def newest_unsent_positions(self) -> list[OutboxRow]:
        """The newest unsent position message of each unit (sent first after an outage)."""
        cur = self.conn.execute(
            "SELECT id, msg_id, kind, topic, payload, qos, retain FROM outbox WHERE id IN "
            "(SELECT max(id) FROM outbox WHERE sent IS NULL AND kind = 'position' GROUP BY topic) "
            "ORDER BY id"
        )
        return [_outbox_row(r) for r in cur]

    def superseded(self, row: OutboxRow) -> bool:
        """True when a newer message for the same topic exists (then it must not be retained)."""
        cur = self.conn.execute(
            "SELECT 1 FROM outbox WHERE topic = ? AND id > ? LIMIT 1", (row.message.topic, row.id)
        )
        return cur.fetchone() is not None

    def mark_sent(self, ids: Iterable[int], when: datetime) -> None:
        """Rows the broker acknowledged; the running byte figure drops by what was still unsent among them."""
        stamp = utc_iso(when)
        ids = list(ids)
        freed = 0
        try:
            with self.db.atomic():
                for i in range(0, len(ids), _ID_CHUNK):
                    part = ids[i : i + _ID_CHUNK]
                    marks = ",".join("?" * len(part))
                    cur = self.conn.execute(
                        f"UPDATE outbox SET sent = ? WHERE sent IS NULL AND id IN ({marks}) RETURNING length(CAST(payload AS BLOB))",
                        (stamp, *part),
                    )
                    freed += sum(size for (size,) in cur.fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to {self.path}: {exc}") from exc
        self.unsent_bytes -= freed

    # -- disk budget (see outbox_budget.py) ----------------------------------------------------

    def last_outbox_id(self) -> int:
        try:
            return int(self.conn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0])
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from exc

    def unsent_positions(self, after_id: int, upto_id: int, limit: int) -> list[UnsentPosition]:
        """Unsent position messages with after_id < id <= upto_id, oldest first, at most `limit`.

        `time` is "" for a payload that is not JSON (json_extract would fail the whole query on it).
        """
        try:
            cur = self.conn.execute(
                "SELECT id, topic, CASE WHEN json_valid(payload) THEN json_extract(payload, '$.time') END, "
                "length(CAST(payload AS BLOB)) FROM outbox "
                "WHERE sent IS NULL AND id > ? AND id <= ? AND kind = 'position' ORDER BY id LIMIT ?",
                (after_id, upto_id, limit),
            )
            return [UnsentPosition(int(i), str(topic), str(t or ""), int(size)) for i, topic, t, size in cur]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from exc

    def thin(self, ids: Sequence[int]) -> tuple[int, int]:
        """Delete these unsent *position* messages in one transaction; returns (rows, payload bytes).

        Anything else (calls, alerts, statuses, sent rows) is never deleted here, whatever the ids.
        """
        rows = freed = 0
        try:
            with self.db.atomic():
                for i in range(0, len(ids), _ID_CHUNK):
                    part = ids[i : i + _ID_CHUNK]
                    marks = ",".join("?" * len(part))
                    where = f"sent IS NULL AND kind = 'position' AND id IN ({marks})"
                    size = self.conn.execute(
                        f"SELECT count(*), coalesce(sum(length(CAST(payload AS BLOB))), 0) FROM outbox WHERE {where}", part
                    ).fetchone()
                    self.conn.execute(f"DELETE FROM outbox WHERE {where}", part)
                    rows += int(size[0])
                    freed += int(size[1])
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to {self.path}: {exc}") from exc
        self.unsent_bytes -= freed
        return rows, freed

    def oldest_unsent_created(self) -> str | None:
        """When the oldest unsent message was stored (ISO 8601 UTC), or None when everything was acknowledged."""
        row = self.conn.execute("SELECT created FROM outbox WHERE sent IS NULL ORDER BY id LIMIT 1").fetchone()
        return None if row is None else str(row[0])

    def outbox_kind(self, row_id: int) -> str:
        """The kind of an outbox row ("?" when it is gone)."""
        row = self.conn.execute("SELECT kind FROM outbox WHERE id = ?", (row_id,)).fetchone()
        return str(row[0]) if row else "?"

    def outbox_depth(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM outbox WHERE sent IS NULL").fetchone()[0])

    def prune(self, now: datetime, sent_retention: timedelta, position_retention: timedelta) -> tuple[int, int]:
        """Delete acknowledged outbox rows and old history; returns (outbox rows, positions).

        Sent rows are kept while an older row is still unsent, so `superseded` stays correct, and the newest row is
        always kept: a new row's id is then always above every id before it (SQLite gives max(id) + 1), which the
        publisher's scan of new rows relies on.
        """
        sent_before = utc_iso(now - sent_retention)
        pos_before = utc_iso(now - position_retention)
        with self.db.atomic():
            first_unsent, newest = self.conn.execute("SELECT min(id) FILTER (WHERE sent IS NULL), max(id) FROM outbox").fetchone()
            out = self.conn.execute(
                "DELETE FROM outbox WHERE sent IS NOT NULL AND sent < ? AND id < ?",
                (sent_before, first_unsent if first_unsent is not None else (newest or 0)),
            ).rowcount
            pos = self.conn.execute("DELETE FROM positions WHERE received < ?", (pos_before,)).rowcount
            self.conn.execute("DELETE FROM call_events WHERE time < ?", (utc_iso(now - EVENT_RETENTION),))
        return out, pos


def _outbox_row(r: tuple[int, str, str, str, str, int, int]) -> OutboxRow:
    return OutboxRow(r[0], Message(r[1], r[2], r[3], r[4], r[5], bool(r[6])))

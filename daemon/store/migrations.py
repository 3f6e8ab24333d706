"""The database's schema versions, oldest first: `PRAGMA user_version` N means MIGRATIONS[:N] have run."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlite_utils


def _v1(db: sqlite_utils.Database) -> None:
    db["units"].create(
        {"id": str, "callsign": str, "type": str, "device": str, "last_fix_time": str}, pk="id"
    )
    db["positions"].create(
        {
            "id": int, "unit": str, "device": str, "time": str, "received": str, "lat": float,
            "lon": float, "alt": float, "speed_kmh": float, "course": float, "hdop": float,
            "sats": int, "mode": int, "msg_id": str,
        },
        pk="id",
        not_null={"unit", "device", "time", "received", "lat", "lon", "msg_id"},
    )
    db["positions"].create_index(["unit", "time"], index_name="positions_unit_time")
    db["positions"].create_index(["received"], index_name="positions_received")
    db["outbox"].create(
        {
            "id": int, "msg_id": str, "kind": str, "topic": str, "payload": str, "qos": int,
            "retain": int, "created": str, "sent": str,
        },
        pk="id",
        not_null={"msg_id", "kind", "topic", "payload", "qos", "retain", "created"},
    )
    db["outbox"].create_index(["msg_id"], unique=True, index_name="outbox_msg_id")
    db["outbox"].create_index(["topic", "id"], index_name="outbox_topic_id")
    db.execute("CREATE INDEX outbox_unsent ON outbox(id) WHERE sent IS NULL")


def _v2(db: sqlite_utils.Database) -> None:
    """Unit statuses, the hash-chained audit record, and calls."""
    for col in ("status", "status_since", "call_id", "resume_status"):
        db["units"].add_column(col, str)
    db["audit"].create(
        {"id": int, "time": str, "kind": str, "call_id": str, "unit": str, "detail": str, "prev_hash": str, "hash": str},
        pk="id",
        not_null={"time", "kind", "call_id", "unit", "detail", "prev_hash", "hash"},
    )
    db["audit"].create_index(["call_id", "id"], index_name="audit_call")
    db.execute("CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END")
    db.execute("CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END")
    db["calls"].create({"call_id": str, "state": str, "open": int, "updated": str, "call": str}, pk="call_id")
    db.execute("CREATE INDEX calls_open ON calls(call_id) WHERE open = 1")


def _v3(db: sqlite_utils.Database) -> None:
    """The relayed radio of a position (FleetSync/NXDN, UDP senders); unit "" for an unknown radio."""
    db["positions"].add_column("radio", str)


def _v4(db: sqlite_utils.Database) -> None:
    """A fix's stated horizontal uncertainty (LRRP circles, TETRA LIP position error, a phone's accuracy)."""
    db["positions"].add_column("accuracy_m", float)


def _v5(db: sqlite_utils.Database) -> None:
    """Retained topics to clear on the broker when their time comes (closed calls' states, taken markers)."""
    db["retained_clears"].create({"topic": str, "due": str}, pk="topic", not_null={"due"})
    db["retained_clears"].create_index(["due"], index_name="retained_clears_due")


def _v6(db: sqlite_utils.Database) -> None:
    """The newest audit anchor of each node below (Polda, Mabes keep their children's chain ends)."""
    db["anchors"].create({"node": str, "count": int, "hash": str, "time": str, "received": str}, pk="node",
                         not_null={"count", "hash", "time", "received"})


def _v7(db: sqlite_utils.Database) -> None:
    """The ids of the call events applied, stored with their step: a redelivery or a resend is applied once, also by
    another process of the node (a standby that took over) or after a restart."""
    db["call_events"].create({"event_id": str, "call_id": str, "time": str}, pk="event_id", not_null={"call_id", "time"})
    db["call_events"].create_index(["time"], index_name="call_events_time")


def _v8(db: sqlite_utils.Database) -> None:
    """The units a Polda or Mabes follows below (a snapshot, loaded at start: ready before the broker's retained flood).
    `fix_us`: the fix time in microseconds since the Unix epoch, UTC; `saved`: when the row was last written."""
    db["units_below"].create(
        {"unit": str, "owner": str, "type": str, "status": str, "lat": float, "lon": float, "fix_us": int, "saved": str},
        pk="unit", not_null={"owner", "type", "status", "saved"},
    )


MIGRATIONS: Sequence[Callable[[sqlite_utils.Database], None]] = (_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8)

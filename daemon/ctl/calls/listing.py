"""The calls table of a station's database read into rows (`CallRow`), and printed as a table or JSON."""

from __future__ import annotations

import json
import sqlite3
import sys
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from alkomd.daemon.calls.categories import classify
from alkomd.daemon.ctl.audit.record import open_readonly
from alkomd.daemon.exit_codes import EX_NOINPUT, EX_OK
from alkomd.daemon.records import age_s
from alkomd.daemon.store import readonly

EMERGENCY = "emergency"  # dispatch.FLAG_EMERGENCY: a unit's radio emergency button


@dataclass(frozen=True)
class CallRow:
    """One call as the list shows it."""

    call_id: str
    state: str
    open: bool
    priority: int  # 0 most urgent .. 5 (categories.py)
    category: str  # the category's code, else the text the call came with
    location: str  # ok, approximate, outside, invalid
    jurisdiction: str | None
    unit: str | None  # the assigned unit
    received: str | None  # when the call was received (UTC)
    age_s: float | None  # seconds since then
    updated: str
    flags: list[str]


def call_row(call_id: str, state: str, is_open: int, updated: str, body: str, now: datetime) -> CallRow:
    """A stored call's row; a body that cannot be read still lists its id, state and update time."""
    try:
        doc: dict[str, Any] = json.loads(body)
        req, placement = doc.get("request") or {}, doc.get("placement") or {}
        text = str(req.get("category") or "")
        known = classify(text)
        flags = [str(f) for f in doc.get("flags") or []]
        received = req.get("received_at")
        return CallRow(call_id, state, bool(is_open), known.priority, known.code or text, str(placement.get("status") or "-"),
                       placement.get("jurisdiction"), doc.get("assigned_unit"), received, age_s(received, now, 1), updated, flags)
    except (ValueError, AttributeError, TypeError):
        return CallRow(call_id, state, bool(is_open), 9, "?", "?", None, None, None, None, updated, ["unreadable"])


def read_calls(conn: sqlite3.Connection, only_open: bool, limit: int, now: datetime) -> list[CallRow]:
    """Newest received first; the open ones: emergencies first, then by priority, then oldest first (the order to handle
    them). A body that is not JSON sorts last (json_extract gives NULL)."""
    stored = readonly.calls(conn, only_open, limit)
    rows = [call_row(cid, state, is_open, updated, str(body), now) for cid, state, is_open, updated, body in stored]
    if only_open:
        rows.sort(key=lambda r: (EMERGENCY not in r.flags, r.priority, -(r.age_s or 0.0)))
    return rows


def _ago(seconds: float | None) -> str:
    from alkomd.daemon.ctl.status.view import ago

    return ago(seconds)


def table(rows: list[CallRow], out: TextIO) -> None:
    from rich.console import Console  # imported late: --json stays fast
    from rich.table import Table
    from rich.text import Text

    t = Table(title=f"{len(rows)} call{'' if len(rows) == 1 else 's'}", title_justify="left")
    for col in ("call", "state", "pri", "category", "location", "unit", "age", "flags"):
        t.add_column(col)
    for r in rows:
        urgent = EMERGENCY in r.flags and r.open
        where = f"{r.location} {r.jurisdiction}" if r.jurisdiction else r.location
        t.add_row(r.call_id, Text(r.state, style="bold red" if urgent else "" if r.open else "dim"), str(r.priority), r.category,
                  where, r.unit or "-", _ago(r.age_s), Text(", ".join(r.flags) or "-", style="bold red" if urgent else ""))
    Console(file=out, width=None if out.isatty() else 200, highlight=False, markup=False).print(t)


def calls_cmd(db: Path, only_open: bool, limit: int, as_json: bool, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`alkomctl calls`: 0 listed, 66 no database (or no calls table), 77 permission denied."""
    out = out or sys.stdout
    err = err or sys.stderr
    conn = open_readonly(db, err, "calls")
    if isinstance(conn, int):
        return conn
    with closing(conn):
        try:
            rows = read_calls(conn, only_open, limit, datetime.now(UTC))
        except sqlite3.Error as exc:
            print(f"alkomctl: cannot read the calls in {db}: {exc}", file=err)
            return EX_NOINPUT
    if as_json:
        print(json.dumps([asdict(r) for r in rows], ensure_ascii=False), file=out)
    elif not rows:
        print("no open call" if only_open else f"no call in {db}", file=out)
    else:
        table(rows, out)
    return EX_OK

"""The audit record of a station's database, read-only: its hash chain checked, and one call's timeline."""

from __future__ import annotations

import json
import sqlite3
import sys
from contextlib import closing
from pathlib import Path
from typing import TextIO

from alkomd.daemon.exit_codes import EX_DATAERR, EX_NOINPUT, EX_NOPERM, EX_OK, EX_PROBLEM
from alkomd.daemon.store.audit import verify


def _open(db: Path, err: TextIO) -> sqlite3.Connection | int:
    """Read-only, so a running daemon is never disturbed (WAL readers do not block writers); else the exit code."""
    try:  # pathlib raises PermissionError, not False, in a folder we may not enter (/var/lib/alkomd is 0700)
        found = db.is_file()
    except PermissionError:
        print(f"alkomctl: cannot read {db}: permission denied (run as root or as the alkomd user)", file=err)
        return EX_NOPERM
    if not found:
        print(f"alkomctl: no database at {db} (see [store] path in the configuration)", file=err)
        return EX_NOINPUT
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True, timeout=5)
        conn.execute("SELECT 1 FROM audit LIMIT 1")
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        print(f"alkomctl: cannot read the audit record in {db}: {exc}", file=err)
        return EX_NOINPUT
    return conn


def verify_cmd(db: Path, as_json: bool, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Exit 0 when the hash chain holds, 65 when it is broken, 66 when there is nothing to read."""
    out = out or sys.stdout
    err = err or sys.stderr
    conn = _open(db, err)
    if isinstance(conn, int):
        return conn
    with closing(conn):
        rows = conn.execute("SELECT id, time, kind, call_id, unit, detail, prev_hash, hash FROM audit ORDER BY id")
        v = verify(rows)
    if as_json:
        print(json.dumps({"ok": v.ok, "entries": v.checked, "first_bad_id": v.first_bad_id, "reason": v.reason}), file=out)
    elif v.ok:
        print(f"audit record intact: {v.checked} entries, hash chain verified ({db})", file=out)
    else:
        print(f"AUDIT RECORD BROKEN at entry {v.first_bad_id}: {v.reason} ({v.checked} entries read, {db})", file=out)
    return EX_OK if v.ok else EX_DATAERR


def call_show(db: Path, call_id: str, as_json: bool, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """A call's whole timeline from the audit record (and its last stored state)."""
    out = out or sys.stdout
    err = err or sys.stderr
    conn = _open(db, err)
    if isinstance(conn, int):
        return conn
    with closing(conn):
        rows = conn.execute(
            "SELECT id, time, kind, unit, detail FROM audit WHERE call_id = ? ORDER BY id", (call_id,)
        ).fetchall()
        state = conn.execute("SELECT state, call FROM calls WHERE call_id = ?", (call_id,)).fetchone()
    if not rows and state is None:
        print(f"alkomctl: no call {call_id!r} in {db}", file=err)
        return EX_PROBLEM
    if as_json:
        timeline = [{"id": i, "time": t, "kind": k, "unit": u or None, "detail": _maybe_json(d)} for i, t, k, u, d in rows]
        print(json.dumps({"call_id": call_id, "state": state[0] if state else None, "timeline": timeline}), file=out)
        return EX_OK
    print(f"call {call_id}: {state[0] if state else 'no stored state'}", file=out)
    for _, t, kind, unit, detail in rows:
        print(f"  {t}  {kind:<28} {unit or '':<10} {detail}", file=out)
    return EX_OK


def _maybe_json(text: str) -> object:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text

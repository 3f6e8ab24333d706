"""The audit record of a station's database, read-only: its hash chain checked, and one call's timeline."""

from __future__ import annotations

import json
import sqlite3
import sys
from contextlib import closing
from pathlib import Path
from typing import TextIO

from alkomd.daemon.exit_codes import EX_BEHIND_ANCHOR, EX_DATAERR, EX_NOINPUT, EX_NOPERM, EX_OK, EX_PROBLEM
from alkomd.daemon.mqtt.contract.inbound import parse_audit_head
from alkomd.daemon.store import readonly
from alkomd.daemon.store.audit import against_anchor, verify


def open_readonly(db: Path, err: TextIO, table: str = "audit") -> sqlite3.Connection | int:
    """Read-only, so a running daemon is never disturbed (WAL readers do not block writers); else the exit code.

    `table` (audit, calls) must be there: a file without it is not a station's database."""
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
        conn = readonly.connect(db)
        readonly.require_table(conn, table)
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        what = "the audit record" if table == "audit" else f"the {table}"
        print(f"alkomctl: cannot read {what} in {db}: {exc}", file=err)
        return EX_NOINPUT
    return conn


def verify_cmd(
    db: Path, as_json: bool, out: TextIO | None = None, err: TextIO | None = None, anchor: Path | None = None
) -> int:
    """Exit 0 when the hash chain holds (and reaches the anchor), 3 when it is behind its anchor, 65 when it is broken,
    66 when there is nothing to read."""
    out = out or sys.stdout
    err = err or sys.stderr
    head = None
    if anchor is not None:
        try:
            head = parse_audit_head(anchor.read_bytes())
        except OSError as exc:
            print(f"alkomctl: cannot read the anchor {anchor}: {exc.strerror or exc}", file=err)
            return EX_NOINPUT
        if head is None:
            print(f"alkomctl: {anchor} is not an <node>/audit/head payload (count, hash, time)", file=err)
            return EX_NOINPUT
    conn = open_readonly(db, err)
    if isinstance(conn, int):
        return conn
    with closing(conn):
        rows = readonly.audit_rows(conn)
        v = verify(rows)
    behind = against_anchor(rows, head) if v.ok and head is not None else ""
    if as_json:
        print(json.dumps({"ok": v.ok and not behind, "entries": v.checked, "first_bad_id": v.first_bad_id, "reason": v.reason,
                          "anchor": None if head is None else {"count": head.count, "hash": head.hash}, "behind": behind}),
              file=out)
    elif not v.ok:
        print(f"AUDIT RECORD BROKEN at entry {v.first_bad_id}: {v.reason} ({v.checked} entries read, {db})", file=out)
    elif behind:
        print(f"AUDIT RECORD BEHIND ITS ANCHOR: {behind} ({db})", file=out)
    else:
        reach = f"; it reaches its anchor ({head.count} entries)" if head is not None else ""
        print(f"audit record intact: {v.checked} entries, hash chain verified{reach} ({db})", file=out)
    if not v.ok:
        return EX_DATAERR
    return EX_BEHIND_ANCHOR if behind else EX_OK


def call_show(db: Path, call_id: str, as_json: bool, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """A call's whole timeline from the audit record (and its last stored state)."""
    out = out or sys.stdout
    err = err or sys.stderr
    conn = open_readonly(db, err)
    if isinstance(conn, int):
        return conn
    with closing(conn):
        rows = readonly.call_timeline(conn, call_id)
        state = readonly.call_state(conn, call_id)
    if not rows and state is None:
        print(f"alkomctl: no call {call_id!r} in {db}", file=err)
        return EX_PROBLEM
    if as_json:
        timeline = [
            {"id": i, "time": t, "kind": k, "unit": u or None, "who": who(_maybe_json(d)), "detail": _maybe_json(d)}
            for i, t, k, u, d in rows
        ]
        print(json.dumps({"call_id": call_id, "state": state[0] if state else None, "timeline": timeline}), file=out)
        return EX_OK
    print(f"call {call_id}: {state[0] if state else 'no stored state'}{summary(state[1]) if state else ''}", file=out)
    print(f"  {'time':<24}  {'kind':<16} {'who':<14} {'unit':<8} detail", file=out)
    for _, t, kind, unit, detail in rows:
        doc = _maybe_json(detail)
        print(f"  {t:<24}  {kind.removeprefix('call.'):<16} {who(doc):<14} {unit or '-':<8} {said(doc)}".rstrip(), file=out)
    return EX_OK


def who(detail: object) -> str:
    """Who did it (`by` of the entry; `-` when nobody is named: the daemon's own timers and intake)."""
    by = detail.get("by") if isinstance(detail, dict) else None
    return str(by) if by else "-"


def said(detail: object) -> str:
    """An entry's detail for people: its text, else its fields as `key value` (empty ones left out)."""
    if not isinstance(detail, dict):
        return "" if detail is None else str(detail)
    if isinstance(detail.get("detail"), str):
        return str(detail["detail"])
    parts = []
    for k, v in detail.items():
        if k == "by" or v in (None, "", [], {}):
            continue
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        cut = {"sha256": 16, "payload": 80}.get(k)
        parts.append(f"{k} {text[:cut] + '...' if cut and len(text) > cut + 3 else text}")
    return ", ".join(parts)


def summary(body: str) -> str:
    """`: <category>, priority P, location <status> <jurisdiction>, unit U, flags ...` of a stored call."""
    try:
        doc = json.loads(body)
        req, placement = doc.get("request") or {}, doc.get("placement") or {}
        bits = [str(req.get("category") or "no category"), f"location {placement.get('status', '?')}"
                + (f" {placement['jurisdiction']}" if placement.get("jurisdiction") else "")]
        if doc.get("assigned_unit"):
            bits.append(f"unit {doc['assigned_unit']}")
        if doc.get("flags"):
            bits.append("flags " + ", ".join(doc["flags"]))
        return " (" + "; ".join(bits) + ")"
    except (ValueError, AttributeError, TypeError, KeyError):
        return ""


def _maybe_json(text: str) -> object:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text

"""The tamper-evident record: append-only audit entries, each holding the hash of the previous one.

hash(n) = SHA-256 over hash(n-1) and the entry's fields (time, kind, call, unit, detail), so
changing, removing or reordering any entry breaks every hash after it. `verify` walks the chain;
`alkomctl audit verify` runs it on a database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

GENESIS = "0" * 64
_SEP = "\x1f"  # unit separator: cannot occur in the fields' text unescaped


@dataclass(frozen=True, slots=True)
class AuditEntry:
    time: datetime
    kind: str  # e.g. call.received, call.transition, call.event_refused, unit.status
    call_id: str = ""
    unit: str = ""
    detail: str = ""  # compact JSON


@dataclass(frozen=True, slots=True)
class AuditHead:
    """The end of the chain: how many entries, the last one's hash. Published outside the database (the anchor),
    it lets `verify` tell a record cut short or a database put back to an older copy from an intact one."""

    count: int
    hash: str
    time: datetime


def against_anchor(rows: list[tuple[int, str, str, str, str, str, str, str]], anchor: AuditHead) -> str:
    """Why an intact chain `rows` (id order) does not reach `anchor` ("" when it does: it holds the anchor's entry)."""
    if len(rows) < anchor.count:
        return (f"the record has {len(rows)} entries, the anchor of {anchor.time.isoformat()} says {anchor.count}: "
                "its last entries were removed, or this is an older copy of the database")
    if anchor.count and rows[anchor.count - 1][7] != anchor.hash:
        return f"entry {anchor.count} does not hash to the anchor's: the record was rewritten from there"
    return ""


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    reason: str = ""


def entry_hash(prev: str, time_iso: str, kind: str, call_id: str, unit: str, detail: str) -> str:
    text = _SEP.join((prev, time_iso, kind, call_id, unit, detail))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def verify(rows: Iterable[tuple[int, str, str, str, str, str, str, str]]) -> Verdict:
    """Check (id, time, kind, call_id, unit, detail, prev_hash, hash) rows in id order."""
    prev = GENESIS
    n = 0
    for row_id, t, kind, call_id, unit, detail, prev_hash, h in rows:
        n += 1
        if prev_hash != prev:
            return Verdict(False, n, row_id, "prev_hash does not match the previous entry (removed or reordered?)")
        if entry_hash(prev_hash, t, kind, call_id, unit, detail) != h:
            return Verdict(False, n, row_id, "hash does not match the entry (altered?)")
        prev = h
    return Verdict(True, n)

"""The stored form of a call: the whole `dispatch.Call` as JSON in the calls table, exact, and back."""

from __future__ import annotations

import json
from datetime import datetime

from alkomd.daemon.calls.dispatch import Call
from alkomd.daemon.calls.history import Step
from alkomd.daemon.calls.types import CallRequest, CallStateName, Candidate, Location, LocationStatus, Placement

STORE_FORMAT = 3  # 2: realert_at (a format-1 call reads with none); 3: history (a call of format 1 or 2 reads with none)


def call_to_json(call: Call) -> str:
    """The whole call as JSON for SQLite: exact (microsecond times), round-trips through `call_from_json`."""
    req = call.request
    loc = req.location
    doc = {
        "format": STORE_FORMAT,
        "call_id": call.call_id,
        "request": {
            "call_id": req.call_id, "caller": req.caller,
            "location": None if loc is None else {"lat": loc.lat, "lon": loc.lon, "accuracy_m": loc.accuracy_m},
            "received_at": req.received_at.isoformat(), "category": req.category, "source": req.source,
            "problems": list(req.problems), "escalated_from": req.escalated_from, "note": req.note, "raw_sha256": req.raw_sha256,
            "caller_calls": req.caller_calls,
        },
        "placement": {
            "status": call.placement.status.value, "jurisdiction": call.placement.jurisdiction,
            "others": list(call.placement.others), "distance_m": call.placement.distance_m,
        },
        "state": call.state.value, "tier": call.tier, "node": call.node,
        "candidates": [
            {"unit": c.unit, "distance_m": c.distance_m, "eta_s": c.eta_s, "fix_age_s": c.fix_age_s, "in_jurisdiction": c.in_jurisdiction}
            for c in call.candidates
        ],
        "assigned_unit": call.assigned_unit, "declined": list(call.declined), "answered_by": call.answered_by,
        "answer_deadline": _iso(call.answer_deadline), "accept_deadline": _iso(call.accept_deadline),
        "escalated_to": call.escalated_to, "flags": list(call.flags),
        "created": call.created.isoformat(), "updated": call.updated.isoformat(),
        "alerts_sent": [[u, n] for u, n in call.alerts_sent], "version": call.version, "note": call.note,
        "realert_at": _iso(call.realert_at),
        "history": [
            {"seq": s.seq, "time": s.time.isoformat(), "action": s.action, "state": s.state.value, "detail": s.detail, "by": s.by,
             "unit": s.unit, "note": s.note, "count": s.count}
            for s in call.history
        ],
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def call_from_json(text: str) -> Call:
    """Inverse of `call_to_json`; raises ValueError on anything that is not a stored call of this format."""
    try:
        doc = _Obj(json.loads(text), "call")
    except json.JSONDecodeError as exc:
        raise ValueError(f"stored call is not JSON: {exc}") from None
    fmt = doc.integer("format")
    if fmt not in (1, 2, STORE_FORMAT):
        raise ValueError(f"stored call format {doc.raw('format')!r}, expected 1 to {STORE_FORMAT}")
    r = doc.obj("request")
    loc_raw = r.raw("location")
    loc = None
    if loc_raw is not None:
        lo = _Obj(loc_raw, "request.location")
        loc = Location(lo.number("lat"), lo.number("lon"), lo.opt_number("accuracy_m"))
    request = CallRequest(
        call_id=r.text("call_id"), caller=r.text("caller"), location=loc, received_at=r.when("received_at"),
        category=r.text("category"), source=r.text("source"), problems=r.texts("problems"),
        escalated_from=r.opt_text("escalated_from"), note=r.text("note"), raw_sha256=r.text("raw_sha256"),
        caller_calls=r.integer("caller_calls") if fmt >= 2 else 0,
    )
    p = doc.obj("placement")
    placement = Placement(LocationStatus(p.text("status")), p.opt_text("jurisdiction"), p.texts("others"), p.opt_number("distance_m"))
    candidates = []
    for i, item in enumerate(doc.array("candidates")):
        c = _Obj(item, f"candidates[{i}]")
        candidates.append(
            Candidate(c.text("unit"), c.number("distance_m"), c.number("eta_s"), c.number("fix_age_s"), c.flag("in_jurisdiction"))
        )
    alerts = []
    for i, item in enumerate(doc.array("alerts_sent")):
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and type(item[1]) is int):
            raise ValueError(f"stored call: alerts_sent[{i}] must be [unit, attempt]")
        alerts.append((item[0], item[1]))
    history = []
    for i, item in enumerate(doc.array("history") if fmt >= 3 else ()):
        s = _Obj(item, f"history[{i}]")
        history.append(Step(s.integer("seq"), s.when("time"), s.text("action"), CallStateName(s.text("state")), s.text("detail"),
                            s.text("by"), s.opt_text("unit"), s.text("note"), s.integer("count")))
    return Call(
        call_id=doc.text("call_id"), request=request, placement=placement, state=CallStateName(doc.text("state")),
        tier=doc.text("tier"), node=doc.text("node"), candidates=tuple(candidates), assigned_unit=doc.opt_text("assigned_unit"),
        declined=doc.texts("declined"), answered_by=doc.opt_text("answered_by"), answer_deadline=doc.opt_when("answer_deadline"),
        accept_deadline=doc.opt_when("accept_deadline"), escalated_to=doc.opt_text("escalated_to"), flags=doc.texts("flags"),
        created=doc.when("created"), updated=doc.when("updated"), alerts_sent=tuple(alerts), version=doc.integer("version"),
        note=doc.text("note"), realert_at=doc.opt_when("realert_at") if fmt >= 2 else None, history=tuple(history),
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class _Obj:
    """Typed, strict reads from one decoded JSON object (ValueError naming the key on a mismatch)."""

    def __init__(self, value: object, where: str) -> None:
        if not isinstance(value, dict):
            raise ValueError(f"stored call: {where} must be an object")
        self.d: dict[str, object] = value
        self.where = where

    def raw(self, key: str) -> object:
        if key not in self.d:
            raise ValueError(f"stored call: {self.where}.{key} missing")
        return self.d[key]

    def _bad(self, key: str, what: str) -> ValueError:
        return ValueError(f"stored call: {self.where}.{key} must be {what}")

    def text(self, key: str) -> str:
        v = self.raw(key)
        if not isinstance(v, str):
            raise self._bad(key, "a string")
        return v

    def opt_text(self, key: str) -> str | None:
        return None if self.raw(key) is None else self.text(key)

    def integer(self, key: str) -> int:
        v = self.raw(key)
        if type(v) is not int:
            raise self._bad(key, "an integer")
        return v

    def flag(self, key: str) -> bool:
        v = self.raw(key)
        if not isinstance(v, bool):
            raise self._bad(key, "true or false")
        return v

    def number(self, key: str) -> float:
        v = self.raw(key)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self._bad(key, "a number")
        return float(v)

    def opt_number(self, key: str) -> float | None:
        return None if self.raw(key) is None else self.number(key)

    def when(self, key: str) -> datetime:
        try:
            t = datetime.fromisoformat(self.text(key))
        except ValueError:
            raise self._bad(key, "an ISO 8601 time") from None
        if t.tzinfo is None:
            raise self._bad(key, "an aware (UTC) time")
        return t

    def opt_when(self, key: str) -> datetime | None:
        return None if self.raw(key) is None else self.when(key)

    def array(self, key: str) -> list[object]:
        v = self.raw(key)
        if not isinstance(v, list):
            raise self._bad(key, "an array")
        return v

    def texts(self, key: str) -> tuple[str, ...]:
        items = self.array(key)
        if not all(isinstance(i, str) for i in items):
            raise self._bad(key, "an array of strings")
        return tuple(str(i) for i in items)

    def obj(self, key: str) -> _Obj:
        return _Obj(self.raw(key), f"{self.where}.{key}")

"""Payloads alkomd reads (status/set, events, what the nodes below publish), parsed here without ever raising."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from alkomd.daemon.calls.dispatch import Accept, Answer, Arrive, Assign, Close, Decline, Event
from alkomd.daemon.calls.types import CallRequest, Location
from alkomd.daemon.records import SETTABLE, UnitStatus
from alkomd.daemon.store.audit import AuditHead


@dataclass(frozen=True, slots=True)
class StatusSetRequest:
    """A parsed `status/set` body: the status asked for, or why it is refused (`by` as far as it could be read)."""

    status: UnitStatus | None
    by: str
    reason: str


def parse_status_set(payload: bytes) -> StatusSetRequest:
    """`{"status", "by"}` of `<node>/unit/<unit>/status/set`; never raises."""
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        return StatusSetRequest(None, "", "not a JSON object")
    who = body.get("by")
    by = who if isinstance(who, str) else ""
    value = body.get("status")
    if not isinstance(value, str) or value not in SETTABLE:
        return StatusSetRequest(None, by, f"status must be one of {', '.join(sorted(SETTABLE))}")
    if not by or len(by) > 64:
        return StatusSetRequest(None, by, '"by" (who sets it) must be a string of 1 to 64 characters')
    return StatusSetRequest(UnitStatus(value), by, "")


UNIT_TYPES = ("car", "motorcycle", "foot", "boat")


@dataclass(frozen=True, slots=True)
class BelowPosition:
    lat: float
    lon: float
    time: datetime
    type: str | None = None  # as the unit's node says (older nodes do not: None)


def _unit_type(body: dict[str, object]) -> str | None:
    t = body.get("type")
    return t if isinstance(t, str) and t in UNIT_TYPES else None


def parse_below_position(payload: bytes) -> BelowPosition | None:
    """The place and time of a unit's retained `position` from a node below; None when unusable."""
    try:
        body = json.loads(payload)
        lat, lon = float(body["lat"]), float(body["lon"])
        t = datetime.fromisoformat(str(body["time"]).replace("Z", "+00:00"))
    except (ValueError, RecursionError, KeyError, TypeError):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or t.tzinfo is None:
        return None
    return BelowPosition(lat, lon, t, _unit_type(body))


_NUMBER = rb"(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"
# The head of a position in the contract's own compact form (`position_message`): unit, lat, lon, time, in this order;
# the time as `utc_iso` writes it (whole minute, seconds, fraction, Z).
_POSITION_HEAD = re.compile(
    rb'\{"unit":"[^"\\]*","lat":' + _NUMBER + rb',"lon":' + _NUMBER
    + rb',"time":"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}):([0-5][0-9])(?:\.([0-9]{1,6}))?Z"[,}]'
)
_TYPES = {f'"{t}"'.encode(): t for t in UNIT_TYPES}
_MINUTES: dict[bytes, int] = {}  # "YYYY-MM-DDTHH:MM" -> microseconds since the epoch (the fast path's time cache)
_MINUTES_MAX = 4096

BelowFix = tuple[float, float, int, str | None]
"""A unit's position from a node below: lat, lon, fix time (microseconds since the Unix epoch, UTC), type or None."""


def epoch_us(t: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (exact for any date of this era)."""
    return round(t.timestamp() * 1_000_000)


def _minute_us(minute: bytes) -> int | None:
    us = _MINUTES.get(minute)
    if us is None:
        try:
            us = epoch_us(datetime.fromisoformat(minute.decode() + ":00+00:00"))
        except ValueError:  # month 13, hour 25
            return None
        if len(_MINUTES) >= _MINUTES_MAX:
            _MINUTES.clear()
        _MINUTES[minute] = us
    return us


def _slow_fix(payload: bytes) -> BelowFix | None:
    pos = parse_below_position(payload)
    return None if pos is None else (pos.lat, pos.lon, epoch_us(pos.time), pos.type)


def parse_below_fix(payload: bytes) -> BelowFix | None:
    """What `parse_below_position` reads, at a fraction of its cost when the payload has the contract's own compact
    form (every alkomd node's `position_message`): only its head (unit, lat, lon, time) and its "type" are read, the
    rest is not decoded. Any other form (another key order, spaces, escapes in the unit, numbers as strings, another
    time form) goes through `json`. Differences, for bodies no node publishes: a body with that head that ends with
    "}" is taken without decoding the keys after the head, and a key given twice counts the first time, not the last."""
    m = _POSITION_HEAD.match(payload)
    if m is None or not payload.endswith(b"}"):
        return _slow_fix(payload)
    lat, lon = float(m[1]), float(m[2])
    minute = _minute_us(m[3])
    if minute is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    frac = m[5]
    t = minute + int(m[4]) * 1_000_000 + (int(frac.ljust(6, b"0")) if frac else 0)
    kind: str | None = None
    i = payload.find(b',"type":"', m.end() - 1)
    if i >= 0:
        j = payload.find(b'"', i + 9)
        kind = _TYPES.get(payload[i + 8 : j + 1])
    return lat, lon, t, kind


@dataclass(frozen=True, slots=True)
class BelowStatus:
    status: UnitStatus
    type: str | None = None


def parse_below_status(payload: bytes) -> BelowStatus | None:
    """The status of a unit's retained `status` from a node below; None when unusable."""
    try:
        body = json.loads(payload)
        return BelowStatus(UnitStatus(str(body.get("status"))), _unit_type(body))
    except (ValueError, RecursionError, AttributeError):
        return None


EVENT_ACTIONS = ("answer", "assign", "accept", "decline", "arrive", "close")


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    """A `call/<id>/event` body: the dispatch event, or why it is refused; `event_id` is its msg_id ("" if none).

    `action` and `by` are what the body said, as far as they are strings (for the reply).
    """

    event: Event | None
    reason: str
    event_id: str
    action: str = ""
    by: str = ""


def parse_event(payload: bytes) -> ParsedEvent:
    """`{"action", "by", "unit"?, "note"?, "msg_id"?}` of `<node>/call/<call_id>/event`; never raises."""
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        return ParsedEvent(None, "not JSON", "")
    if not isinstance(body, dict):
        return ParsedEvent(None, "not a JSON object", "")
    action, by, unit, note = body.get("action"), body.get("by"), body.get("unit"), body.get("note", "")
    raw_id = body.get("msg_id")
    event_id = raw_id[:64] if isinstance(raw_id, str) else ""
    said = (str(action)[:32] if isinstance(action, str) else "", by[:64] if isinstance(by, str) else "")
    if action not in EVENT_ACTIONS:
        return ParsedEvent(None, f"action must be one of {', '.join(EVENT_ACTIONS)}", event_id, *said)
    if not isinstance(by, str) or not 0 < len(by) <= 64:
        return ParsedEvent(None, '"by" must be a string of 1 to 64 characters', event_id, *said)
    if unit is not None and (not isinstance(unit, str) or not 0 < len(unit) <= 64):
        return ParsedEvent(None, '"unit" must be a unit id', event_id, *said)
    note = note[:500] if isinstance(note, str) else ""
    if action == "assign" and unit is None:
        return ParsedEvent(None, "assign needs a unit", event_id, *said)
    ev: Event
    if action == "answer":
        ev = Answer(by=by, unit=unit, note=note)
    elif action == "assign":
        ev = Assign(by=by, unit=str(unit), note=note)
    elif action == "decline":
        ev = Decline(by=by, unit=unit, note=note)
    elif action == "accept":
        ev = Accept(by=by, unit=unit)
    elif action == "arrive":
        ev = Arrive(by=by, unit=unit)
    else:
        ev = Close(by=by, note=note)
    return ParsedEvent(ev, "", event_id, *said)


@dataclass(frozen=True, slots=True)
class TakenMarker:
    by: str
    reason: str


def parse_taken(payload: bytes) -> TakenMarker | None:
    """`{"by", "reason"}` of `<node>/call/<call_id>/taken`; None when unusable (or an empty retained clear)."""
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("by"), str) or not body["by"]:
        return None
    reason = body.get("reason")
    return TakenMarker(body["by"], reason if isinstance(reason, str) else "")


def parse_probe(payload: bytes) -> str:
    """The `probe` (nonce) of a `<node>/probe/...` message; "" when there is none."""
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        return ""
    probe = body.get("probe") if isinstance(body, dict) else None
    return probe if isinstance(probe, str) else ""


def parse_node_online(payload: bytes) -> bool | None:
    """`<node>/state`: True online, False offline (its will), None unusable."""
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    state = body.get("state") if isinstance(body, dict) else None
    return {"online": True, "offline": False}.get(state) if isinstance(state, str) else None


@dataclass(frozen=True, slots=True)
class CallProgress:
    """What a node's retained call state says, as far as its parent watches it (`request`: the call as it can be
    rebuilt from the state, to take it over; None when the state does not carry enough)."""

    state: str
    answer_deadline: datetime | None
    request: CallRequest | None = None


def _when(raw: object) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def _request_from_state(body: dict[str, object]) -> CallRequest | None:
    call_id, received = body.get("call_id"), _when(body.get("received_at"))
    if not isinstance(call_id, str) or not call_id or received is None:
        return None
    lat, lon, acc = body.get("lat"), body.get("lon"), body.get("accuracy_m")
    where = None
    if isinstance(lat, int | float) and isinstance(lon, int | float) and not isinstance(lat, bool) and not isinstance(lon, bool):
        where = Location(float(lat), float(lon), float(acc) if isinstance(acc, int | float) and not isinstance(acc, bool) else None)
    category, note = body.get("category"), body.get("note")
    return CallRequest(call_id, "", where, received, category if isinstance(category, str) else "", "child-state",
                       note=note if isinstance(note, str) else "")


def parse_call_progress(payload: bytes) -> CallProgress | None:
    """The `state` and `answer_deadline` of a `<node>/call/<call_id>` state; None when unusable."""
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("state"), str):
        return None
    return CallProgress(body["state"], _when(body.get("answer_deadline")), _request_from_state(body))


def parse_audit_head(payload: bytes) -> AuditHead | None:
    """`{"count", "hash", "time"}` of a `<node>/audit/head`; None when unusable."""
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    count, digest, when = body.get("count"), body.get("hash"), _when(body.get("time"))
    if isinstance(count, bool) or not isinstance(count, int) or count < 0 or not isinstance(digest, str) or when is None:
        return None
    return AuditHead(count, digest, when)

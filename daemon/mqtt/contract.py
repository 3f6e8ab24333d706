"""MQTT contract v1: every topic alkomd publishes or reads, and every payload it builds, in one place.

This module is the public API (docs/contract/ documents it, tests validate its payloads against
the schemas there): add fields, never rename or remove them. Topics are built and parsed only
here; published topics never contain `+` or `#`; payloads are compact UTF-8 JSON with ISO 8601
UTC times and a `msg_id` that consumers deduplicate on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime

from alkomd.daemon.calls.categories import classify
from alkomd.daemon.calls.dispatch import Accept, AlertUnit, Answer, Arrive, Assign, Call, Close, Decline, Escalate, Event, stable_msg_id
from alkomd.daemon.calls.types import CallRequest, Candidate, Location, LocationStatus
from alkomd.daemon.records import SETTABLE, Counters, DeviceStatus, Fix, RadioStatus, UnitPosition, UnitState, UnitStatus, utc_iso
from alkomd.daemon.store.database import Message

CONTRACT_VERSION = 1
_LEVELS_BELOW = {"polres": 0, "polda": 1, "mabes": 2}  # how many node levels below a node of this tier own units


def new_msg_id() -> str:
    """A globally unique message id: 128 random bits as 32 hex digits (consumers deduplicate on it)."""
    return os.urandom(16).hex()


def dumps(obj: object) -> str:
    """Compact UTF-8 JSON, as every payload is written (NaN and Infinity refused)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _level(name: str) -> str:
    if not name or any(c in name for c in "+#/\0"):
        raise ValueError(f"not a valid topic level: {name!r}")
    return name


def rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# -- topics out ----------------------------------------------------------------------------------


def state_topic(node: str) -> str:
    return f"{node}/state"


def health_topic(node: str) -> str:
    return f"{node}/health"


def probe_topic(node: str, token: str) -> str:
    """`<node>/probe/<token>`: alkomctl mqtt-check's round trip."""
    return f"{node}/probe/{_level(token)}"


def device_status_topic(node: str, device: str) -> str:
    return f"{node}/device/{_level(device)}/status"


def radio_topic(node: str, device: str, radio: str) -> str:
    return f"{node}/device/{_level(device)}/radio/{_level(radio)}"


def position_topic(node: str, unit: str) -> str:
    return f"{node}/unit/{_level(unit)}/position"


def unit_status_topic(node: str, unit: str) -> str:
    return f"{node}/unit/{_level(unit)}/status"


def status_set_topic(node: str, unit: str) -> str:
    return f"{node}/unit/{_level(unit)}/status/set"


def emergency_topic(node: str, unit: str) -> str:
    return f"{node}/unit/{_level(unit)}/emergency"


def alert_topic(node: str, unit: str) -> str:
    return f"{node}/unit/{_level(unit)}/alert"


def call_new_topic(node: str) -> str:
    return f"{node}/call/new"


def call_aml_topic(node: str) -> str:
    return f"{node}/call/aml"


def call_topic(node: str, call_id: str) -> str:
    return f"{node}/call/{_level(call_id)}"


def call_event_topic(node: str, call_id: str) -> str:
    return f"{node}/call/{_level(call_id)}/event"


def call_taken_topic(node: str, call_id: str) -> str:
    """`<node>/call/<call_id>/taken` (retained): the parent node took this call from `<node>` (it was offline or silent)."""
    return f"{node}/call/{_level(call_id)}/taken"


def call_event_result_topic(node: str, call_id: str) -> str:
    """`<node>/call/<call_id>/event/result`: the answer to every event (accepted, or refused with the reason)."""
    return f"{node}/call/{_level(call_id)}/event/result"


# -- topics in -----------------------------------------------------------------------------------


def subscriptions(node: str, tier: str) -> tuple[str, ...]:
    """What a node of `tier` subscribes to: its own inputs; at a Polda or Mabes also the units of every node below
    (Mabes: the Poldas' own units too) and, to supervise them, those nodes' states and calls."""
    own = (f"{node}/unit/+/status/set", call_new_topic(node), call_aml_topic(node), f"{node}/call/+/event", f"{node}/call/+/taken")
    below: list[str] = []
    for depth in range(1, _LEVELS_BELOW.get(tier, 0) + 1):
        levels = "/+" * depth
        below += [f"{node}{levels}/unit/+/position", f"{node}{levels}/unit/+/status", f"{node}{levels}/state",
                  f"{node}{levels}/call/+"]
    return (*own, *below)


def console_subscriptions(node: str, tier: str) -> tuple[str, ...]:
    """What a dispatcher console of `node` follows: the node's will, its units (and those of the nodes below), its calls
    and the replies to events."""
    units = [f"{node}{'/+' * depth}/unit/+/{k}" for depth in range(_LEVELS_BELOW.get(tier, 0) + 1)
             for k in ("position", "status", "emergency")]
    return (state_topic(node), *units, f"{node}/call/+", f"{node}/call/+/event/result")


@dataclass(frozen=True, slots=True)
class ConsoleTopic:
    """What a message a console receives is: `kind` is "state", "position", "status", "emergency", "call" or "result"."""

    kind: str
    key: str  # the unit id or the call id; "" for the node's state


def parse_console_topic(node: str, topic: str) -> ConsoleTopic | None:
    """Classify a topic of `console_subscriptions`; None for anything else (call/new, call/aml, an event)."""
    if topic == state_topic(node):
        return ConsoleTopic("state", "")
    if not topic.startswith(node + "/"):
        return None
    rest = topic[len(node) + 1 :].split("/")
    if len(rest) == 2 and rest[0] == "call" and rest[1] not in ("new", "aml"):
        return ConsoleTopic("call", rest[1])
    if len(rest) == 4 and rest[0] == "call" and rest[2:] == ["event", "result"]:
        return ConsoleTopic("result", rest[1])
    if len(rest) >= 3 and rest[-3] == "unit" and rest[-1] in ("position", "status", "emergency") and rest[-2]:
        return ConsoleTopic(rest[-1], rest[-2])
    return None


@dataclass(frozen=True, slots=True)
class StatusSet:
    """`<node>/unit/<unit>/status/set`: a dispatcher or the unit's app sets a unit's status."""

    unit: str


@dataclass(frozen=True, slots=True)
class CallNew:
    """`<node>/call/new`: a 110 call (or a child's escalation or hand-off)."""


@dataclass(frozen=True, slots=True)
class CallAml:
    """`<node>/call/aml`: an AML SMS or ELS body."""


@dataclass(frozen=True, slots=True)
class CallEvent:
    """`<node>/call/<call_id>/event`: a dispatcher's or a unit's action on a call."""

    call_id: str


@dataclass(frozen=True, slots=True)
class UnitBelow:
    """`<owner>/unit/<unit>/position|status` of a node below this one (a Polda or Mabes follows them)."""

    owner: str  # the owning node's topic
    unit: str
    kind: str  # "position" or "status"


@dataclass(frozen=True, slots=True)
class CallTaken:
    """`<node>/call/<call_id>/taken`: the parent took this node's call (it was offline or silent)."""

    call_id: str


@dataclass(frozen=True, slots=True)
class NodeBelowState:
    """`<below>/state` of a node below this one: online, or offline (its will)."""

    node: str


@dataclass(frozen=True, slots=True)
class NodeBelowCall:
    """`<below>/call/new` (a call sent to a node below) or `<below>/call/<call_id>` (its state there)."""

    node: str
    call_id: str  # "new" for a call sent to it


Inbound = StatusSet | CallNew | CallAml | CallEvent | CallTaken | UnitBelow | NodeBelowState | NodeBelowCall


def parse_inbound(node: str, topic: str) -> Inbound | None:
    """What a message on `topic` is for this node, or None when it is none of the contract's inputs."""
    if not topic.startswith(node + "/"):
        return None
    rest = topic[len(node) + 1 :]
    if rest == "call/new":
        return CallNew()
    if rest == "call/aml":
        return CallAml()
    if rest.startswith("call/") and rest.endswith("/event"):
        call_id = rest[len("call/") : -len("/event")]
        return CallEvent(call_id) if call_id and "/" not in call_id else None
    if rest.startswith("unit/") and rest.endswith("/status/set"):
        unit = rest[len("unit/") : -len("/status/set")]
        return StatusSet(unit) if unit and "/" not in unit else None
    if rest.startswith("call/") and rest.endswith("/taken"):
        call_id = rest[len("call/") : -len("/taken")]
        return CallTaken(call_id) if call_id and "/" not in call_id else None
    if rest.endswith("/state") and not rest.startswith(("unit/", "call/", "device/")):
        below = rest[: -len("/state")]
        if below and "/unit/" not in f"/{below}/" and "/call/" not in f"/{below}/":
            return NodeBelowState(f"{node}/{below}")
    head, sep, call_id = rest.rpartition("/call/")
    if sep and head and "/" not in call_id and call_id and "/unit/" not in f"/{head}/" and not head.startswith(("unit/", "call/")):
        return NodeBelowCall(f"{node}/{head}", call_id)
    head, sep, tail = topic.rpartition("/unit/")
    unit, _, kind = tail.partition("/")
    if sep and head != node and head.startswith(node + "/") and unit and kind in ("position", "status"):
        return UnitBelow(head, unit, kind)
    return None


# -- the node and its devices --------------------------------------------------------------------


def state_payload(state: str, version: str, since: datetime) -> str:
    """`<node>/state` (retained; "offline" is also the MQTT will)."""
    return dumps({"state": state, "version": version, "since": utc_iso(since), "msg_id": new_msg_id()})


def counters_dict(c: Counters) -> dict[str, int]:
    return asdict(c)


def device_status_message(node: str, s: DeviceStatus) -> Message:
    """`<node>/device/<device>/status` (retained, on change)."""
    msg_id = new_msg_id()
    payload = {
        "device": s.device,
        "driver": s.driver,
        "state": s.state.value,
        "since": utc_iso(s.since),
        "counters": counters_dict(s.counters),
        "detail": s.detail,
        "msg_id": msg_id,
    }
    if s.modem is not None:
        payload["modem"] = asdict(s.modem)
    return Message(msg_id, "device_status", device_status_topic(node, s.device), dumps(payload), 1, True)


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    device: str
    driver: str
    state: str
    counters: Counters
    last_data_age_s: float | None
    implausible_fixes: int = 0  # its fixes the station's plausibility gate rejected


def health_payload(
    now: datetime,
    uptime_s: float,
    outbox_depth: int,
    devices: Sequence[DeviceHealth],
    outbox_bytes: int = 0,
    outbox_thinned: int = 0,
    implausible_fixes: int = 0,
) -> str:
    """`<node>/health` (not retained): counters per device, the outbox depth, its bytes and what the budget thinned,
    and the fixes the plausibility gate rejected."""
    return dumps(
        {
            "time": utc_iso(now),
            "uptime_s": round(uptime_s, 1),
            "outbox_depth": outbox_depth,
            "outbox_bytes": outbox_bytes,
            "outbox_thinned": outbox_thinned,
            "implausible_fixes": implausible_fixes,
            "devices": {
                d.device: {
                    "driver": d.driver,
                    "state": d.state,
                    **counters_dict(d.counters),
                    "last_data_age_s": None if d.last_data_age_s is None else round(d.last_data_age_s, 1),
                    "implausible_fixes": d.implausible_fixes,
                }
                for d in devices
            },
            "msg_id": new_msg_id(),
        }
    )


def radio_message(node: str, device: str, radio: str, fix: Fix | None, code: int | None, now: datetime) -> Message:
    """`<node>/device/<device>/radio/<radio>` (retained): a radio no [[unit]] maps to was heard."""
    msg_id = new_msg_id()
    payload = {
        "device": device,
        "radio": radio,
        "heard": utc_iso(now),
        "lat": None if fix is None else round(fix.lat, 7),
        "lon": None if fix is None else round(fix.lon, 7),
        "time": None if fix is None else utc_iso(fix.time),
        "status": code,
        "msg_id": msg_id,
    }
    return Message(msg_id, "radio", radio_topic(node, device, radio), dumps(payload), 1, True)


# -- units ---------------------------------------------------------------------------------------


def _source(device: str, radio: str | None) -> str:
    return f"{device}:{radio}" if radio else device


def position_message(node: str, up: UnitPosition) -> Message:
    """`<node>/unit/<unit>/position` (retained): the unit's newest fix."""
    f = up.fix
    msg_id = new_msg_id()
    payload = {
        "unit": up.unit,
        "lat": round(f.lat, 7),
        "lon": round(f.lon, 7),
        "time": utc_iso(f.time),
        "received": utc_iso(f.received),
        "speed_kmh": rounded(f.speed_kmh, 1),
        "course": rounded(f.course, 1),
        "hdop": rounded(f.hdop, 2),
        "sats": f.sats,
        "fix": f"{f.mode}d",
        "source": _source(f.device, f.radio),
        "msg_id": msg_id,
        "alt": rounded(f.alt, 1),
        "accuracy_m": rounded(f.accuracy_m, 1),
    }
    return Message(msg_id, "position", position_topic(node, up.unit), dumps(payload), 1, True)


def unit_status_message(node: str, s: UnitState) -> Message:
    """`<node>/unit/<unit>/status` (retained, on change)."""
    msg_id = new_msg_id()
    payload = {"unit": s.unit, "status": s.status.value, "since": utc_iso(s.since), "call_id": s.call_id, "msg_id": msg_id}
    return Message(msg_id, "unit_status", unit_status_topic(node, s.unit), dumps(payload), 1, True)


def status_set_message(owner: str, unit: str, status: UnitStatus, by: str, call_id: str | None) -> Message:
    """`<owner>/unit/<unit>/status/set`: this node asks the unit's own node to set its status (a call below)."""
    body = dumps({"status": status.value, "by": by, "call_id": call_id})
    return Message(new_msg_id(), "unit_status_set", status_set_topic(owner, unit), body, 1, False)


def emergency_message(node: str, unit: str, rs: RadioStatus, last: Fix | None) -> Message:
    """`<node>/unit/<unit>/emergency` (not retained): once per emergency signal of a unit's radio."""
    msg_id = new_msg_id()
    payload = {
        "unit": unit,
        "lat": None if last is None else round(last.lat, 7),
        "lon": None if last is None else round(last.lon, 7),
        "time": utc_iso(rs.received),
        "source": _source(rs.device, rs.radio),
        "msg_id": msg_id,
        "code": rs.code,
        "fix_time": None if last is None else utc_iso(last.time),
    }
    return Message(msg_id, "emergency", emergency_topic(node, unit), dumps(payload), 1, False)


# -- calls ---------------------------------------------------------------------------------------


def state_msg_id(call: Call) -> str:
    """The msg_id of the call state at this version: unique per transition, the same on every resend."""
    return stable_msg_id(call.node, call.call_id, "state", str(call.version))


def _t(value: datetime | None) -> str | None:
    return None if value is None else utc_iso(value)


def _candidate(c: Candidate) -> dict[str, object]:
    return {
        "unit": c.unit,
        "distance_m": round(c.distance_m, 1),
        "eta_s": round(c.eta_s, 1),
        "fix_age_s": round(c.fix_age_s, 1),
        "in_jurisdiction": c.in_jurisdiction,
    }


def call_state_payload(call: Call) -> dict[str, object]:
    """The JSON object of `<node>/call/<call_id>` (contract call-state), with a few added fields."""
    loc = call.request.location
    invalid = call.placement.status == LocationStatus.INVALID
    category = classify(call.request.category)
    return {
        "call_id": call.call_id,
        "state": call.state.value,
        "tier": call.tier,
        "node": call.node,
        "jurisdiction": None if invalid else call.placement.jurisdiction,
        "location_status": call.placement.status.value,
        "candidates": [_candidate(c) for c in call.candidates],
        "assigned_unit": call.assigned_unit,
        "answer_deadline": _t(call.answer_deadline),
        "escalated_to": call.escalated_to,
        "flags": list(dict.fromkeys(f for f in call.flags if f)),
        "msg_id": state_msg_id(call),
        # added fields
        "accept_deadline": _t(call.accept_deadline),
        "declined": list(call.declined),
        "answered_by": call.answered_by,
        "escalated_from": call.request.escalated_from,
        "category": call.request.category,
        "lat": None if loc is None else round(loc.lat, 7),
        "lon": None if loc is None else round(loc.lon, 7),
        "accuracy_m": None if loc is None else rounded(loc.accuracy_m, 1),
        "others": list(call.placement.others),
        "received_at": utc_iso(call.request.received_at),
        "created": utc_iso(call.created),
        "updated": utc_iso(call.updated),
        "version": call.version,
        "priority": category.priority,
        "dispatch": category.dispatch,
        "category_code": category.code,
        "category_label": category.label,
        "note": call.request.note,
    }


def call_state_message(call: Call) -> Message:
    """`<node>/call/<call_id>` (retained): the call's state after a transition."""
    payload = call_state_payload(call)
    return Message(str(payload["msg_id"]), "call_state", call_topic(call.node, call.call_id), dumps(payload), 1, True)


def alert_payload(alert: AlertUnit) -> dict[str, object]:
    """The JSON object of `<node>/unit/<unit>/alert` (contract unit-alert)."""
    return {
        "call_id": alert.call_id,
        "lat": rounded(alert.lat, 7),
        "lon": rounded(alert.lon, 7),
        "category": alert.category,
        "caller_note": alert.caller_note,
        "distance_m": rounded(alert.distance_m, 1),
        "msg_id": alert.msg_id,
        "unit": alert.unit,
        "attempt": alert.attempt,
    }


def alert_message(owner: str, alert: AlertUnit) -> Message:
    """`<owner>/unit/<unit>/alert`: go to this call (`owner` is the node the unit belongs to)."""
    return Message(alert.msg_id, "alert", alert_topic(owner, alert.unit), dumps(alert_payload(alert)), 1, False)


def call_new_payload(req: CallRequest, msg_id: str) -> dict[str, object]:
    """The JSON object published on another node's `call/new` (contract call-new, with escalated_from)."""
    loc = req.location
    return {
        "call_id": req.call_id,
        "caller": req.caller,
        "lat": None if loc is None else loc.lat,
        "lon": None if loc is None else loc.lon,
        "accuracy_m": None if loc is None else loc.accuracy_m,
        "received_at": utc_iso(req.received_at),
        "category": req.category,
        "escalated_from": req.escalated_from,
        "msg_id": msg_id,
        "note": req.note,
    }


def escalation_payload(esc: Escalate) -> dict[str, object]:
    """The JSON object of an escalation on `<parent>/call/new` (contract call-new, with escalated_from)."""
    return call_new_payload(esc.request, esc.msg_id)


def escalation_message(esc: Escalate) -> Message:
    """`<parent>/call/new`: a call this node did not answer in time, escalated with `escalated_from`."""
    body = dumps(escalation_payload(esc))
    return Message(esc.msg_id, "escalation", call_new_topic(esc.parent), body, 1, False)


def takeover_messages(node: str, child: str, req: CallRequest, reason: str, now: datetime) -> tuple[Message, Message]:
    """This node takes a call from `child` (offline or silent): the call on its own `call/new` (so its own parent
    supervises it in turn), and the retained `<child>/call/<call_id>/taken` the child reads when it is back."""
    msg_id = stable_msg_id(node, req.call_id, "takeover", child)
    payload = call_new_payload(replace(req, escalated_from=child), msg_id)
    payload["escalation_reason"] = reason
    new = Message(msg_id, "takeover", call_new_topic(node), dumps(payload), 1, False)
    taken_id = stable_msg_id(node, req.call_id, "taken", child)
    taken = {"call_id": req.call_id, "by": node, "reason": reason, "time": utc_iso(now), "msg_id": taken_id}
    return new, Message(taken_id, "call_taken", call_taken_topic(child, req.call_id), dumps(taken), 1, True)


def handoff_message(node: str, target: str, req: CallRequest) -> Message:
    """`<target>/call/new`: a call for another node's area, handed on as received (same msg_id on every resend)."""
    msg_id = stable_msg_id(node, req.call_id, target)
    return Message(msg_id, "call_handoff", call_new_topic(target), dumps(call_new_payload(req, msg_id)), 1, False)


# -- payloads in ---------------------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class BelowPosition:
    lat: float
    lon: float
    time: datetime


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
    return BelowPosition(lat, lon, t)


def parse_below_status(payload: bytes) -> UnitStatus | None:
    """The status of a unit's retained `status` from a node below; None when unusable."""
    try:
        body = json.loads(payload)
        return UnitStatus(str(body.get("status")))
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
class EventOutcome:
    """How an event on `call/<call_id>/event` ended, for its reply."""

    call_id: str
    event_id: str  # the event's msg_id ("" when it had none)
    action: str
    by: str
    accepted: bool
    reason: str  # why it was refused ("" when accepted)
    state: str | None  # the call's state afterwards (None: no such call)
    version: int | None


def event_result_message(node: str, o: EventOutcome, now: datetime) -> Message:
    """`<node>/call/<call_id>/event/result` (not retained): the answer a console matches by `event_id`."""
    msg_id = new_msg_id()  # not derived from event_id: a sender may reuse one after a refusal
    payload = {
        "call_id": o.call_id,
        "event_id": o.event_id or None,
        "action": o.action,
        "by": o.by,
        "result": "accepted" if o.accepted else "refused",
        "reason": o.reason,
        "state": o.state,
        "version": o.version,
        "time": utc_iso(now),
        "msg_id": msg_id,
    }
    return Message(msg_id, "event_result", call_event_result_topic(node, o.call_id), dumps(payload), 1, False)


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

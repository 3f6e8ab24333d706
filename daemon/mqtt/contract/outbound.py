"""Every payload alkomd publishes, as outbox `Message`s: node, devices, units, calls, answers, markers, anchors."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime

from alkomd.daemon.calls.categories import classify
from alkomd.daemon.calls.dispatch import AlertUnit, Call, Escalate, stable_msg_id
from alkomd.daemon.calls.history import Step
from alkomd.daemon.calls.types import CallRequest, Candidate, LocationStatus
from alkomd.daemon.mqtt.contract.topics import (
    alert_topic,
    audit_head_topic,
    call_event_result_topic,
    call_new_topic,
    call_taken_topic,
    call_topic,
    device_status_topic,
    emergency_topic,
    position_topic,
    radio_topic,
    status_set_topic,
    unit_status_topic,
)
from alkomd.daemon.records import Counters, DeviceStatus, Fix, RadioStatus, UnitPosition, UnitState, UnitStatus, utc_iso
from alkomd.daemon.store.audit import AuditHead
from alkomd.daemon.store.database import Message

LATEST_ONLY_KINDS = frozenset({"audit_head", "device_status"})
"""Kinds of message whose retained topic only ever says the latest: a consumer needs the newest one, not each one in
between (the publisher does not hold a superseded one back for a consumer that is not there yet)."""


def new_msg_id() -> str:
    """A globally unique message id: 128 random bits as 32 hex digits (consumers deduplicate on it)."""
    return os.urandom(16).hex()


def dumps(obj: object) -> str:
    """Compact UTF-8 JSON, as every payload is written (NaN and Infinity refused)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def state_payload(state: str, version: str, since: datetime) -> str:
    """`<node>/state` (retained; "offline" is also the MQTT will)."""
    return dumps({"state": state, "version": version, "since": utc_iso(since), "msg_id": new_msg_id()})


def link_probe_payload(nonce: str, sent: datetime, version: str) -> str:
    """`<node>/probe/link`: the daemon's probe to itself after a (re)connect; `probe` is that connect's nonce."""
    return dumps({"probe": nonce, "sent": utc_iso(sent), "by": "alkomd", "version": version})


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


def _source(device: str, radio: str | None) -> str:
    return f"{device}:{radio}" if radio else device


@dataclass(frozen=True, slots=True)
class UnitLabel:
    """What travels with a unit's messages so that every tier knows it (`type` sets its speed class for the ETA)."""

    type: str  # car, motorcycle, foot, boat
    callsign: str


def position_message(node: str, up: UnitPosition, label: UnitLabel | None = None, protocol: str | None = None) -> Message:
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
        "type": label.type if label else None,
        "callsign": label.callsign if label else None,
        "protocol": protocol,
    }
    return Message(msg_id, "position", position_topic(node, up.unit), dumps(payload), 1, True)


def unit_status_message(node: str, s: UnitState, label: UnitLabel | None = None) -> Message:
    """`<node>/unit/<unit>/status` (retained, on change)."""
    msg_id = new_msg_id()
    payload = {"unit": s.unit, "status": s.status.value, "since": utc_iso(s.since), "call_id": s.call_id, "msg_id": msg_id,
               "type": label.type if label else None, "callsign": label.callsign if label else None}
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
        "history": [_step(s) for s in call.history],
    }


def _step(s: Step) -> dict[str, object]:
    """One entry of a call state's `history` (contract call-state)."""
    return {
        "seq": s.seq, "time": utc_iso(s.time), "action": s.action, "state": s.state.value, "by": s.by or None, "unit": s.unit,
        "note": s.note, "detail": s.detail, "count": s.count,
    }


def clear_message(topic: str) -> Message:
    """An empty retained message: the broker forgets the topic's retained message (a closed call's state, after its
    retention; consumers drop the call from their lists)."""
    return Message(new_msg_id(), "clear", topic, "", 1, True)


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
        "caller_calls": req.caller_calls,
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


def audit_head_message(node: str, head: AuditHead) -> Message:
    """`<node>/audit/head` (retained): the audit chain's end after a transaction that appended to it."""
    msg_id = new_msg_id()
    payload = {"node": node, "count": head.count, "hash": head.hash, "time": utc_iso(head.time), "msg_id": msg_id}
    return Message(msg_id, "audit_head", audit_head_topic(node), dumps(payload), 1, True)

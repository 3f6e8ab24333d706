"""The console's live picture of the node, built only from contract messages: units, calls, alarms, replies, link."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from alkomd.console.timeline import Timeline, TimelineEntry, parse_history
from alkomd.daemon.mqtt import contract
from alkomd.daemon.records import utc_iso

log = logging.getLogger(__name__)

OPEN_STATES = ("new", "offered", "answered", "assigned", "enroute", "onscene")
MAX_FINISHED = 500  # closed or escalated calls kept for the page (the oldest go first); open calls are all kept
MAX_ACKED = 200  # acknowledged alarms kept


@dataclass(frozen=True, slots=True)
class UnitView:
    unit: str
    lat: float | None = None
    lon: float | None = None
    time: str | None = None  # time of the fix (UTC ISO)
    speed_kmh: float | None = None
    status: str = "unknown"
    since: str | None = None
    call_id: str | None = None
    type: str = ""
    callsign: str = ""


@dataclass(frozen=True, slots=True)
class CandidateView:
    unit: str
    distance_m: float | None
    eta_s: float | None
    fix_age_s: float | None


@dataclass(frozen=True, slots=True)
class CallView:
    call_id: str
    state: str
    tier: str = ""
    jurisdiction: str | None = None
    location_status: str = ""
    candidates: tuple[CandidateView, ...] = ()
    assigned_unit: str | None = None
    answer_deadline: str | None = None
    escalated_to: str | None = None
    escalated_from: str | None = None
    flags: tuple[str, ...] = ()
    category: str | None = None
    category_label: str | None = None  # the daemon's reading of the category, in Indonesian
    note: str | None = None
    lat: float | None = None
    lon: float | None = None
    accuracy_m: float | None = None
    priority: int | None = None
    dispatch: bool | None = None
    emergency: bool = False
    unknown_category: bool = False
    answered_by: str | None = None
    received_at: str | None = None
    updated: str | None = None
    version: int | None = None


@dataclass(frozen=True, slots=True)
class Alarm:
    alarm_id: str
    kind: str  # "emergency" (a unit's radio) or "call" (a priority call)
    subject: str  # the unit or the call id
    text: str
    time: str
    lat: float | None = None
    lon: float | None = None
    acked_by: str | None = None


@dataclass(frozen=True, slots=True)
class EventResult:
    event_id: str
    call_id: str
    action: str
    by: str
    result: str  # "accepted" or "refused"
    reason: str
    state: str | None
    version: int | None


@dataclass(frozen=True, slots=True)
class LinkView:
    broker: bool = False  # the console's own MQTT session is up
    node: str = "unknown"  # the daemon's <node>/state: online, offline or unknown
    node_since: str | None = None
    detail: str = ""


def now_iso() -> str:
    return utc_iso(datetime.now(UTC))


def _str(v: object) -> str | None:
    return v if isinstance(v, str) else None


def _num(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _lat_lon(body: dict[str, object]) -> tuple[float | None, float | None]:
    lat, lon = _num(body.get("lat")), _num(body.get("lon"))
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None, None
    return lat, lon


def _candidate(c: object) -> CandidateView | None:
    if not isinstance(c, dict) or not isinstance(c.get("unit"), str):
        return None
    return CandidateView(c["unit"], _num(c.get("distance_m")), _num(c.get("eta_s")), _num(c.get("fix_age_s")))


def parse_call(call_id: str, body: dict[str, object]) -> CallView | None:
    """A call-state payload as the page shows it; fields missing from an older daemon are left empty."""
    state = _str(body.get("state"))
    if state is None:
        return None
    raw_flags = body.get("flags")
    flags = tuple(f for f in raw_flags if isinstance(f, str)) if isinstance(raw_flags, list) else ()
    cands = body.get("candidates")
    candidates = tuple(c for c in (_candidate(x) for x in cands) if c) if isinstance(cands, list) else ()
    lat, lon = _lat_lon(body)
    note = _str(body.get("note")) or _str(body.get("caller_note"))
    dispatch = body.get("dispatch")
    return CallView(
        call_id=call_id, state=state, tier=_str(body.get("tier")) or "", jurisdiction=_str(body.get("jurisdiction")),
        location_status=_str(body.get("location_status")) or "", candidates=candidates,
        assigned_unit=_str(body.get("assigned_unit")), answer_deadline=_str(body.get("answer_deadline")),
        escalated_to=_str(body.get("escalated_to")), escalated_from=_str(body.get("escalated_from")), flags=flags,
        category=_str(body.get("category")), category_label=_str(body.get("category_label")), note=note,
        lat=lat, lon=lon, accuracy_m=_num(body.get("accuracy_m")),
        priority=_int(body.get("priority")), dispatch=dispatch if isinstance(dispatch, bool) else None,
        emergency=body.get("emergency") is True or "emergency" in flags,
        unknown_category=body.get("unknown_category") is True or "unknown_category" in flags,
        answered_by=_str(body.get("answered_by")), received_at=_str(body.get("received_at")),
        updated=_str(body.get("updated")), version=_int(body.get("version")),
    )


def parse_result(call_id: str, body: dict[str, object]) -> EventResult | None:
    event_id = _str(body.get("event_id"))
    if not event_id:
        return None
    return EventResult(
        event_id, _str(body.get("call_id")) or call_id, _str(body.get("action")) or "", _str(body.get("by")) or "",
        _str(body.get("result")) or "", _str(body.get("reason")) or "", _str(body.get("state")), _int(body.get("version")),
    )


def is_priority(call: CallView) -> bool:
    """A call that raises the alarm: priority 0 (an emergency) or flagged emergency."""
    return call.emergency or call.priority == 0


@dataclass
class Changes:
    """What changed since the page was last sent a batch."""

    units: set[str] = field(default_factory=set)
    calls: set[str] = field(default_factory=set)
    alarms: bool = False
    link: bool = False
    results: list[EventResult] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.units or self.calls or self.alarms or self.link or self.results)


class Model:
    """Owned by the event loop: every MQTT message and every officer's action goes through here."""

    def __init__(self, node: str, known_units: dict[str, tuple[str, str]] | None = None) -> None:
        self.node = node
        self.units: dict[str, UnitView] = {}
        self.calls: dict[str, CallView] = {}
        self.timelines: dict[str, Timeline] = {}
        self.alarms: dict[str, Alarm] = {}
        self.link = LinkView()
        self.changes = Changes()
        self._known = known_units or {}  # unit -> (type, callsign) from the [[unit]] tables
        self._seen_ids: dict[str, None] = {}

    # -- the broker link ----------------------------------------------------------------------

    def link_up(self) -> None:
        self.link = replace(self.link, broker=True, detail="")
        self.changes.link = True

    def link_down(self, reason: str) -> None:
        self.link = replace(self.link, broker=False, detail=reason)
        self.changes.link = True

    def message(self, topic: str, payload: bytes) -> None:
        """One MQTT message; anything unreadable is logged and skipped."""
        what = contract.parse_console_topic(self.node, topic)
        if what is None:
            return
        try:
            body = json.loads(payload) if payload else None
        except (ValueError, RecursionError):
            log.warning("console: %s: not JSON, ignored", topic)
            return
        if not isinstance(body, dict):
            return
        msg_id = body.get("msg_id")
        if isinstance(msg_id, str) and what.kind in ("emergency", "result"):
            if msg_id in self._seen_ids:  # a QoS 1 resend
                return
            self._seen_ids[msg_id] = None
            if len(self._seen_ids) > 10_000:
                del self._seen_ids[next(iter(self._seen_ids))]
        handler = {
            "state": self._node_state, "position": self._position, "status": self._status,
            "emergency": self._emergency, "call": self._call, "result": self._result,
        }[what.kind]
        handler(what.key, body)

    def _node_state(self, _key: str, body: dict[str, object]) -> None:
        state = _str(body.get("state")) or "unknown"
        self.link = replace(self.link, node=state, node_since=_str(body.get("since")))
        self.changes.link = True

    def _unit(self, unit: str) -> UnitView:
        u = self.units.get(unit)
        if u is None:
            kind, callsign = self._known.get(unit, ("", ""))
            u = UnitView(unit, type=kind, callsign=callsign)
        return u

    def _meta(self, u: UnitView, body: dict[str, object]) -> UnitView:
        kind, callsign = _str(body.get("type")), _str(body.get("callsign"))
        if kind or callsign:
            u = replace(u, type=kind or u.type, callsign=callsign or u.callsign)
        return u

    def _position(self, unit: str, body: dict[str, object]) -> None:
        lat, lon = _lat_lon(body)
        if lat is None:
            return
        u = self._meta(self._unit(unit), body)
        self.units[unit] = replace(u, lat=lat, lon=lon, time=_str(body.get("time")), speed_kmh=_num(body.get("speed_kmh")))
        self.changes.units.add(unit)

    def _status(self, unit: str, body: dict[str, object]) -> None:
        status = _str(body.get("status"))
        if status is None:
            return
        u = self._meta(self._unit(unit), body)
        self.units[unit] = replace(u, status=status, since=_str(body.get("since")), call_id=_str(body.get("call_id")))
        self.changes.units.add(unit)

    def _emergency(self, unit: str, body: dict[str, object]) -> None:
        lat, lon = _lat_lon(body)
        when = _str(body.get("time")) or now_iso()
        u = self.units.get(unit)
        who = f"{unit} ({u.callsign})" if u is not None and u.callsign else unit
        alarm_id = "emergency:" + (_str(body.get("msg_id")) or f"{unit}:{when}")
        self.alarms[alarm_id] = Alarm(alarm_id, "emergency", unit, f"EMERGENCY from {who}", when, lat, lon)
        self.changes.alarms = True
        log.warning("console: emergency from unit %s", unit)

    def _call(self, call_id: str, body: dict[str, object]) -> None:
        call = parse_call(call_id, body)
        if call is None:
            return
        old = self.calls.get(call_id)
        if old is not None and old.version is not None and call.version is not None and call.version < old.version:
            return  # an older state arriving late
        self.calls.pop(call_id, None)  # re-inserted: the dict's order is the order of the last change
        self.calls[call_id] = call
        self.changes.calls.add(call_id)
        self._prune_calls()
        steps = parse_history(body)
        if steps is not None:  # the daemon's own record of every step, also those before this console started
            if self.timelines.setdefault(call_id, Timeline()).merge(steps):
                self.changes.calls.add(call_id)
        elif old is None or old.state != call.state or old.version != call.version:  # a daemon without history: what is seen
            who = f" by {call.answered_by}" if call.answered_by and call.state == "answered" else ""
            unit = f" ({call.assigned_unit})" if call.assigned_unit and call.state in ("assigned", "enroute", "onscene") else ""
            went = f" to {call.escalated_to}" if call.state == "escalated" and call.escalated_to else ""
            self.note(call_id, call.updated or now_iso(), "state", f"{call.state}{who}{unit}{went}")
        alarm_id = "call:" + call_id
        if is_priority(call) and call.state in ("new", "offered") and alarm_id not in self.alarms:
            text = f"PRIORITY CALL {call_id}" + (f": {call.category}" if call.category else "")
            self.alarms[alarm_id] = Alarm(alarm_id, "call", call_id, text, call.received_at or now_iso(), call.lat, call.lon)
            self.changes.alarms = True

    def _result(self, call_id: str, body: dict[str, object]) -> None:
        r = parse_result(call_id, body)
        if r is None:
            return
        self.changes.results.append(r)
        why = f": {r.reason}" if r.reason else ""
        self.note(r.call_id, now_iso(), "reply", f"{r.action} by {r.by} {r.result}{why}")

    def _prune_calls(self) -> None:
        finished = [c for c, v in self.calls.items() if v.state not in OPEN_STATES]
        for call_id in finished[: max(0, len(finished) - MAX_FINISHED)]:
            del self.calls[call_id]
            self.timelines.pop(call_id, None)

    # -- officers ------------------------------------------------------------------------------

    def note(self, call_id: str, when: str, what: str, text: str) -> None:
        self.timelines.setdefault(call_id, Timeline()).note(TimelineEntry(when, what, text))
        self.changes.calls.add(call_id)

    def timeline(self, call_id: str) -> list[TimelineEntry]:
        """The call's whole timeline, in time order: the daemon's steps with what this console saw and sent."""
        tl = self.timelines.get(call_id)
        return tl.entries() if tl is not None else []

    def acknowledge(self, alarm_id: str, by: str) -> bool:
        a = self.alarms.get(alarm_id)
        if a is None or a.acked_by:
            return False
        self.alarms[alarm_id] = replace(a, acked_by=by)
        acked = [k for k, v in self.alarms.items() if v.acked_by]
        for k in acked[: max(0, len(acked) - MAX_ACKED)]:
            del self.alarms[k]
        self.changes.alarms = True
        log.info("console: alarm %s acknowledged by %s", alarm_id, by)
        return True

    def take_changes(self) -> Changes:
        c, self.changes = self.changes, Changes()
        return c

"""The call desk: MQTT and SQLite around the pure dispatch logic (runs on the event loop thread).

In: `<node>/call/new` and `<node>/call/aml` (intake -> jurisdiction -> recommendation ->
`dispatch.step`), `<node>/call/<call_id>/event` (a dispatcher's or a unit's action), and the
deadlines `dispatch.next_deadline` asks for. Out, for every step, in ONE SQLite transaction: the
call's row, its audit entries, unit status changes, and the outbox messages (retained call
state, alerts, escalation to the parent node). Open calls and their deadlines are reloaded at
start; alert ids are deterministic, so a restart never sends an alert twice.

A node that receives a call for a place outside its own polygons hands it to the child node
whose polygon holds the caller (Polda, Mabes), or up to its parent when no polygon is near.

A Polda or Mabes node also follows the units below it (their retained positions and statuses)
and recommends across its whole area; an alert or a status change for such a unit goes to the
node that owns it (`<owner>/unit/<unit>/alert`, `<owner>/unit/<unit>/status/set`). Unit ids
must therefore be unique within a Polda's area (Mabes: nationwide).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime, timedelta

from alkomd.daemon.calls import dispatch
from alkomd.daemon.calls import intake as call_intake
from alkomd.daemon.calls.jurisdictions import JurisdictionIndex
from alkomd.daemon.calls.recommend import UnitIndex, recommend
from alkomd.daemon.calls.types import (
    CallRequest,
    CallStateName,
    Location,
    LocationStatus,
    Placement,
    UnitSnapshot,
    UnitStatus,
)  # fmt: skip
from alkomd.daemon.config import Config
from alkomd.daemon.mqtt import contract
from alkomd.daemon.mqtt.publisher import Publisher
from alkomd.daemon.positions.availability import UnitState
from alkomd.daemon.positions.station import Station, status_audit
from alkomd.daemon.records import UnitPosition, utc_iso
from alkomd.daemon.store.audit import AuditEntry
from alkomd.daemon.store.database import Message, Store, StoredCall, StoreError

log = logging.getLogger(__name__)

RETRY_STORE_S = 1.0
FINAL = (CallStateName.CLOSED, CallStateName.ESCALATED)
_EVENTS = ("answer", "assign", "accept", "decline", "arrive", "close")


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class CallDesk:
    def __init__(
        self,
        cfg: Config,
        store: Store,
        station: Station,
        publisher: Publisher,
        loop: asyncio.AbstractEventLoop,
        clock: Callable[[], datetime],
        jurisdictions: JurisdictionIndex | None,
    ) -> None:
        self.node = cfg.node.topic
        self.root = cfg.node.root
        self.role = dispatch.NodeRole.of(cfg.node.topic, cfg.node.tier)
        self.opts = cfg.dispatch
        self.ropts = cfg.recommend
        self.calls_cfg = cfg.calls
        self.store = store
        self.station = station
        self.publisher = publisher
        self.jurisdictions = jurisdictions
        self._loop = loop
        self._clock = clock
        self.units = UnitIndex()
        self.calls: dict[str, dispatch.Call] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # caller -> times of their calls in the window; least recent caller first, so callers whose last
        # call left the window are forgotten at once (memory bounded by the window, not the uptime)
        self._callers: OrderedDict[str, deque[datetime]] = OrderedDict()
        self._seen_event_ids: deque[str] = deque(maxlen=10_000)
        self.owner: dict[str, str] = {}  # unit of a node below -> that node's topic
        for body in store.open_calls():
            try:
                call = dispatch.call_from_json(body)
            except ValueError:
                log.exception("a stored call cannot be read; left in the database for a human")
                continue
            self.calls[call.call_id] = call
            self._arm(call)
        if self.calls:
            log.info("reloaded %d open calls; their deadlines are re-armed", len(self.calls))
        for unit, state in station.availability.states.items():
            self._index_unit(unit, state=state)
        for up in station.latest.values():
            self._index_unit(up.unit, position=up)

    @property
    def subscriptions(self) -> tuple[str, ...]:
        own = (f"{self.node}/call/new", f"{self.node}/call/aml", f"{self.node}/call/+/event")
        below = {"polda": "/+", "mabes": "/+/+"}.get(self.role.tier)
        if below is None:
            return own
        return (*own, f"{self.node}{below}/unit/+/position", f"{self.node}{below}/unit/+/status")

    def _below(self, topic: str, payload: bytes) -> bool:
        """A retained position or status of a unit of a node below (Polda, Mabes)."""
        head, sep, tail = topic.rpartition("/unit/")
        unit, _, kind = tail.partition("/")
        if not sep or head == self.node or not head.startswith(self.node + "/") or kind not in ("position", "status"):
            return False
        try:
            body = json.loads(payload)
        except (ValueError, RecursionError):
            return True
        if not isinstance(body, dict) or not unit:
            return True
        self.owner[unit] = head
        old = self.units.get(unit)
        if kind == "position":
            try:
                lat, lon = float(body["lat"]), float(body["lon"])
                t = datetime.fromisoformat(str(body["time"]).replace("Z", "+00:00"))
            except (KeyError, TypeError, ValueError):
                return True
            if not (-90 <= lat <= 90 and -180 <= lon <= 180) or t.tzinfo is None:
                return True
            jur = self.jurisdictions.jurisdiction_of(lat, lon) if self.jurisdictions else None
            status = old.status if old else UnitStatus.OFFLINE
            self.units.update(UnitSnapshot(unit, old.type if old else "car", status, lat, lon, t, jur))
        else:
            try:
                status = UnitStatus(str(body.get("status")))
            except ValueError:
                return True
            if old is None:
                self.units.update(UnitSnapshot(unit, "car", status, None, None, None, None))
            else:
                self.units.update(UnitSnapshot(unit, old.type, status, old.lat, old.lon, old.fix_time, old.jurisdiction))
        return True

    # -- in -------------------------------------------------------------------------------------

    def message(self, topic: str, payload: bytes, retained: bool = False) -> bool:
        """Handle a message on one of `subscriptions`; False if the topic is not ours.

        Retained messages count for the units below (their last position and status); a retained
        call or event is ignored (it would replay an old call at every reconnect).
        """
        rest = topic[len(self.node) + 1 :] if topic.startswith(self.node + "/") else ""
        if rest.endswith(("/position", "/status")) and self._below(topic, payload):
            return True
        if retained:
            return rest.startswith("call/")
        now = self._clock()
        if rest == "call/new":
            self.receive(call_intake.parse_call(payload, now))
        elif rest == "call/aml":
            self.receive(call_intake.parse_aml(payload, now))
        elif rest.startswith("call/") and rest.endswith("/event"):
            self.event(rest[len("call/") : -len("/event")], payload)
        else:
            return False
        return True

    def receive(self, req: CallRequest) -> None:
        now = self._clock()
        existing = self.calls.get(req.call_id)
        if existing is not None or self.store.has_call(req.call_id):
            self._commit([AuditEntry(now, "call.duplicate", req.call_id, "", _dumps({"sha256": req.raw_sha256}))], [])
            return
        placement = self._place(req.location)
        target = self._handoff(req, placement)
        if target is not None:
            topic = f"{target}/call/new"
            esc = dispatch.Escalate(target, req, dispatch.stable_msg_id(self.node, req.call_id, target))
            body = _dumps(dispatch.escalation_payload(esc))
            msg = Message(esc.msg_id, "call_handoff", topic, body, 1, False)
            detail = _dumps({"to": target, "location_status": placement.status.value, "problems": list(req.problems)})
            self._commit([AuditEntry(now, "call.handed_off", req.call_id, "", detail)], [msg],
                         [StoredCall(req.call_id, "handed_off", False, body)])  # fmt: skip
            log.info("call %s: not in this node's area: handed to %s", req.call_id, target)
            return
        flags: tuple[str, ...] = (dispatch.FLAG_REPEAT_CALLER,) if self._repeat(req.caller, now) else ()
        if now - req.received_at > call_intake.MAX_AGE:  # a replayed capture, or a gateway that held it a day
            flags += (dispatch.FLAG_OLD_CALL,)
            log.warning("call %s: received_at %s is more than %d h before intake: flagged %s", req.call_id,
                        utc_iso(req.received_at), int(call_intake.MAX_AGE.total_seconds() // 3600), dispatch.FLAG_OLD_CALL)  # fmt: skip
        candidates = recommend(self.units, req.location, placement, now, self.ropts) if req.location else ()
        received = _dumps({"caller": req.caller, "source": req.source, "problems": list(req.problems),
                           "escalated_from": req.escalated_from, "sha256": req.raw_sha256})  # fmt: skip
        audit = AuditEntry(now, "call.received", req.call_id, "", received)
        self._run(req.call_id, dispatch.Receive(req, placement, candidates, flags), [audit])

    def event(self, call_id: str, payload: bytes) -> None:
        """A dispatcher's or unit's action; anything invalid is refused into the audit record."""
        now = self._clock()
        ev, reason, event_id = self._parse_event(payload)
        if event_id and event_id in self._seen_event_ids:
            return  # a QoS 1 redelivery of an event already applied
        if ev is None or call_id not in self.calls:
            reason = reason or ("no such open call" if not self.store.has_call(call_id) else "the call is closed")
            detail = _dumps({"reason": reason, "payload": payload[:200].decode("utf-8", "replace")})
            self._commit([AuditEntry(now, "call.event_refused", call_id[:64], "", detail)], [])
            log.warning("call %s: event refused: %s", call_id, reason)
            return
        if event_id:
            self._seen_event_ids.append(event_id)
        self._run(call_id, ev, [])

    def _parse_event(self, payload: bytes) -> tuple[dispatch.Event | None, str, str]:
        try:
            body = json.loads(payload)
        except (ValueError, RecursionError):
            return None, "not JSON", ""
        if not isinstance(body, dict):
            return None, "not a JSON object", ""
        action, by, unit, note = body.get("action"), body.get("by"), body.get("unit"), body.get("note", "")
        raw_id = body.get("msg_id")
        event_id = raw_id if isinstance(raw_id, str) else ""
        if action not in _EVENTS:
            return None, f"action must be one of {', '.join(_EVENTS)}", event_id
        if not isinstance(by, str) or not 0 < len(by) <= 64:
            return None, '"by" must be a string of 1 to 64 characters', event_id
        if unit is not None and (not isinstance(unit, str) or not 0 < len(unit) <= 64):
            return None, '"unit" must be a unit id', event_id
        if not isinstance(note, str):
            note = ""
        note = note[:500]
        if action == "assign" and unit is None:
            return None, "assign needs a unit", event_id
        ev: dispatch.Event
        if action == "answer":
            ev = dispatch.Answer(by=by, unit=unit, note=note)
        elif action == "assign":
            ev = dispatch.Assign(by=by, unit=str(unit), note=note)
        elif action == "decline":
            ev = dispatch.Decline(by=by, unit=unit, note=note)
        elif action == "accept":
            ev = dispatch.Accept(by=by, unit=unit)
        elif action == "arrive":
            ev = dispatch.Arrive(by=by, unit=unit)
        else:
            ev = dispatch.Close(by=by, note=note)
        return ev, "", event_id

    # -- the step -------------------------------------------------------------------------------

    def _run(self, call_id: str, event: dispatch.Event, audits: list[AuditEntry]) -> None:
        now = self._clock()
        before = self.calls.get(call_id)
        call, actions = dispatch.step(before, event, now, self.role, self.opts)
        if call is None:
            return
        messages: list[Message] = []
        states: list[UnitState] = []
        saved = dict(self.station.availability.states)
        for a in actions:
            if isinstance(a, dispatch.Audit):
                detail = _dumps({"detail": a.detail, "by": a.by})
                audits.append(AuditEntry(now, f"call.{a.kind}", call.call_id, call.assigned_unit or "", detail))
            elif isinstance(a, dispatch.PublishState):
                payload = dispatch.call_state_payload(a.call)
                topic = f"{self.node}/call/{a.call.call_id}"
                messages.append(Message(str(payload["msg_id"]), "call_state", topic, _dumps(payload), 1, True))
            elif isinstance(a, dispatch.AlertUnit):
                payload = dispatch.alert_payload(a)
                owner = self.owner.get(a.unit, self.node)
                messages.append(Message(a.msg_id, "alert", f"{owner}/unit/{a.unit}/alert", _dumps(payload), 1, False))
            elif isinstance(a, dispatch.Escalate):
                payload = dispatch.escalation_payload(a)
                messages.append(Message(a.msg_id, "escalation", f"{a.parent}/call/new", _dumps(payload), 1, False))
            elif isinstance(a, dispatch.SetUnitStatus) and a.unit in self.owner:
                body = _dumps({"status": a.status.value, "by": self.node, "call_id": a.call_id})
                topic = f"{self.owner[a.unit]}/unit/{a.unit}/status/set"
                messages.append(Message(contract.new_msg_id(), "unit_status_set", topic, body, 1, False))
            elif isinstance(a, dispatch.SetUnitStatus):
                try:
                    st = self.station.availability.set(a.unit, a.status, now, a.call_id)
                except ValueError as exc:  # a unit of another node: its own node tracks its status
                    log.info("call %s: unit %s: %s", call.call_id, a.unit, exc)
                    continue
                if st is not None:
                    states.append(st)
                    messages.append(contract.unit_status_message(self.node, st))
                    audits.append(status_audit(st, saved[st.unit], now, call.call_id))
            elif isinstance(a, dispatch.Refused):
                log.warning("call %s: %s", call.call_id, a.reason)
        open_ = call.state not in FINAL
        row = StoredCall(call.call_id, call.state.value, open_, dispatch.call_to_json(call))
        try:
            self.store.record([], messages, now, audits, states, [row])
        except StoreError as exc:
            self.station.availability.states = saved
            log.error("call %s: %s; retrying in %.0f s", call_id, exc, RETRY_STORE_S)
            self._loop.call_later(RETRY_STORE_S, self._run, call_id, event, [])
            return
        if before is None or before.state != call.state:
            log.info("call %s: %s -> %s%s", call.call_id, before.state.value if before else "-", call.state.value,
                     f" (unit {call.assigned_unit})" if call.assigned_unit else "")  # fmt: skip
        for st in states:
            self._index_unit(st.unit, state=st)
        if open_:
            self.calls[call.call_id] = call
            self._arm(call)
        else:
            self.calls.pop(call.call_id, None)
            timer = self._timers.pop(call.call_id, None)
            if timer is not None:
                timer.cancel()
        self.publisher.pump()

    def _commit(self, audits: list[AuditEntry], messages: list[Message], calls: list[StoredCall] | None = None) -> None:
        try:
            self.store.record([], messages, self._clock(), audits, (), calls or ())
        except StoreError:
            log.exception("cannot record a call-desk entry")
            return
        self.publisher.pump()

    def _arm(self, call: dispatch.Call) -> None:
        old = self._timers.pop(call.call_id, None)
        if old is not None:
            old.cancel()
        deadline = dispatch.next_deadline(call)
        if deadline is None:
            return
        delay = max(0.0, (deadline - self._clock()).total_seconds())
        self._timers[call.call_id] = self._loop.call_later(delay, self._tick, call.call_id)

    def _tick(self, call_id: str) -> None:
        self._timers.pop(call_id, None)
        if call_id in self.calls:
            self._run(call_id, dispatch.Tick(), [])

    # -- places and units -----------------------------------------------------------------------

    def _place(self, loc: Location | None) -> Placement:
        if loc is None:
            return Placement(LocationStatus.INVALID, None)
        if self.jurisdictions is None:
            return Placement(LocationStatus.OK, None)
        return self.jurisdictions.locate(loc)

    def _handoff(self, req: CallRequest, placement: Placement) -> str | None:
        """The node to hand a call to instead of taking it here, or None to take it."""
        if self.jurisdictions is None or req.location is None:
            return None
        if self.role.tier != "polres" and req.escalated_from is None:
            child = self.jurisdictions.route(req.location)
            if child is not None:
                return f"{self.root}/{child}"
        if placement.status is LocationStatus.OUTSIDE and placement.jurisdiction is None and self.role.parent:
            return self.role.parent
        return None

    def _repeat(self, caller: str, now: datetime) -> bool:
        window = timedelta(seconds=self.calls_cfg.repeat_caller_window_s)
        callers = self._callers
        while callers and now - next(iter(callers.values()))[-1] > window:
            callers.popitem(last=False)
        if not caller:
            return False
        q = callers.get(caller)
        if q is None:
            q = callers[caller] = deque()
        else:
            callers.move_to_end(caller)
        q.append(now)
        while q and now - q[0] > window:
            q.popleft()
        return len(q) > self.calls_cfg.repeat_caller_count

    def units_changed(self, positions: list[UnitPosition], states: list[UnitState]) -> None:
        """The station committed new positions or unit statuses (keeps the recommender's index)."""
        for up in positions:
            self._index_unit(up.unit, position=up)
        for st in states:
            self._index_unit(st.unit, state=st)

    def _index_unit(self, unit: str, position: UnitPosition | None = None, state: UnitState | None = None) -> None:
        info = self.station.units.get(unit)
        if info is None:
            return
        old = self.units.get(unit)
        st = state.status if state is not None else (old.status if old else self.station.availability.states[unit].status)
        lat = position.fix.lat if position else (old.lat if old else None)
        lon = position.fix.lon if position else (old.lon if old else None)
        t = position.fix.time if position else (old.fix_time if old else None)
        jur = old.jurisdiction if old and position is None else None
        if position is not None and self.jurisdictions is not None:
            jur = self.jurisdictions.jurisdiction_of(position.fix.lat, position.fix.lon)
        self.units.update(UnitSnapshot(unit, info.type, st, lat, lon, t, jur))

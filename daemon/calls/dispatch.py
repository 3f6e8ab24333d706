"""The call dispatch state machine, pure: step(call, event, now) -> (call, actions); the edge does MQTT, SQLite and timers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from alkomd.daemon.calls import history as h
from alkomd.daemon.calls.categories import classify
from alkomd.daemon.calls.options import DispatchOptions
from alkomd.daemon.calls.types import CallRequest, CallStateName, Candidate, Location, LocationStatus, Placement
from alkomd.daemon.records import UnitStatus, utc_iso

TIERS = ("polres", "polda", "mabes")  # as in config.TIERS (the pure machine imports no config)

FLAG_REPEAT_CALLER = "repeat_caller"
FLAG_NO_CANDIDATE = "no_candidate"  # nobody to send: a dispatcher must find a unit
FLAG_INVALID_LOCATION = "invalid_location"  # a human must ask the caller where they are
FLAG_REALERTED = "realerted"  # Mabes: the answer timer ran out at least once
FLAG_OLD_CALL = "old_call"  # received_at more than a day before intake: a replayed capture or a long-held message
FLAG_AML = "aml_merged"  # the phone's AML/ELS location was attached to this (voice) call
FLAG_AML_UNMATCHED = "aml_unmatched"  # an AML/ELS report that matched no voice call: a call of its own
FLAG_EMERGENCY = "emergency"  # a unit's radio emergency button: a call at priority 0, the unit itself is never sent
FLAG_UNKNOWN_CATEGORY = "unknown_category"  # not in the 110 taxonomy (calls/categories.py): kept, handled as a report

S = CallStateName
FINAL = frozenset({S.CLOSED, S.ESCALATED})
WORKING = frozenset({S.ASSIGNED, S.ENROUTE, S.ONSCENE})  # states in which assigned_unit is busy on the call


# -- the node's role -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeRole:
    """This node's place in the hierarchy: its `<node>` topic, its tier, its parent's `<node>` (None at Mabes)."""

    node: str
    tier: str
    parent: str | None

    def __post_init__(self) -> None:
        if self.tier not in TIERS:
            raise ValueError(f"tier must be one of {', '.join(TIERS)}; got {self.tier!r}")
        if (self.parent is None) != (self.tier == "mabes"):
            raise ValueError(f"a {self.tier} node {'needs' if self.parent is None else 'has no'} parent node")

    @classmethod
    def of(cls, node: str, tier: str) -> NodeRole:
        """From the node config (`cfg.node.topic`, `cfg.node.tier`): the parent is the topic one level up."""
        if tier == "mabes":
            return cls(node, tier, None)
        if "/" not in node:
            raise ValueError(f"a {tier} node needs a node path under the root; got {node!r}")
        return cls(node, tier, node.rsplit("/", 1)[0])


# -- the call record -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """Everything known of one call at this node; stored whole, so a restart re-arms timers and re-sends nothing."""

    call_id: str
    request: CallRequest
    placement: Placement
    state: CallStateName
    tier: str
    node: str
    candidates: tuple[Candidate, ...]  # best first, as last recommended
    assigned_unit: str | None
    declined: tuple[str, ...]  # units that declined or did not accept in time (never alerted again automatically)
    answered_by: str | None
    answer_deadline: datetime | None  # set while offered
    accept_deadline: datetime | None  # set while assigned
    escalated_to: str | None
    flags: tuple[str, ...]
    created: datetime
    updated: datetime
    alerts_sent: tuple[tuple[str, int], ...]  # (unit, attempt) of every alert emitted; attempt counts from 1
    version: int  # 1 after Receive, +1 per accepted event
    note: str = ""  # the dispatcher's latest note (answer/assign), sent to units with the caller's note
    realert_at: datetime | None = None  # answered but no unit left: when the dispatchers are alerted again
    history: tuple[h.Step, ...] = ()  # the steps it went through here, oldest first (the last h.MAX_HISTORY)

    @property
    def is_final(self) -> bool:
        return self.state in FINAL


# -- events (in) ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Receive:
    """A call arrived on `<node>/call/new` (or AML), already placed and with candidates ranked."""

    request: CallRequest
    placement: Placement
    candidates: tuple[Candidate, ...] = ()
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Answer:
    """The duty officer answers; with `unit` it is also an assignment, without it the top candidate is alerted."""

    by: str
    unit: str | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Assign:
    by: str
    unit: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Accept:
    by: str
    unit: str | None = None  # None: the unit is `by` (the event's "unit" is optional in the contract)


@dataclass(frozen=True, slots=True)
class Decline:
    by: str
    unit: str | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Arrive:
    by: str
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class Close:
    by: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Refine:
    """The caller's phone sent its location (AML SMS or ELS) for this call: a better place, placed and ranked anew."""

    location: Location
    placement: Placement
    candidates: tuple[Candidate, ...]
    source: str  # aml-sms, els-https
    detail: str


@dataclass(frozen=True, slots=True)
class TakenOver:
    """The parent node took this call (this node was offline or silent): it is the parent's now."""

    by: str  # the parent's <node>
    reason: str


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: the edge sends it when `next_deadline(call)` is reached (early or extra ticks are harmless)."""


@dataclass(frozen=True, slots=True)
class Recandidate:
    """A fresh recommendation (after a decline chain ran dry, or periodically while offered/answered)."""

    candidates: tuple[Candidate, ...]


Event = Receive | Answer | Assign | Accept | Decline | Arrive | Close | Tick | Recandidate | TakenOver | Refine


# -- actions (out) -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishState:
    """Publish `call_state_payload(call)` retained on `<node>/call/<call_id>`."""

    call: Call


@dataclass(frozen=True, slots=True)
class AlertUnit:
    """Publish `alert_payload(self)` on `<node>/unit/<unit>/alert`; `msg_id` is stable (call, unit, attempt)."""

    call_id: str
    unit: str
    lat: float | None
    lon: float | None
    category: str
    caller_note: str
    distance_m: float | None  # None: the location is unknown, or the unit was no candidate (a dispatcher's choice)
    attempt: int
    msg_id: str


@dataclass(frozen=True, slots=True)
class SetUnitStatus:
    unit: str
    status: UnitStatus
    call_id: str | None


@dataclass(frozen=True, slots=True)
class Escalate:
    """Publish `escalation_payload(self)` on `<parent>/call/new`."""

    parent: str
    request: CallRequest  # escalated_from is this node
    msg_id: str


@dataclass(frozen=True, slots=True)
class Audit:
    kind: str  # the state entered, or realert, declined, accept_timeout, recandidate, refused, duplicate
    detail: str
    by: str = ""


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str


Action = PublishState | AlertUnit | SetUnitStatus | Escalate | Audit | Refused
Result = tuple[Call | None, tuple[Action, ...]]


# -- the state machine ---------------------------------------------------------------------------


def step(call: Call | None, event: Event, now: datetime, role: NodeRole, opts: DispatchOptions) -> Result:
    """Apply one event at `now` (aware UTC). Never raises on an event: one that does not fit is Refused and audited.

    Returns the new call (None only when `call` was None and the event was no Receive) and the
    actions for the edge, in order: audits, then PublishState (once per accepted event, with the new
    call), then unit statuses, alerts and escalation. An event that changes nothing returns the call
    unchanged (same version) and no PublishState.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware UTC datetime")  # a programming error at the edge, not an event
    if isinstance(event, Receive):
        return _receive(call, event, now, role, opts)
    if call is None:
        if isinstance(event, Tick | Recandidate | TakenOver):
            return None, ()
        return None, _refusal(event, "no such call")
    if call.is_final:
        if isinstance(event, Tick | Recandidate | TakenOver):
            return call, ()
        return call, _refusal(event, f"the call is {call.state.value} (final)")
    tx = _Tx(call, now, role, opts)
    if isinstance(event, Answer):
        return tx.answer(event)
    if isinstance(event, Assign):
        return tx.assign(event)
    if isinstance(event, Accept):
        return tx.accept(event)
    if isinstance(event, Decline):
        return tx.decline(event)
    if isinstance(event, Arrive):
        return tx.arrive(event)
    if isinstance(event, Close):
        return tx.close(event)
    if isinstance(event, Tick):
        return tx.tick()
    if isinstance(event, TakenOver):
        return tx.taken_over(event)
    if isinstance(event, Refine):
        return tx.refine(event)
    return tx.recandidate(event)


def next_deadline(call: Call | None) -> datetime | None:
    """When the edge must send the next Tick for this call (None: no timer runs)."""
    if call is None:
        return None
    if call.state == S.OFFERED:
        return call.answer_deadline
    if call.state == S.ASSIGNED:
        return call.accept_deadline
    if call.state == S.ANSWERED:
        return call.realert_at
    return None


def _receive(call: Call | None, event: Receive, now: datetime, role: NodeRole, opts: DispatchOptions) -> Result:
    req = event.request
    if call is not None:
        if call.call_id != req.call_id:
            return call, _refusal(event, f"call id {req.call_id!r} delivered to call {call.call_id!r}")
        return call, (Audit("duplicate", f"call {req.call_id} received again (source {req.source}); unchanged"),)
    invalid = event.placement.status == LocationStatus.INVALID or req.location is None
    category = classify(req.category)
    candidates = () if invalid or not category.dispatch else tuple(event.candidates)
    flags = _unique(event.flags)
    if category.category is None:
        flags = _with(flags, FLAG_UNKNOWN_CATEGORY)
    if invalid:
        flags = _with(flags, FLAG_INVALID_LOCATION)
    if not candidates and category.dispatch:
        flags = _with(flags, FLAG_NO_CANDIDATE)
    deadline = now + opts.answer_timeout(role.tier)
    where = event.placement.jurisdiction or "no jurisdiction"
    origin = f", escalated from {req.escalated_from}" if req.escalated_from else ""
    received = f"call {req.call_id} from {req.source}{origin}: {req.category}, {event.placement.status.value} in {where}"
    offered = f"to the {role.tier} duty officer until {utc_iso(deadline)}; candidates: {_units(candidates)}"
    steps = h.record(h.record((), now, h.RECEIVED, S.NEW, received), now, h.OFFERED, S.OFFERED, offered)
    new = Call(
        call_id=req.call_id, request=req, placement=event.placement, state=S.OFFERED, tier=role.tier, node=role.node,
        candidates=candidates, assigned_unit=None, declined=(), answered_by=None, answer_deadline=deadline,
        accept_deadline=None, escalated_to=None, flags=flags, created=now, updated=now, alerts_sent=(), version=1, history=steps,
    )
    return new, (Audit("new", received), Audit("offered", offered), PublishState(new))


class _Tx:
    """One accepted event being applied: the call as it changes, and the actions it causes."""

    def __init__(self, call: Call, now: datetime, role: NodeRole, opts: DispatchOptions) -> None:
        self.start = call
        self.call = call
        self.now = now
        self.role = role
        self.opts = opts
        self.audits: list[Action] = []
        self.effects: list[Action] = []

    def done(self) -> Result:
        call = replace(self.call, version=self.start.version + 1, updated=self.now)
        return call, (*self.audits, PublishState(call), *self.effects)

    def refuse(self, event: Event, reason: str) -> Result:
        return self.start, _refusal(event, reason)

    def enter(self, state: CallStateName, action: str, detail: str, by: str = "", unit: str | None = None, said: str = "",
              **changes: Any) -> None:
        self.call = replace(self.call, state=state, **changes)
        self.log(state.value, action, detail, by, unit, said)

    def log(self, kind: str, action: str, detail: str, by: str = "", unit: str | None = None, note: str = "") -> None:
        """Audit a step (`kind`) and add it to the call's history as `action` (none: audited only)."""
        self.audits.append(Audit(kind, detail, by))
        if action:
            steps = h.record(self.call.history, self.now, action, self.call.state, detail, by, unit, note)
            self.call = replace(self.call, history=steps)

    # -- events --

    def answer(self, ev: Answer) -> Result:
        if self.call.state != S.OFFERED:
            return self.refuse(ev, f"answer: the call is {self.call.state.value}, not offered")
        if ev.unit is not None and not _valid_unit(ev.unit):
            return self.refuse(ev, f"answer: not a valid unit id {ev.unit!r}")
        if ev.unit is None and not classify(self.call.request.category).dispatch:
            self.enter(S.ANSWERED, h.ANSWERED, f"answered by {ev.by}: no unit needed ({self.call.request.category})", ev.by,
                       said=ev.note, answered_by=ev.by, answer_deadline=None, note=ev.note or self.call.note)
            return self.done()
        self._answered(ev.by, ev.note)
        if ev.unit is not None:
            self._assign(ev.unit, ev.by, "the dispatcher's choice")
        else:
            self._assign_next(ev.by, "top candidate")
        return self.done()

    def assign(self, ev: Assign) -> Result:
        c = self.call
        if c.state not in (S.OFFERED, S.ANSWERED, S.ASSIGNED, S.ENROUTE):
            return self.refuse(ev, f"assign: the call is {c.state.value}")
        if not _valid_unit(ev.unit):
            return self.refuse(ev, f"assign: not a valid unit id {ev.unit!r}")
        if ev.unit == c.assigned_unit:
            return self.refuse(ev, f"assign: {ev.unit} is already assigned")
        if c.state == S.OFFERED:
            self._answered(ev.by, ev.note)
        elif ev.note:
            self.call = replace(self.call, note=ev.note)
        reason = "the dispatcher's choice" if c.assigned_unit is None else f"reassigned from {c.assigned_unit}"
        self._assign(ev.unit, ev.by, reason, ev.note)
        return self.done()

    def accept(self, ev: Accept) -> Result:
        unit = ev.unit or ev.by
        if self.call.state != S.ASSIGNED:
            return self.refuse(ev, f"accept: the call is {self.call.state.value}, not assigned")
        if unit != self.call.assigned_unit:
            return self.refuse(ev, f"accept: {unit} is not the assigned unit ({self.call.assigned_unit})")
        self.enter(S.ENROUTE, h.ACCEPTED, f"{unit} accepted", ev.by, unit, accept_deadline=None)
        self.effects.append(SetUnitStatus(unit, UnitStatus.ENROUTE, self.call.call_id))
        return self.done()

    def decline(self, ev: Decline) -> Result:
        unit = ev.unit or ev.by
        if self.call.state != S.ASSIGNED:
            return self.refuse(ev, f"decline: the call is {self.call.state.value}, not assigned")
        if unit != self.call.assigned_unit:
            return self.refuse(ev, f"decline: {unit} is not the assigned unit ({self.call.assigned_unit})")
        note = f": {ev.note}" if ev.note else ""
        self._replace_unit("declined", h.DECLINED, f"{unit} declined{note}", ev.by, ev.note)
        return self.done()

    def arrive(self, ev: Arrive) -> Result:
        unit = ev.unit or ev.by
        if self.call.state != S.ENROUTE:
            return self.refuse(ev, f"arrive: the call is {self.call.state.value}, not enroute")
        if unit != self.call.assigned_unit:
            return self.refuse(ev, f"arrive: {unit} is not the assigned unit ({self.call.assigned_unit})")
        self.enter(S.ONSCENE, h.ARRIVED, f"{unit} on scene", ev.by, unit)
        self.effects.append(SetUnitStatus(unit, UnitStatus.ONSCENE, self.call.call_id))
        return self.done()

    def close(self, ev: Close) -> Result:
        c = self.call
        detail = f"closed in state {c.state.value}" + (f": {ev.note}" if ev.note else "")
        self.enter(S.CLOSED, h.CLOSED, detail, ev.by, c.assigned_unit, ev.note, answer_deadline=None, accept_deadline=None)
        if c.assigned_unit is not None and c.state in WORKING:
            self.effects.append(SetUnitStatus(c.assigned_unit, UnitStatus.AVAILABLE, None))
        return self.done()

    def tick(self) -> Result:
        c = self.call
        if c.state == S.OFFERED and c.answer_deadline is not None and self.now >= c.answer_deadline:
            if self.role.parent is not None:
                return self._escalate(self.role.parent)
            return self._realert()
        if c.state == S.ASSIGNED and c.accept_deadline is not None and self.now >= c.accept_deadline:
            late = f"{c.assigned_unit} did not accept within {self.opts.accept_timeout_s} s"
            self._replace_unit("accept_timeout", h.ACCEPT_TIMEOUT, late)
            return self.done()
        if c.state == S.ANSWERED and c.realert_at is not None and self.now >= c.realert_at:
            realert_at = self.now + timedelta(seconds=self.opts.realert_s)
            self.call = replace(c, realert_at=realert_at, flags=_with(c.flags, FLAG_REALERTED))
            self.log("realert", h.REALERTED, f"still no unit for it; the dispatchers are alerted again at {utc_iso(realert_at)}")
            return self.done()
        return c, ()

    def refine(self, ev: Refine) -> Result:
        c = self.call
        req = replace(c.request, location=ev.location)
        flags = _without(_with(c.flags, FLAG_AML), FLAG_INVALID_LOCATION)
        changes: dict[str, Any] = {"request": req, "placement": ev.placement, "flags": flags}
        if c.state in (S.OFFERED, S.ANSWERED) and classify(req.category).dispatch:
            changes["candidates"] = tuple(x for x in ev.candidates if x.unit not in c.declined)
        self.call = replace(c, **changes)
        where = ev.placement.jurisdiction or "no jurisdiction"
        self.log("refined", h.REFINED, f"location from the caller's phone ({ev.source}): {ev.placement.status.value} in {where}; "
                 f"{ev.detail}")
        if c.state == S.ANSWERED and FLAG_NO_CANDIDATE in c.flags:
            self._assign_next("", "top candidate at the place the phone gave")
        return self.done()

    def taken_over(self, ev: TakenOver) -> Result:
        if self.call.state != S.OFFERED:
            return self.refuse(ev, f"taken over by {ev.by} ({ev.reason}), but the call is {self.call.state.value} here")
        self.enter(S.ESCALATED, h.TAKEN_OVER, f"taken over by {ev.by} ({ev.reason}): this node was offline or silent", ev.by,
                   answer_deadline=None, escalated_to=ev.by)
        return self.done()

    def recandidate(self, ev: Recandidate) -> Result:
        c = self.call
        if c.state not in (S.OFFERED, S.ANSWERED):
            return c, ()  # a late recommendation: nothing to do, nothing to audit
        candidates = tuple(x for x in ev.candidates if x.unit not in c.declined)
        if [x.unit for x in candidates] == [x.unit for x in c.candidates]:
            return c, ()  # the same units in the same order: distances alone moving is no news
        self.call = replace(c, candidates=candidates)
        same_set = {x.unit for x in candidates} == {x.unit for x in c.candidates}  # only reordered: no step of its own
        self.log("recandidate", "" if same_set else h.RECANDIDATED, f"candidates: {_units(candidates)}")
        if c.state == S.ANSWERED:
            self._assign_next("", "top candidate of a fresh recommendation")  # answered without a unit: nobody was left
        else:
            has = _next_candidate(self.call) is not None
            flags = _without(self.call.flags, FLAG_NO_CANDIDATE) if has else _with(self.call.flags, FLAG_NO_CANDIDATE)
            self.call = replace(self.call, flags=flags)
        return self.done()

    # -- building blocks --

    def _answered(self, by: str, note: str) -> None:
        self.enter(S.ANSWERED, h.ANSWERED, f"answered by {by}", by, None, note, answered_by=by, answer_deadline=None,
                   note=note or self.call.note)

    def _assign_next(self, by: str, reason: str) -> None:
        nxt = _next_candidate(self.call)
        if nxt is not None:
            self._assign(nxt.unit, by, reason)
            return
        realert_at = self.now + timedelta(seconds=self.opts.realert_s)
        flags = _with(self.call.flags, FLAG_NO_CANDIDATE)
        if self.call.state != S.ANSWERED:
            self.enter(S.ANSWERED, h.NO_CANDIDATE, "no candidate left: a dispatcher must assign a unit (a freed unit will be alerted)", by,
                       flags=flags, realert_at=realert_at)
        else:
            self.call = replace(self.call, flags=flags, realert_at=self.call.realert_at or realert_at)

    def _assign(self, unit: str, by: str, reason: str, said: str = "") -> None:
        c = self.call
        if c.assigned_unit is not None and c.assigned_unit != unit:
            self.effects.append(SetUnitStatus(c.assigned_unit, UnitStatus.AVAILABLE, None))
        attempt = len(c.alerts_sent) + 1
        cand = next((x for x in c.candidates if x.unit == unit), None)
        self.enter(
            S.ASSIGNED, h.ASSIGNED, f"{unit} alerted ({reason}), attempt {attempt}", by, unit, said,
            assigned_unit=unit, declined=tuple(u for u in c.declined if u != unit), answer_deadline=None,
            accept_deadline=self.now + timedelta(seconds=self.opts.accept_timeout_s),
            alerts_sent=(*c.alerts_sent, (unit, attempt)), flags=_without(c.flags, FLAG_NO_CANDIDATE), realert_at=None,
        )
        loc = c.request.location
        self.effects.append(SetUnitStatus(unit, UnitStatus.ASSIGNED, c.call_id))
        self.effects.append(
            AlertUnit(
                call_id=c.call_id, unit=unit, lat=loc.lat if loc else None, lon=loc.lon if loc else None,
                category=c.request.category, caller_note=" / ".join(n for n in (c.request.note, self.call.note) if n),
                distance_m=cand.distance_m if cand is not None and loc is not None else None, attempt=attempt,
                msg_id=stable_msg_id(c.node, c.call_id, "alert", unit, str(attempt)),
            )
        )

    def _replace_unit(self, kind: str, action: str, detail: str, by: str = "", said: str = "") -> None:
        c = self.call
        gone = c.assigned_unit
        assert gone is not None  # only called in state assigned
        self.call = replace(c, assigned_unit=None, accept_deadline=None, declined=_with(c.declined, gone))
        self.log(kind, action, detail, by, gone, said)
        self.effects.append(SetUnitStatus(gone, UnitStatus.AVAILABLE, None))
        self._assign_next(by, f"next candidate after {gone}")

    def _escalate(self, parent: str) -> Result:
        c = self.call
        self.enter(S.ESCALATED, h.ESCALATED, f"unanswered at {self.role.tier} by {utc_iso(self.now)}: escalated to {parent}",
                   answer_deadline=None, escalated_to=parent)
        request = replace(c.request, escalated_from=self.role.node)
        self.effects.append(Escalate(parent, request, stable_msg_id(c.node, c.call_id, "escalate", parent)))
        return self.done()

    def _realert(self) -> Result:
        c = self.call
        deadline = self.now + timedelta(seconds=self.opts.realert_s)
        self.call = replace(c, answer_deadline=deadline, flags=_with(c.flags, FLAG_REALERTED))
        self.log("realert", h.REALERTED, f"still unanswered since {utc_iso(c.created)}; offered again until {utc_iso(deadline)}")
        return self.done()


def _next_candidate(call: Call) -> Candidate | None:
    return next((c for c in call.candidates if c.unit not in call.declined and c.unit != call.assigned_unit), None)


def _refusal(event: Event, reason: str) -> tuple[Action, ...]:
    by = getattr(event, "by", "")
    return Refused(reason), Audit("refused", f"{type(event).__name__.lower()} refused: {reason}", by if isinstance(by, str) else "")


def _valid_unit(unit: str) -> bool:
    """A unit id must be one MQTT topic level (its alert goes to <node>/unit/<unit>/alert)."""
    return bool(unit) and len(unit) <= 128 and not any(ch in unit for ch in "+#/\0")


def _unique(items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))


def _with(items: tuple[str, ...], item: str) -> tuple[str, ...]:
    return items if item in items else (*items, item)


def _without(items: tuple[str, ...], item: str) -> tuple[str, ...]:
    return tuple(i for i in items if i != item)


def _units(candidates: tuple[Candidate, ...]) -> str:
    return ", ".join(c.unit for c in candidates) or "none"


def stable_msg_id(*parts: str) -> str:
    """A stable message id (32 hex digits, like contract.new_msg_id): the same message always gets the same id."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]

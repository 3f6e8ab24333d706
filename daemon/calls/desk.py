"""The call desk: MQTT and SQLite around the pure dispatch logic (runs on the event loop thread).

In: `<node>/call/new` and `<node>/call/aml` (intake -> jurisdiction -> recommendation ->
`dispatch.step`), `<node>/call/<call_id>/event` (a dispatcher's or a unit's action), and the
deadlines `dispatch.next_deadline` asks for. Out, for every step, in ONE SQLite transaction: the
call's row, its audit entries, unit status changes (the station makes them: it owns unit
availability) and the outbox messages (retained call state, alerts, escalation to the parent
node). Open calls and their deadlines are reloaded at start; alert ids are deterministic, so a
restart never sends an alert twice.

A node that receives a call for a place outside its own polygons hands it to the child node
whose polygon holds the caller (Polda, Mabes), or up to its parent when no polygon is near.

A Polda or Mabes node also follows the units below it (their retained positions and statuses)
and recommends across its whole area; an alert or a status change for such a unit goes to the
node that owns it (`<owner>/unit/<unit>/alert`, `<owner>/unit/<unit>/status/set`). Unit ids
must therefore be unique within a Polda's area (Mabes: nationwide).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from alkomd.daemon.calls import aml, aml_match, codec, dispatch, fields, intake
from alkomd.daemon.calls.aml_match import AML_SOURCES
from alkomd.daemon.calls.below import BelowUnits
from alkomd.daemon.calls.callers import CallerMemory
from alkomd.daemon.calls.categories import EMERGENCY, classify
from alkomd.daemon.calls.jurisdictions import JurisdictionIndex
from alkomd.daemon.calls.recommend import UnitIndex, recommend
from alkomd.daemon.calls.settle import Settle
from alkomd.daemon.calls.supervision import Supervision, Takeover
from alkomd.daemon.calls.types import CallRequest, CallStateName, Candidate, Location, LocationStatus, Placement, UnitSnapshot
from alkomd.daemon.config import Config
from alkomd.daemon.mqtt import contract
from alkomd.daemon.mqtt.publisher import Publisher
from alkomd.daemon.positions.station import Station, StatusWanted
from alkomd.daemon.records import Fix, RadioStatus, UnitPosition, UnitState, UnitStatus, utc_iso
from alkomd.daemon.store.audit import AuditEntry
from alkomd.daemon.store.database import Message, Store, StoredCall, StoreError

log = logging.getLogger(__name__)

RETRY_STORE_S = 1.0
RERANK_DELAY_S = 1.0  # unit changes are gathered this long before the waiting calls are ranked again
RERANK_SLICE_S = 0.002  # a ranking pass gives the loop back after this long
MAX_TAKEN = 10_000
FINAL = (CallStateName.CLOSED, CallStateName.ESCALATED)


def _detail(obj: object) -> str:
    """An audit entry's detail: compact JSON."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def separate_below(cfg: Config) -> bool:
    """Whether a second connection (a child process) takes the units below: a Polda or Mabes with `[mqtt]
    below_connection = "separate"`."""
    return cfg.node.tier != "polres" and cfg.mqtt.below_connection == "separate"


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
        self.callers = CallerMemory(timedelta(seconds=cfg.calls.repeat_caller_window_s))
        self._seen_event_ids: deque[str] = deque(maxlen=10_000)
        self.owner: dict[str, str] = {}  # unit of a node below -> that node's topic
        self.follow = BelowUnits(self.node, self.units, self.owner, jurisdictions, self._rerank_soon, store)
        self._rerank_handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._waiting_ids: set[str] = set()  # open calls still looking for a unit (kept by _run: no scan per position)
        self._taken: OrderedDict[str, str] = OrderedDict()  # call_id -> the parent node that took it from this node
        # after a (re)connect, calls wait for the retained `taken` markers of calls the parent took (calls/settle.py)
        self.settle: Settle[Callable[[], None]] = Settle(loop, self._release, contract.link_probe_topic(self.node),
                                                         below=separate_below(cfg))
        self.supervision: Supervision | None = None
        if self.role.tier != "polres":
            self.supervision = Supervision(self.node, self._timeout_below, timedelta(seconds=cfg.dispatch.supervision_grace_s))
        self._supervision_timer: asyncio.TimerHandle | None = None
        for body in store.open_calls():
            try:
                call = codec.call_from_json(body)
            except ValueError:
                log.exception("a stored call cannot be read; left in the database for a human")
                continue
            self.calls[call.call_id] = call
            self._arm(call)
            if self._waiting(call):
                self._waiting_ids.add(call.call_id)
        if self.calls:
            log.info("reloaded %d open calls; their deadlines are re-armed", len(self.calls))
        since = self._clock() - self.callers.window
        self.callers.remember(store.recent_callers(since))  # a restart does not reset a prank caller's count
        for unit, state in station.availability.states.items():
            self._index_unit(unit, state=state)
        for up in station.latest.values():
            self._index_unit(up.unit, position=up)
        if self.role.tier != "polres":
            self.follow.load()  # ready to recommend from the units it knew, before the broker's retained flood

    def reconfigure(self, cfg: Config, removed: Iterable[str] = (), touched: Iterable[str] = ()) -> None:
        """A reloaded configuration: options apply to the next step; removed units leave the index, touched ones are re-read."""
        self.opts, self.ropts, self.calls_cfg = cfg.dispatch, cfg.recommend, cfg.calls
        self.callers.window = timedelta(seconds=cfg.calls.repeat_caller_window_s)
        if self.supervision is not None:
            self.supervision.grace = timedelta(seconds=cfg.dispatch.supervision_grace_s)
        for unit in removed:
            self.units.remove(unit)
        for unit in touched:
            state = self.station.availability.states.get(unit)
            if state is not None:
                self._index_unit(unit, state=state)

    def relocate(self, jurisdictions: JurisdictionIndex | None) -> None:
        """Reloaded jurisdictions: put every known unit position into them (one bulk query)."""
        self.jurisdictions = jurisdictions
        self.follow.relocate(jurisdictions)
        snaps = [s for s in self.units.snapshots() if s.lat is not None and s.lon is not None]
        if not snaps:
            return
        lats = [s.lat for s in snaps if s.lat is not None]
        lons = [s.lon for s in snaps if s.lon is not None]
        where: list[str | None] = [None] * len(snaps) if jurisdictions is None else jurisdictions.assign_bulk(lats, lons)
        for s, jur in zip(snaps, where, strict=True):
            if jur != s.jurisdiction:
                self.units.update(replace(s, jurisdiction=jur))

    # -- in -------------------------------------------------------------------------------------

    def below(self, msg: contract.UnitBelow, payload: bytes) -> None:
        """A retained position or status of a unit of a node below (Polda, Mabes), one at a time (the bulk lane gives
        them to `follow.take` in batches)."""
        self.follow.one(msg, payload)

    def call_new(self, payload: bytes, is_aml: bool = False) -> None:
        """A call on `<node>/call/new` (or `call/aml`). Right after a (re)connect it waits until the retained `taken`
        markers are in (the link's probe is back): a call queued for this node while it was away may be one its parent
        took meanwhile."""
        if self.settle.hold(lambda: self.call_new(payload, is_aml)):
            return
        now = self._clock()
        self.receive(aml.parse_aml(payload, now) if is_aml else intake.parse_call(payload, now))

    def emergency(self, unit: str, rs: RadioStatus, fix: Fix | None) -> None:
        """A unit's radio raised its emergency (the station committed it): a call at top priority, at the unit's last fix."""
        stamp = rs.received.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
        call_id = f"EMG-{unit}-{stamp}"
        if len(call_id) > 64:
            call_id = f"EMG-{hashlib.sha256(unit.encode()).hexdigest()[:16]}-{stamp}"
        where = Location(fix.lat, fix.lon, fix.accuracy_m) if fix is not None else None
        note = f"tombol darurat: unit {unit}, radio {rs.radio} via {rs.device}, status code {rs.code}"
        if fix is not None:
            note += f"; last fix {utc_iso(fix.time)}"
        detail = f"{rs.device}:{rs.radio}:{rs.code}:{utc_iso(rs.received)}"
        req = CallRequest(call_id, unit, where, rs.received, EMERGENCY, "radio-emergency",
                          () if fix is not None else ("E_LOCATION: the unit has no fix yet; ask it on the radio",),
                          None, note, hashlib.sha256(detail.encode()).hexdigest())
        self.receive(req)

    def call_aml(self, payload: bytes) -> None:
        self.call_new(payload, is_aml=True)

    def link_up(self) -> None:
        """The broker link is (back) up: hold incoming calls until this connect's probe is back."""
        self.settle.link_up()

    def probe(self) -> str | None:
        """The link's subscriptions are acknowledged: the probe's nonce to publish (None: no calls are held now)."""
        return self.settle.probe()

    def below_probe_back(self, nonce: str) -> None:
        """The second connection's probe came back (`[mqtt] below_connection = "separate"`): the units below are in."""
        self.settle.below_came_back(nonce)

    def probe_back(self, payload: bytes) -> None:
        """`<node>/probe/link` came back: the retained markers sent before it are in; held calls go on."""
        self.settle.came_back(contract.parse_probe(payload))

    def _release(self, held: list[Callable[[], None]]) -> None:
        """The settle ended: the calls and events held, in arrival order. Events wait with the calls: one queued for
        this node while it was away (a standby taking over) may name a call queued before it, or a unit of a node below
        whose retained position was not in yet."""
        for then in held:
            try:
                then()
            except Exception:  # supervision boundary, as for messages not held: one must not drop the others
                log.exception("a call or event held after the connect could not be handled")

    def receive(self, req: CallRequest) -> None:
        now = self._clock()
        if req.call_id in self._taken:
            detail = _detail({"by": self._taken[req.call_id], "sha256": req.raw_sha256})
            self._commit([AuditEntry(now, "call.taken_by_parent", req.call_id, "", detail)], [])
            log.info("call %s: already taken by %s while this node was away: not handled here", req.call_id, self._taken[req.call_id])
            return
        existing = self.calls.get(req.call_id)
        if existing is not None or self.store.has_call(req.call_id):
            self._commit([AuditEntry(now, "call.duplicate", req.call_id, "", _detail({"sha256": req.raw_sha256}))], [])
            return
        if req.source in AML_SOURCES and req.location is not None:
            voice = aml_match.voice_call_of(req, self.calls.values(), now, self.calls_cfg)
            if voice is not None:
                self._attach_aml(voice, req, now)
                return
        absorbed = aml_match.report_call_of(req, self.calls.values(), now, self.calls_cfg) if req.source not in AML_SOURCES else None
        if absorbed is not None and absorbed.request.location is not None and (
            req.location is None or (req.location.accuracy_m or 1e9) > (absorbed.request.location.accuracy_m or 1e9)
        ):
            req = replace(req, location=absorbed.request.location)  # the phone knew better where its caller is
        placement = self._place(req.location)
        target = self._handoff(req, placement)
        if target is not None:
            msg = contract.handoff_message(self.node, target, req)
            detail = _detail({"to": target, "location_status": placement.status.value, "problems": list(req.problems)})
            self._commit([AuditEntry(now, "call.handed_off", req.call_id, "", detail)], [msg],
                         [StoredCall(req.call_id, "handed_off", False, msg.payload)])
            log.info("call %s: not in this node's area: handed to %s", req.call_id, target)
            return
        calls_from = max(self.callers.count(req.caller, now), req.caller_calls)  # the escalating node's count travels along
        req = replace(req, caller_calls=calls_from)
        repeat = bool(req.caller) and calls_from > self.calls_cfg.repeat_caller_count
        flags: tuple[str, ...] = (dispatch.FLAG_REPEAT_CALLER,) if repeat else ()
        if req.category == EMERGENCY:
            flags += (dispatch.FLAG_EMERGENCY,)
        if now - req.received_at > fields.MAX_AGE:  # a replayed capture, or a gateway that held it a day
            flags += (dispatch.FLAG_OLD_CALL,)
            log.warning("call %s: received_at %s is more than %d h before intake: flagged %s", req.call_id,
                        utc_iso(req.received_at), int(fields.MAX_AGE.total_seconds() // 3600), dispatch.FLAG_OLD_CALL)
        needs_unit = classify(req.category).dispatch
        candidates: tuple[Candidate, ...] = ()
        if req.location is not None and needs_unit:
            candidates = recommend(self.units, req.location, placement, now, self.ropts, self._exclude(req))
        received = _detail({"caller": req.caller, "source": req.source, "problems": list(req.problems),
                            "escalated_from": req.escalated_from, "sha256": req.raw_sha256})
        audit = AuditEntry(now, "call.received", req.call_id, "", received)
        if req.source in AML_SOURCES:
            flags += (dispatch.FLAG_AML_UNMATCHED,)
        elif absorbed is not None:
            flags += (dispatch.FLAG_AML,)
        self._run(req.call_id, dispatch.Receive(req, placement, candidates, flags), [audit])
        if absorbed is not None and absorbed.call_id in self.calls:
            self._run(absorbed.call_id, dispatch.Close(by=self.node, note=f"the phone's report of voice call {req.call_id}: merged"), [])

    # -- a phone's own location report (AML SMS, ELS) and the voice call it belongs to --------------

    def _attach_aml(self, voice: dispatch.Call, report: CallRequest, now: datetime) -> None:
        assert report.location is not None
        placement = self._place(report.location)
        candidates: tuple[Candidate, ...] = ()
        if classify(voice.request.category).dispatch:
            candidates = recommend(self.units, report.location, placement, now, self.ropts, self._exclude(voice.request))
        detail = f"{report.call_id}: {report.note}".strip(": ")
        merged = AuditEntry(now, "call.aml_merged", voice.call_id, "", _detail({"report": report.call_id, "source": report.source,
                                                                            "sha256": report.raw_sha256}))
        log.info("call %s: the caller's phone reported its location (%s): attached", voice.call_id, report.source)
        self._run(voice.call_id, dispatch.Refine(report.location, placement, candidates, report.source, detail), [merged])
        # The report is on record under its own id too, so a resend of it is a duplicate, not a second refinement.
        self._commit([], [], [StoredCall(report.call_id, "aml_merged", False, _detail({"into": voice.call_id}))])

    def event(self, call_id: str, payload: bytes) -> None:
        """A dispatcher's or unit's action: applied or refused, recorded, and answered on `event/result`."""
        if self.settle.hold(lambda: self.event(call_id, payload)):
            return
        now = self._clock()
        parsed = contract.parse_event(payload)
        if parsed.event_id and (parsed.event_id in self._seen_event_ids or self.store.event_applied(parsed.event_id)):
            # A QoS 1 redelivery or a resend of an event already applied (its result is on its way, or was sent);
            # the store remembers it with the step, so also after a restart or a standby's takeover.
            return
        reply = contract.EventOutcome(call_id, parsed.event_id, parsed.action, parsed.by, True, "", None, None)
        call = self.calls.get(call_id)
        reason = parsed.reason
        if not reason and call is None:
            reason = "no such open call" if not self.store.has_call(call_id) else "the call is closed"
        if not reason and parsed.event is not None:
            reason = self._unit_problem(parsed.event)
        if reason or parsed.event is None or call is None:
            detail = _detail({"reason": reason, "payload": payload[:200].decode("utf-8", "replace")})
            result = replace(reply, accepted=False, reason=reason, state=call.state.value if call else None,
                             version=call.version if call else None)
            self._commit([AuditEntry(now, "call.event_refused", call_id[:64], "", detail)],
                         [contract.event_result_message(self.node, result, now)])
            log.warning("call %s: event refused: %s", call_id, reason)
            return
        if parsed.event_id:
            self._seen_event_ids.append(parsed.event_id)
        if isinstance(parsed.event, dispatch.Answer) and parsed.event.unit is None and self._waiting(call):
            self._recandidate(call)  # the top candidate as of now, not as of intake
        self._run(call_id, parsed.event, [], reply)

    def _unit_problem(self, event: dispatch.Event) -> str:
        """Why the unit an answer or assign names cannot be sent ("" when it can)."""
        unit = event.unit if isinstance(event, dispatch.Answer | dispatch.Assign) else None
        if unit is None:
            return ""
        snap = self.units.get(unit)
        if snap is None:
            return f"unknown unit {unit!r}: not a unit of this node or of a node it follows"
        if snap.status is UnitStatus.OFFLINE:
            return f"unit {unit} is offline (no fix for a while)"
        return ""

    # -- the nodes below, and the parent above ------------------------------------------------------

    def taken(self, call_id: str, payload: bytes) -> None:
        """`<node>/call/<call_id>/taken`: the parent took this call while this node was offline or silent."""
        marker = contract.parse_taken(payload)
        if marker is None:
            return
        self._taken[call_id] = marker.by
        while len(self._taken) > MAX_TAKEN:
            self._taken.popitem(last=False)
        if call_id in self.calls:
            self._run(call_id, dispatch.TakenOver(marker.by, marker.reason), [])

    def node_below_state(self, node: str, payload: bytes) -> None:
        if self.supervision is None:
            return
        online = contract.parse_node_online(payload)
        if online is not None:
            self._take(self.supervision.state(node, online, self._clock()))

    def node_below_call(self, node: str, call_id: str, payload: bytes) -> None:
        """A call sent to a node below (`call/new`, `call/aml`), or that node's state of one of its calls."""
        if self.supervision is None or not payload:
            return
        now = self._clock()
        if call_id in ("new", "aml"):
            req = aml.parse_aml(payload, now) if call_id == "aml" else intake.parse_call(payload, now)
            self._take(self.supervision.call_sent(node, req, now))
            return
        seen = contract.parse_call_progress(payload)
        if seen is not None:
            self.supervision.call_state(node, call_id, seen.state, seen.answer_deadline, seen.request, now)
            self._arm_supervision()

    def _timeout_below(self, node: str) -> timedelta:
        """The answer timeout of the tier `node` is (a node one level under the root is a Polda)."""
        return self.opts.answer_timeout("polda" if node.count("/") == self.root.count("/") + 1 else "polres")

    def _take(self, takeovers: list[Takeover]) -> None:
        now = self._clock()
        for t in takeovers:
            new, marker = contract.takeover_messages(self.node, t.node, t.request, t.reason, now)
            marker = replace(marker, clear_after=now + timedelta(seconds=self.calls_cfg.taken_retention_s))
            detail = _detail({"from": t.node, "reason": t.reason})
            self._commit([AuditEntry(now, "call.taken_over", t.request.call_id, "", detail)], [new, marker])
            log.warning("call %s: taken from %s (%s): offered here", t.request.call_id, t.node, t.reason)
        self._arm_supervision()

    def _arm_supervision(self) -> None:
        if self._supervision_timer is not None:
            self._supervision_timer.cancel()
            self._supervision_timer = None
        if self.supervision is None:
            return
        deadline = self.supervision.next_deadline()
        if deadline is not None:
            delay = max(0.0, (deadline - self._clock()).total_seconds())
            self._supervision_timer = self._loop.call_later(delay, self._supervise)

    def _supervise(self) -> None:
        self._supervision_timer = None
        if self.supervision is not None:
            self._take(self.supervision.due(self._clock()))

    # -- the step -------------------------------------------------------------------------------

    def _run(self, call_id: str, event: dispatch.Event, extra: list[AuditEntry], reply: contract.EventOutcome | None = None) -> None:
        """One step of the state machine, stored in one transaction; `reply`: the event came from a person (answer it)."""
        now = self._clock()
        before = self.calls.get(call_id)
        call, actions = dispatch.step(before, event, now, self.role, self.opts)
        if call is None:
            return
        audits = list(extra)
        messages: list[Message] = []
        wanted: list[StatusWanted] = []
        if reply is not None:
            refused = next((a.reason for a in actions if isinstance(a, dispatch.Refused)), "")
            outcome = replace(reply, accepted=not refused, reason=refused, state=call.state.value, version=call.version)
            messages.append(contract.event_result_message(self.node, outcome, now))
        for a in actions:
            if isinstance(a, dispatch.Audit):
                audits.append(AuditEntry(now, f"call.{a.kind}", call.call_id, call.assigned_unit or "",
                                         _detail({"detail": a.detail, "by": a.by})))
            elif isinstance(a, dispatch.PublishState):
                msg = contract.call_state_message(a.call)
                if a.call.is_final:  # the broker forgets it after a while; the database and the audit record keep it
                    msg = replace(msg, clear_after=now + timedelta(seconds=self.calls_cfg.closed_retention_s))
                messages.append(msg)
            elif isinstance(a, dispatch.AlertUnit):
                messages.append(contract.alert_message(self.owner.get(a.unit, self.node), a))
            elif isinstance(a, dispatch.Escalate):
                messages.append(contract.escalation_message(a))
            elif isinstance(a, dispatch.SetUnitStatus) and a.unit in self.owner:
                messages.append(contract.status_set_message(self.owner[a.unit], a.unit, a.status, self.node, a.call_id))
            elif isinstance(a, dispatch.SetUnitStatus):
                wanted.append(StatusWanted(a.unit, a.status, a.call_id))
            elif isinstance(a, dispatch.Refused):
                log.warning("call %s: %s", call.call_id, a.reason)
        open_ = call.state not in FINAL
        row = StoredCall(call.call_id, call.state.value, open_, codec.call_to_json(call), reply.event_id if reply else "")
        try:
            states = self.station.commit_call(wanted, messages, audits, [row], now, call.call_id)
        except StoreError as exc:
            log.error("call %s: %s; retrying in %.0f s", call_id, exc, RETRY_STORE_S)
            self._loop.call_later(RETRY_STORE_S, self._run, call_id, event, extra, reply)
            return
        if before is None or before.state != call.state:
            log.info("call %s: %s -> %s%s", call.call_id, before.state.value if before else "-", call.state.value,
                     f" (unit {call.assigned_unit})" if call.assigned_unit else "")
        for st in states:
            self._index_unit(st.unit, state=st)
        if any(st.status is UnitStatus.AVAILABLE for st in states):
            self._rerank_soon()  # a unit this step released may be what another call waits for
        if open_:
            self.calls[call.call_id] = call
            self._arm(call)
            if self._waiting(call):
                self._waiting_ids.add(call.call_id)
            else:
                self._waiting_ids.discard(call.call_id)
        else:
            self._waiting_ids.discard(call.call_id)
            self.calls.pop(call.call_id, None)
            timer = self._timers.pop(call.call_id, None)
            if timer is not None:
                timer.cancel()

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
            self._rerank_soon()

    # -- ranking again ----------------------------------------------------------------------------

    def _waiting(self, call: dispatch.Call) -> bool:
        """Whether a call still looks for a unit: offered, or answered with nobody left, with a place and a category that sends one."""
        return (
            call.state in (CallStateName.OFFERED, CallStateName.ANSWERED)
            and call.request.location is not None
            and call.placement.status is not LocationStatus.INVALID
            and classify(call.request.category).dispatch
        )

    def _rerank_soon(self) -> None:
        """Units changed: rank the waiting calls again shortly (changes within RERANK_DELAY_S are taken together)."""
        if self._rerank_handle is None and self._waiting_ids:
            self._rerank_handle = self._loop.call_later(RERANK_DELAY_S, self._rerank)

    def _rerank(self, waiting: list[dispatch.Call] | None = None) -> None:
        """Offer what changed to the waiting calls, most urgent first (a freed unit goes to the call that needs it most).
        In slices of RERANK_SLICE_S: a call arriving meanwhile waits for one slice, not for every waiting call's ranking."""
        if waiting is None:
            waiting = [self.calls[i] for i in self._waiting_ids if i in self.calls]
            waiting.sort(key=lambda c: (classify(c.request.category).priority, c.created), reverse=True)
        end = time.monotonic() + RERANK_SLICE_S
        while waiting and time.monotonic() < end:
            fresh = self.calls.get(waiting.pop().call_id)
            if fresh is not None and self._waiting(fresh):
                self._recandidate(fresh, same_set_is_news=fresh.state is CallStateName.ANSWERED)
        self._rerank_handle = self._loop.call_soon(self._rerank, waiting) if waiting else None

    def _recandidate(self, call: dispatch.Call, same_set_is_news: bool = True) -> None:
        """Rank a waiting call again. An offered call only takes a new list when other units are in it (units moving
        reorder it all the time; the answer ranks again anyway): no new version per position."""
        assert call.request.location is not None
        candidates = recommend(self.units, call.request.location, call.placement, self._clock(), self.ropts, self._exclude(call.request))
        if not same_set_is_news and {c.unit for c in candidates} - set(call.declined) == {c.unit for c in call.candidates}:
            return
        self._run(call.call_id, dispatch.Recandidate(candidates), [])

    @staticmethod
    def _exclude(req: CallRequest) -> frozenset[str]:
        """Units never recommended for a call: a unit's own emergency needs another unit."""
        return frozenset((req.caller,)) if req.category == EMERGENCY else frozenset()

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
        if self.role.tier != "polres" and req.escalated_from is None and placement.jurisdiction is not None:
            child = self.jurisdictions.child_of(placement.jurisdiction)  # `route`, without placing the caller again
            if child is not None:
                return f"{self.root}/{child}"
        if placement.status is LocationStatus.OUTSIDE and placement.jurisdiction is None and self.role.parent:
            return self.role.parent
        return None

    def units_changed(self, positions: list[UnitPosition], states: list[UnitState]) -> None:
        """The station committed new positions or unit statuses (keeps the recommender's index)."""
        for up in positions:
            self._index_unit(up.unit, position=up)
        for st in states:
            self._index_unit(st.unit, state=st)
        self._rerank_soon()

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

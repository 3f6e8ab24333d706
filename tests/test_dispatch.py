"""The dispatch state machine: table-driven scenarios on an injected clock, payloads against the contract, random event runs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from alkomd.daemon.calls.codec import call_from_json, call_to_json
from alkomd.daemon.calls.dispatch import (
    FLAG_INVALID_LOCATION,
    FLAG_NO_CANDIDATE,
    FLAG_REALERTED,
    Accept,
    Action,
    AlertUnit,
    Answer,
    Arrive,
    Assign,
    Audit,
    Call,
    Close,
    Decline,
    Escalate,
    Event,
    NodeRole,
    PublishState,
    Recandidate,
    Receive,
    Refused,
    SetUnitStatus,
    Tick,
    next_deadline,
    step,
)
from alkomd.daemon.calls.history import MAX_HISTORY
from alkomd.daemon.calls.options import DispatchOptions
from alkomd.daemon.calls.types import CallRequest, CallStateName, Candidate, Location, LocationStatus, Placement
from alkomd.daemon.mqtt.contract import alert_payload, call_state_payload, escalation_payload, state_msg_id
from alkomd.daemon.records import UnitStatus
from alkomd.daemon.schema import ConfigError, build, describe

SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "contract" / "schemas"
T0 = datetime(2025, 3, 14, 2, 20, 59, tzinfo=UTC)
OPTS = DispatchOptions()
POLRES = NodeRole.of("polri110/gorontalo/bone-bolango", "polres")
POLDA = NodeRole.of("polri110/gorontalo", "polda")
MABES = NodeRole.of("polri110", "mabes")
S = CallStateName


def cand(unit: str, distance_m: float) -> Candidate:
    return Candidate(unit, distance_m, eta_s=distance_m / 10, fix_age_s=3.1, in_jurisdiction=True)


CANDS = (cand("A", 1842.5), cand("B", 4210.0), cand("C", 5100.0))
LOC = Location(0.5568, 123.0702, 25.0)


def request(call_id: str = "GTO-1", location: Location | None = LOC, escalated_from: str | None = None) -> CallRequest:
    return CallRequest(
        call_id=call_id, caller="+6281234500000", location=location, received_at=T0 - timedelta(seconds=1), category="kecelakaan",
        source="mqtt", escalated_from=escalated_from, note="Tabrakan motor di depan pasar",
    )


RECEIVE = Receive(request(), Placement(LocationStatus.OK, "bone-bolango"), CANDS, ("repeat_caller",))
RECEIVE_NONE = Receive(request(), Placement(LocationStatus.OK, "bone-bolango"), ())
RECEIVE_INVALID = Receive(request(location=None), Placement(LocationStatus.INVALID, None), CANDS)


def kind(a: Action) -> str:
    """One action as a short string, so a scenario table reads like a log."""
    if isinstance(a, Audit):
        return f"audit {a.kind}"
    if isinstance(a, PublishState):
        return f"publish {a.call.state.value}"
    if isinstance(a, AlertUnit):
        return f"alert {a.unit}"
    if isinstance(a, SetUnitStatus):
        return f"status {a.unit} {a.status.value}"
    if isinstance(a, Escalate):
        return f"escalate {a.parent}"
    return "refused"


# -- contract schemas ----------------------------------------------------------------------------


def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", value):
        return False
    datetime.fromisoformat(value.upper())
    return True


FORMATS = FormatChecker()
FORMATS.checks("date-time", raises=ValueError)(_date_time)


@cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8")), format_checker=FORMATS)


def assert_valid(name: str, payload: object) -> None:
    payload = json.loads(json.dumps(payload, allow_nan=False))  # what goes on the wire
    errors = sorted(validator(name).iter_errors(payload), key=lambda e: list(e.path))
    assert not errors, f"{name}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors)


def check_actions(actions: tuple[Action, ...]) -> None:
    for a in actions:
        if isinstance(a, PublishState):
            assert_valid("call-state", call_state_payload(a.call))
        elif isinstance(a, AlertUnit):
            assert_valid("unit-alert", alert_payload(a))
        elif isinstance(a, Escalate):
            assert_valid("call-new", escalation_payload(a))


# -- table-driven scenarios ----------------------------------------------------------------------

Row = tuple[float, Event, CallStateName | None, list[str]]  # t seconds after T0, event, state after, action kinds

OPENED = ["audit new", "audit offered", "publish offered"]
ANSWER_A = ["audit answered", "audit assigned", "publish assigned", "status A assigned", "alert A"]
REFUSED = ["refused", "audit refused"]

SCENARIOS: dict[str, tuple[NodeRole, list[Row]]] = {
    "happy path: answer alerts the top candidate, accept, arrive, close": (POLRES, [
        (0, RECEIVE, S.OFFERED, OPENED),
        (10, Answer("op-1"), S.ASSIGNED, ANSWER_A),
        (20, Accept("A"), S.ENROUTE, ["audit enroute", "publish enroute", "status A enroute"]),
        (30, Arrive("A"), S.ONSCENE, ["audit onscene", "publish onscene", "status A onscene"]),
        (40, Close("op-1", "selesai"), S.CLOSED, ["audit closed", "publish closed", "status A available"]),
        (41, Answer("op-1"), S.CLOSED, REFUSED),
        (42, Assign("op-1", "B"), S.CLOSED, REFUSED),
        (43, Close("op-1"), S.CLOSED, REFUSED),
        (10_000, Tick(), S.CLOSED, []),
        (10_001, Recandidate(CANDS[1:]), S.CLOSED, []),
    ]),
    "answer naming a unit assigns it, even when it is no candidate": (POLRES, [
        (0, RECEIVE, S.OFFERED, OPENED),
        (5, Answer("op-1", "X-9"), S.ASSIGNED,
         ["audit answered", "audit assigned", "publish assigned", "status X-9 assigned", "alert X-9"]),
        (6, Accept("op-1", "X-9"), S.ENROUTE, ["audit enroute", "publish enroute", "status X-9 enroute"]),
    ]),
    "assign while offered answers and assigns at once": (POLRES, [
        (0, RECEIVE, S.OFFERED, OPENED),
        (5, Assign("op-1", "B"), S.ASSIGNED, ["audit answered", "audit assigned", "publish assigned", "status B assigned", "alert B"]),
        (60, Tick(), S.ASSIGNED, []),  # the answer timer stopped: no escalation (accept timer runs until 65)
    ]),
    "a decline chain runs through every candidate, then a fresh recommendation": (POLRES, [
        (0, RECEIVE, S.OFFERED, OPENED),
        (10, Answer("op-1"), S.ASSIGNED, ANSWER_A),
        (11, Decline("A"), S.ASSIGNED,
         ["audit declined", "audit assigned", "publish assigned", "status A available", "status B assigned", "alert B"]),
        (12, Decline("B", note="ban bocor"), S.ASSIGNED,
         ["audit declined", "audit assigned", "publish assigned", "status B available", "status C assigned", "alert C"]),
        (13, Decline("C"), S.ANSWERED, ["audit declined", "audit answered", "publish answered", "status C available"]),
        (72.9, Tick(), S.ANSWERED, []),  # nobody left: the dispatchers are alerted again every realert_s (60 s)
        (73, Tick(), S.ANSWERED, ["audit realert", "publish answered"]),
        (200, Tick(), S.ANSWERED, ["audit realert", "publish answered"]),
        (201, Recandidate((cand("A", 900.0), cand("D", 2500.0))), S.ASSIGNED,
         ["audit recandidate", "audit assigned", "publish assigned", "status D assigned", "alert D"]),
    ]),
    "a unit that does not accept in time is replaced": (POLRES, [
        (0, RECEIVE, S.OFFERED, OPENED),
        (10, Answer("op-1"), S.ASSIGNED, ANSWER_A),
        (69.999, Tick(), S.ASSIGNED, []),
        (70, Tick(), S.ASSIGNED,
         ["audit accept_timeout", "audit assigned", "publish assigned", "status A available", "status B assigned", "alert B"]),
        (71, Accept("A"), S.ASSIGNED, REFUSED),  # too late: A is no longer the assigned unit
        (130, Tick(), S.ASSIGNED,
         ["audit accept_timeout", "audit assigned", "publish assigned", "status B available", "status C assigned", "alert C"]),
        (190, Tick(), S.ANSWERED, ["audit accept_timeout", "audit answered", "publish answered", "status C available"]),
        (10_000, Tick(), S.ANSWERED, ["audit realert", "publish answered"]),
        (10_001, Assign("op-1", "A"), S.ASSIGNED, ["audit assigned", "publish assigned", "status A assigned", "alert A"]),
    ]),
    "polres escalates to its polda when nobody answers": (POLRES, [
        (0, RECEIVE, S.OFFERED, OPENED),
        (59.9, Tick(), S.OFFERED, []),
        (60, Tick(), S.ESCALATED, ["audit escalated", "publish escalated", "escalate polri110/gorontalo"]),
        (61, Tick(), S.ESCALATED, []),
        (62, Answer("op-1"), S.ESCALATED, REFUSED),
        (63, Close("op-1"), S.ESCALATED, REFUSED),
        (64, RECEIVE, S.ESCALATED, ["audit duplicate"]),
    ]),
    "polda escalates to mabes after its own timeout": (POLDA, [
        (0, replace(RECEIVE, request=request(escalated_from=POLRES.node)), S.OFFERED, OPENED),
        (60, Tick(), S.OFFERED, []),
        (90, Tick(), S.ESCALATED, ["audit escalated", "publish escalated", "escalate polri110"]),
    ]),
    "mabes never escalates: it re-alerts until answered": (MABES, [
        (0, replace(RECEIVE, request=request(escalated_from=POLDA.node)), S.OFFERED, OPENED),
        (119, Tick(), S.OFFERED, []),
        (120, Tick(), S.OFFERED, ["audit realert", "publish offered"]),
        (150, Tick(), S.OFFERED, []),
        (180, Tick(), S.OFFERED, ["audit realert", "publish offered"]),
        (900, Tick(), S.OFFERED, ["audit realert", "publish offered"]),  # late tick (a restart): next one from now
        (959, Tick(), S.OFFERED, []),
        (960, Tick(), S.OFFERED, ["audit realert", "publish offered"]),
        (961, Answer("op-mabes"), S.ASSIGNED,
         ["audit answered", "audit assigned", "publish assigned", "status A assigned", "alert A"]),
    ]),
    "a redelivered call changes nothing": (POLRES, [
        (0, RECEIVE, S.OFFERED, OPENED),
        (1, RECEIVE, S.OFFERED, ["audit duplicate"]),
        (2, replace(RECEIVE, request=request("GTO-2")), S.OFFERED, REFUSED),  # routed to the wrong call: a bug at the edge
        (10, Answer("op-1"), S.ASSIGNED, ANSWER_A),
        (11, RECEIVE, S.ASSIGNED, ["audit duplicate"]),
    ]),
    "an invalid location is offered to a human, without candidates": (POLRES, [
        (0, RECEIVE_INVALID, S.OFFERED, OPENED),
        (10, Answer("op-1"), S.ANSWERED, ["audit answered", "publish answered"]),
        (11, Assign("op-1", "R2-12", "pasar sentral, depan masjid"), S.ASSIGNED,
         ["audit assigned", "publish assigned", "status R2-12 assigned", "alert R2-12"]),
    ]),
    "no candidates at all: answered, flagged, waiting for a dispatcher": (POLRES, [
        (0, RECEIVE_NONE, S.OFFERED, OPENED),
        (5, Recandidate(()), S.OFFERED, []),  # nothing new
        (10, Answer("op-1"), S.ANSWERED, ["audit answered", "publish answered"]),
        (11, Recandidate(CANDS[:1]), S.ASSIGNED,
         ["audit recandidate", "audit assigned", "publish assigned", "status A assigned", "alert A"]),
    ]),
    "recandidate while offered replaces the list; elsewhere it is ignored": (POLRES, [
        (0, RECEIVE_NONE, S.OFFERED, OPENED),
        (5, Recandidate(CANDS), S.OFFERED, ["audit recandidate", "publish offered"]),
        (6, Recandidate(CANDS), S.OFFERED, []),
        (7, Answer("op-1"), S.ASSIGNED, ANSWER_A),
        (8, Recandidate(CANDS[1:]), S.ASSIGNED, []),
    ]),
    "reassign: a dispatcher moves the call to another unit, also en route": (POLRES, [
        (0, RECEIVE, S.OFFERED, OPENED),
        (10, Answer("op-1"), S.ASSIGNED, ANSWER_A),
        (11, Assign("op-1", "C"), S.ASSIGNED, ["audit assigned", "publish assigned", "status A available", "status C assigned", "alert C"]),
        (12, Accept("C"), S.ENROUTE, ["audit enroute", "publish enroute", "status C enroute"]),
        (13, Assign("op-1", "B", "C mogok"), S.ASSIGNED,
         ["audit assigned", "publish assigned", "status C available", "status B assigned", "alert B"]),
        (14, Accept("B"), S.ENROUTE, ["audit enroute", "publish enroute", "status B enroute"]),
        (15, Arrive("B"), S.ONSCENE, ["audit onscene", "publish onscene", "status B onscene"]),
        (16, Assign("op-1", "A"), S.ONSCENE, REFUSED),
    ]),
    "events that do not fit the state are refused and change nothing": (POLRES, [
        (0, Answer("op-1"), None, REFUSED),  # no such call
        (0, Tick(), None, []),
        (0, RECEIVE, S.OFFERED, OPENED),
        (1, Accept("A"), S.OFFERED, REFUSED),
        (1, Decline("A"), S.OFFERED, REFUSED),
        (1, Arrive("A"), S.OFFERED, REFUSED),
        (1, Answer("op-1", "bad/unit"), S.OFFERED, REFUSED),
        (1, Assign("op-1", ""), S.OFFERED, REFUSED),
        (1, Assign("op-1", "R+1"), S.OFFERED, REFUSED),
        (2, Answer("op-1"), S.ASSIGNED, ANSWER_A),
        (3, Answer("op-2"), S.ASSIGNED, REFUSED),  # answered twice
        (3, Assign("op-1", "A"), S.ASSIGNED, REFUSED),  # a redelivered assign: no second alert
        (3, Accept("B"), S.ASSIGNED, REFUSED),  # not the assigned unit
        (3, Decline("op-1", "B"), S.ASSIGNED, REFUSED),
        (3, Arrive("A"), S.ASSIGNED, REFUSED),  # accept first
        (4, Accept("op-1", "A"), S.ENROUTE, ["audit enroute", "publish enroute", "status A enroute"]),
        (5, Accept("A"), S.ENROUTE, REFUSED),
        (5, Decline("A"), S.ENROUTE, REFUSED),
        (5, Arrive("B"), S.ENROUTE, REFUSED),
        (6, Arrive("A"), S.ONSCENE, ["audit onscene", "publish onscene", "status A onscene"]),
        (7, Arrive("A"), S.ONSCENE, REFUSED),
        (7, Answer("op-1"), S.ONSCENE, REFUSED),
    ]),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario(name: str) -> None:
    role, rows = SCENARIOS[name]
    call: Call | None = None
    for t, event, state, kinds in rows:
        before = call
        call, actions = step(call, event, T0 + timedelta(seconds=t), role, OPTS)
        where = f"t={t} {event}"
        assert (call.state if call else None) == state, where
        assert [kind(a) for a in actions] == kinds, where
        check_actions(actions)
        if before is not None and call is not None:
            published = [a for a in actions if isinstance(a, PublishState)]
            assert call.version == before.version + len(published), where
            assert published == ([PublishState(call)] if published else []), where
            if not published:
                assert call is before, where
        if call is not None:
            assert call_from_json(call_to_json(call)) == call


def run(role: NodeRole, rows: list[tuple[float, Event]], call: Call | None = None) -> tuple[Call, list[Action]]:
    out: list[Action] = []
    for t, event in rows:
        call, actions = step(call, event, T0 + timedelta(seconds=t), role, OPTS)
        out += actions
    assert call is not None
    return call, out


# -- details the kinds do not show ---------------------------------------------------------------


def test_receive_sets_the_tier_deadline_and_flags() -> None:
    for role, timeout in ((POLRES, 60), (POLDA, 90), (MABES, 120)):
        call, _ = run(role, [(0, RECEIVE)])
        assert call.answer_deadline == T0 + timedelta(seconds=timeout)
        assert next_deadline(call) == call.answer_deadline
        assert (call.tier, call.node, call.version) == (role.tier, role.node, 1)
        assert call.flags == ("repeat_caller",)
        assert call.candidates == CANDS and call.created == call.updated == T0
    call, _ = run(POLRES, [(0, RECEIVE_NONE)])
    assert call.flags == (FLAG_NO_CANDIDATE,)


def test_invalid_location_call() -> None:
    call, _ = run(POLRES, [(0, RECEIVE_INVALID)])
    assert call.candidates == ()
    assert set(call.flags) == {FLAG_INVALID_LOCATION, FLAG_NO_CANDIDATE}
    payload = call_state_payload(call)
    assert payload["location_status"] == "invalid" and payload["jurisdiction"] is None
    assert payload["lat"] is None and payload["candidates"] == []
    call, actions = run(POLRES, [(10, Answer("op-1")), (11, Assign("op-1", "R2-12", "depan masjid"))], call)
    assert FLAG_NO_CANDIDATE not in call.flags and FLAG_INVALID_LOCATION in call.flags
    (alert,) = [a for a in actions if isinstance(a, AlertUnit)]
    assert (alert.lat, alert.lon, alert.distance_m) == (None, None, None)
    assert alert.caller_note == "Tabrakan motor di depan pasar / depan masjid"


def test_answer_stops_the_answer_timer_and_arms_the_accept_timer() -> None:
    call, actions = run(POLRES, [(0, RECEIVE), (10, Answer("op-1", note="unit terdekat"))])
    assert call.answer_deadline is None and call.answered_by == "op-1"
    assert call.accept_deadline == T0 + timedelta(seconds=10 + OPTS.accept_timeout_s) == next_deadline(call)
    assert call.alerts_sent == (("A", 1),) and call.assigned_unit == "A"
    (alert,) = [a for a in actions if isinstance(a, AlertUnit)]
    assert alert_payload(alert) == {
        "call_id": "GTO-1", "lat": 0.5568, "lon": 123.0702, "category": "kecelakaan",
        "caller_note": "Tabrakan motor di depan pasar / unit terdekat", "distance_m": 1842.5,
        "msg_id": alert.msg_id, "unit": "A", "attempt": 1,
    }
    assert re.fullmatch(r"[0-9a-f]{32}", alert.msg_id)
    call, _ = run(POLRES, [(11, Accept("A"))], call)
    assert call.accept_deadline is None and next_deadline(call) is None


def test_escalation_hands_the_request_to_the_parent() -> None:
    call, actions = run(POLRES, [(0, RECEIVE), (60, Tick())])
    (esc,) = [a for a in actions if isinstance(a, Escalate)]
    assert esc.parent == "polri110/gorontalo" == call.escalated_to
    assert esc.request == replace(RECEIVE.request, escalated_from="polri110/gorontalo/bone-bolango")
    assert call.answer_deadline is None and next_deadline(call) is None
    payload = escalation_payload(esc)
    assert payload["escalated_from"] == POLRES.node and payload["received_at"] == "2025-03-14T02:20:58.000Z"
    # the parent receives it as a call of its own
    parent_call, _ = run(POLDA, [(61, Receive(esc.request, RECEIVE.placement, CANDS))])
    assert parent_call.request.escalated_from == POLRES.node
    assert call_state_payload(parent_call)["escalated_from"] == POLRES.node


def test_mabes_realerts_keep_the_flag_and_move_the_deadline() -> None:
    call, _ = run(MABES, [(0, RECEIVE), (120, Tick()), (500, Tick())])
    assert call.state == S.OFFERED and FLAG_REALERTED in call.flags
    assert call.answer_deadline == T0 + timedelta(seconds=500 + OPTS.realert_s)
    assert call.version == 3


@pytest.mark.parametrize(
    ("rows", "freed"),
    [
        ([], None),
        ([(1, Answer("op-1"))], None),  # answered without candidates
        ([(1, Assign("op-1", "A"))], "A"),
        ([(1, Assign("op-1", "A")), (2, Accept("A"))], "A"),
        ([(1, Assign("op-1", "A")), (2, Accept("A")), (3, Arrive("A"))], "A"),
    ],
)
def test_close_from_every_open_state(rows: list[tuple[float, Event]], freed: str | None) -> None:
    call, _ = run(POLRES, [(0, RECEIVE_NONE), *rows])
    before = call
    call, actions = step(call, Close("op-1", "prank"), T0 + timedelta(seconds=9), POLRES, OPTS)
    assert call is not None and call.state == S.CLOSED and call.version == before.version + 1
    assert [a for a in actions if isinstance(a, SetUnitStatus)] == (
        [SetUnitStatus(freed, UnitStatus.AVAILABLE, None)] if freed else []
    )
    assert next_deadline(call) is None and call.answer_deadline is None and call.accept_deadline is None
    audits = [a for a in actions if isinstance(a, Audit)]
    assert audits == [Audit("closed", f"closed in state {before.state.value}: prank", "op-1")]


def test_refusals_are_audited_with_the_reason() -> None:
    call, _ = run(POLRES, [(0, RECEIVE)])
    after, actions = step(call, Accept("B"), T0, POLRES, OPTS)
    assert after is call
    assert actions == (
        Refused("accept: the call is offered, not assigned"),
        Audit("refused", "accept refused: accept: the call is offered, not assigned", "B"),
    )


def test_restart_reloads_the_call_rearms_the_timer_and_sends_no_duplicate_alert() -> None:
    call, first = run(POLRES, [(0, RECEIVE), (10, Answer("op-1"))])
    stored = call_to_json(call)
    # killed here; restarted 30 s later
    reloaded = call_from_json(stored)
    assert reloaded == call
    deadline = next_deadline(reloaded)
    assert deadline == T0 + timedelta(seconds=70)
    again, actions = step(reloaded, Tick(), T0 + timedelta(seconds=40), POLRES, OPTS)  # an early tick on start-up
    assert again is reloaded and actions == ()
    for redelivered in (Answer("op-1"), Assign("op-1", "A"), RECEIVE):
        again, actions = step(reloaded, redelivered, T0 + timedelta(seconds=41), POLRES, OPTS)
        assert again is reloaded and not any(isinstance(a, AlertUnit | PublishState) for a in actions)
    # the re-armed timer fires: the next unit gets a new alert, A's is not re-sent
    later, actions = step(reloaded, Tick(), deadline, POLRES, OPTS)
    alerts = [a for a in actions if isinstance(a, AlertUnit)]
    assert [(a.unit, a.attempt) for a in alerts] == [("B", 2)]
    assert later is not None and later.alerts_sent == (("A", 1), ("B", 2))
    (a_alert,) = [a for a in first if isinstance(a, AlertUnit)]
    assert alerts[0].msg_id != a_alert.msg_id


def test_message_ids_are_stable_and_unique() -> None:
    rows: list[tuple[float, Event]] = [(0, RECEIVE), (10, Answer("op-1")), (11, Decline("A")), (12, Assign("op-1", "A"))]
    _, one = run(POLRES, rows)
    _, two = run(POLRES, rows)
    ids_one = [a.msg_id for a in one if isinstance(a, AlertUnit)] + [state_msg_id(a.call) for a in one if isinstance(a, PublishState)]
    ids_two = [a.msg_id for a in two if isinstance(a, AlertUnit)] + [state_msg_id(a.call) for a in two if isinstance(a, PublishState)]
    assert ids_one == ids_two and len(set(ids_one)) == len(ids_one) == 3 + 4
    # the same call id at the parent node is another message
    _, parent = run(POLDA, [(0, RECEIVE)])
    assert {state_msg_id(a.call) for a in parent if isinstance(a, PublishState)}.isdisjoint(ids_one)


def test_call_state_payload_matches_the_contract() -> None:
    call, _ = run(POLRES, [(0, RECEIVE), (10, Answer("op-1")), (11, Decline("A"))])
    payload = call_state_payload(call)
    assert_valid("call-state", payload)
    assert {k: payload[k] for k in ("call_id", "state", "tier", "node", "jurisdiction", "location_status")} == {
        "call_id": "GTO-1", "state": "assigned", "tier": "polres", "node": "polri110/gorontalo/bone-bolango",
        "jurisdiction": "bone-bolango", "location_status": "ok",
    }
    assert payload["candidates"] == [
        {"unit": "A", "distance_m": 1842.5, "eta_s": 184.2, "fix_age_s": 3.1, "in_jurisdiction": True},
        {"unit": "B", "distance_m": 4210.0, "eta_s": 421.0, "fix_age_s": 3.1, "in_jurisdiction": True},
        {"unit": "C", "distance_m": 5100.0, "eta_s": 510.0, "fix_age_s": 3.1, "in_jurisdiction": True},
    ]
    assert payload["assigned_unit"] == "B" and payload["declined"] == ["A"]
    assert payload["answer_deadline"] is None and payload["escalated_to"] is None
    assert payload["accept_deadline"] == "2025-03-14T02:22:10.000Z"
    assert payload["flags"] == ["repeat_caller"] and payload["version"] == 3 and payload["msg_id"] == state_msg_id(call)
    offered, _ = run(POLRES, [(0.25, RECEIVE)])
    assert call_state_payload(offered)["answer_deadline"] == "2025-03-14T02:21:59.250Z"


def test_stored_form_is_strict() -> None:
    call, _ = run(POLRES, [(0, RECEIVE), (10, Answer("op-1"))])
    doc: dict[str, Any] = json.loads(call_to_json(call))
    old = {k: v for k, v in doc.items() if k not in ("realert_at", "history")}  # format 1, before realert_at and history
    assert call_from_json(json.dumps({**old, "format": 1})) == replace(call, history=())
    for broken in (
        {**doc, "format": 4},
        old,
        {**doc, "history": [{**doc["history"][0], "state": "lost"}]},
        {**doc, "history": [{k: v for k, v in doc["history"][0].items() if k != "seq"}]},
        {**doc, "version": "3"},
        {**doc, "state": "lost"},
        {**doc, "created": "2025-03-14T02:20:59"},  # naive
        {**doc, "alerts_sent": [["A"]]},
        {k: v for k, v in doc.items() if k != "declined"},
    ):
        with pytest.raises(ValueError):
            call_from_json(json.dumps(broken))
    with pytest.raises(ValueError):
        call_from_json("{not json")


def test_options_are_a_strict_config_section(tmp_path: Path) -> None:
    opts = build(DispatchOptions, {"answer_timeout_polda_s": 45}, "dispatch", tmp_path / "a.toml")
    assert opts.answer_timeout("polda") == timedelta(seconds=45) and opts.answer_timeout("polres") == timedelta(seconds=60)
    for bad in ({"accept_timeout_s": 0}, {"realert_s": 1.5}, {"answer_timeout_mabes_s": 99999}, {"retries": 3}):
        with pytest.raises(ConfigError):
            build(DispatchOptions, bad, "dispatch", tmp_path / "a.toml")
    assert all(doc for _, _, _, doc in describe(DispatchOptions))
    assert [f.name for f in fields(DispatchOptions)] == [
        "answer_timeout_polres_s", "answer_timeout_polda_s", "answer_timeout_mabes_s", "accept_timeout_s", "realert_s",
        "supervision_grace_s",
    ]


def test_node_role() -> None:
    assert POLRES.parent == "polri110/gorontalo" and POLDA.parent == "polri110" and MABES.parent is None
    for bad in (("polri110", "polres"), ("polri110/x", "kapolsek")):
        with pytest.raises(ValueError):
            NodeRole.of(*bad)
    with pytest.raises(ValueError):
        NodeRole("polri110", "mabes", "polri")
    with pytest.raises(ValueError):
        NodeRole("polri110/x", "polda", None)


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError):
        step(None, RECEIVE, datetime(2025, 3, 14), POLRES, OPTS)  # naive


# -- random event runs ---------------------------------------------------------------------------

ALLOWED = {
    (None, S.OFFERED),
    (S.OFFERED, S.OFFERED),  # re-alert, new candidates
    (S.OFFERED, S.ANSWERED),
    (S.OFFERED, S.ASSIGNED),
    (S.OFFERED, S.ESCALATED),
    (S.OFFERED, S.CLOSED),
    (S.ANSWERED, S.ANSWERED),
    (S.ANSWERED, S.ASSIGNED),
    (S.ANSWERED, S.CLOSED),
    (S.ASSIGNED, S.ASSIGNED),  # next candidate, reassign
    (S.ASSIGNED, S.ANSWERED),  # nobody left
    (S.ASSIGNED, S.ENROUTE),
    (S.ASSIGNED, S.CLOSED),
    (S.ENROUTE, S.ONSCENE),
    (S.ENROUTE, S.ASSIGNED),  # reassign
    (S.ENROUTE, S.CLOSED),
    (S.ONSCENE, S.CLOSED),
}
WORKING = {S.ASSIGNED: UnitStatus.ASSIGNED, S.ENROUTE: UnitStatus.ENROUTE, S.ONSCENE: UnitStatus.ONSCENE}
UNITS = st.sampled_from(["A", "B", "C", "D"])
BY = st.sampled_from(["op-1", "A", "B"])
CANDIDATE_LISTS = st.lists(st.sampled_from([cand(u, d) for u, d in (("A", 10.0), ("B", 20.0), ("C", 30.0), ("D", 40.0))]),
                           unique_by=lambda c: c.unit, max_size=4).map(tuple)
RECEIVES = st.builds(
    Receive,
    st.sampled_from([request(), request(location=None), request("GTO-2")]),
    st.sampled_from([RECEIVE.placement, RECEIVE_INVALID.placement]),
    CANDIDATE_LISTS,
    st.sampled_from([(), ("repeat_caller",), ("repeat_caller", "repeat_caller")]),
)
EVENTS: st.SearchStrategy[Event] = st.one_of(
    RECEIVES,
    st.builds(Answer, BY, st.none() | UNITS),
    st.builds(Assign, BY, UNITS | st.just("x/y")),
    st.builds(Accept, BY, st.none() | UNITS),
    st.builds(Decline, BY, st.none() | UNITS),
    st.builds(Arrive, BY, st.none() | UNITS),
    st.builds(Close, BY),
    st.just(Tick()),
    st.just(Tick()),
    st.builds(Recandidate, CANDIDATE_LISTS),
)
DELAYS = st.floats(0, 10) | st.floats(0, 200)


def draw_event(data: st.DataObject, call: Call | None) -> Event:
    """Any event, or half the time one from the unit on the call (random units rarely match it)."""
    if call is not None and call.assigned_unit is not None and data.draw(st.booleans()):
        cls = data.draw(st.sampled_from([Accept, Arrive, Decline]))
        return cls(call.assigned_unit)
    return data.draw(EVENTS)


@dataclass
class Model:
    """What the edge would have published about units, from the actions alone."""

    units: dict[str, UnitStatus]
    alert_ids: set[str]
    alerts: int = 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(role=st.sampled_from([POLRES, POLDA, MABES]), first=RECEIVES, length=st.integers(0, 40), data=st.data())
def test_random_event_runs_keep_the_invariants(role: NodeRole, first: Receive, length: int, data: st.DataObject) -> None:
    model = Model({}, set())
    now = T0
    call: Call | None = None
    for i in range(length + 1):
        event = first if i == 0 else draw_event(data, call)
        now += timedelta(seconds=0 if i == 0 else data.draw(DELAYS))
        before = call
        call, actions = step(call, event, now, role, OPTS)  # never raises
        assert call is not None
        published = [a for a in actions if isinstance(a, PublishState)]
        refused = [a for a in actions if isinstance(a, Refused)]
        if published:  # an accepted transition: one edge, one version, one publication of the new call
            assert published == [PublishState(call)]
            assert (before.state if before else None, call.state) in ALLOWED
            assert call.version == (before.version + 1 if before else 1)
            assert call.updated == now
            assert any(isinstance(a, Audit) for a in actions)
        else:
            assert call is before or before is None
            assert not any(isinstance(a, AlertUnit | SetUnitStatus | Escalate) for a in actions)
        if refused:
            assert len(refused) == 1 and Audit in {type(a) for a in actions} and not published
        if before is not None and before.is_final:
            assert call is before and not published
        # unit statuses and alerts
        for a in actions:
            if isinstance(a, SetUnitStatus):
                model.units[a.unit] = a.status
                assert a.call_id == (None if a.status == UnitStatus.AVAILABLE else call.call_id)
            elif isinstance(a, AlertUnit):
                assert a.msg_id not in model.alert_ids
                model.alert_ids.add(a.msg_id)
                model.alerts += 1
                assert (a.unit, a.attempt) in call.alerts_sent and a.unit == call.assigned_unit
        assert len(call.alerts_sent) == model.alerts
        for unit, status in model.units.items():
            busy = unit == call.assigned_unit and call.state in WORKING
            assert status == (WORKING[call.state] if busy else UnitStatus.AVAILABLE), (unit, call.state)
        if call.state in WORKING:
            assert call.assigned_unit is not None and model.units.get(call.assigned_unit) == WORKING[call.state]
        # the record itself
        assert call.assigned_unit is None or call.assigned_unit not in call.declined
        assert (call.answer_deadline is not None) == (call.state == S.OFFERED)
        assert (call.accept_deadline is not None) == (call.state == S.ASSIGNED)
        assert (call.escalated_to is not None) == (call.state == S.ESCALATED)
        assert call.state != S.ESCALATED or role.parent is not None
        assert len(set(call.flags)) == len(call.flags)
        seqs = [s.seq for s in call.history]
        assert 0 < len(seqs) <= MAX_HISTORY and seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert call.history[-1].state == call.state and call.history[-1].time <= now
        if isinstance(event, Tick):
            deadline = next_deadline(call)
            assert deadline is None or deadline > now
        assert call_from_json(call_to_json(call)) == call
        check_actions(actions)

"""A call's history: every step dispatch takes is recorded in the call, bounded, re-ranks and re-alerts folded; stored and published."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from alkomd.daemon.calls.codec import call_from_json, call_to_json
from alkomd.daemon.calls.dispatch import (
    Accept,
    Answer,
    Arrive,
    Assign,
    Call,
    Close,
    Decline,
    Event,
    NodeRole,
    Recandidate,
    Receive,
    Refine,
    TakenOver,
    Tick,
    step,
)
from alkomd.daemon.calls.history import ACTIONS, MAX_HISTORY, Step
from alkomd.daemon.calls.options import DispatchOptions
from alkomd.daemon.calls.types import CallRequest, CallStateName, Candidate, Location, LocationStatus, Placement
from alkomd.daemon.mqtt.contract import call_state_payload

SCHEMA = Path(__file__).resolve().parent.parent / "docs" / "contract" / "schemas" / "call-state.schema.json"
T0 = datetime(2025, 3, 14, 2, 20, 59, tzinfo=UTC)
OPTS = DispatchOptions()
POLRES = NodeRole.of("polri110/gorontalo/bone-bolango", "polres")
POLDA = NodeRole.of("polri110/gorontalo", "polda")
MABES = NodeRole.of("polri110", "mabes")
S = CallStateName
LOC = Location(0.5568, 123.0702, 25.0)
PLACE = Placement(LocationStatus.OK, "bone-bolango")


def cand(unit: str, distance_m: float) -> Candidate:
    return Candidate(unit, distance_m, eta_s=distance_m / 10, fix_age_s=3.1, in_jurisdiction=True)


A, B, C, D = cand("A", 1000.0), cand("B", 2000.0), cand("C", 3000.0), cand("D", 4000.0)


def receive(*candidates: Candidate, escalated_from: str | None = None) -> Receive:
    req = CallRequest(call_id="GTO-1", caller="+6281234500000", location=LOC, received_at=T0 - timedelta(seconds=1),
                      category="kecelakaan", source="mqtt", escalated_from=escalated_from, note="depan pasar")
    return Receive(req, PLACE, candidates)


def run(role: NodeRole, rows: list[tuple[float, Event]], call: Call | None = None) -> Call:
    for t, event in rows:
        call, _ = step(call, event, T0 + timedelta(seconds=t), role, OPTS)
    assert call is not None
    return call


def brief(call: Call) -> list[tuple[str, str, str, str | None]]:
    """(action, state, by, unit) of every step: the history as a table reads."""
    return [(s.action, s.state.value, s.by, s.unit) for s in call.history]


def test_each_transition_is_a_step_with_who_and_which_unit() -> None:
    call = run(POLRES, [
        (0, receive(A, B, C)),
        (10, Answer("op-1", note="unit terdekat")),
        (11, Decline("A", note="ban bocor")),
        (80, Tick()),  # B did not accept within 60 s: C is alerted
        (81, Accept("C")),
        (90, Arrive("C")),
        (120, Close("op-1", "selesai")),
    ])
    assert brief(call) == [
        ("received", "new", "", None),
        ("offered", "offered", "", None),
        ("answered", "answered", "op-1", None),
        ("assigned", "assigned", "op-1", "A"),
        ("declined", "assigned", "A", "A"),
        ("assigned", "assigned", "A", "B"),
        ("accept_timeout", "assigned", "", "B"),
        ("assigned", "assigned", "", "C"),
        ("accepted", "enroute", "C", "C"),
        ("arrived", "onscene", "C", "C"),
        ("closed", "closed", "op-1", "C"),
    ]
    h = call.history
    assert [s.seq for s in h] == list(range(1, 12)) and all(s.count == 1 for s in h)
    assert [s.time for s in h] == [T0 + timedelta(seconds=t) for t in (0, 0, 10, 10, 11, 11, 80, 80, 81, 90, 120)]
    assert h[2].note == "unit terdekat" and h[4].note == "ban bocor" and h[-1].note == "selesai"
    assert h[0].detail == "call GTO-1 from mqtt: kecelakaan, ok in bone-bolango"
    assert h[4].detail == "A declined: ban bocor" and h[5].detail == "B alerted (next candidate after A), attempt 2"
    assert {s.action for s in h} <= set(ACTIONS)


def test_escalation_take_over_reassignment_and_no_candidate_are_steps() -> None:
    escalated = run(POLRES, [(0, receive(A)), (60, Tick())])
    assert brief(escalated)[2:] == [("escalated", "escalated", "", None)]
    assert "escalated to polri110/gorontalo" in escalated.history[-1].detail

    taken = run(POLRES, [(0, receive(A)), (30, TakenOver("polri110/gorontalo", "node offline"))])
    assert brief(taken)[2:] == [("taken_over", "escalated", "polri110/gorontalo", None)]

    from_below = run(POLDA, [(0, receive(A, escalated_from="polri110/gorontalo/bone-bolango"))])
    assert from_below.history[0].detail.startswith("call GTO-1 from mqtt, escalated from polri110/gorontalo/bone-bolango")

    call = run(POLRES, [(0, receive(A)), (5, Assign("op-1", "X-9", note="dekat")), (6, Assign("op-2", "A")), (7, Decline("A"))])
    assert brief(call)[2:] == [
        ("answered", "answered", "op-1", None),
        ("assigned", "assigned", "op-1", "X-9"),
        ("assigned", "assigned", "op-2", "A"),
        ("declined", "assigned", "A", "A"),
        ("no_candidate", "answered", "A", None),
    ]
    assert call.history[3].note == "dekat" and "reassigned from X-9" in call.history[4].detail
    refined = run(POLRES, [(8, Refine(LOC, PLACE, (A, B), "aml-sms", "within 20 m"))], call)
    assert brief(refined)[-2:] == [("refined", "answered", "", None), ("assigned", "assigned", "", "B")]


def test_realerts_fold_into_one_step_and_the_history_stays_small() -> None:
    call = run(MABES, [(0, receive(A))] + [(120 + 60 * i, Tick()) for i in range(500)])
    assert call.version == 501
    assert brief(call) == [("received", "new", "", None), ("offered", "offered", "", None), ("realerted", "offered", "", None)]
    last = call.history[-1]
    assert last.count == 500 and last.time == T0 + timedelta(seconds=120 + 60 * 499) and last.seq == 3
    answered = run(MABES, [(30_100, Answer("op-1")), (30_101, Decline("A"))]
                   + [(30_200 + 60 * i, Tick()) for i in range(100)], call)
    assert [(s.action, s.count) for s in answered.history[2:]] == [
        ("realerted", 500), ("answered", 1), ("assigned", 1), ("declined", 1), ("no_candidate", 1), ("realerted", 100),
    ]


def test_re_ranks_do_not_flood_the_history() -> None:
    call = run(POLRES, [(0, receive(A, B))])
    before = len(call.history)
    for i in range(200):  # units moving: the same two units swap places again and again
        call = run(POLRES, [(1 + i, Recandidate((B, A) if i % 2 == 0 else (A, B)))], call)
    assert call.version == 201 and len(call.history) == before  # re-ordered only: no step
    for i in range(200):  # units coming in and out of reach: the set changes each time, folded into one step
        call = run(POLRES, [(300 + i, Recandidate((A, B, C) if i % 2 == 0 else (A, B)))], call)
    assert [(s.action, s.count) for s in call.history[before:]] == [("recandidated", 200)]
    assert call.history[-1].detail == "candidates: A, B" and call.history[-1].time == T0 + timedelta(seconds=499)
    call = run(POLRES, [(600, Answer("op-1")), (601, Recandidate((D,)))], call)
    assert [s.action for s in call.history[before:]] == ["recandidated", "answered", "assigned"]  # assigned: no re-rank then


def test_the_history_is_bounded_to_the_newest_steps() -> None:
    rows: list[tuple[float, Event]] = [(0, receive(A))]
    rows += [(1 + i, Assign("op-1", ("B", "C")[i % 2], note="n" * 500)) for i in range(200)]  # one who cannot decide, at length
    call = run(POLRES, rows)
    total = 2 + 1 + 200  # received, offered, answered (with the first assign), 200 assigned
    assert len(call.history) == MAX_HISTORY
    assert [s.seq for s in call.history] == list(range(total - MAX_HISTORY + 1, total + 1))
    assert call.history[-1] == Step(total, T0 + timedelta(seconds=200), "assigned", S.ASSIGNED,
                                    "C alerted (reassigned from B), attempt 200", "op-1", "C", "n" * 500)
    payload = call_state_payload(call)
    assert isinstance(payload["history"], list) and len(payload["history"]) == MAX_HISTORY
    assert len(json.dumps(payload)) < 40_000  # bounded however long the call goes on (config/mosquitto/README.md says so)


def test_the_payload_lists_the_steps_in_the_contract_form() -> None:
    call = run(POLRES, [(0, receive(A, B)), (10.25, Answer("op-1", note="unit terdekat")), (11, Accept("A"))])
    payload = call_state_payload(call)
    errors = list(Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8"))).iter_errors(payload))
    assert not errors, errors
    assert payload["history"][2:] == [
        {"seq": 3, "time": "2025-03-14T02:21:09.250Z", "action": "answered", "state": "answered", "by": "op-1", "unit": None,
         "note": "unit terdekat", "detail": "answered by op-1", "count": 1},
        {"seq": 4, "time": "2025-03-14T02:21:09.250Z", "action": "assigned", "state": "assigned", "by": "op-1", "unit": "A",
         "note": "", "detail": "A alerted (top candidate), attempt 1", "count": 1},
        {"seq": 5, "time": "2025-03-14T02:21:10.000Z", "action": "accepted", "state": "enroute", "by": "A", "unit": "A",
         "note": "", "detail": "A accepted", "count": 1},
    ]
    assert payload["history"][0]["by"] is None  # the node itself


def test_the_stored_form_keeps_the_history_exactly() -> None:
    call = run(MABES, [(0, receive(A))] + [(120 + 60 * i, Tick()) for i in range(3)] + [(400.5, Answer("op-1", note="x"))])
    assert call.history[2].count == 3
    assert call_from_json(call_to_json(call)) == call


def test_a_call_stored_before_the_history_loads_with_none_and_goes_on_from_there() -> None:
    call = run(POLRES, [(0, receive(A, B)), (10, Answer("op-1"))])
    doc: dict[str, Any] = json.loads(call_to_json(call))
    del doc["history"]
    doc["format"] = 2  # as the daemon before this change stored it
    loaded = call_from_json(json.dumps(doc))
    assert loaded == replace(call, history=())
    later = run(POLRES, [(20, Accept("A"))], loaded)
    assert brief(later) == [("accepted", "enroute", "A", "A")] and later.history[0].seq == 1
    assert call_state_payload(loaded)["history"] == []

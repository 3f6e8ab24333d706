"""A call's history: the steps it went through at this node, bounded, kept by the pure dispatch on every transition."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from alkomd.daemon.calls.types import CallStateName

MAX_HISTORY = 50  # steps kept per call (the oldest go first): a retained call state cannot grow without limit

# What a step can be (the `action` of a history entry; contract call-state). New ones may be added.
RECEIVED = "received"  # the node took the call in
OFFERED = "offered"  # offered to this tier's duty officer
ANSWERED = "answered"  # the duty officer answered
ASSIGNED = "assigned"  # a unit was assigned and alerted (the first, the next after a decline, or a dispatcher's choice)
DECLINED = "declined"  # the assigned unit declined
ACCEPT_TIMEOUT = "accept_timeout"  # the assigned unit did not accept in time
NO_CANDIDATE = "no_candidate"  # no unit left to alert: a dispatcher must assign one
ACCEPTED = "accepted"  # the assigned unit accepted: en route
ARRIVED = "arrived"  # the unit is on scene
CLOSED = "closed"
ESCALATED = "escalated"  # unanswered in time: sent to the parent node
TAKEN_OVER = "taken_over"  # the parent node took the call (this node was offline or silent)
REALERTED = "realerted"  # still unanswered, or still no unit: the dispatchers are alerted again
RECANDIDATED = "recandidated"  # another set of candidate units
REFINED = "refined"  # the caller's phone sent a better location
ACTIONS = (RECEIVED, OFFERED, ANSWERED, ASSIGNED, DECLINED, ACCEPT_TIMEOUT, NO_CANDIDATE, ACCEPTED, ARRIVED, CLOSED,
           ESCALATED, TAKEN_OVER, REALERTED, RECANDIDATED, REFINED)

# Steps that may repeat without bound while a call waits (a re-alert every realert_s, units moving in and out of
# reach): one right after another of the same action is folded into it (its count goes up, its time and text move on).
FOLDED = frozenset({REALERTED, RECANDIDATED})


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a call at this node, as it happened: stored with the call and published in its state."""

    seq: int  # 1 for the first step recorded, +1 per step: a first kept seq above 1 means older steps were dropped
    time: datetime  # when it happened (the latest time, for a folded step)
    action: str  # one of ACTIONS
    state: CallStateName  # the call's state right after the step
    detail: str  # what happened, in words (as the audit log says it)
    by: str = ""  # who caused it (an officer, a unit, the parent node); "" when the node itself did (a timer, a ranking)
    unit: str | None = None  # the unit the step is about, if one
    note: str = ""  # the note given with the event (a dispatcher's, a declining unit's, a closing one's)
    count: int = 1  # how many times in a row this step happened (FOLDED actions)


def record(
    history: tuple[Step, ...], time: datetime, action: str, state: CallStateName, detail: str,
    by: str = "", unit: str | None = None, note: str = "",
) -> tuple[Step, ...]:
    """`history` with one more step, folded into the last one when it repeats a FOLDED action, and bounded."""
    last = history[-1] if history else None
    if last is not None and action in FOLDED and last.action == action:
        folded = replace(last, time=time, state=state, detail=detail, by=by, unit=unit, note=note, count=last.count + 1)
        return (*history[:-1], folded)
    seq = last.seq + 1 if last is not None else 1
    return (*history, Step(seq, time, action, state, detail, by, unit, note))[-MAX_HISTORY:]

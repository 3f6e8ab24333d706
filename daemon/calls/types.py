"""Records of the call path: what intake, jurisdictions, recommendation and dispatch exchange.

All times are UTC datetimes. The dispatch logic is pure: it receives `now` from the edge (a
clock that does not jump: wall time at start plus monotonic time since), never reads a clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from alkomd.daemon.records import UnitStatus


class LocationStatus(enum.StrEnum):
    OK = "ok"  # inside one jurisdiction (and its uncertainty circle too)
    APPROXIMATE = "approximate"  # the uncertainty circle crosses a border
    OUTSIDE = "outside"  # in no polygon: the nearest one within reach is used
    INVALID = "invalid"  # no usable location: a human must ask the caller


class CallStateName(enum.StrEnum):
    NEW = "new"
    OFFERED = "offered"  # waiting for this tier to answer
    ANSWERED = "answered"
    ASSIGNED = "assigned"
    ENROUTE = "enroute"
    ONSCENE = "onscene"
    CLOSED = "closed"
    ESCALATED = "escalated"  # handed to the parent node




@dataclass(frozen=True, slots=True)
class Location:
    """Where the caller is: WGS84 degrees and an uncertainty radius (None when unknown)."""

    lat: float
    lon: float
    accuracy_m: float | None = None


@dataclass(frozen=True, slots=True)
class CallRequest:
    """A validated incoming call. A call with an unusable location still is one (location None)."""

    call_id: str
    caller: str  # E.164-ish phone number as given, or "" when unknown
    location: Location | None
    received_at: datetime
    category: str
    source: str  # "mqtt", "aml-sms", "els-https"
    problems: tuple[str, ...] = ()  # what was wrong with the input (for the human), never fatal
    escalated_from: str | None = None  # node topic of the child that escalated it
    note: str = ""
    raw_sha256: str = ""  # of the payload as received (audit)
    caller_calls: int = 0  # calls from this caller in the repeat-caller window, as the node that escalated it counted


@dataclass(frozen=True, slots=True)
class Placement:
    """Which jurisdiction a caller is in, and how sure that is."""

    status: LocationStatus
    jurisdiction: str | None  # id of the polygon holding the caller (nearest one when outside)
    others: tuple[str, ...] = ()  # other jurisdictions the uncertainty circle reaches
    distance_m: float | None = None  # outside: distance to `jurisdiction`'s polygon


@dataclass(frozen=True, slots=True)
class UnitSnapshot:
    """What the recommender knows of one unit."""

    unit: str
    type: str  # car, motorcycle, foot, boat
    status: UnitStatus
    lat: float | None
    lon: float | None
    fix_time: datetime | None
    jurisdiction: str | None  # where its last fix lies


@dataclass(frozen=True, slots=True)
class Candidate:
    """One recommended unit for a call."""

    unit: str
    distance_m: float  # geodesic, WGS84
    eta_s: float  # from the unit type's speed class
    fix_age_s: float
    in_jurisdiction: bool  # False: a neighbouring jurisdiction's unit within reach

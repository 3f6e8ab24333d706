"""Plausibility of a unit's consecutive fixes: a fix implying an impossible move or time never becomes its position.

The decoder's gates judge one epoch on its own (status, quality, ranges, HDOP); a fix can pass
them all and still be wrong: a receiver's default date (1980, or a GPS week rollover 19.7 years
back) or a multipath or firmware glitch that puts the unit hundreds of kilometres away for one
second. Such a fix is rejected here, pure and per unit (the station keeps the `Track`s):

- time: a fix stamped more than `MAX_LAG` before it was received is rejected (a live port's
  fixes are a second old; `alkomctl decode` of old captures does not come through here), and so
  is one stamped more than `MAX_LEAD` after (a receiver's clock bug: one such fix accepted would
  freeze the unit, every correct fix after it looking older);
- jump: a fix farther from the unit's last accepted fix than its type's top speed allows in the
  time between the two fixes (plus `SLACK_M` of GPS error) is rejected;
- a new track: `REANCHOR_FIXES` rejected jumps in a row that are plausible among themselves (the
  receiver was swapped, or the accepted fix was the wrong one) become the unit's track again, so
  a unit is never stuck behind one bad fix.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from alkomd.daemon.geodesy import haversine_m
from alkomd.daemon.records import Fix

MAX_LAG = timedelta(days=1)  # as the decoder's bound on fixes from the future
MAX_LEAD = timedelta(minutes=5)  # a fix this far ahead of the station's clock is wrong (or the clock is)
SLACK_M = 200.0  # GPS error of two fixes, allowed on top of the speed bound
REANCHOR_FIXES = 3


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"
    REANCHORED = "accepted as a new track"
    TIME = "fix time more than a day before it was read (receiver date not set, GPS week rollover?)"
    AHEAD = ("fix time more than 5 min ahead of the station's clock (a receiver's date or time bug, or the station's "
             "clock is behind: check timedatectl)")
    JUMP = "implied speed from the unit's last position above its type's bound"


@dataclass(frozen=True, slots=True)
class Point:
    time: datetime
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Track:
    """What the gate knows of one unit: its last accepted fix and the rejected jumps since, oldest first."""

    last: Point
    doubts: tuple[Point, ...] = ()


@dataclass(frozen=True, slots=True)
class Judgement:
    outcome: Outcome
    track: Track | None  # the unit's track after this fix
    distance_m: float = 0.0  # from the last accepted fix (jumps and new tracks)
    seconds: float = 0.0  # fix time since the last accepted fix (jumps and new tracks)

    @property
    def speed_kmh(self) -> float:
        """The speed the move implies (infinite for a move in no time)."""
        return self.distance_m / self.seconds * 3.6 if self.seconds > 0 else float("inf")


def plausible(a: Point, b: Point, max_speed_kmh: float) -> bool:
    """Whether b can follow a: no farther than the top speed allows in the time between them, plus SLACK_M."""
    dt = abs((b.time - a.time).total_seconds())
    return haversine_m(a.lat, a.lon, b.lat, b.lon) <= max_speed_kmh / 3.6 * dt + SLACK_M


def time_wrong(fix: Fix) -> Outcome | None:
    """Why a fix's time cannot be the unit's (stamped more than MAX_LAG before, or MAX_LEAD after it was read), or None.

    A fix from the future must never become a unit's newest: every later, correct fix would look
    older and go to history only, and the unit would freeze on the wrong time.
    """
    if fix.received - fix.time > MAX_LAG:
        return Outcome.TIME
    if fix.time - fix.received > MAX_LEAD:
        return Outcome.AHEAD
    return None


def judge(track: Track | None, fix: Fix, max_speed_kmh: float) -> Judgement:
    """The verdict on one fix of a unit whose track is `track` (None: no fix accepted yet).

    The caller has already set aside fixes not newer than the unit's newest (history only).
    """
    wrong = time_wrong(fix)
    if wrong is not None:
        return Judgement(wrong, track)
    here = Point(fix.time, fix.lat, fix.lon)
    if track is None or plausible(track.last, here, max_speed_kmh):
        return Judgement(Outcome.ACCEPTED, Track(here))
    last = track.last
    distance = haversine_m(last.lat, last.lon, here.lat, here.lon)
    dt = (here.time - last.time).total_seconds()
    chain = (*track.doubts, here) if track.doubts and plausible(track.doubts[-1], here, max_speed_kmh) else (here,)
    if len(chain) >= REANCHOR_FIXES:
        return Judgement(Outcome.REANCHORED, Track(here), distance, dt)
    return Judgement(Outcome.JUMP, Track(last, chain), distance, dt)

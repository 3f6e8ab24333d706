"""Unit availability: a unit without fixes for N expected report intervals goes offline, and back.

Pure logic, no I/O: the station feeds it fixes, status requests and clock ticks, and stores and
publishes the `UnitState`s it returns (only changes are returned).

Rules:
- a unit whose last fix is older than its report interval times `missed_reports` becomes
  `offline`; its previous status is kept as `resume`;
- when fixes return, an offline unit resumes: `available`, or its call status (assigned,
  enroute, onscene) when it is busy with a call, or `unavailable` when it was off duty;
- a dispatcher or the unit's app sets any status but `offline` (which only fixes decide);
  `available` and `unavailable` end the unit's link to a call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from alkomd.daemon.records import SETTABLE, UnitState, UnitStatus

_CALL_FREE = (UnitStatus.AVAILABLE, UnitStatus.UNAVAILABLE)




class Availability:
    """Statuses of the node's units. Thread-confined to the event loop."""

    def __init__(
        self,
        intervals_s: Mapping[str, float],
        missed_reports: int,
        states: Iterable[UnitState],
        now: datetime,
    ) -> None:
        self._timeout = {u: timedelta(seconds=s * missed_reports) for u, s in intervals_s.items()}
        self.states = {s.unit: s for s in states}
        self._last_fix: dict[str, datetime] = {u: now for u in self._timeout}
        for unit in self._timeout:
            self.states.setdefault(unit, UnitState(unit, UnitStatus.OFFLINE, now, None, UnitStatus.AVAILABLE))

    def reconfigure(self, intervals_s: Mapping[str, float], missed_reports: int, now: datetime) -> None:
        """Take a reloaded set of units and intervals; a new unit is offline until its first fix."""
        self._timeout = {u: timedelta(seconds=s * missed_reports) for u, s in intervals_s.items()}
        self._last_fix = {u: self._last_fix.get(u, now) for u in self._timeout}
        for unit in self._timeout:
            self.states.setdefault(unit, UnitState(unit, UnitStatus.OFFLINE, now, None, UnitStatus.AVAILABLE))

    def snapshot(self) -> dict[str, UnitState]:
        """The statuses as they are (a copy), to `restore` if what changed them could not be stored."""
        return dict(self.states)

    def restore(self, states: dict[str, UnitState]) -> None:
        self.states = dict(states)

    def fix(self, unit: str, now: datetime) -> UnitState | None:
        """A fix arrived for `unit` at `now`; the new state if that changed it."""
        if unit not in self._timeout:
            return None
        self._last_fix[unit] = now
        s = self.states[unit]
        if s.status is not UnitStatus.OFFLINE:
            return None
        return self._put(UnitState(unit, s.resume or UnitStatus.AVAILABLE, now, s.call_id, None))

    def tick(self, now: datetime) -> list[UnitState]:
        """Units whose fixes stopped: the states that changed to offline."""
        out = []
        for unit, timeout in self._timeout.items():
            s = self.states[unit]
            if s.status is not UnitStatus.OFFLINE and now - self._last_fix[unit] > timeout:
                out.append(self._put(UnitState(unit, UnitStatus.OFFLINE, now, s.call_id, s.status)))
        return out

    def set(self, unit: str, status: UnitStatus, now: datetime, call_id: str | None = None) -> UnitState | None:
        """A requested status; None when unchanged. Raises ValueError for an unknown unit or status."""
        if unit not in self._timeout:
            raise ValueError(f"unknown unit {unit!r}")
        if status not in SETTABLE:
            raise ValueError(f"status {status.value!r} cannot be set (offline follows the fixes)")
        s = self.states[unit]
        link = None if status in _CALL_FREE else (call_id or s.call_id)
        if s.status is UnitStatus.OFFLINE:  # remembered for when the unit reports again
            new = replace(s, resume=status, call_id=link)
            return None if new == s else self._put(new)
        if s.status is status and s.call_id == link:
            return None
        return self._put(UnitState(unit, status, now, link, None))

    def _put(self, s: UnitState) -> UnitState:
        self.states[s.unit] = s
        return s

"""The repeat-caller memory: who called how often within the window, bounded by the window, rebuilt after a restart."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from datetime import datetime, timedelta


class CallerMemory:
    """Callers and the times of their calls within `window`; the least recent caller first, so callers whose last
    call left the window are forgotten at once (memory bounded by the window, not by the uptime)."""

    def __init__(self, window: timedelta) -> None:
        self.window = window
        self._callers: OrderedDict[str, deque[datetime]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._callers)

    def count(self, caller: str, now: datetime) -> int:
        """Record a call from `caller` at `now`; its calls within the window, this one included (0: no number)."""
        callers = self._callers
        while callers and now - next(iter(callers.values()))[-1] > self.window:
            callers.popitem(last=False)
        if not caller:
            return 0
        q = callers.get(caller)
        if q is None:
            q = callers[caller] = deque()
        else:
            callers.move_to_end(caller)
        q.append(now)
        while q and now - q[0] > self.window:
            q.popleft()
        return len(q)

    def remember(self, calls: Iterable[tuple[str, datetime]]) -> None:
        """Calls recorded before (a restart), oldest first."""
        for caller, when in calls:
            self._callers.setdefault(caller, deque()).append(when)
            self._callers.move_to_end(caller)

"""Keeps the unsent outbox within `[store] outbox_budget_mb` by thinning old position messages, never anything else.

While the broker is unreachable every fix adds a position message to the outbox. When the unsent
payload bytes (`Store.unsent_bytes`, a running figure) exceed the budget, a thinning round runs:

- only messages of kind "position" are candidates; calls, alerts, escalations, unit and device
  statuses, emergencies and audit-related messages are never removed;
- the newest unsent position of every unit is never removed (a row goes only when a newer one of
  the same unit is kept in its place), nor a message in flight;
- the oldest backlog goes first: walking from the oldest row, each unit keeps one position per
  `step` seconds of fix time (the newest of each slot) until the unsent bytes are under
  `LOW_WATER` of the budget. If a whole pass at one step is not enough, the next, coarser step
  follows (`STEPS_S`: one a minute, every 5 min, 15 min, one an hour); a pass remembers where it
  stopped, so the old backlog ends up coarser than the recent one;
- the position history table keeps every fix: thinning removes only the *message*, so the record
  is complete and the track can be replayed from the station's database.

Checks run every `CHECK_S` on the event loop (a comparison of two integers); a round deletes in
transactions of at most `CHUNK_ROWS` rows and yields to the loop between them, so fixes keep
being stored while it runs. Each round is logged once, with its numbers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from alkomd.daemon.store.database import Store, StoreError

log = logging.getLogger(__name__)

STEPS_S = (60, 300, 900, 3600)
LOW_WATER = 0.9  # a round stops at 90 % of the budget, so it does not run again at the next fix
CHUNK_ROWS = 200  # rows deleted per transaction: a few ms of the loop each (bench/bench_outbox.py)
CHECK_S = 2.0
MB = 1_000_000


@dataclass(frozen=True, slots=True)
class ThinningRound:
    """What one round did (also what it logged)."""

    rows: int
    bytes: int
    step_s: int  # the coarsest step used; 0 when nothing could be thinned
    before: int  # unsent payload bytes when the round started
    after: int
    under_budget: bool


def _epoch(iso: str) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


class OutboxBudget:
    """The thinning policy for one store. Runs on the event loop thread, like the store."""

    def __init__(self, store: Store, budget_bytes: Callable[[], int], protected: Callable[[], set[int]] = set) -> None:
        self.store = store
        self._budget = budget_bytes  # read at every check: a configuration reload changes it live
        self.protected = protected  # row ids that must stay (in flight at the broker)
        self.thinned_rows = 0
        self.thinned_bytes = 0
        self.rounds = 0
        self._done: dict[int, int] = {}  # step -> last row id a pass at that step has covered
        self._over_logged = False
        self._failing = False

    @property
    def budget(self) -> int:
        return self._budget()

    def over(self) -> bool:
        return self.store.unsent_bytes > self.budget

    async def run(self) -> None:
        """Check every `CHECK_S`; run a round when the budget is exceeded (a task of the runtime).

        A failed round is logged once per episode and tried again at the next check: the task never ends
        on an error (nobody awaits it, so its exception would be seen only at exit).
        """
        while True:
            await asyncio.sleep(CHECK_S)
            if not self.over():
                continue
            try:
                await self.thin_round()
            except StoreError as exc:
                if not self._failing:
                    log.error("outbox budget: thinning failed: %s; trying again every %g s", exc, CHECK_S)
                self._failing = True
                continue
            except Exception:  # supervision boundary: the budget must outlive a bug in one round
                if not self._failing:
                    log.exception("outbox budget: thinning failed; trying again every %g s", CHECK_S)
                self._failing = True
                continue
            if self._failing:
                self._failing = False
                log.info("outbox budget: thinning works again")

    async def thin_round(self) -> ThinningRound:
        """Thin old position messages until the unsent bytes are under the low-water mark."""
        store = self.store
        budget = self.budget
        before = store.unsent_bytes
        target = int(budget * LOW_WATER)
        upto = store.last_outbox_id()
        keep = self.protected()
        rows = freed = 0
        used = 0
        for step in STEPS_S:
            if store.unsent_bytes <= target:
                break
            r, b = await self._pass(step, upto, keep, target)
            rows, freed = rows + r, freed + b
            if r:
                used = step
        self.rounds += 1
        self.thinned_rows += rows
        self.thinned_bytes += freed
        done = ThinningRound(rows, freed, used, before, store.unsent_bytes, store.unsent_bytes <= budget)
        if rows:
            log.warning(
                "outbox over its budget (%.2f MB > %.2f MB): thinned %d old position messages (%.2f MB), "
                "down to one per %d s per unit; %.2f MB unsent now; the position history keeps every fix",
                before / MB, budget / MB, rows, freed / MB, used, done.after / MB,
            )
        if not done.under_budget and not self._over_logged:
            self._over_logged = True
            log.error(
                "outbox still over its budget after thinning (%.2f MB > %.2f MB): what remains is never thinned "
                "(calls, alerts, statuses, the newest position of each unit, one position per %d s); nothing is dropped",
                done.after / MB, budget / MB, STEPS_S[-1],
            )
        elif done.under_budget and self._over_logged:
            self._over_logged = False
            log.info("outbox back under its budget (%.2f MB of %.2f MB)", done.after / MB, budget / MB)
        return done

    async def _pass(self, step: int, upto: int, keep: set[int], target: int) -> tuple[int, int]:
        """One walk from where the last pass at `step` stopped, oldest first, in bounded transactions."""
        store = self.store
        cursor = self._done.get(step, 0)
        slots: dict[tuple[str, int], int] = {}  # (topic, slot) -> id of the row kept so far (the newest)
        rows = freed = 0
        while store.unsent_bytes > target:
            chunk = store.unsent_positions(cursor, upto, CHUNK_ROWS)
            if not chunk:
                break
            cursor = chunk[-1].id
            doomed: list[int] = []
            for p in chunk:
                t = _epoch(p.time)
                if t is None:
                    continue  # not a position we wrote: leave it alone
                key = (p.topic, int(t // step))
                prev = slots.get(key)
                if prev is not None and prev not in keep:
                    doomed.append(prev)
                slots[key] = p.id
            if doomed:
                r, b = store.thin(doomed)
                rows, freed = rows + r, freed + b
            self._done[step] = cursor
            await asyncio.sleep(0)  # let fixes and acks in between two transactions
        return rows, freed

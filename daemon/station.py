"""The station core: driver records in, stored positions and outbox messages out (event loop thread).

Batches whatever records arrived since the last loop iteration into one SQLite transaction, so
a busy station commits once per burst rather than once per fix. A unit's current position never
moves back: a fix older than the unit's newest goes to history only, an equal one is a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from alkomd.daemon import contract
from alkomd.daemon.config import Config
from alkomd.daemon.publisher import Publisher
from alkomd.daemon.records import DeviceState, DeviceStatus, Fix, Record, UnitPosition, utc_iso, utc_now
from alkomd.daemon.store import Message, Store, StoreError

log = logging.getLogger(__name__)

MAX_UNSTORED = 50_000  # records kept in RAM while the database refuses writes (disk full)
RETRY_STORE_S = 1.0


@dataclass(frozen=True, slots=True)
class UnitInfo:
    id: str
    callsign: str
    type: str
    device: str


class Station:
    def __init__(
        self,
        cfg: Config,
        store: Store,
        publisher: Publisher,
        loop: asyncio.AbstractEventLoop,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.node = cfg.node.topic
        self.store = store
        self.publisher = publisher
        self._loop = loop
        self._now = now
        self.units = {u.id: UnitInfo(u.id, u.callsign, u.type, u.device) for u in cfg.units}
        self.unit_of_device = {u.device: u.id for u in cfg.units if u.device}
        self.latest: dict[str, UnitPosition] = {}
        self.device_status: dict[str, DeviceStatus] = {}
        self.last_fix_mono: dict[str, float] = {}
        self.stale_fixes = 0
        self.unmapped_fixes = 0
        store.sync_units((u.id, u.callsign, u.type, u.device) for u in cfg.units)
        self._last_time: dict[str, str] = store.last_fix_times()
        self._pending: list[Record] = []
        self._scheduled = False
        self._store_failing = False
        self._unmapped_logged: set[str] = set()

    def submit(self, record: Record) -> None:
        """Take one record from a driver (called on the loop thread, via call_soon_threadsafe)."""
        self._pending.append(record)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Store everything pending in one transaction and wake the publisher.

        The unit and device state advance only once the transaction committed: a batch the
        database refused (disk full) is retried whole, later, with the same outcome.
        """
        self._scheduled = False
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        positions: list[tuple[UnitPosition, Message | None]] = []
        messages: list[Message] = []
        last_time = dict(self._last_time)
        latest: dict[str, UnitPosition] = {}
        statuses: list[DeviceStatus] = []
        stale = 0
        for r in batch:
            if isinstance(r, Fix):
                up = self._unit_position(r)
                if up is None:
                    continue
                t = utc_iso(r.time)
                last = last_time.get(up.unit)
                if last is not None and t <= last:
                    stale += 1
                    if t < last:
                        positions.append((up, None))  # history only: the current position never moves back
                    continue
                last_time[up.unit] = t
                latest[up.unit] = up
                positions.append((up, contract.position_message(self.node, up)))
            else:
                statuses.append(r)
                messages.append(contract.device_status_message(self.node, r))
        try:
            self.store.record(positions, messages, self._now())
        except StoreError as exc:
            if not self._store_failing:
                log.error("%s; keeping up to %d records in memory and retrying", exc, MAX_UNSTORED)
                self._store_failing = True
            self._pending = (batch + self._pending)[-MAX_UNSTORED:]
            self._scheduled = True
            self._loop.call_later(RETRY_STORE_S, self.flush)
            return
        if self._store_failing:
            log.info("database writable again")
            self._store_failing = False
        self._last_time = last_time
        self.latest.update(latest)
        self.stale_fixes += stale
        for st in statuses:
            self._log_status(st)
        self.publisher.pump()

    def _unit_position(self, f: Fix) -> UnitPosition | None:
        unit = self.unit_of_device.get(f.device)
        if unit is None:
            self.unmapped_fixes += 1
            if f.device not in self._unmapped_logged:
                self._unmapped_logged.add(f.device)
                log.warning("%s: fixes from a device no [[unit]] maps to; not stored", f.device)
            return None
        self.last_fix_mono[f.device] = f.received_mono
        return UnitPosition(unit, f)

    def _log_status(self, s: DeviceStatus) -> None:
        prev = self.device_status.get(s.device)
        self.device_status[s.device] = s
        bad = (DeviceState.DISCONNECTED, DeviceState.SILENT, DeviceState.DEGRADED)
        log.log(
            logging.WARNING if s.state in bad else logging.INFO,
            "%s: %s -> %s%s", s.device, prev.state.value if prev else "starting", s.state.value,
            f" ({s.detail})" if s.detail else "",
        )  # fmt: skip

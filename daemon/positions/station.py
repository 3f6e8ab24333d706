"""The station core: driver records and unit status requests in, stored rows and outbox messages out.

Runs on the event loop thread. Batches whatever arrived since the last loop iteration into one
SQLite transaction (`positions/batch.py` turns the records into rows and messages), so a busy
station commits once per burst rather than once per fix. A unit's current position never moves
back: a fix older than the unit's newest goes to history only, an equal one is a duplicate.

The station is the only writer of unit availability: statuses change with fixes, with the clock,
with `status/set` requests, with relayed radios' status codes (`[radio_status]`) and, through
`commit_call`, with the call desk's steps; every change is published retained and appended to
the audit record in the same transaction as what caused it. A radio status code in
`[radio_status] emergency` publishes `<node>/unit/<unit>/emergency` once per signal (when the
radio's code turns to it) and records `unit.emergency`. A radio no `[[unit]]` maps to is not
dropped: its fixes go to the position history with unit "" and its reports to
`<node>/device/<device>/radio/<radio>` (retained), so someone can map it. A unit's fix with an
impossible time or move (`positions/plausibility.py`) is counted (`implausible_fixes`, also per
unit and per device) and logged once per episode, never stored or published. Counters and log
lines of a batch follow its commit: a batch the database refused and retried is counted and
logged once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from alkomd.daemon.config import Config
from alkomd.daemon.mqtt import contract
from alkomd.daemon.mqtt.publisher import Publisher
from alkomd.daemon.positions import plausibility
from alkomd.daemon.positions.availability import Availability
from alkomd.daemon.positions.batch import Batch, HeardRadio, Operation, Tick, status_audit
from alkomd.daemon.records import DeviceState, DeviceStatus, Fix, RadioStatus, UnitPosition, UnitState, UnitStatus, utc_now
from alkomd.daemon.store.audit import AuditEntry
from alkomd.daemon.store.database import Message, Store, StoredCall, StoreError

log = logging.getLogger(__name__)

MAX_UNSTORED = 50_000  # records kept in RAM while the database refuses writes (disk full)
RETRY_STORE_S = 1.0

Committed = Callable[[list[UnitPosition], list[UnitState]], None]


@dataclass(frozen=True, slots=True)
class UnitInfo:
    id: str
    callsign: str
    type: str
    device: str


@dataclass(frozen=True, slots=True)
class StatusWanted:
    """A unit status a call step asks for (`Station.commit_call` decides whether it changes anything)."""

    unit: str
    status: UnitStatus
    call_id: str | None


def _intervals(cfg: Config) -> dict[str, float]:
    """Unit -> expected seconds between its fixes (its own, else its type's)."""
    return {u.id: u.report_interval_s or cfg.availability.interval(u.type) for u in cfg.units}


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
        self._set_units(cfg)
        self.latest: dict[str, UnitPosition] = {}
        self.device_status: dict[str, DeviceStatus] = {}  # as published (batch.py: the station may say `degraded`)
        self.driver_status: dict[str, DeviceStatus] = {}  # as each driver reported it
        self.refused_runs: dict[str, tuple[int, str]] = {}  # device -> (its fixes refused in a row, why)
        self.stale_fixes = 0
        self.unmapped_fixes = 0
        self.implausible_fixes = 0
        self.implausible_by_unit: dict[str, int] = {}
        self.implausible_by_device: dict[str, int] = {}
        self.tracks: dict[str, plausibility.Track] = {}
        self._doubted: dict[str, plausibility.Outcome] = {}  # unit -> why its last fix was rejected (logged once)
        self.on_device_change: Callable[[], None] | None = None  # a device's state changed (committed)
        self.on_committed: Committed | None = None  # positions or unit statuses changed (committed)
        self.on_emergency: Callable[[str, RadioStatus, Fix | None], None] | None = None  # a unit's radio raised one (committed)
        store.sync_units((u.id, u.callsign, u.type, u.device) for u in cfg.units)
        self.last_fix_time: dict[str, str] = store.last_fix_times(now() + plausibility.MAX_LEAD)
        self.availability = Availability(_intervals(cfg), cfg.availability.missed_reports, store.unit_states(), now())
        self.refused_requests = 0
        self._pending: list[Operation] = []
        self._scheduled = False
        self._store_failing = False
        self._unmapped_logged: set[str] = set()
        # A unit radio's last status code, per unit: one signal relayed by two base radios is one signal.
        self.radio_codes: dict[str, int] = {}
        self.emergencies = 0
        self.unknown_radios: dict[tuple[str, str], HeardRadio] = {}  # (device, radio) -> what was last heard
        # unit -> when anything of it was last read (a fix, a status code, a key-up: RadioHeard); not stored
        self.last_heard: dict[str, datetime] = {}
        self.radios_heard = 0  # RadioHeard records of configured units' radios (key-ups without GPS or code)

    def reconfigure(self, cfg: Config) -> None:
        """Apply a reloaded configuration's units: maps, stored rows, availability intervals (loop thread).

        A removed unit is forgotten here (its history stays in the database); raises StoreError
        when the units table cannot be written (the maps are applied all the same).
        """
        self._set_units(cfg)
        for gone in set(self.latest) - set(self.units):
            del self.latest[gone]
        self.last_heard = {u: t for u, t in self.last_heard.items() if u in self.units}
        self.tracks = {u: t for u, t in self.tracks.items() if u in self.units}
        self._unmapped_logged.clear()
        self.availability.reconfigure(_intervals(cfg), cfg.availability.missed_reports, self._now())
        self.store.sync_units((u.id, u.callsign, u.type, u.device) for u in cfg.units)

    def _set_units(self, cfg: Config) -> None:
        """The configured units and how records reach them: maps, speed bounds, `[radio_status]` codes."""
        self.units = {u.id: UnitInfo(u.id, u.callsign, u.type, u.device) for u in cfg.units}
        self._driver_of = {d.id: d.driver for d in cfg.devices}  # device -> the driver (protocol) that reads it
        # (device, radio) -> unit; radio "" for a device that is one unit's own GPS, device "" for
        # a radio heard through any relaying device.
        self.unit_of = {(u.device, u.radio): u.id for u in cfg.units if u.device or u.radio}
        self.max_speed = {u.id: cfg.availability.max_speed(u.type) for u in cfg.units}
        self.emergency_codes = frozenset(cfg.radio_status.emergency)
        self.code_status = {code: UnitStatus(name) for code, name in cfg.radio_status.statuses().items()}

    @property
    def driver_of(self) -> dict[str, str]:
        return self._driver_of

    def label(self, unit: str) -> contract.UnitLabel | None:
        """The type and callsign that travel with the unit's messages."""
        info = self.units.get(unit)
        return None if info is None else contract.UnitLabel(info.type, info.callsign)

    def unit_of_radio(self, device: str, radio: str | None) -> str | None:
        """The unit a fix or status from `device` (relaying `radio`, if any) belongs to."""
        if radio is None:
            return self.unit_of.get((device, ""))
        return self.unit_of.get((device, radio)) or self.unit_of.get(("", radio))

    # -- records in -------------------------------------------------------------------------------

    def submit(self, record: Operation) -> None:
        """Take one record from a driver, a status request or a tick (on the loop thread)."""
        self._pending.append(record)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def tick(self) -> None:
        """Check for units that stopped reporting (called periodically)."""
        self.submit(Tick())

    def flush(self) -> None:
        """Store everything pending in one transaction and wake the publisher.

        The unit and device state advance only once the transaction committed: a batch the
        database refused (disk full) is retried whole, later, with the same outcome.
        """
        self._scheduled = False
        if not self._pending:
            return
        records, self._pending = self._pending, []
        b = Batch(self, self._now())
        for r in records:
            b.add(r)
        b.finish()
        try:
            self.store.record(b.positions, b.messages, b.now, b.audits, tuple(b.changes.values()))
        except StoreError as exc:
            if not self._store_failing:
                log.error("%s; keeping up to %d records in memory and retrying", exc, MAX_UNSTORED)
                self._store_failing = True
            self.availability.restore(b.before)
            self._pending = (records + self._pending)[-MAX_UNSTORED:]
            self._scheduled = True
            self._loop.call_later(RETRY_STORE_S, self.flush)
            return
        if self._store_failing:
            log.info("database writable again")
            self._store_failing = False
        self._apply(b)

    def _apply(self, b: Batch) -> None:
        """A committed batch: the station's state advances, then counters, logs and listeners."""
        self.last_fix_time = b.last_time
        self.latest.update(b.latest)
        self.radio_codes = b.codes
        self.unknown_radios = b.heard
        self.last_heard.update(b.heard_units)
        self.radios_heard += b.heard_records
        self.stale_fixes += b.stale
        self.unmapped_fixes += b.unmapped
        self.tracks = b.tracks
        self.driver_status = b.driver_status
        self.refused_runs = b.runs
        self._log_plausibility(b.judged, b.latest)
        self._log_unmapped(b)
        self.emergencies += len(b.raised)
        for unit, rs in b.raised:
            log.warning("unit %s: EMERGENCY from radio %s on %s (status code %d)", unit, rs.radio, rs.device, rs.code)
            if self.on_emergency is not None:
                up = self.latest.get(unit)
                self.on_emergency(unit, rs, up.fix if up else None)
        self.refused_requests += len(b.refusals)
        for unit, reason in b.refusals:
            log.warning("unit %s: status/set refused: %s", unit, reason)
        for unit, text in b.warnings:
            log.warning("unit %s: %s", unit, text)
        for ds in b.statuses:
            self._log_status(ds)
        if b.statuses and self.on_device_change is not None:
            self.on_device_change()
        self._log_changes(b.changes.values(), b.before)
        if self.on_committed is not None and (b.latest or b.changes):
            self.on_committed(list(b.latest.values()), list(b.changes.values()))
        self.publisher.pump()

    def device_removed(self, status: DeviceStatus) -> None:
        """A device stopped for good (reload): publish its last status now and forget it."""
        self.submit(status)
        self.flush()
        self.device_status.pop(status.device, None)
        self.driver_status.pop(status.device, None)
        self.refused_runs.pop(status.device, None)

    # -- the call desk's steps ----------------------------------------------------------------------

    def commit_call(
        self,
        wanted: Sequence[StatusWanted],
        messages: list[Message],
        audits: list[AuditEntry],
        calls: Sequence[StoredCall],
        now: datetime,
        call_id: str,
    ) -> list[UnitState]:
        """Store one call step with the unit statuses it asks for, in one transaction; the statuses that changed.

        A unit this station does not know (a unit of another node) is left alone and logged. On a
        StoreError nothing changed: the statuses are as before and the error is raised.
        """
        before = self.availability.snapshot()
        changes: dict[str, UnitState] = {}
        for w in wanted:
            try:
                st = self.availability.set(w.unit, w.status, now, w.call_id)
            except ValueError as exc:  # a unit of another node: its own node tracks its status
                log.info("call %s: unit %s: %s", call_id, w.unit, exc)
                continue
            if st is not None:
                changes[st.unit] = st
        for st in changes.values():
            messages.append(contract.unit_status_message(self.node, st, self.label(st.unit)))
            audits.append(status_audit(st, before[st.unit], now, call_id))
        try:
            self.store.record([], messages, now, audits, tuple(changes.values()), calls)
        except StoreError:
            self.availability.restore(before)
            raise
        self._log_changes(changes.values(), before)
        self.publisher.pump()
        return list(changes.values())

    # -- logging after a commit ---------------------------------------------------------------------

    def _log_changes(self, changes: Iterable[UnitState], before: dict[str, UnitState]) -> None:
        for st in changes:
            log.info("unit %s: %s -> %s%s", st.unit, before[st.unit].status.value, st.status.value,
                     f" (call {st.call_id})" if st.call_id else "")

    def _log_unmapped(self, b: Batch) -> None:
        for key in b.unreportable - self._unmapped_logged:
            self._unmapped_logged.add(key)
            log.warning("%s: a radio whose id cannot be an MQTT topic level (+ or #): its fixes are kept in the history "
                        "but it is not reported; map it to a [[unit]] with another id", key)
        for device in b.unmapped_devices - self._unmapped_logged:
            self._unmapped_logged.add(device)
            log.warning("%s: fixes from a device no [[unit]] maps to; not stored", device)
        for device, radio in b.reported_radios:
            if f"{device}:{radio}" not in self._unmapped_logged:
                self._unmapped_logged.add(f"{device}:{radio}")
                log.warning("%s: radio %s is not in any [[unit]] (add radio = %r to one); reported on device/%s/radio/%s",
                            device, radio, radio, device, radio)

    def _log_plausibility(self, judged: list[tuple[str, str, plausibility.Judgement]], latest: dict[str, UnitPosition]) -> None:
        """Count implausible fixes; log the first of an episode (or of another reason), a new track, and the end."""
        Outcome = plausibility.Outcome
        for unit, device, j in judged:
            if j.outcome is Outcome.REANCHORED:
                log.warning("unit %s: %d fixes in a row %.1f km from its last position: taken as its new track "
                            "(receiver swapped, or that position was wrong)", unit, plausibility.REANCHOR_FIXES,
                            j.distance_m / 1000)
                self._doubted.pop(unit, None)
                continue
            self.implausible_fixes += 1
            self.implausible_by_unit[unit] = self.implausible_by_unit.get(unit, 0) + 1
            self.implausible_by_device[device] = self.implausible_by_device.get(device, 0) + 1
            if self._doubted.get(unit) is j.outcome:
                continue
            self._doubted[unit] = j.outcome
            if j.outcome is Outcome.JUMP:
                info = self.units.get(unit)
                log.warning("unit %s: fix rejected: %.1f km from its last position in %.1f s, %.0f km/h (bound %.0f km/h "
                            "for a %s); not stored; further rejections counted, not logged", unit, j.distance_m / 1000,
                            j.seconds, j.speed_kmh, self.max_speed.get(unit, 0.0), info.type if info else "unit")
            else:
                log.warning("unit %s: fix rejected: %s; not stored; further rejections counted, not logged", unit, j.outcome.value)
        for unit in self._doubted.keys() & latest.keys():
            del self._doubted[unit]
            log.info("unit %s: plausible fixes again (%d rejected so far in all)", unit, self.implausible_fixes)

    def _log_status(self, s: DeviceStatus) -> None:
        """One log line per state change; a status that keeps the state (a new detail, a modem's health) is debug only."""
        prev = self.device_status.get(s.device)
        self.device_status[s.device] = s
        bad = (DeviceState.DISCONNECTED, DeviceState.SILENT, DeviceState.DEGRADED)
        if prev is not None and prev.state is s.state:
            log.debug("%s: still %s%s", s.device, s.state.value, f" ({s.detail})" if s.detail else "")
            return
        log.log(
            logging.WARNING if s.state in bad else logging.INFO,
            "%s: %s -> %s%s", s.device, prev.state.value if prev else "starting", s.state.value,
            f" ({s.detail})" if s.detail else "",
        )

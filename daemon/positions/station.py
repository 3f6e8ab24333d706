"""The station core: driver records and unit status requests in, stored rows and outbox messages out.

Runs on the event loop thread. Batches whatever arrived since the last loop iteration into one
SQLite transaction, so a busy station commits once per burst rather than once per fix. A unit's
current position never moves back: a fix older than the unit's newest goes to history only, an
equal one is a duplicate. Unit statuses (availability) change with fixes, with the clock and
with `status/set` requests and with relayed radios' status codes (`[radio_status]`); every
change is published retained and appended to the audit record in the same transaction. A radio
status code in `[radio_status] emergency` publishes `<node>/unit/<unit>/emergency` once per
signal (when the radio's code turns to it) and records `unit.emergency` in the audit record.
A radio no `[[unit]]` maps to is not dropped: its fixes go to the position history with unit
"" and its reports to `<node>/device/<device>/radio/<radio>` (retained), so someone can map it.
A unit's fix with an impossible time or an impossible move from its last one
(`daemon/plausibility.py`) is counted (`implausible_fixes`, also per unit and per device: published
in `<node>/health` and `alkomctl status|units`) and logged once per episode, never stored or
published. Counters and log lines of a batch follow its commit: a batch the database refused and
retried is counted and logged once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from alkomd.daemon.calls.types import UnitStatus
from alkomd.daemon.config import Config
from alkomd.daemon.mqtt import contract
from alkomd.daemon.mqtt.publisher import Publisher
from alkomd.daemon.positions import plausibility
from alkomd.daemon.positions.availability import SETTABLE, Availability, UnitState
from alkomd.daemon.records import DeviceState, DeviceStatus, Fix, RadioStatus, Record, UnitPosition, utc_iso, utc_now
from alkomd.daemon.store.audit import AuditEntry
from alkomd.daemon.store.database import Message, Store, StoreError

log = logging.getLogger(__name__)

MAX_UNSTORED = 50_000  # records kept in RAM while the database refuses writes (disk full)
RETRY_STORE_S = 1.0
UNKNOWN_RADIO_REPUBLISH_S = 60.0  # an unknown radio's report is published at most this often


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """A `<node>/unit/<unit>/status/set` message, validated when it is processed."""

    unit: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: check which units stopped reporting."""


Operation = Record | StatusRequest | Tick


def status_audit(st: UnitState, previous: UnitState, now: datetime, call_id: str) -> AuditEntry:
    """The audit entry of one unit status change (`call_id`: the call it belongs to on record)."""
    detail = {"status": st.status.value, "previous": previous.status.value, "call_id": st.call_id}
    return AuditEntry(now, "unit.status", call_id, st.unit, json.dumps(detail, separators=(",", ":")))


@dataclass(frozen=True, slots=True)
class HeardRadio:
    """A radio no [[unit]] maps to, as last heard: kept so each report carries its last fix and code."""

    fix: Fix | None = None
    code: int | None = None
    mono: float = 0.0  # received_mono of what was last heard
    published: float | None = None  # received_mono of the last report published


@dataclass(frozen=True, slots=True)
class UnitInfo:
    id: str
    callsign: str
    type: str
    device: str


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
        self.device_status: dict[str, DeviceStatus] = {}
        self.stale_fixes = 0
        self.unmapped_fixes = 0
        self.implausible_fixes = 0
        self.implausible_by_unit: dict[str, int] = {}
        self.implausible_by_device: dict[str, int] = {}
        self.tracks: dict[str, plausibility.Track] = {}
        self._doubted: dict[str, plausibility.Outcome] = {}  # unit -> why its last fix was rejected (logged once)
        self.on_device_change: Callable[[], None] | None = None  # a device's state changed (committed)
        store.sync_units((u.id, u.callsign, u.type, u.device) for u in cfg.units)
        self._last_time: dict[str, str] = store.last_fix_times()
        self.availability = Availability(_intervals(cfg), cfg.availability.missed_reports, store.unit_states(), now())
        self.refused_requests = 0
        self.on_committed: Callable[[list[UnitPosition], list[UnitState]], None] | None = None
        self._pending: list[Operation] = []
        self._scheduled = False
        self._store_failing = False
        self._unmapped_logged: set[str] = set()
        # A unit radio's last status code, per unit: one signal relayed by two base radios is one signal.
        self.radio_codes: dict[str, int] = {}
        self.emergencies = 0
        self.unknown_radios: dict[tuple[str, str], HeardRadio] = {}  # (device, radio) -> what was last heard

    def reconfigure(self, cfg: Config) -> None:
        """Apply a reloaded configuration's units: maps, stored rows, availability intervals (loop thread).

        A removed unit is forgotten here (its history stays in the database); raises StoreError
        when the units table cannot be written (the maps are applied all the same).
        """
        self._set_units(cfg)
        for gone in set(self.latest) - set(self.units):
            del self.latest[gone]
        self.tracks = {u: t for u, t in self.tracks.items() if u in self.units}
        self._unmapped_logged.clear()
        self.availability.reconfigure(_intervals(cfg), cfg.availability.missed_reports, self._now())
        self.store.sync_units((u.id, u.callsign, u.type, u.device) for u in cfg.units)

    def _set_units(self, cfg: Config) -> None:
        """The configured units and how records reach them: maps, speed bounds, `[radio_status]` codes."""
        self.units = {u.id: UnitInfo(u.id, u.callsign, u.type, u.device) for u in cfg.units}
        # (device, radio) -> unit; radio "" for a device that is one unit's own GPS, device "" for
        # a radio heard through any relaying device.
        self.unit_of = {(u.device, u.radio): u.id for u in cfg.units if u.device or u.radio}
        self.max_speed = {u.id: cfg.availability.max_speed(u.type) for u in cfg.units}
        self.emergency_codes = frozenset(cfg.radio_status.emergency)
        self.code_status = {code: UnitStatus(name) for code, name in cfg.radio_status.statuses().items()}

    def submit(self, record: Operation) -> None:
        """Take one record from a driver, a status request or a tick (on the loop thread)."""
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
        now = self._now()
        positions: list[tuple[UnitPosition, Message | None]] = []
        messages: list[Message] = []
        audits: list[AuditEntry] = []
        changes: dict[str, UnitState] = {}
        last_time = dict(self._last_time)
        latest: dict[str, UnitPosition] = {}
        statuses: list[DeviceStatus] = []
        saved = dict(self.availability.states)
        codes = dict(self.radio_codes)
        heard = dict(self.unknown_radios)  # committed, then what was reported in this batch
        unknown: dict[tuple[str, str], HeardRadio] = {}  # what unknown radios said in this batch
        tracks = dict(self.tracks)
        judged: list[tuple[str, str, plausibility.Judgement]] = []  # (unit, device, judgement): implausible, new tracks
        refusals: list[tuple[str, str]] = []  # (unit, reason) of refused status/set requests
        raised: list[tuple[str, RadioStatus]] = []  # (unit, status) of the emergencies raised
        stale = unmapped = 0
        for r in batch:
            if isinstance(r, Fix):
                up = self._unit_position(r)
                if up is None:
                    unmapped += 1
                    if r.radio is not None:  # an unknown radio: history, and reported
                        positions.append((UnitPosition("", r), None))
                        key = (r.device, r.radio)
                        h = unknown.get(key) or heard.get(key) or HeardRadio()
                        unknown[key] = replace(h, fix=r, mono=r.received_mono)
                    continue
                if plausibility.clock_wrong(r):
                    judged.append((up.unit, r.device, plausibility.Judgement(plausibility.Outcome.TIME, None)))
                    continue
                t = utc_iso(r.time)
                last = last_time.get(up.unit)
                if last is not None and t <= last:
                    stale += 1
                    if t < last:
                        positions.append((up, None))  # history only: the current position never moves back
                    continue
                j = plausibility.judge(tracks.get(up.unit), r, self.max_speed.get(up.unit, 300.0))
                if j.track is not None:
                    tracks[up.unit] = j.track
                if j.outcome is not plausibility.Outcome.ACCEPTED:
                    judged.append((up.unit, r.device, j))
                    if j.outcome is plausibility.Outcome.JUMP:
                        continue
                last_time[up.unit] = t
                latest[up.unit] = up
                positions.append((up, contract.position_message(self.node, up)))
                self._changed(self.availability.fix(up.unit, now), changes)
            elif isinstance(r, DeviceStatus):
                statuses.append(r)
                messages.append(contract.device_status_message(self.node, r))
            elif isinstance(r, RadioStatus):
                unit = self.unit_of_radio(r.device, r.radio)
                if unit is None:
                    key = (r.device, r.radio)
                    h = unknown.get(key) or heard.get(key) or HeardRadio()
                    unknown[key] = replace(h, code=r.code, mono=r.received_mono)
                elif self._radio_status(r, unit, now, codes, latest, changes, audits, messages):
                    raised.append((unit, r))
            elif isinstance(r, StatusRequest):
                self._status_request(r, now, changes, audits, refusals)
            else:
                for st in self.availability.tick(now):
                    self._changed(st, changes)
        for st in changes.values():
            messages.append(contract.unit_status_message(self.node, st))
        if unknown:
            self._report_unknown(unknown, heard, messages, now)
        audits.extend(self._audit_changes(changes, saved, now))
        try:
            self.store.record(positions, messages, now, audits, tuple(changes.values()))
        except StoreError as exc:
            if not self._store_failing:
                log.error("%s; keeping up to %d records in memory and retrying", exc, MAX_UNSTORED)
                self._store_failing = True
            self.availability.states = saved
            self._pending = (batch + self._pending)[-MAX_UNSTORED:]
            self._scheduled = True
            self._loop.call_later(RETRY_STORE_S, self.flush)
            return
        if self._store_failing:
            log.info("database writable again")
            self._store_failing = False
        self._last_time = last_time
        self.latest.update(latest)
        self.radio_codes = codes
        self.unknown_radios = heard
        self.stale_fixes += stale
        self.unmapped_fixes += unmapped
        self.tracks = tracks
        self._log_plausibility(judged, latest)
        self.emergencies += len(raised)
        for unit, rs in raised:
            log.warning("unit %s: EMERGENCY from radio %s on %s (status code %d)", unit, rs.radio, rs.device, rs.code)
        self.refused_requests += len(refusals)
        for unit, reason in refusals:
            log.warning("unit %s: status/set refused: %s", unit, reason)
        for ds in statuses:
            self._log_status(ds)
        if statuses and self.on_device_change is not None:
            self.on_device_change()
        for st in changes.values():
            log.info("unit %s: %s -> %s%s", st.unit, saved[st.unit].status.value, st.status.value,
                     f" (call {st.call_id})" if st.call_id else "")  # fmt: skip
        if self.on_committed is not None and (latest or changes):
            self.on_committed(list(latest.values()), list(changes.values()))
        self.publisher.pump()

    def _log_plausibility(self, judged: list[tuple[str, str, plausibility.Judgement]], latest: dict[str, UnitPosition]) -> None:
        """Count implausible fixes; log the first of an episode (or of another reason), a new track, and the end."""
        Outcome = plausibility.Outcome
        for unit, device, j in judged:
            if j.outcome is Outcome.REANCHORED:
                log.warning("unit %s: %d fixes in a row %.1f km from its last position: taken as its new track "
                            "(receiver swapped, or that position was wrong)", unit, plausibility.REANCHOR_FIXES,
                            j.distance_m / 1000)  # fmt: skip
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
                            j.seconds, j.speed_kmh, self.max_speed.get(unit, 0.0), info.type if info else "unit")  # fmt: skip
            else:
                log.warning("unit %s: fix rejected: %s; not stored; further rejections counted, not logged", unit, j.outcome.value)
        for unit in self._doubted.keys() & latest.keys():
            del self._doubted[unit]
            log.info("unit %s: plausible fixes again (%d rejected so far in all)", unit, self.implausible_fixes)

    def tick(self) -> None:
        """Check for units that stopped reporting (called periodically)."""
        self.submit(Tick())

    @staticmethod
    def _changed(st: UnitState | None, changes: dict[str, UnitState]) -> None:
        if st is not None:
            changes[st.unit] = st

    def _audit_changes(self, changes: dict[str, UnitState], before: dict[str, UnitState], now: datetime) -> list[AuditEntry]:
        return [status_audit(st, before[st.unit], now, st.call_id or "") for st in changes.values()]

    def _status_request(
        self, r: StatusRequest, now: datetime, changes: dict[str, UnitState], audits: list[AuditEntry],
        refusals: list[tuple[str, str]],
    ) -> None:  # fmt: skip
        """Apply a `status/set` message, or record why it was refused (never silently dropped; logged after the commit)."""
        reason = ""
        status: UnitStatus | None = None
        by = ""
        try:
            body = json.loads(r.payload)
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict):
            reason = "not a JSON object"
        else:
            who = body.get("by")
            by = who if isinstance(who, str) else ""
            value = body.get("status")
            if not isinstance(value, str) or value not in SETTABLE:
                reason = f"status must be one of {', '.join(sorted(SETTABLE))}"
            elif not by or len(by) > 64:
                reason = '"by" (who sets it) must be a string of 1 to 64 characters'
            else:
                status = UnitStatus(value)
        if status is not None:
            try:
                self._changed(self.availability.set(r.unit, status, now), changes)
                return
            except ValueError as exc:
                reason = str(exc)
        excerpt = r.payload[:200].decode("utf-8", "replace")
        detail = json.dumps({"reason": reason, "by": by, "payload": excerpt}, separators=(",", ":"))
        audits.append(AuditEntry(now, "unit.status_set_refused", "", r.unit[:64], detail))
        refusals.append((r.unit, reason))

    def _unit_position(self, f: Fix) -> UnitPosition | None:
        unit = self.unit_of_radio(f.device, f.radio)
        if unit is None:
            if f.radio is None and f.device not in self._unmapped_logged:
                self._unmapped_logged.add(f.device)
                log.warning("%s: fixes from a device no [[unit]] maps to; not stored", f.device)
            return None
        return UnitPosition(unit, f)

    def _radio_status(
        self,
        r: RadioStatus,
        unit: str,
        now: datetime,
        codes: dict[str, int],
        latest: dict[str, UnitPosition],
        changes: dict[str, UnitState],
        audits: list[AuditEntry],
        messages: list[Message],
    ) -> bool:
        """A mapped radio's status code: an emergency, a unit status, or nothing new. True when it raised an emergency."""
        previous = codes.get(unit)
        codes[unit] = r.code
        if r.code in self.emergency_codes:
            if previous in self.emergency_codes:
                return False  # the same emergency, repeated by the radio: one signal, one alarm
            up = latest.get(unit) or self.latest.get(unit)
            msg = contract.emergency_message(self.node, unit, r, up.fix if up else None)
            messages.append(msg)
            detail = {"radio": r.radio, "device": r.device, "code": r.code, "msg_id": msg.msg_id}
            audits.append(AuditEntry(now, "unit.emergency", "", unit, json.dumps(detail, separators=(",", ":"))))
            return True
        status = self.code_status.get(r.code)
        if status is not None and r.code != previous:
            try:
                self._changed(self.availability.set(unit, status, now), changes)
            except ValueError as exc:
                log.warning("unit %s: radio status code %d not applied: %s", unit, r.code, exc)
        return False

    def _report_unknown(
        self,
        unknown: dict[tuple[str, str], HeardRadio],
        heard: dict[tuple[str, str], HeardRadio],
        messages: list[Message],
        now: datetime,
    ) -> None:
        """Report radios no [[unit]] maps to: at most once a minute each, or when their code changes."""
        for (device, radio), h in unknown.items():
            before = heard.get((device, radio))
            if before is not None and before.published is not None and h.mono - before.published < UNKNOWN_RADIO_REPUBLISH_S \
                    and h.code == before.code:
                heard[(device, radio)] = replace(h, published=before.published)
                continue
            heard[(device, radio)] = replace(h, published=h.mono)
            messages.append(contract.radio_message(self.node, device, radio, h.fix, h.code, now))
            if f"{device}:{radio}" not in self._unmapped_logged:
                self._unmapped_logged.add(f"{device}:{radio}")
                log.warning("%s: radio %s is not in any [[unit]] (add radio = %r to one); reported on device/%s/radio/%s",
                            device, radio, radio, device, radio)  # fmt: skip

    def unit_of_radio(self, device: str, radio: str | None) -> str | None:
        """The unit a fix or status from `device` (relaying `radio`, if any) belongs to."""
        if radio is None:
            return self.unit_of.get((device, ""))
        return self.unit_of.get((device, radio)) or self.unit_of.get(("", radio))

    def _log_status(self, s: DeviceStatus) -> None:
        prev = self.device_status.get(s.device)
        self.device_status[s.device] = s
        bad = (DeviceState.DISCONNECTED, DeviceState.SILENT, DeviceState.DEGRADED)
        log.log(
            logging.WARNING if s.state in bad else logging.INFO,
            "%s: %s -> %s%s", s.device, prev.state.value if prev else "starting", s.state.value,
            f" ({s.detail})" if s.detail else "",
        )  # fmt: skip

"""One flush of the station: the records that arrived together, turned into rows, messages and state changes.

A `Batch` reads the station's committed state and never writes it: what the records change (last
fix times, latest positions, radio codes, tracks, heard radios) is kept here, and `Station`
applies it only after the one transaction that stores the batch has committed. Unit availability
is the exception the station undoes itself on a failed commit (`Availability.snapshot/restore`).
One handler per kind of record, as `dispatch._Tx` has one per event.

A device's published status is the driver's (its link and data: `drivers/base.py` StateTracker),
except that a `connected` device whose last `REFUSED_RUN` fixes or more were all refused by the
plausibility gate, none accepted since, is published `degraded` with the detail `all fixes refused
by the station: <reason>`: the station, not the driver, knows its fixes go nowhere. The driver's
own status comes back with the next accepted fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from alkomd.daemon.mqtt import contract
from alkomd.daemon.positions import plausibility
from alkomd.daemon.positions.availability import Availability
from alkomd.daemon.records import DeviceState, DeviceStatus, Fix, RadioHeard, RadioStatus, UnitPosition, UnitState, UnitStatus, utc_iso
from alkomd.daemon.store.audit import AuditEntry
from alkomd.daemon.store.database import Message

UNKNOWN_RADIO_REPUBLISH_S = 60.0  # an unknown radio's report is published at most this often
REFUSED_RUN = 5  # this many refused fixes in a row, none accepted, and a connected device shows `degraded`
REFUSED_DETAIL = "all fixes refused by the station: "


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """A `<node>/unit/<unit>/status/set` message, validated when it is processed."""

    unit: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: check which units stopped reporting."""


@dataclass(frozen=True, slots=True)
class HeardRadio:
    """A radio no [[unit]] maps to, as last heard: kept so each report carries its last fix and code."""

    fix: Fix | None = None
    code: int | None = None
    mono: float = 0.0  # received_mono of what was last heard
    published: float | None = None  # received_mono of the last report published


Operation = Fix | DeviceStatus | RadioStatus | RadioHeard | StatusRequest | Tick


class Committed(Protocol):
    """What a batch reads of the station: its rules and its committed state (`Station` is one)."""

    node: str
    availability: Availability
    last_fix_time: dict[str, str]  # unit -> ISO time of its newest fix
    latest: dict[str, UnitPosition]
    radio_codes: dict[str, int]
    unknown_radios: dict[tuple[str, str], HeardRadio]
    tracks: dict[str, plausibility.Track]
    max_speed: dict[str, float]
    emergency_codes: frozenset[int]
    code_status: dict[int, UnitStatus]
    device_status: dict[str, DeviceStatus]  # as last published
    driver_status: dict[str, DeviceStatus]  # as the driver last reported it
    refused_runs: dict[str, tuple[int, str]]  # device -> (fixes refused in a row since its last accepted one, why)

    def unit_of_radio(self, device: str, radio: str | None) -> str | None: ...

    def label(self, unit: str) -> contract.UnitLabel | None: ...

    @property
    def driver_of(self) -> dict[str, str]: ...


def status_audit(st: UnitState, previous: UnitState, now: datetime, call_id: str) -> AuditEntry:
    """The audit entry of one unit status change (`call_id`: the call it belongs to on record)."""
    detail = {"status": st.status.value, "previous": previous.status.value, "call_id": st.call_id}
    return AuditEntry(now, "unit.status", call_id, st.unit, json.dumps(detail, separators=(",", ":")))


class Batch:
    """The records of one flush, processed in order against the station's committed state."""

    def __init__(self, station: Committed, now: datetime) -> None:
        self.st = station
        self.now = now
        self.before = station.availability.snapshot()
        self.positions: list[tuple[UnitPosition, Message | None]] = []
        self.messages: list[Message] = []
        self.audits: list[AuditEntry] = []
        self.changes: dict[str, UnitState] = {}
        self.last_time = dict(station.last_fix_time)
        self.latest: dict[str, UnitPosition] = {}
        self.statuses: list[DeviceStatus] = []  # device statuses to publish, in order
        self.shown = dict(station.device_status)
        self.driver_status = dict(station.driver_status)
        self.runs = dict(station.refused_runs)
        self.codes = dict(station.radio_codes)
        self.heard = dict(station.unknown_radios)  # committed, then what was reported in this batch
        self.unknown: dict[tuple[str, str], HeardRadio] = {}  # what unknown radios said in this batch
        self.tracks = dict(station.tracks)
        self.judged: list[tuple[str, str, plausibility.Judgement]] = []  # (unit, device, judgement): implausible, new tracks
        self.refusals: list[tuple[str, str]] = []  # (unit, reason) of refused status/set requests
        self.raised: list[tuple[str, RadioStatus]] = []  # (unit, status) of the emergencies raised
        self.warnings: list[tuple[str, str]] = []  # (unit, text): logged after the commit
        self.unmapped_devices: set[str] = set()  # devices whose own fixes no [[unit]] takes
        self.reported_radios: list[tuple[str, str]] = []  # (device, radio) of unknown radios reported
        self.unreportable: set[str] = set()  # device:radio of unknown radios whose id cannot be a topic level
        self.heard_units: dict[str, datetime] = {}  # unit -> when anything of it was last read in this batch
        self.heard_records = 0  # RadioHeard records of configured units (key-ups without GPS or code)
        self.stale = 0
        self.unmapped = 0

    def add(self, r: Operation) -> None:
        if isinstance(r, Fix):
            self.fix(r)
        elif isinstance(r, DeviceStatus):
            self.device_status(r)
        elif isinstance(r, RadioStatus):
            self.radio_status(r)
        elif isinstance(r, RadioHeard):
            self.radio_heard(r)
        elif isinstance(r, StatusRequest):
            self.status_request(r)
        else:
            for st in self.st.availability.tick(self.now):
                self._changed(st)

    def finish(self) -> None:
        """After the last record: the unit status messages, the unknown radios' reports, the audit of every change."""
        for st in self.changes.values():
            self.messages.append(contract.unit_status_message(self.st.node, st, self.st.label(st.unit)))
        if self.unknown:
            self._report_unknown()
        self.audits.extend(status_audit(st, self.before[st.unit], self.now, st.call_id or "") for st in self.changes.values())

    def _changed(self, st: UnitState | None) -> None:
        if st is not None:
            self.changes[st.unit] = st

    # -- one handler per record ------------------------------------------------------------------

    def fix(self, r: Fix) -> None:
        unit = self.st.unit_of_radio(r.device, r.radio)
        if unit is None:
            self.unmapped += 1
            if r.radio is None:
                self.unmapped_devices.add(r.device)
            else:  # an unknown radio: history, and reported
                self.positions.append((UnitPosition("", r), None))
                key = (r.device, r.radio)
                h = self.unknown.get(key) or self.heard.get(key) or HeardRadio()
                self.unknown[key] = replace(h, fix=r, mono=r.received_mono)
            return
        self.heard_units[unit] = r.received  # heard, even if the fix is not believed
        up = UnitPosition(unit, r)
        wrong = plausibility.time_wrong(r)
        if wrong is not None:  # before the never-move-back rule: only a plausible time may become the newest
            self.judged.append((unit, r.device, plausibility.Judgement(wrong, None)))
            self._refused(r.device, wrong.value)
            return
        t = utc_iso(r.time)
        last = self.last_time.get(unit)
        if last is not None and t <= last:
            self.stale += 1
            if t < last:
                self.positions.append((up, None))  # history only: the current position never moves back
            return
        j = plausibility.judge(self.tracks.get(unit), r, self.st.max_speed.get(unit, 300.0))
        if j.track is not None:
            self.tracks[unit] = j.track
        if j.outcome is not plausibility.Outcome.ACCEPTED:
            self.judged.append((unit, r.device, j))
            if j.outcome is plausibility.Outcome.JUMP:
                self._refused(r.device, j.outcome.value)
                return
        if self.runs.get(r.device, (0, ""))[0]:
            self.runs[r.device] = (0, "")
            self._show_again(r.device)
        self.last_time[unit] = t
        self.latest[unit] = up
        self.positions.append((up, contract.position_message(self.st.node, up, self.st.label(unit), self.st.driver_of.get(r.device))))
        self._changed(self.st.availability.fix(unit, self.now))

    # -- a device's status: the driver's, or `degraded` while the station refuses all its fixes -------

    def device_status(self, r: DeviceStatus) -> None:
        """The driver reports a state: publish it, as the station sees it."""
        self.driver_status[r.device] = r
        shown = self.shown.get(r.device)
        seen = self._seen(r)
        if seen is not r and shown is not None and (shown.state, shown.detail, shown.modem) == (seen.state, seen.detail, seen.modem):
            return  # still refused: nothing new to say
        self._publish(seen)

    def _refused(self, device: str, why: str) -> None:
        n = self.runs.get(device, (0, ""))[0] + 1
        self.runs[device] = (n, why)
        if n >= REFUSED_RUN:
            self._show_again(device)

    def _seen(self, r: DeviceStatus) -> DeviceStatus:
        """The driver's status `r` as published: `degraded` if it is connected and all its fixes are refused."""
        n, why = self.runs.get(r.device, (0, ""))
        if r.state is not DeviceState.CONNECTED or n < REFUSED_RUN:
            return r
        shown = self.shown.get(r.device)
        detail = f"{REFUSED_DETAIL}{why}; counted per unit in alkomctl units"
        since = shown.since if shown is not None and shown.detail.startswith(REFUSED_DETAIL) else self.now
        return replace(r, state=DeviceState.DEGRADED, since=since, detail=detail)

    def _show_again(self, device: str) -> None:
        """A device's refusals started or ended: publish its status if what is shown changes."""
        raw = self.driver_status.get(device)
        shown = self.shown.get(device)
        if raw is None:
            return
        seen = self._seen(raw)
        if shown is not None and shown.state is seen.state and shown.detail.startswith(REFUSED_DETAIL) == seen.detail.startswith(
            REFUSED_DETAIL
        ):
            return
        self._publish(replace(seen, since=self.now))

    def _publish(self, s: DeviceStatus) -> None:
        self.shown[s.device] = s
        self.statuses.append(s)
        self.messages.append(contract.device_status_message(self.st.node, s))

    def radio_status(self, r: RadioStatus) -> None:
        """A radio's status code: an emergency, a unit status, or nothing new; an unknown radio's is reported."""
        unit = self.st.unit_of_radio(r.device, r.radio)
        if unit is None:
            key = (r.device, r.radio)
            h = self.unknown.get(key) or self.heard.get(key) or HeardRadio()
            self.unknown[key] = replace(h, code=r.code, mono=r.received_mono)
            return
        self.heard_units[unit] = r.received
        previous = self.codes.get(unit)
        self.codes[unit] = r.code
        if r.code in self.st.emergency_codes:
            if previous in self.st.emergency_codes:
                return  # the same emergency, repeated by the radio: one signal, one alarm
            up = self.latest.get(unit) or self.st.latest.get(unit)
            msg = contract.emergency_message(self.st.node, unit, r, up.fix if up else None)
            self.messages.append(msg)
            detail = {"radio": r.radio, "device": r.device, "code": r.code, "msg_id": msg.msg_id}
            self.audits.append(AuditEntry(self.now, "unit.emergency", "", unit, json.dumps(detail, separators=(",", ":"))))
            self.raised.append((unit, r))
            return
        status = self.st.code_status.get(r.code)
        if status is not None and r.code != previous:
            try:
                self._changed(self.st.availability.set(unit, status, self.now))
            except ValueError as exc:
                self.warnings.append((unit, f"radio status code {r.code} not applied: {exc}"))

    def radio_heard(self, r: RadioHeard) -> None:
        """A radio keyed up (no position, no code): its unit's "last heard"; an unknown radio is reported like one that sent a fix."""
        unit = self.st.unit_of_radio(r.device, r.radio)
        if unit is None:
            key = (r.device, r.radio)
            h = self.unknown.get(key) or self.heard.get(key) or HeardRadio()
            self.unknown[key] = replace(h, mono=r.received_mono)
            return
        self.heard_units[unit] = r.received
        self.heard_records += 1

    def status_request(self, r: StatusRequest) -> None:
        """Apply a `status/set` message, or record why it was refused (never silently dropped; logged after the commit)."""
        req = contract.parse_status_set(r.payload)
        reason = req.reason
        if req.status is not None:
            try:
                self._changed(self.st.availability.set(r.unit, req.status, self.now))
                return
            except ValueError as exc:
                reason = str(exc)
        excerpt = r.payload[:200].decode("utf-8", "replace")
        detail = json.dumps({"reason": reason, "by": req.by, "payload": excerpt}, separators=(",", ":"))
        self.audits.append(AuditEntry(self.now, "unit.status_set_refused", "", r.unit[:64], detail))
        self.refusals.append((r.unit, reason))

    def _report_unknown(self) -> None:
        """Report radios no [[unit]] maps to: at most once a minute each, or when their code changes."""
        for (device, radio), h in self.unknown.items():
            before = self.heard.get((device, radio))
            if (
                before is not None
                and before.published is not None
                and h.mono - before.published < UNKNOWN_RADIO_REPUBLISH_S
                and h.code == before.code
            ):
                self.heard[(device, radio)] = replace(h, published=before.published)
                continue
            self.heard[(device, radio)] = replace(h, published=h.mono)
            try:
                self.messages.append(contract.radio_message(self.st.node, device, radio, h.fix, h.code, self.now))
            except ValueError:  # an id no topic level can carry (+, #): kept in the history, not reported
                self.unreportable.add(f"{device}:{radio}")
                continue
            self.reported_radios.append((device, radio))

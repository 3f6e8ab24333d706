"""The units a Polda or Mabes follows below: taken in at the floor's cost, kept in the recommender's index, snapshotted.

A Polda (Mabes) subscribes to the retained positions and statuses of every unit of the nodes below
it (`contract.subscriptions`) and recommends across its whole area. At Mabes that is about 50,000
units and 10,000 positions a second, so the path of one position is kept short
(bench/bench_ingest.py measures it against a bare paho subscriber that only decodes the JSON):

- the inbox hands them over in batches (one wake-up of the loop per batch, daemon/mqtt/inbox.py);
- a topic is parsed by the contract once, then found in a cache;
- the payload is read by `contract.parse_below_fix`: only its head (lat, lon, time) and its type;
- the jurisdiction comes from the jurisdiction index's cell cache (`jurisdiction_at`): polygons
  are tested only for a unit in a cell that a border crosses;
- an indexed unit that stays in its jurisdiction and grid cell is moved in place
  (`UnitIndex.move`); only a unit whose status, type, jurisdiction or cell changes gets a new
  snapshot.

Snapshot (fast start): the units that changed are written to the store's `units_below` table every
SNAPSHOT_INTERVAL_S, in transactions of SNAPSHOT_CHUNK rows with the loop free in between, and all
of them at a clean stop. At start they are loaded before the broker link starts, so a restarted
Polda or Mabes recommends from every unit it knew at once; the broker's retained flood then
refreshes them. A snapshot's positions are subject to the usual fix age limit (`max_fix_age_s`),
so a node that was down for long does not recommend from old places; a status in the snapshot
stands until the unit's retained status arrives (seconds after the link is up).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from alkomd.daemon.calls.jurisdictions import JurisdictionIndex
from alkomd.daemon.calls.recommend import UnitIndex
from alkomd.daemon.calls.types import UnitSnapshot
from alkomd.daemon.mqtt import contract
from alkomd.daemon.records import UnitStatus, utc_iso, utc_now
from alkomd.daemon.store.below import BelowRow, load_below, save_below
from alkomd.daemon.store.database import Store, StoreError

log = logging.getLogger(__name__)

SNAPSHOT_INTERVAL_S = 30.0  # the snapshot is at most this far behind (the broker's retained flood corrects it at start)
SNAPSHOT_CHUNK = 1000  # rows per transaction (about 2 ms): calls never wait long behind a snapshot write
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNSEEN: tuple[str, str, bool] = ("", "", False)  # `take`'s answer for a topic not looked at yet (compared by identity)


class _Unit:
    """What this node knows of one unit below (internal, mutable: updated in place for every position)."""

    __slots__ = ("fix_us", "lat", "lon", "owner", "status", "type")

    def __init__(self, owner: str, kind: str, status: UnitStatus, lat: float | None, lon: float | None,
                 fix_us: int | None) -> None:
        self.owner = owner
        self.type = kind
        self.status = status
        self.lat = lat
        self.lon = lon
        self.fix_us = fix_us


class BelowUnits:
    """The units of the nodes below: their latest position and status, fed into the recommender's `index`."""

    def __init__(
        self,
        node: str,
        index: UnitIndex,
        owner: dict[str, str],
        jurisdictions: JurisdictionIndex | None,
        changed: Callable[[], None],
        store: Store,
    ) -> None:
        self.node = node
        self.index = index
        self.owner = owner  # unit -> the node it belongs to (shared with the desk: alerts go there)
        self.jurisdictions = jurisdictions
        self._changed = changed
        self.store = store
        self.units: dict[str, _Unit] = {}
        self.located = 0  # units with a position
        self.positions = 0  # messages taken in since the start
        self.statuses = 0
        self.from_snapshot = 0
        self.snapshot_time: str | None = None
        self._topics: dict[str, tuple[str, str, bool] | None] = {}  # topic -> (unit, owner, is a position); None: not one
        self._dirty: set[str] = set()  # units changed since the last snapshot write
        self._saving = False

    # -- in ----------------------------------------------------------------------------------------

    def take(self, batch: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """Take in a batch of (topic, payload) from the inbox's bulk lane; returns the messages that are not units below.

        The common case, a new fix of a located unit whose owner and type stay, is handled inline (this loop runs
        10,000 times a second at Mabes); everything else goes through `_position` and `_status`."""
        others: list[tuple[str, bytes]] = []
        topics, units, dirty, move, parse = self._topics, self.units, self._dirty, self.index.move, contract.parse_below_fix
        place = self.jurisdictions.jurisdiction_at if self.jurisdictions is not None else None
        changed = False
        positions = statuses = 0
        for topic, payload in batch:
            what = topics.get(topic, _UNSEEN)
            if what is _UNSEEN:
                what = self._learn(topic)
            if what is None:
                others.append((topic, payload))
                continue
            unit, owner, is_position = what
            try:
                if not is_position:
                    statuses += 1
                    changed |= self._status(unit, owner, payload)
                    continue
                positions += 1
                fix = parse(payload)
                if fix is None:
                    continue
                lat, lon, fix_us, kind = fix
                u = units.get(unit)
                if u is None or u.fix_us is None or owner != u.owner or (kind is not None and kind != u.type):
                    changed |= self._position(unit, owner, fix)
                    continue
                if fix_us < u.fix_us:
                    continue  # a node's backlog after an outage comes after its newest fix: never move a unit back
                dirty.add(unit)
                u.lat, u.lon, u.fix_us = lat, lon, fix_us
                jur = place(lat, lon) if place is not None else None
                if not move(unit, lat, lon, fix_us, jur):
                    self._index(unit, u, jur)
                changed = True
            except Exception:  # supervision boundary: one message must not stop the intake
                log.exception("units below: the message on %s could not be handled", topic)
        self.positions += positions
        self.statuses += statuses
        if changed:
            self._changed()
        return others

    def one(self, what: contract.UnitBelow, payload: bytes) -> None:
        """A unit's position or status that reached the loop another way than the bulk lane."""
        if what.kind == "position":
            self.positions += 1
            fix = contract.parse_below_fix(payload)
            changed = fix is not None and self._position(what.unit, what.owner, fix)
        else:
            self.statuses += 1
            changed = self._status(what.unit, what.owner, payload)
        if changed:
            self._changed()

    def _learn(self, topic: str) -> tuple[str, str, bool] | None:
        what = contract.parse_inbound(self.node, topic)
        found = (what.unit, what.owner, what.kind == "position") if isinstance(what, contract.UnitBelow) else None
        if len(self._topics) < 1_000_000:  # bounded: a flood of made-up topics cannot grow it without end
            self._topics[topic] = found
        return found

    def _position(self, unit: str, owner: str, fix: contract.BelowFix) -> bool:
        lat, lon, fix_us, kind = fix
        jur = self.jurisdictions.jurisdiction_at(lat, lon) if self.jurisdictions is not None else None
        u = self.units.get(unit)
        self._dirty.add(unit)
        if u is None:
            u = self.units[unit] = _Unit(owner, kind or "car", UnitStatus.OFFLINE, lat, lon, fix_us)  # older nodes: a car
            self.owner[unit] = owner
            self.located += 1
            self._index(unit, u, jur)
            return True
        if u.fix_us is not None and fix_us < u.fix_us:
            return False  # a node's backlog after an outage comes after its newest fix: never move a unit back (the
            # unit stays in `_dirty`: one more row written, nothing wrong)
        if u.lat is None:
            self.located += 1
        u.lat, u.lon, u.fix_us = lat, lon, fix_us
        if owner != u.owner:
            u.owner = self.owner[unit] = owner
        if (kind is not None and kind != u.type) or not self.index.move(unit, lat, lon, fix_us, jur):
            if kind is not None:
                u.type = kind
            self._index(unit, u, jur)
        return True

    def _status(self, unit: str, owner: str, payload: bytes) -> bool:
        st = contract.parse_below_status(payload)
        if st is None:
            return False
        u = self.units.get(unit)
        if u is None:
            u = self.units[unit] = _Unit(owner, st.type or "car", st.status, None, None, None)
            self.owner[unit] = owner
        else:
            u.status = st.status
            u.type = st.type or u.type
            if owner != u.owner:
                u.owner = self.owner[unit] = owner
        self._dirty.add(unit)
        self._index(unit, u)
        return True

    def _index(self, unit: str, u: _Unit, jur: str | bool | None = False) -> None:
        """Give the index a new snapshot of the unit (jur False: look its jurisdiction up)."""
        if jur is False:
            jur = None
            if u.lat is not None and u.lon is not None and self.jurisdictions is not None:
                jur = self.jurisdictions.jurisdiction_at(u.lat, u.lon)
        fix_time = None if u.fix_us is None else _EPOCH + timedelta(microseconds=u.fix_us)
        self.index.update(UnitSnapshot(unit, u.type, u.status, u.lat, u.lon, fix_time, jur if isinstance(jur, str) else None))

    def relocate(self, jurisdictions: JurisdictionIndex | None) -> None:
        """Reloaded jurisdictions: positions from now on are placed in these (the desk re-places the index)."""
        self.jurisdictions = jurisdictions

    # -- the snapshot ------------------------------------------------------------------------------

    def load(self) -> int:
        """Load the snapshot the store keeps (at start, before the link): returns the units loaded."""
        try:
            snap = load_below(self.store)
        except StoreError as exc:
            log.error("units below: %s; starting without the snapshot (the broker's retained messages fill it)", exc)
            return 0
        located = [r for r in snap.rows if r[4] is not None and r[5] is not None]
        where: list[str | None] = []
        if self.jurisdictions is not None and located:
            where = self.jurisdictions.assign_bulk([r[4] for r in located], [r[5] for r in located])  # type: ignore[misc]
        jur = dict(zip((r[0] for r in located), where, strict=True)) if where else {}
        for unit, owner, kind, status, lat, lon, fix_us in snap.rows:
            try:
                st = UnitStatus(status)
            except ValueError:
                continue
            u = self.units[unit] = _Unit(owner, kind, st, lat, lon, fix_us)
            self.owner[unit] = owner
            if lat is not None:
                self.located += 1
            self._index(unit, u, jur.get(unit))
        self.from_snapshot, self.snapshot_time = len(self.units), snap.saved
        if self.units:
            log.info("units below: %d units (%d with a position) loaded from the snapshot of %s: ready to recommend "
                     "from them; the broker's retained messages refresh them", len(self.units), self.located, snap.saved)
        return len(self.units)

    def _rows(self, units: list[str]) -> list[BelowRow]:
        out: list[BelowRow] = []
        for unit in units:
            u = self.units.get(unit)
            if u is not None:
                out.append((unit, u.owner, u.type, u.status.value, u.lat, u.lon, u.fix_us))
        return out

    async def keep_snapshot(self) -> None:
        """Every SNAPSHOT_INTERVAL_S, write the units that changed (runs for as long as the daemon does)."""
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL_S)
            await self.save()

    async def save(self) -> None:
        """Write the units changed since the last write, SNAPSHOT_CHUNK rows a transaction, the loop free in between."""
        if self._saving or not self._dirty:
            return
        self._saving = True
        dirty, self._dirty = list(self._dirty), set()
        saved = utc_iso(utc_now())
        done = 0
        try:
            while done < len(dirty):
                part = dirty[done : done + SNAPSHOT_CHUNK]
                try:
                    save_below(self.store, self._rows(part), saved)
                except StoreError as exc:
                    log.error("units below: %s; tried again in %.0f s", exc, SNAPSHOT_INTERVAL_S)
                    return
                done += len(part)
                await asyncio.sleep(0)
        finally:
            self._dirty.update(dirty[done:])  # not written (an error, or the daemon stopping): the next write has them
            self._saving = False

    def save_all(self) -> None:
        """Write every unit changed since the last write, at once (at a clean stop)."""
        if not self._dirty:
            return
        dirty, self._dirty = list(self._dirty), set()
        try:
            save_below(self.store, self._rows(dirty), utc_iso(utc_now()))
        except StoreError as exc:
            log.error("units below: %s; the next start waits for the broker's retained messages", exc)

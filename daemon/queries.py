"""The control socket's answers (status, units, devices), built from the running daemon's parts on the event loop thread."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

from alkomd.daemon import __version__
from alkomd.daemon.calls.desk import CallDesk
from alkomd.daemon.config import Config
from alkomd.daemon.control import (
    BelowInfo,
    BrokerLink,
    CallsInfo,
    DatabaseInfo,
    DeviceRow,
    Emergency,
    OutboxInfo,
    ReloadInfo,
    Reply,
    Status,
    UnitRow,
)
from alkomd.daemon.mqtt.below_link import BelowLink
from alkomd.daemon.mqtt.link import MqttLink
from alkomd.daemon.positions.station import Station
from alkomd.daemon.records import age_s, utc_iso, utc_now
from alkomd.daemon.store.database import Store
from alkomd.daemon.supervisor import Supervisor


class Daemon(Protocol):
    """What the answers are read from (the runtime is one; no import of it here)."""

    @property
    def cfg(self) -> Config: ...
    @property
    def store(self) -> Store: ...
    @property
    def station(self) -> Station: ...
    @property
    def drivers(self) -> Supervisor: ...
    @property
    def link(self) -> MqttLink: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def started_mono(self) -> float: ...
    @property
    def ready(self) -> bool: ...
    @property
    def link_since(self) -> datetime: ...
    @property
    def last_reload(self) -> ReloadInfo | None: ...
    @property
    def took_over(self) -> datetime | None: ...
    @property
    def below_link(self) -> BelowLink | None: ...
    @property
    def desk(self) -> CallDesk: ...


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class Queries:
    """Answers from the running daemon's own objects (called on the event loop thread)."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    def handlers(self) -> dict[str, Callable[[], Reply]]:
        return {"status": self.status, "units": self.units, "devices": self.devices}

    def status(self) -> Status:
        d = self.d
        cfg = d.cfg
        store = d.store
        now = utc_now()
        db = Path(store.path)
        devices: dict[str, int] = {}
        for row in self.devices():
            devices[row.state] = devices.get(row.state, 0) + 1
        units: dict[str, int] = {}
        for u in cfg.units:
            st = d.station.availability.states.get(u.id)
            key = st.status.value if st else "unknown"
            units[key] = units.get(key, 0) + 1
        return Status(
            version=__version__,
            node=cfg.node.topic,
            name=cfg.node.name,
            tier=cfg.node.tier,
            pid=os.getpid(),
            config=str(cfg.source),
            started=utc_iso(d.started_at),
            uptime_s=round(time.monotonic() - d.started_mono, 3),
            ready=d.ready,
            broker=BrokerLink(cfg.mqtt.host, cfg.mqtt.port, d.link.connected, utc_iso(d.link_since), d.link.last_error),
            outbox=OutboxInfo(store.outbox_depth(), age_s(store.oldest_unsent_created(), now), *d.station.publisher.held()),
            database=DatabaseInfo(str(db), _file_size(db), _file_size(Path(f"{db}-wal")), store.schema_version),
            devices=devices,
            units=units,
            last_reload=d.last_reload,
            implausible_fixes=d.station.implausible_fixes,
            calls=self.calls(now),
            took_over=utc_iso(d.took_over) if d.took_over else None,
            below=self.below(),
        )

    def below(self) -> BelowInfo | None:
        """The units followed below (a Polda or Mabes; None at a Polres)."""
        if self.d.cfg.node.tier == "polres":
            return None
        f, link = self.d.desk.follow, self.d.below_link
        return BelowInfo(len(f.units), f.located, f.positions, f.statuses, f.from_snapshot, f.snapshot_time,
                         link.pid if link is not None else None, link.restarts if link is not None else 0)

    def calls(self, now: datetime) -> CallsInfo:
        """The open calls as stored (the calls table keeps every open call's whole state): by state, and emergencies."""
        states: dict[str, int] = {}
        emergencies: list[Emergency] = []
        oldest: float | None = None
        for body in self.d.store.open_calls():
            try:
                doc = json.loads(body)
                state, flags, req = str(doc["state"]), doc.get("flags") or [], doc["request"]
                age = age_s(str(req.get("received_at") or doc.get("created") or ""), now)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a body the daemon itself could not reload either: not this answer's business
            states[state] = states.get(state, 0) + 1
            if age is not None and (oldest is None or age > oldest):
                oldest = age
            if "emergency" in flags:
                emergencies.append(Emergency(str(doc.get("call_id", "")), str(req.get("caller") or ""), state, age))
        return CallsInfo(sum(states.values()), states, emergencies, oldest)

    def units(self) -> list[UnitRow]:
        d = self.d
        station = d.station
        now = utc_now()
        stored = d.store.newest_fixes() if any(u.id not in station.latest for u in d.cfg.units) else {}
        out = []
        for u in d.cfg.units:
            st = station.availability.states.get(u.id)
            up = station.latest.get(u.id)
            t: str | None = None
            lat = lon = None
            source = None
            if up is not None:
                f = up.fix
                t, lat, lon = utc_iso(f.time), f.lat, f.lon
                source = f"{f.device}:{f.radio}" if f.radio else f.device
            elif u.id in stored:  # newest fix from before a restart
                s = stored[u.id]
                t, lat, lon, source = s.time, s.lat, s.lon, s.device
            heard_at = station.last_heard.get(u.id)
            heard = utc_iso(heard_at) if heard_at is not None else None
            out.append(
                UnitRow(
                    u.id, u.callsign, u.type, u.device, u.radio,
                    st.status.value if st else "unknown", utc_iso(st.since) if st else None, st.call_id if st else None,
                    t, age_s(t, now), lat, lon, source, station.implausible_by_unit.get(u.id, 0),
                    heard, age_s(heard, now),
                )
            )
        return out

    def devices(self) -> list[DeviceRow]:
        d = self.d
        mono = time.monotonic()
        out = []
        for dev in d.cfg.devices:
            rd = d.drivers.get(dev.id)
            if rd is None:
                out.append(DeviceRow(dev.id, dev.driver, dev.enabled, "disabled" if not dev.enabled else "stopped",
                                     None, "", None, None, None))
                continue
            s = d.station.device_status.get(dev.id)
            last = rd.driver.last_data()
            out.append(
                DeviceRow(
                    dev.id, rd.driver_name, dev.enabled, s.state.value if s else "starting",
                    utc_iso(s.since) if s else None, s.detail if s else "", rd.driver.counters(),
                    None if last is None else round(mono - last, 3), s.modem if s else None,
                    d.station.implausible_by_device.get(dev.id, 0),
                )
            )
        return out

"""MQTT contract v1: every topic and payload alkomd publishes, built in one place.

This module is the public API (docs/contract/ documents it): add fields, never rename or remove
them. Topics never contain `+` or `#`; payloads are compact UTF-8 JSON with ISO 8601 UTC times.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from alkomd.daemon.positions.availability import UnitState
from alkomd.daemon.records import Counters, DeviceStatus, Fix, RadioStatus, UnitPosition, utc_iso
from alkomd.daemon.store.database import Message

CONTRACT_VERSION = 1


def new_msg_id() -> str:
    """A globally unique message id: 128 random bits as 32 hex digits (consumers deduplicate on it)."""
    return os.urandom(16).hex()


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _level(name: str) -> str:
    if not name or any(c in name for c in "+#/\0"):
        raise ValueError(f"not a valid topic level: {name!r}")
    return name


def rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def state_topic(node: str) -> str:
    return f"{node}/state"


def health_topic(node: str) -> str:
    return f"{node}/health"


def device_status_topic(node: str, device: str) -> str:
    return f"{node}/device/{_level(device)}/status"


def position_topic(node: str, unit: str) -> str:
    return f"{node}/unit/{_level(unit)}/position"


def unit_status_topic(node: str, unit: str) -> str:
    return f"{node}/unit/{_level(unit)}/status"


def emergency_topic(node: str, unit: str) -> str:
    return f"{node}/unit/{_level(unit)}/emergency"


def radio_topic(node: str, device: str, radio: str) -> str:
    return f"{node}/device/{_level(device)}/radio/{_level(radio)}"


def _source(device: str, radio: str | None) -> str:
    return f"{device}:{radio}" if radio else device


def emergency_message(node: str, unit: str, rs: RadioStatus, last: Fix | None) -> Message:
    """`<node>/unit/<unit>/emergency` (not retained): once per emergency signal of a unit's radio."""
    msg_id = new_msg_id()
    payload = {
        "unit": unit,
        "lat": None if last is None else round(last.lat, 7),
        "lon": None if last is None else round(last.lon, 7),
        "time": utc_iso(rs.received),
        "source": _source(rs.device, rs.radio),
        "msg_id": msg_id,
        "code": rs.code,
        "fix_time": None if last is None else utc_iso(last.time),
    }
    return Message(msg_id, "emergency", emergency_topic(node, unit), _dumps(payload), 1, False)


def radio_message(node: str, device: str, radio: str, fix: Fix | None, code: int | None, now: datetime) -> Message:
    """`<node>/device/<device>/radio/<radio>` (retained): a radio no [[unit]] maps to was heard."""
    msg_id = new_msg_id()
    payload = {
        "device": device,
        "radio": radio,
        "heard": utc_iso(now),
        "lat": None if fix is None else round(fix.lat, 7),
        "lon": None if fix is None else round(fix.lon, 7),
        "time": None if fix is None else utc_iso(fix.time),
        "status": code,
        "msg_id": msg_id,
    }
    return Message(msg_id, "radio", radio_topic(node, device, radio), _dumps(payload), 1, True)


def unit_status_message(node: str, s: UnitState) -> Message:
    """`<node>/unit/<unit>/status` (retained, on change)."""
    msg_id = new_msg_id()
    payload = {"unit": s.unit, "status": s.status.value, "since": utc_iso(s.since), "call_id": s.call_id, "msg_id": msg_id}
    return Message(msg_id, "unit_status", unit_status_topic(node, s.unit), _dumps(payload), 1, True)


def state_payload(state: str, version: str, since: datetime) -> str:
    """`<node>/state` (retained; "offline" is also the MQTT will)."""
    return _dumps({"state": state, "version": version, "since": utc_iso(since), "msg_id": new_msg_id()})


def position_message(node: str, up: UnitPosition) -> Message:
    """`<node>/unit/<unit>/position` (retained): the unit's newest fix."""
    f = up.fix
    msg_id = new_msg_id()
    payload = {
        "unit": up.unit,
        "lat": round(f.lat, 7),
        "lon": round(f.lon, 7),
        "time": utc_iso(f.time),
        "received": utc_iso(f.received),
        "speed_kmh": rounded(f.speed_kmh, 1),
        "course": rounded(f.course, 1),
        "hdop": rounded(f.hdop, 2),
        "sats": f.sats,
        "fix": f"{f.mode}d",
        "source": _source(f.device, f.radio),
        "msg_id": msg_id,
        "alt": rounded(f.alt, 1),
    }
    return Message(msg_id, "position", position_topic(node, up.unit), _dumps(payload), 1, True)


def counters_dict(c: Counters) -> dict[str, int]:
    return asdict(c)


def device_status_message(node: str, s: DeviceStatus) -> Message:
    """`<node>/device/<device>/status` (retained, on change)."""
    msg_id = new_msg_id()
    payload = {
        "device": s.device,
        "driver": s.driver,
        "state": s.state.value,
        "since": utc_iso(s.since),
        "counters": counters_dict(s.counters),
        "detail": s.detail,
        "msg_id": msg_id,
    }
    if s.modem is not None:
        payload["modem"] = asdict(s.modem)
    return Message(msg_id, "device_status", device_status_topic(node, s.device), _dumps(payload), 1, True)


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    device: str
    driver: str
    state: str
    counters: Counters
    last_data_age_s: float | None
    implausible_fixes: int = 0  # its fixes the station's plausibility gate rejected


def health_payload(
    now: datetime, uptime_s: float, outbox_depth: int, devices: Sequence[DeviceHealth], outbox_bytes: int = 0,
    outbox_thinned: int = 0, implausible_fixes: int = 0,
) -> str:  # fmt: skip
    """`<node>/health` (not retained): counters per device, the outbox depth, its bytes and what the budget thinned,
    and the fixes the plausibility gate rejected."""
    return _dumps(
        {
            "time": utc_iso(now),
            "uptime_s": round(uptime_s, 1),
            "outbox_depth": outbox_depth,
            "outbox_bytes": outbox_bytes,
            "outbox_thinned": outbox_thinned,
            "implausible_fixes": implausible_fixes,
            "devices": {
                d.device: {
                    "driver": d.driver,
                    "state": d.state,
                    **counters_dict(d.counters),
                    "last_data_age_s": None if d.last_data_age_s is None else round(d.last_data_age_s, 1),
                    "implausible_fixes": d.implausible_fixes,
                }
                for d in devices
            },
            "msg_id": new_msg_id(),
        }
    )

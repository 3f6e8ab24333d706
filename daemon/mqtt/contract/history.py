"""What the central history workers read: the positions of the units below, through an MQTT 5 shared subscription."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from alkomd.daemon.mqtt.contract.topics import UnitBelow, below_levels, parse_inbound

_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z$")


def history_group(node: str) -> str:
    """The shared-subscription group of `node`'s history workers (no `/`, `+` or `#` in a group name)."""
    return "alkomd-history-" + node.replace("/", "-")


def history_subscriptions(node: str, tier: str) -> tuple[str, ...]:
    """`$share/<group>/<below>/unit/+/position` for every level below `node`: each position reaches ONE worker of the
    group (MQTT 5 shared subscription); the broker spreads them over the workers that are connected."""
    group = history_group(node)
    return tuple(f"$share/{group}/{node}{'/+' * depth}/unit/+/position" for depth in below_levels(tier))


@dataclass(frozen=True, slots=True)
class HistoryFix:
    """One position of a unit below, as its history keeps it: the payload itself, and the columns it is found by."""

    owner: str  # the node the unit belongs to
    unit: str
    time: str  # ISO 8601 UTC, as the payload says it (sorts as time)
    lat: float
    lon: float
    msg_id: str
    payload: str


def parse_history_fix(node: str, topic: str, payload: bytes) -> HistoryFix | None:
    """A position of a unit below `node`; None when the topic is not one, or the payload has no usable place and time."""
    what = parse_inbound(node, topic)
    if not isinstance(what, UnitBelow) or what.kind != "position":
        return None
    try:
        text = payload.decode("utf-8")
        body = json.loads(text)
        lat, lon, t = float(body["lat"]), float(body["lon"]), body["time"]
        msg_id = body.get("msg_id") or ""
    except (ValueError, RecursionError, KeyError, TypeError, AttributeError):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or not isinstance(t, str) or not _TIME.match(t):
        return None
    return HistoryFix(what.owner, what.unit, t, lat, lon, str(msg_id)[:128], text)

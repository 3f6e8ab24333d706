"""OwnTracks-compatible phone reports (MQTT `owntracks/<user>/<device>` or HTTP POST) read into fixes.

An OwnTracks app (or anything that speaks its JSON) publishes `{"_type": "location", "lat",
"lon", "tst", ...}` to `owntracks/<user>/<device>` over MQTT, or POSTs the same JSON to an HTTP
endpoint, naming itself in the `X-Limit-U` / `X-Limit-D` headers or in a `topic` element of
the body. The radio id a `[[unit]]` names is `<user>/<device>`. Fields used: `lat`, `lon`
(degrees, required), `tst` (epoch seconds of the fix, required), `acc` (m, the fix's
accuracy), `alt` (m above sea level), `vel` (km/h), `cog` (degrees), `batt`, `tid`, `t`
(trigger), `created_at`. The apps leave out `acc`, `alt`, `cog`, `vel` when zero; some Android
devices always send `alt` 0, so 0 is "not known" for altitude; iOS sends -1 for "not known"
(its CoreLocation convention) in `vel`, `cog`, `acc`, `vac` and `batt`.

Other `_type`s (`lwt`, `transition`, `waypoint`, `waypoints`, `card`, `cmd`, `status`, `steps`,
`beacon`, `configuration`, `encrypted`, `request`) are recognised and returned as `Other`,
never as a fix (a transition carries coordinates, but those of a region event; the location
report that follows it is the fix). `decode` raises `OwnTracksError` for anything else.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from alkomd.daemon.records import Fix

BASE_TOPIC = "owntracks"
FUTURE_TOLERANCE = timedelta(minutes=10)  # a phone's fix later than this ahead of our clock is rejected
MAX_PAYLOAD = 256 * 1024  # cards carry a small base64 image; anything larger is not OwnTracks
MAX_NAME = 64  # user and device names (topic levels, X-Limit headers)
KNOWN_TYPES = frozenset({"lwt", "transition", "waypoint", "waypoints", "card", "cmd", "status", "steps", "beacon",
                         "configuration", "encrypted", "request", "dump"})


class OwnTracksError(ValueError):
    """The payload, topic or headers are not an OwnTracks message this module can read."""


class Reject(enum.StrEnum):
    """Why a location report gave no fix."""

    NO_POSITION = "no position"
    ZERO = "position 0,0"
    OUT_OF_RANGE = "coordinates out of range"
    NO_TIME = "no time (tst)"
    FUTURE = "fix time in the future"


@dataclass(frozen=True, slots=True)
class Location:
    """A `_type=location` report; None for what it does not carry (or carries as 'not known')."""

    radio: str  # <user>/<device>
    lat: float | None
    lon: float | None
    tst: datetime | None
    acc: float | None = None
    alt: float | None = None
    vel: float | None = None
    cog: float | None = None
    batt: int | None = None
    tid: str | None = None
    trigger: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Other:
    """A recognised message that is not a location report (its `_type`)."""

    radio: str
    kind: str


def split_topic(topic: str, base: str = BASE_TOPIC) -> tuple[str, str, str]:
    """`owntracks/<user>/<device>[/<subtopic>...]` to (user, device, subtopic) ('' when none)."""
    prefix = base.rstrip("/") + "/"
    if not topic.startswith(prefix):
        raise OwnTracksError(f"topic {topic[:80]!r} is not under {prefix!r}")
    parts = topic[len(prefix) :].split("/", 2)
    if len(parts) < 2:
        raise OwnTracksError(f"topic {topic[:80]!r} names no <user>/<device>")
    user, device = _name(parts[0], "user"), _name(parts[1], "device")
    return user, device, parts[2] if len(parts) == 3 else ""


def _name(value: str, what: str) -> str:
    v = value.strip()
    if not v or len(v) > MAX_NAME or any(c in v for c in "/+#") or not v.isprintable():
        raise OwnTracksError(f"{what} name {value[:MAX_NAME]!r} is empty, too long or has / + # or control characters")
    return v


def radio_of(*, topic: str | None = None, headers: Mapping[str, str] | None = None, body: Mapping[str, Any] | None = None,
             base: str = BASE_TOPIC) -> str:
    """`<user>/<device>`: from the MQTT topic; else the X-Limit-U/-D headers; else the body's `topic`."""
    if topic is not None:
        user, device, _ = split_topic(topic, base)
        return f"{user}/{device}"
    if headers:
        h = {k.lower(): v for k, v in headers.items()}
        u, d = h.get("x-limit-u"), h.get("x-limit-d")
        if u is not None and d is not None:
            return f"{_name(u, 'user')}/{_name(d, 'device')}"
    if body is not None and isinstance(body.get("topic"), str):
        user, device, _ = split_topic(body["topic"], base)
        return f"{user}/{device}"
    raise OwnTracksError("no user/device: no topic, no X-Limit-U/X-Limit-D headers, no topic in the body")


def parse_json(payload: bytes | str) -> dict[str, Any]:
    """The payload as a JSON object (bounded size and nesting)."""
    if len(payload) > MAX_PAYLOAD:
        raise OwnTracksError(f"payload of {len(payload)} bytes is over {MAX_PAYLOAD}")
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, deep nesting
        raise OwnTracksError(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise OwnTracksError("the JSON is not an object")
    return obj


def decode(payload: bytes | str, *, topic: str | None = None, headers: Mapping[str, str] | None = None,
           base: str = BASE_TOPIC) -> Location | Other:
    """One MQTT message (`topic` set) or HTTP POST body (`headers` or a `topic` element) read."""
    obj = parse_json(payload)
    kind = obj.get("_type")
    if not isinstance(kind, str):
        raise OwnTracksError("no _type")
    radio = radio_of(topic=topic, headers=headers, body=obj, base=base)
    if kind != "location":
        if kind in KNOWN_TYPES:
            return Other(radio, kind)
        raise OwnTracksError(f"unknown _type {kind[:40]!r}")
    lat, lon = _number(obj, "lat"), _number(obj, "lon")
    tst = _epoch(obj.get("tst"))
    acc = _number(obj, "acc")
    alt = _number(obj, "alt")
    vel = _number(obj, "vel")
    cog = _number(obj, "cog")
    batt = _number(obj, "batt")
    tid, trigger = obj.get("tid"), obj.get("t")
    return Location(
        radio=radio, lat=lat, lon=lon, tst=tst,
        acc=acc if acc is not None and acc > 0 else None,
        alt=alt if alt is not None and alt != 0 else None,
        vel=vel if vel is not None and 0 <= vel <= 2000 else None,
        cog=cog if cog is not None and 0 <= cog <= 360 else None,
        batt=int(batt) if batt is not None and 0 <= batt <= 100 else None,
        tid=tid[:MAX_NAME] if isinstance(tid, str) else None,
        trigger=trigger[:8] if isinstance(trigger, str) else None,
        created_at=_epoch(obj.get("created_at")),
    )


def _number(obj: Mapping[str, Any], key: str) -> float | None:
    """A finite JSON number (or a numeric string, as some apps send); booleans are not numbers."""
    v = obj.get(key)
    if isinstance(v, str) and 0 < len(v) <= 32:
        try:
            v = float(v)
        except ValueError:
            return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v) if not isinstance(v, int) or abs(v) < 1 << 53 else math.nan
    return f if math.isfinite(f) else None


def _epoch(v: Any) -> datetime | None:
    """Epoch seconds (a number or a digit string) to UTC; None outside 1970..9999 or not a number."""
    t = _number({"v": v}, "v")
    if t is None or not 0 < t < 253402300800:
        return None
    return datetime.fromtimestamp(t, UTC)


def to_fix(loc: Location, *, device: str, received: datetime, received_mono: float) -> tuple[Fix | None, Reject | None]:
    """The `Fix` a location report gives after the gates, or why it gives none."""
    lat, lon, when = loc.lat, loc.lon, loc.tst
    if lat is None or lon is None:
        return None, Reject.NO_POSITION
    if lat == 0.0 and lon == 0.0:
        return None, Reject.ZERO
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return None, Reject.OUT_OF_RANGE
    if when is None:
        return None, Reject.NO_TIME
    if when - received > FUTURE_TOLERANCE:
        return None, Reject.FUTURE
    fix = Fix(device, when, lat, lon, 2 if loc.alt is None else 3, received, received_mono, alt=loc.alt, speed_kmh=loc.vel,
              course=None if loc.cog is None else loc.cog % 360.0, radio=loc.radio, accuracy_m=loc.acc)
    return fix, None

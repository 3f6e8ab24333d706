"""Validity gates and record mapping shared by the radio location decoders (MOTOTRBO LRRP, Hytera LP).

A decoded report becomes a `Fix` only if it passes the same gates as a relayed Kenwood report:
the source says the position is valid, both coordinates are present, in range and not 0,0 (radios
without a fix send zeros), and the fix time is known and not in the future beyond a tolerance
(the NMEA decoder's one day: a radio's clock may run ahead, a date may roll over late).

An emergency becomes a `RadioStatus` with `EMERGENCY_CODE` (99, the default of
`[radio_status] emergency`), so a station that keeps the default needs no configuration for it.
These protocols have no "emergency ended" message: `EmergencyLatch` passes on another code with a
radio's first ordinary report after its emergency, so that its next emergency is a new alarm (the
TETRA driver uses it too).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from alkomd.daemon.records import Fix, RadioStatus
from alkomd.daemon.schema import spec

FUTURE_TOLERANCE = timedelta(days=1)
EMERGENCY_CODE = 99  # RadioStatus.code of a radio's emergency report; list it in [radio_status] emergency
MAX_IN_EMERGENCY = 10_000  # radios remembered as in an emergency (a bound, far above any fleet a station hears)


class Reject(enum.StrEnum):
    """Why a decoded report gave no fix."""

    NOT_A_REPORT = "not a location report"
    NOT_VALID = "the source marks the position invalid (no GPS fix)"
    NO_POSITION = "no position"
    ZERO = "position 0,0"
    OUT_OF_RANGE = "coordinates out of range"
    NO_TIME = "no or invalid fix time"
    FUTURE = "fix time in the future"


@dataclass(frozen=True, slots=True)
class Position:
    """What a decoder read from one report, before the gates; None for what it does not carry."""

    valid: bool
    lat: float | None
    lon: float | None
    time: datetime | None  # UTC
    mode: int = 2
    alt: float | None = None
    speed_kmh: float | None = None
    course: float | None = None
    accuracy_m: float | None = None


@dataclass(frozen=True, slots=True)
class Mapped:
    """The records one report gives: a fix or the reason there is none, and an emergency status."""

    fix: Fix | None
    reject: Reject | None
    status: RadioStatus | None = None


def judge(p: Position, received: datetime, future_tolerance: timedelta = FUTURE_TOLERANCE) -> Reject | None:
    """None if `p` passes the gates, else the first gate it fails."""
    if not p.valid:
        return Reject.NOT_VALID
    if p.lat is None or p.lon is None or not math.isfinite(p.lat) or not math.isfinite(p.lon):
        return Reject.NO_POSITION
    if p.lat == 0.0 and p.lon == 0.0:
        return Reject.ZERO
    if not (-90.0 <= p.lat <= 90.0 and -180.0 <= p.lon <= 180.0):
        return Reject.OUT_OF_RANGE
    if p.time is None:
        return Reject.NO_TIME
    if p.time - received > future_tolerance:
        return Reject.FUTURE
    return None


def _finite(v: float | None, lo: float, hi: float) -> float | None:
    return v if v is not None and math.isfinite(v) and lo <= v <= hi else None


def to_records(
    p: Position | None,
    device: str,
    radio: str,
    received: datetime,
    received_mono: float,
    emergency: bool = False,
    future_tolerance: timedelta = FUTURE_TOLERANCE,
) -> Mapped:
    """The `Fix` (with `radio` set) of a report that passes the gates, and its emergency `RadioStatus`."""
    status = RadioStatus(device, radio, EMERGENCY_CODE, received, received_mono) if emergency else None
    if p is None:
        return Mapped(None, Reject.NOT_A_REPORT, status)
    reject = judge(p, received, future_tolerance)
    if reject is not None or p.lat is None or p.lon is None or p.time is None:
        return Mapped(None, reject or Reject.NO_POSITION, status)
    fix = Fix(
        device=device,
        time=p.time,
        lat=p.lat,
        lon=p.lon,
        mode=3 if p.mode == 3 else 2,
        received=received,
        received_mono=received_mono,
        alt=_finite(p.alt, -1000.0, 100_000.0),
        speed_kmh=_finite(p.speed_kmh, 0.0, 2000.0),
        course=_finite(p.course, 0.0, 360.0),
        radio=radio,
        accuracy_m=_finite(p.accuracy_m, 0.0, 1.0e7),
    )
    return Mapped(fix, None, status)


def after_emergency_spec() -> int:
    """The `after_emergency_code` option of a driver that uses `EmergencyLatch` (a new field for each options class)."""
    result: int = spec(0, min=0, max=999, doc="The status code passed on with a radio's first report after an emergency "
                       "that is not one, so that its next emergency is a new signal; keep it in no [radio_status] list.")
    return result


@runtime_checkable
class EmergencySource(Protocol):
    """The options of a driver whose radios report emergencies as a status code (the config checks the codes)."""

    def emergency_codes(self) -> tuple[int, int] | None:
        """(the code a radio's emergency becomes, the code that ends one), or None when this device reports none."""
        ...


class EmergencyLatch:
    """The radios whose last report was an emergency, for a driver whose protocol flags each report (no "ended" message).

    The station raises one alarm per signal: when a radio's status code turns to an emergency code, not while it stays
    one. A radio's first ordinary report after its emergency passes on `after_code` (kept in no [radio_status] list),
    so that its next emergency is a new signal; without it, a radio's second emergency would pass as a repeat.
    """

    def __init__(self, device: str, after_code: int) -> None:
        self.device = device
        self.after_code = after_code
        self._in: set[str] = set()

    def status(self, radio: str, emergency: RadioStatus | None, received: datetime, mono: float) -> RadioStatus | None:
        """What to pass on with a report of `radio`: its emergency, the end of one, or None."""
        if emergency is not None:
            if len(self._in) < MAX_IN_EMERGENCY:
                self._in.add(radio)
            return emergency
        if radio in self._in:
            self._in.discard(radio)
            return RadioStatus(self.device, radio, self.after_code, received, mono)
        return None

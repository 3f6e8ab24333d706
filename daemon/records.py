"""Records that cross module boundaries: what drivers emit and what the core stores and publishes."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


def utc_iso(t: datetime) -> str:
    """ISO 8601 UTC with a trailing Z and millisecond precision (the contract's time format)."""
    if t.tzinfo is not UTC:
        t = t.astimezone(UTC)
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
        f".{t.microsecond // 1000:03d}Z"
    )


def age_s(iso: str | None, now: datetime, digits: int = 3) -> float | None:
    """Seconds from an ISO 8601 time (a naive one is taken as UTC) to `now`; None when there is none or it is unreadable."""
    if not iso:
        return None
    try:
        t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return round((now - (t if t.tzinfo else t.replace(tzinfo=UTC))).total_seconds(), digits)


def utc_now() -> datetime:
    return datetime.now(UTC)


class SteadyClock:
    """UTC time that never jumps: the wall clock at start plus monotonic time since.

    Timers and availability use it, so an NTP step or a wrong RTC corrected at run time does not
    fire or stall them; records still carry UTC.
    """

    def __init__(self) -> None:
        self._wall = utc_now()
        self._mono = time.monotonic()

    def __call__(self) -> datetime:
        return self._wall + timedelta(seconds=time.monotonic() - self._mono)


class DeviceState(enum.StrEnum):
    """Health of one configured device, as published on <node>/device/<device>/status."""

    WAITING = "waiting"  # the port is open, waiting for the first fix (not yet `no_fix_after_s` long)
    CONNECTED = "connected"  # valid sentences and valid fixes
    NO_FIX = "no_fix"  # valid sentences, but no valid fix for a while
    SILENT = "silent"  # port open, but no valid sentence for a while (bytes may still flow)
    DEGRADED = "degraded"  # data flows, but a high share of it is corrupt (baud rate, wiring)
    DISCONNECTED = "disconnected"  # the port cannot be opened or vanished


@dataclass(frozen=True, slots=True)
class Fix:
    """One valid position fix of one epoch, after the validity gates.

    `radio` is None for a device that carries one GPS (a unit's own receiver); drivers that
    relay many units over one port (FleetSync base radios) set it to the radio's identity.
    `accuracy_m` is the horizontal uncertainty the source states, in metres (TETRA LIP position
    error or circle radius, OwnTracks `acc`); None when the source does not say.
    """

    device: str
    time: datetime  # UTC time of the fix (from the receiver)
    lat: float
    lon: float
    mode: int  # 2 = 2D, 3 = 3D
    received: datetime  # UTC wall-clock time the epoch's last sentence was read
    received_mono: float  # time.monotonic() of the same moment (for ages and latency)
    alt: float | None = None
    speed_kmh: float | None = None
    course: float | None = None
    hdop: float | None = None
    sats: int | None = None
    radio: str | None = None
    accuracy_m: float | None = None  # horizontal uncertainty radius in metres the source states (LRRP circle, LIP error, phone acc)


@dataclass(frozen=True, slots=True)
class Counters:
    """Per-device counters since the daemon started (monotonic, never reset on reconnect)."""

    bytes: int = 0
    sentences: int = 0
    checksum_errors: int = 0
    parse_errors: int = 0
    garbage_bytes: int = 0
    fixes: int = 0
    rejected_fixes: int = 0
    reconnects: int = 0


@dataclass(frozen=True, slots=True)
class ModemHealth:
    """What a cellular modem reports about itself (Modbus drivers); None where it does not say."""

    uptime_s: int | None = None
    signal_dbm: int | None = None
    temperature_c: float | None = None
    network: str | None = None  # e.g. LTE, 3G
    operator: str | None = None
    sim: str | None = None  # active SIM, e.g. sim1


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """A device's state changed (emitted on change only, never repeated).

    `modem` is set by drivers that read a modem's own health; they also emit a DeviceStatus when
    that health changes notably (network type, SIM, signal band), not on every poll.
    """

    device: str
    driver: str
    state: DeviceState
    since: datetime
    counters: Counters
    detail: str = ""
    modem: ModemHealth | None = None


@dataclass(frozen=True, slots=True)
class RadioStatus:
    """A relayed radio sent a status code (FleetSync/NXDN), with or without a position.

    `radio` is the radio's identity as the [[unit]] `radio` key spells it: `<fleet>-<id>` for
    FleetSync (e.g. 100-1001), `U<digits>` for NXDN/DMR (e.g. U00002), the digits as sent for a
    numeric id (dPMR through a Kenwood base radio, e.g. 004332199).
    """

    device: str
    radio: str
    code: int
    received: datetime
    received_mono: float


@dataclass(frozen=True, slots=True)
class RadioHeard:
    """A relayed radio was heard without a position or a status code: it keyed up (a Kenwood
    caller-ID frame) or sent its id alone (`$PKLID`/`$PKNID` without a status).

    `radio` is spelled as for `RadioStatus`; the station keeps it as the unit's "last heard".
    """

    device: str
    radio: str
    received: datetime
    received_mono: float


@dataclass(frozen=True, slots=True)
class UnitPosition:
    """A fix attributed to a configured unit: what is stored and published as a position."""

    unit: str
    fix: Fix


class UnitStatus(enum.StrEnum):
    AVAILABLE = "available"
    ASSIGNED = "assigned"
    ENROUTE = "enroute"
    ONSCENE = "onscene"
    UNAVAILABLE = "unavailable"
    OFFLINE = "offline"


SETTABLE = frozenset(s for s in UnitStatus if s is not UnitStatus.OFFLINE)  # offline follows the fixes only

@dataclass(frozen=True, slots=True)
class UnitState:
    unit: str
    status: UnitStatus
    since: datetime
    call_id: str | None = None
    resume: UnitStatus | None = None  # the status to return to when an offline unit reports again


Record = Fix | DeviceStatus | RadioStatus | RadioHeard

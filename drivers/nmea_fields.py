"""Strict conversions of NMEA 0183 fields (coordinates, numbers, times, dates): None when invalid.

pynmea2's typed accessors swallow conversion errors and turn empty coordinates into 0.0; these
never guess. Shared by the standard-sentence decoder and the proprietary (Kenwood) sentences.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta


def coord(value: str, hemi: str) -> float | None:
    """`ddmm.mmmm` or `dddmm.mmmm` plus N/S/E/W to signed degrees; None when absent or invalid."""
    if not value or not hemi:
        return None
    try:
        v = float(value)
    except ValueError:
        return None
    if v < 0 or not math.isfinite(v):
        return None
    d = int(v // 100)
    m = v - d * 100
    if m >= 60:
        return None
    deg = d + m / 60
    if hemi in "SW":
        return -deg
    return deg if hemi in "NE" else None


def to_float(value: str) -> float | None:
    if not value:
        return None
    try:
        v = float(value)
    except ValueError:
        return None
    return v if v == v and v not in (float("inf"), float("-inf")) else None


def within(v: float | None, lo: float, hi: float) -> float | None:
    """`v` if lo <= v <= hi, else None (a checksum-valid field can still hold nonsense)."""
    return v if v is not None and lo <= v <= hi else None


def to_int(value: str) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def tod_of(value: str) -> time | None:
    """`hhmmss[.sss]` to a time of day, or None."""
    if len(value) < 6 or not value[:6].isdigit():
        return None
    h, m, s = int(value[:2]), int(value[2:4]), int(value[4:6])
    frac = value[6:]
    us = 0
    if frac:
        if frac[0] != "." or (len(frac) > 1 and not frac[1:].isdigit()):
            return None
        us = round(float("0" + frac) * 1_000_000) if len(frac) > 1 else 0
    if h > 23 or m > 59 or s > 60 or us >= 1_000_000:
        return None
    return time(h, m, min(s, 59), us, tzinfo=UTC)


def date_of(value: str) -> date | None:
    if len(value) != 6 or not value.isdigit():
        return None
    d, m, y = int(value[:2]), int(value[2:4]), int(value[4:6])
    try:
        return date(2000 + y if y < 80 else 1900 + y, m, d)
    except ValueError:
        return None


def day_for(tod: time, received: datetime) -> datetime:
    """A time of day without a date, placed on the day nearest to when it was received (UTC)."""
    ref = received.astimezone(UTC)
    guess = datetime.combine(ref.date(), tod)
    if guess - ref > timedelta(hours=12):  # just before midnight, read just after it
        guess -= timedelta(days=1)
    elif ref - guess > timedelta(hours=12):
        guess += timedelta(days=1)
    return guess

"""`replay --retime`: a capture's sentences moved to now (times, dates, checksums), so a daemon takes an old capture's fixes."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from alkomd.drivers.nmea import checksum

_SENTENCE = re.compile(rb"\$([A-Z]{2}(RMC|GGA|GLL|GNS|ZDA)|P(KLDS|KNDS|KLSH|KNSH)),([^*\r\n]*)\*([0-9A-Fa-f]{2})")
# (time field, date field as ddmmyy) after the sentence name, for each kind; ZDA has day, month and year apart.
_FIELDS = {b"RMC": (0, 8), b"GGA": (0, None), b"GLL": (4, None), b"GNS": (0, None), b"ZDA": (0, None),
           b"KLDS": (0, 8), b"KNDS": (0, 8), b"KLSH": (4, None), b"KNSH": (4, None)}
_TOD = re.compile(rb"^(\d{2})(\d{2})(\d{2}(?:\.\d+)?)$")


def _kind(m: re.Match[bytes]) -> bytes:
    return m.group(2) or m.group(3)


def first_time(data: bytes, day: date) -> datetime | None:
    """The time of the first timed sentence of a capture, dated by its own date field, else `day`."""
    for m in _SENTENCE.finditer(data):
        fields = m.group(4).split(b",")
        t_i, d_i = _FIELDS[_kind(m)]
        tod = _TOD.match(fields[t_i]) if t_i < len(fields) else None
        if tod is None:
            continue
        when = day
        if d_i is not None and d_i < len(fields) and re.fullmatch(rb"\d{6}", fields[d_i]):
            d = fields[d_i]
            try:
                when = date(2000 + int(d[4:6]), int(d[2:4]), int(d[0:2]))
            except ValueError:
                pass
        h, mi, s = int(tod.group(1)), int(tod.group(2)), float(tod.group(3))
        return datetime(when.year, when.month, when.day, tzinfo=UTC) + timedelta(hours=h, minutes=mi, seconds=s)
    return None


class Retimer:
    """Moves every sentence's time by `shift` (the capture's first fix becomes `now`), day included, with a new checksum.

    A time-only sentence (GGA) is dated by the last date seen (or the capture's day), as a receiver's day runs on."""

    def __init__(self, data: bytes, now: datetime, day: date) -> None:
        start = first_time(data, day)
        self.shift = timedelta(0) if start is None else now - start
        self._day = day

    def line(self, data: bytes) -> bytes:
        return _SENTENCE.sub(self._sentence, data)

    def _sentence(self, m: re.Match[bytes]) -> bytes:
        name, fields = m.group(1), m.group(4).split(b",")
        t_i, d_i = _FIELDS[_kind(m)]
        tod = _TOD.match(fields[t_i]) if t_i < len(fields) else None
        if tod is None:
            return m.group(0)
        day = self._day
        if d_i is not None and d_i < len(fields) and re.fullmatch(rb"\d{6}", fields[d_i]):
            d = fields[d_i]
            try:
                day = self._day = date(2000 + int(d[4:6]), int(d[2:4]), int(d[0:2]))
            except ValueError:
                pass
        h, mi, s = int(tod.group(1)), int(tod.group(2)), float(tod.group(3))
        moved = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=h, minutes=mi, seconds=s) + self.shift
        decimals = tod.group(3)[2:]  # ".ss" as the receiver wrote it, if any
        frac = f"{moved.microsecond / 1e6:.{len(decimals) - 1}f}"[1:] if decimals else ""
        fields[t_i] = f"{moved:%H%M%S}{frac}".encode()
        if d_i is not None and d_i < len(fields) and fields[d_i]:
            fields[d_i] = f"{moved:%d%m%y}".encode()
        if _kind(m) == b"ZDA" and len(fields) >= 4:
            fields[1:4] = [f"{moved:%d}".encode(), f"{moved:%m}".encode(), f"{moved:%Y}".encode()]
        body = name + b"," + b",".join(fields)
        return b"$" + body + b"*" + f"{checksum(body):02X}".encode()

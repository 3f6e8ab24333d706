"""What `alkomctl sniff` makes of a port's bytes: each line with the decoder's verdicts, the sky, fixes and units heard.

No I/O: `Sniffer.feed` takes the bytes as read and returns the complete lines and the records
they completed; the view (`view`) and the loop that reads the port (`watch`) are separate.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from alkomd.daemon.records import Fix, RadioStatus
from alkomd.drivers.nmea import MAX_PENDING, Decoder, Sentence, Verdict
from alkomd.drivers.nmea_serial import QUIET_CLOSE_S

RATE_WINDOW_S = 5.0  # sentences per second are counted over this window
FIX_FRESH_S = 5.0  # a fix older than this is shown as stale
KEEP_LINES = 500
GARBAGE = "garbage"
_STRIP = b"\r\x02\x03 \t"
_WORST = (GARBAGE, Verdict.BAD_CHECKSUM.value, Verdict.NO_CHECKSUM.value, Verdict.UNPARSABLE.value, Verdict.UNKNOWN.value)


@dataclass(frozen=True, slots=True)
class Heard:
    """One line read from the port and what the decoder made of each sentence candidate in it."""

    received: datetime
    raw: bytes
    sentences: tuple[Sentence, ...]
    garbage: int  # bytes outside any sentence

    @property
    def verdict(self) -> str:
        """The line's worst verdict: garbage, bad checksum, ..., unknown, ok."""
        found = {s.verdict.value for s in self.sentences}
        if self.garbage and not self.sentences:
            return GARBAGE
        return next((v for v in _WORST if v in found), Verdict.OK.value)

    @property
    def kinds(self) -> str:
        return " ".join(sentence_name(s.raw) for s in self.sentences)


def sentence_name(raw: bytes) -> str:
    """`GPGGA`, `PKLDS`, ... from `$GPGGA,...` (empty if it has none)."""
    head = raw[1:].split(b",", 1)[0].split(b"*", 1)[0]
    return head[:8].decode("ascii", "replace") if head.isalnum() else ""


@dataclass
class Sky:
    """What the receiver says about its satellites, from GGA, GSA, GSV and RMC (fix or not)."""

    quality: int | None = None
    sats_used: int | None = None
    in_view: dict[str, int] = field(default_factory=dict)  # per talker (GP, GL, BD, GA, ...)
    hdop: float | None = None
    gsa_fix: int | None = None
    rmc_status: str | None = None

    def update(self, msg: Any) -> None:
        stype = getattr(msg, "sentence_type", "")
        data = list(getattr(msg, "data", ()))
        talker = getattr(msg, "talker", "")

        def at(i: int) -> str:
            return str(data[i]) if i < len(data) else ""

        if stype == "GGA":
            self.quality = _int(at(5))
            self.sats_used = _int(at(6))
            self.hdop = _float(at(7)) if at(7) else self.hdop
        elif stype == "GSA":
            self.gsa_fix = _int(at(1))
            if _float(at(15)) is not None:
                self.hdop = _float(at(15))
        elif stype == "GSV":
            n = _int(at(2))
            if n is not None:
                self.in_view[talker] = n
        elif stype == "RMC":
            self.rmc_status = at(1) or None


def _int(s: str) -> int | None:
    try:
        return int(s)
    except ValueError:
        return None


def _float(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


@dataclass
class UnitHeard:
    """A relayed radio heard on a base radio's port."""

    radio: str
    fixes: int = 0
    last: Fix | None = None
    status: int | None = None
    seen: datetime | None = None


class Sniffer:
    """Bytes in, `Heard` lines, fixes and status codes out; keeps what the view shows. No I/O."""

    def __init__(self, max_hdop: float = 20.0, keep: int = KEEP_LINES) -> None:
        self._current: list[Sentence] = []
        self.decoder = Decoder("sniff", max_hdop=max_hdop, on_sentence=self._current.append)
        self.lines: deque[Heard] = deque(maxlen=keep)
        self.sky = Sky()
        self.last_fix: Fix | None = None
        self.last_fix_mono: float | None = None
        self.units: dict[str, UnitHeard] = {}
        self.bytes = 0
        self.line_count = 0
        self.garbage_lines = 0
        self._ok_times: deque[float] = deque()
        self._pending = b""
        self._last_data = 0.0

    def feed(self, chunk: bytes, received: datetime, mono: float) -> list[Heard | Fix | RadioStatus]:
        """Decode a chunk; returns the complete lines and the records they completed, in order."""
        self.bytes += len(chunk)
        self._last_data = mono
        # Lines end at LF, CR or ETX (a Kenwood base radio frames sentences STX ... ETX), as in the Framer.
        data = (self._pending + chunk).replace(b"\r", b"\n").replace(b"\x03", b"\x03\n")
        parts = data.split(b"\n")
        self._pending = parts.pop()
        if len(self._pending) > MAX_PENDING:  # a line that never ends (garbage at a wrong baud rate)
            parts.append(self._pending)
            self._pending = b""
        out: list[Heard | Fix | RadioStatus] = []
        for line in parts:
            out += self._line(line, received, mono)
        return out

    def idle(self, mono: float) -> list[Heard | Fix | RadioStatus]:
        """The line is quiet: close the open epoch (like the driver) so its fix shows now."""
        if mono - self._last_data < QUIET_CLOSE_S:
            return []
        return self._records(self.decoder.close_epoch(), mono)

    def finish(self, mono: float) -> list[Heard | Fix | RadioStatus]:
        """We stop: close the open epoch. A line cut off by stopping is not judged."""
        self._pending = b""
        return self._records(self.decoder.flush(), mono)

    def _line(self, line: bytes, received: datetime, mono: float) -> list[Heard | Fix | RadioStatus]:
        if not line.strip(_STRIP):
            return []
        self._current.clear()
        before = self.decoder.garbage_bytes
        records = self.decoder.feed(line + b"\n", received, mono)
        heard = Heard(received, line, tuple(self._current), self.decoder.garbage_bytes - before)
        if not heard.sentences and not heard.garbage:
            return self._records(records, mono)  # a lone `$` or framing bytes: nothing to judge
        self.lines.append(heard)
        self.line_count += 1
        if heard.verdict == GARBAGE:
            self.garbage_lines += 1
        for s in heard.sentences:
            if s.verdict is Verdict.OK:
                self._ok_times.append(mono)
                if s.msg is not None:
                    self.sky.update(s.msg)
        return [heard, *self._records(records, mono)]

    def _records(self, records: list[Any], mono: float) -> list[Heard | Fix | RadioStatus]:
        out: list[Heard | Fix | RadioStatus] = []
        for r in records:
            if isinstance(r, Fix):
                if r.radio:
                    u = self.units.setdefault(r.radio, UnitHeard(r.radio))
                    u.fixes += 1
                    u.last, u.seen = r, r.received
                else:
                    self.last_fix, self.last_fix_mono = r, mono
                out.append(r)
            elif isinstance(r, RadioStatus):
                u = self.units.setdefault(r.radio, UnitHeard(r.radio))
                u.status, u.seen = r.code, r.received
                out.append(r)
        return out

    def rate(self, mono: float) -> float:
        """Valid sentences per second over the last RATE_WINDOW_S."""
        q = self._ok_times
        while q and mono - q[0] > RATE_WINDOW_S:
            q.popleft()
        return len(q) / RATE_WINDOW_S

    @property
    def valid(self) -> int:
        return self.decoder.sentences

    @property
    def errors(self) -> int:
        return self.decoder.checksum_errors + self.decoder.parse_errors

    def checksum_error_rate(self) -> float:
        total = self.decoder.sentences + self.decoder.checksum_errors + self.decoder.parse_errors
        return self.decoder.checksum_errors / total if total else 0.0

    def fix_status(self, mono: float) -> tuple[str, str]:
        """(text, style) of the receiver's fix now."""
        f = self.last_fix
        if f is not None and self.last_fix_mono is not None and mono - self.last_fix_mono <= FIX_FRESH_S:
            return f"{f.mode}D fix", "green"
        reject = self.decoder.last_reject
        if reject is not None:
            return f"no fix ({reject.value})", "yellow"
        if f is not None:
            return f"no fix for {mono - (self.last_fix_mono or mono):.0f} s", "yellow"
        if self.valid:
            return "waiting for a fix", "yellow"
        return "no valid sentence", "red"

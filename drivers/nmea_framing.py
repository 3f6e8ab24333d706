"""NMEA 0183 framing without I/O: a byte stream split into sentence candidates, Kenwood caller-ID frames, the checksum.

Bytes are split into lines on LF, CR or ETX (a Kenwood radio may frame each sentence STX ... ETX
with no line end); within a line every `$` starts a sentence (a `$` never occurs inside one), so
`$$GPGGA`, an interrupted `$GPGGA,12$GPRMC,...` and two sentences on one line all resync on the
next `$`. Bytes outside sentences are counted as garbage, except CR, STX, ETX and blanks, and
except a Kenwood caller-ID frame: a base radio frames who keys up as `STX I1 <fleet><id>... ETX`
(FleetSync; `I0` when the radio unkeys) or `STX gI1 U<id>U<id> ETX` (NXDN; `gI0` at the end).
Such a frame is handed on as a candidate of its own that starts with STX (a sentence candidate
never does), so its place among the sentences is kept. A line with no LF is kept only up to
`MAX_PENDING` bytes: memory does not grow on garbage.
"""

from __future__ import annotations

import re
from functools import reduce
from operator import xor

MAX_PENDING = 512  # bytes kept of a line that has no LF yet (NMEA allows 82; Kenwood ~100)
_FRAMING = b"\r\x02\x03 \t"  # stripped without counting as garbage
# A caller-ID frame, ended by its ETX (the line end here): FleetSync `I1`/`I0` and 7 to 19 digits
# (fleet, id, usually repeated), NXDN `gI1`/`gI0` and one or two U-ids (5 or 8 digits).
_CALLER_ID = re.compile(rb"\x02(I[01][0-9]{7,19}|gI[01]U[0-9]{5}(?:[0-9]{3})?(?:U[0-9]{5}(?:[0-9]{3})?)?)[ \t\x02\x03]*\Z")


class Framer:
    """Splits a byte stream into sentence candidates with bounded memory; counts garbage bytes."""

    def __init__(self) -> None:
        self._pending = b""
        self.garbage_bytes = 0

    def feed(self, data: bytes) -> list[bytes]:
        """The complete candidates in `data`: sentences (each after its `$`), caller-ID frames (STX first)."""
        buf = self._pending + data if self._pending else data
        # CR LF, LF, CR alone (some radios), or ETX (Kenwood STX ... ETX framing without a line end)
        lines = buf.replace(b"\r", b"\n").replace(b"\x03", b"\n").split(b"\n")
        tail = lines.pop()
        if len(tail) > MAX_PENDING:
            cut = tail.rfind(b"$")
            keep = tail[cut:] if cut >= 0 and len(tail) - cut <= MAX_PENDING else b""
            self.garbage_bytes += len(tail) - len(keep)
            tail = keep
        self._pending = tail
        out: list[bytes] = []
        for line in lines:
            if line[:1] == b"$" and line.find(b"$", 1) < 0:  # the usual case: one whole sentence
                part = line[1:].rstrip(_FRAMING)
                if part:
                    out.append(part)
                continue
            parts = line.split(b"$")
            lead = parts[0]
            if b"\x02" in lead and len(parts) == 1:  # rare: a caller-ID frame ends this line?
                m = _CALLER_ID.search(lead)
                if m is not None:
                    lead = lead[: m.start()]
                    out.append(b"\x02" + m.group(1))
            lead = lead.strip(_FRAMING)
            if lead:
                self.garbage_bytes += len(lead)
            for part in parts[1:]:
                part = part.rstrip(_FRAMING)
                if part:
                    out.append(part)
        return out

    def flush(self) -> list[bytes]:
        """At end of input: the last line, even without its LF (it may be a whole sentence)."""
        tail, self._pending = self._pending, b""
        return self.feed(tail + b"\n") if tail else []


def checksum(payload: bytes) -> int:
    """XOR of all bytes (the NMEA checksum), folded as one big integer: no Python loop per byte."""
    if len(payload) > 128:
        return reduce(xor, payload, 0)
    x = int.from_bytes(payload, "little")
    x ^= x >> 512
    x ^= x >> 256
    x ^= x >> 128
    x ^= x >> 64
    x ^= x >> 32
    x ^= x >> 16
    x ^= x >> 8
    return x & 0xFF

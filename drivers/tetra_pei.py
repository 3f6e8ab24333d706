"""TETRA terminal PEI (ETSI EN 300 392-5 AT commands): registering for LIP, reading +CTSDSR SDS.

A TETRA radio on a serial port (its Peripheral Equipment Interface) delivers the SDS it
receives as an unsolicited result code, the header on one line and the user data, in hex, on
the next:

    +CTSDSR: <AI service>,[<calling party identity>],[<calling party identity type>],
             <called party identity>,<called party identity type>,<length in bits>[,<e2e encryption>]
    0A112853A9FF4D4FFFE810

(the first line is one line; terminals also send the short forms `<AI service>,<called>,<length>`
and `<AI service>,<called>,<called type>,<length>`, without the caller). LIP reports arrive as
AI service 12 (SDS type 4) with protocol identifier 0x0A as the first octet. The driver sends
`REGISTER_LIP` at start: `AT+CTSP=1,3,10` routes SDS with protocol identifier 10 (LIP) to the
PEI (service profile 1, service layer 1 = 3 "SDS type 4", layer 2 = the protocol identifier).

`PeiReader` is fed lines (no I/O) and returns an `Sds` per complete message: the sending
terminal's ISSI (the radio id, decimal without leading zeros; a TSI's last 8 digits), the user
data octets and the stated bit length. Terminals disagree on the hex line: some send more
digits than the length (a padding nibble), some an odd count; the stated length decides, and
fewer digits than it states is an error. Final result codes (`OK`, `ERROR`, `+CME ERROR: n`)
come back as `Result`.
"""

from __future__ import annotations

from dataclasses import dataclass

REGISTER_LIP = ("AT", "AT+CTSP=1,3,10")  # what the driver sends at start (each line ends with CR)
AI_SDS_TYPE4 = 12  # AI service of SDS type 4 (LIP, text, ...)
AI_STATUS = 13  # AI service of a pre-coded status
MAX_ISSI = (1 << 24) - 1
MAX_SDS_BITS = 2047  # the largest SDS type-4 user data (EN 300 392-2 14.8.52)
HEADER = "+CTSDSR:"


class PeiError(ValueError):
    """A line the PEI sent cannot be read as what it claims to be."""


@dataclass(frozen=True, slots=True)
class SdsHeader:
    """The +CTSDSR header line: who sent what to whom, and how many bits follow."""

    ai_service: int
    calling: str | None  # the calling party identity as sent (SSI or TSI digits); None in the short forms
    calling_type: int | None
    called: str
    called_type: int | None
    length_bits: int
    e2e: int | None = None  # end-to-end encryption flag, when sent


@dataclass(frozen=True, slots=True)
class Sds:
    """One received SDS: `radio` is the sender's ISSI ('' when the header names none)."""

    header: SdsHeader
    radio: str
    data: bytes
    bits: int

    @property
    def protocol(self) -> int | None:
        """The protocol identifier (first octet) of SDS type 4 user data."""
        return self.data[0] if self.data and self.header.ai_service == AI_SDS_TYPE4 else None


@dataclass(frozen=True, slots=True)
class Result:
    """A final result code: `OK`, `ERROR`, or `+CME ERROR: <code>` (code None when not numeric)."""

    ok: bool
    code: int | None = None
    line: str = ""


def _int(field: str, what: str) -> int:
    f = field.strip()
    if not f.isdigit() or not f.isascii() or len(f) > 9:
        raise PeiError(f"{what} {field.strip()!r} is not a number")
    return int(f)


def _identity(field: str, what: str) -> str:
    f = field.strip()
    if not f or not f.isascii() or not f.isdigit() or len(f) > 24:
        raise PeiError(f"{what} {f!r} is not an identity")
    return f


def parse_header(line: str) -> SdsHeader:
    """A `+CTSDSR:` line (with or without the trailing CR/LF) read into an `SdsHeader`."""
    s = line.strip()
    if not s.startswith(HEADER):
        raise PeiError(f"not a {HEADER} line: {s[:40]!r}")
    fields = s[len(HEADER) :].split(",")
    calling: str | None = None
    calling_type: int | None = None
    called_type: int | None = None
    e2e: int | None = None
    if len(fields) == 3:
        ai, called, length = fields
    elif len(fields) == 4:
        ai, called, ctype, length = fields
        called_type = _int(ctype, "called party identity type")
    elif len(fields) in (6, 7):
        ai, cg, cgtype, called, ctype, length = fields[:6]
        if cg.strip():
            calling = _identity(cg, "calling party identity")
        if cgtype.strip():
            calling_type = _int(cgtype, "calling party identity type")
        called_type = _int(ctype, "called party identity type")
        if len(fields) == 7 and fields[6].strip():
            e2e = _int(fields[6], "end-to-end encryption")
    else:
        raise PeiError(f"{HEADER} with {len(fields)} fields: {s[:80]!r}")
    bits = _int(length, "length")
    if not 0 < bits <= MAX_SDS_BITS:
        raise PeiError(f"SDS length {bits} bits is outside 1..{MAX_SDS_BITS}")
    return SdsHeader(_int(ai, "AI service"), calling, calling_type, _identity(called, "called party identity"), called_type, bits, e2e)


def issi_of(identity: str) -> str:
    """The ISSI of an SSI or TSI (MCC, MNC, then the 8-digit ISSI) in decimal, without leading zeros."""
    if not identity.isascii() or not identity.isdigit():
        raise PeiError(f"identity {identity!r} is not digits")
    issi = int(identity[-8:])
    if issi > MAX_ISSI:
        raise PeiError(f"ISSI {issi} is above 2^24 - 1")
    return str(issi)


def user_data(line: str, bits: int) -> bytes:
    """The hex user data line as octets, cut to `bits` (the last octet's unused bits zeroed)."""
    h = line.strip()
    if not h or not h.isascii() or any(c not in "0123456789abcdefABCDEF" for c in h):
        raise PeiError(f"user data is not hex: {h[:40]!r}")
    if len(h) * 4 < bits:
        raise PeiError(f"user data has {len(h) * 4} bits, the header states {bits}")
    if len(h) % 2:
        h += "0"
    data = bytes.fromhex(h)[: (bits + 7) // 8]
    spare = -bits % 8
    return data[:-1] + bytes([data[-1] & (0xFF << spare) & 0xFF]) if spare else data


class PeiReader:
    """Turns the terminal's lines into `Sds` messages and `Result`s; other lines give None.

    A header waits for its data line (blank lines in between are skipped); a header followed by
    another unsolicited line is counted in `dropped` and the new line is read on its own.
    """

    def __init__(self) -> None:
        self._pending: SdsHeader | None = None
        self.dropped = 0  # headers without their data line, and data that did not fit its header
        self.errors = 0  # +CTSDSR lines that could not be read

    def feed(self, line: str) -> Sds | Result | None:
        s = line.strip()
        if not s:
            return None
        if self._pending is not None:
            head, self._pending = self._pending, None
            if not s.startswith(("+", "OK", "ERROR")):
                try:
                    data = user_data(s, head.length_bits)
                except PeiError:
                    self.dropped += 1
                    return None
                radio = "" if head.calling is None else issi_of_or_empty(head.calling)
                return Sds(head, radio, data, head.length_bits)
            self.dropped += 1
        if s.startswith(HEADER):
            try:
                self._pending = parse_header(s)
            except PeiError:
                self.errors += 1
            return None
        if s == "OK":
            return Result(True, None, s)
        if s == "ERROR":
            return Result(False, None, s)
        if s.startswith("+CME ERROR:"):
            code = s[len("+CME ERROR:") :].strip()
            return Result(False, int(code) if code.isascii() and code.isdigit() and len(code) < 6 else None, s)
        return None


def issi_of_or_empty(identity: str) -> str:
    """`issi_of`, or '' for an identity that holds no ISSI (too large for 24 bits)."""
    try:
        return issi_of(identity)
    except PeiError:
        return ""

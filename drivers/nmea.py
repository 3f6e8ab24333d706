"""NMEA 0183 decoding without I/O: bytes in, valid fixes out (framing, checksum, epochs, gates).

Pipeline, one instance per device (not thread-safe; the driver's thread owns it):

1. **Framing** (`alkomd.drivers.nmea_framing`): lines on LF, CR or ETX, resync on every `$`,
   garbage counted, bounded memory; Kenwood caller-ID frames (`STX I1 ... ETX`) kept in place.
2. **Checksum.** Strict, as pynmea2's `check=True`: a missing `*hh` is an error. It is computed
   once over the bytes with an integer XOR fold (`checksum`), about twice as fast as pynmea2's
   per-character loop.
3. **Parsing** as pynmea2 defines it: the talker and type split, pynmea2's registry of sentence
   types (any talker: GP, GN, GL, GA, GB, BD, GQ, QZ, ...), and its field split. The hot path
   (`scan`) stops there and does not build a pynmea2 object per sentence (a quarter of the
   decoder's time); `check`, which technicians' views use, returns the real pynmea2 object, and
   tests/test_nmea_decoder.py proves both give the same fields. Proprietary sentences go
   through `pynmea2.parse`. Fields are read by index and converted here, strictly: pynmea2's
   typed accessors swallow conversion errors and turn empty coordinates into 0.0.
4. **Epochs.** Sentences with the same UTC time of day form one epoch (GGA, RMC, GLL, ZDA carry
   the time; GSA, GSV, VTG join the epoch they follow). Like gpsd, the decoder learns which
   sentence ends a receiver's cycle and emits the fix the moment that sentence arrives, instead
   of waiting for the next second; before it has learnt, and whenever the cycle changes, the
   epoch is closed by the next epoch's first sentence or by `flush()`.
5. **Validity gates.** RMC status `A`, GGA quality 1-5, GLL status `A`, GSA fix type >= 2,
   mode indicator `A`/`D`/`F`/`R`/`P` (never `N`; `E` estimated, `M` manual and `S` simulated
   are rejected too), coordinates present and in range, HDOP <= the configured bound, time
   present and not in the future. An epoch that fails a gate is counted as a rejected fix.
6. **Kenwood base radios** (`alkomd.drivers.kenwood`): a relayed report is one fix of its radio
   per transmission (a `$PKNDS` and a `$PKNSH` of the same radio and time are one), and the
   standard sentences that repeat it right after (same time, same place) are the relayed
   radio's, never the base radio's own fix: they are counted (`relay_echoes`) and dropped.
   Caller-ID frames and id-only reports become `RadioHeard` records.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pynmea2

from alkomd.daemon.records import Fix, RadioHeard, RadioStatus
from alkomd.drivers.kenwood import ECHO_WINDOW_S, KenwoodSentence, RelayEcho, caller_id
from alkomd.drivers.nmea_fields import coord as coord
from alkomd.drivers.nmea_fields import date_of as _ddmmyy
from alkomd.drivers.nmea_fields import day_for
from alkomd.drivers.nmea_fields import to_float as _float
from alkomd.drivers.nmea_fields import to_int as _int
from alkomd.drivers.nmea_fields import tod_of as _tod
from alkomd.drivers.nmea_fields import within as _in
from alkomd.drivers.nmea_framing import MAX_PENDING as MAX_PENDING
from alkomd.drivers.nmea_framing import Framer as Framer
from alkomd.drivers.nmea_framing import checksum as checksum

_TIMED = frozenset(("GGA", "RMC", "GLL", "ZDA"))
_GOOD_MODES = frozenset("ADFRP")
_KNOTS_TO_KMH = 1.852
_PAD = [""] * 17  # sentences shorter than the longest field index used are padded with this
_TALKER_TYPES: dict[str, type[pynmea2.TalkerSentence]] = pynmea2.TalkerSentence.sentence_types


class Verdict(enum.StrEnum):
    """What happened to one sentence candidate (for counters and `alkomctl sniff`)."""

    OK = "ok"
    BAD_CHECKSUM = "bad checksum"
    NO_CHECKSUM = "no checksum"
    UNPARSABLE = "unparsable"
    UNKNOWN = "unknown"


class Reject(enum.StrEnum):
    """Why an epoch produced no fix."""

    NO_POSITION = "no position"
    NO_TIME = "no time"
    RMC_VOID = "RMC status V"
    GGA_NO_FIX = "GGA quality 0 or not a real fix"
    GLL_VOID = "GLL status V"
    GSA_NO_FIX = "GSA fix type 1"
    BAD_MODE = "mode indicator N, E, M or S"
    OUT_OF_RANGE = "coordinates out of range"
    HDOP = "HDOP above the configured bound"
    FUTURE = "fix time in the future"
    RELAY_VOID = "relayed report status V"


Decoded = Fix | RadioStatus | RadioHeard  # what a decoder emits: fixes; relayed radios' status codes and keying


@dataclass(frozen=True, slots=True)
class Sentence:
    """One framed sentence candidate and its verdict; `msg` is set when the verdict is OK."""

    raw: bytes
    verdict: Verdict
    msg: Any = None  # a pynmea2 sentence object


def _verify(body: bytes) -> bytes | Verdict:
    """The payload between `$` and `*` of a candidate whose checksum is right, or why not."""
    star = body.rfind(b"*")
    if star < 0 or len(body) != star + 3:
        return Verdict.NO_CHECKSUM if star < 0 or len(body) < star + 3 else Verdict.UNPARSABLE
    try:
        expected = int(body[star + 1 :], 16)
    except ValueError:
        return Verdict.NO_CHECKSUM
    payload = body[:star]
    if checksum(payload) != expected:
        return Verdict.BAD_CHECKSUM
    return payload


def scan(body: bytes) -> tuple[str, list[str]] | Verdict | KenwoodSentence:
    """The hot path: (sentence type, fields) of a verified talker sentence that pynmea2 knows.

    A Kenwood FleetSync/NXDN sentence gives its pynmea2 object (they are rare: a few a second on
    a busy base radio); any other valid proprietary sentence gives ("", []): counted as valid,
    carrying nothing we use.
    The common case (`...*hh` at the end) is checked here; anything else goes through `_verify`
    for the exact verdict.
    """
    star = len(body) - 3
    if star < 0 or body[star] != 42:  # 42 is "*": anything unusual gets its exact verdict
        payload = _verify(body)
        if isinstance(payload, Verdict):
            return payload
    else:
        try:
            expected = int(body[star + 1 :], 16)
        except ValueError:
            return Verdict.NO_CHECKSUM
        payload = body[:star]
        if checksum(payload) != expected:
            return Verdict.BAD_CHECKSUM
    try:
        text = payload.decode("ascii")
    except UnicodeDecodeError:
        return Verdict.UNPARSABLE
    head, _, rest = text.partition(",")
    if len(head) == 5 and head[:1] != "P" and head.isalnum():
        stype = head[2:]
        return (stype, rest.split(",")) if stype in _TALKER_TYPES else Verdict.UNKNOWN
    result = parse(body)
    if isinstance(result, Verdict | KenwoodSentence):
        return result
    return ("", [])


def parse(body: bytes) -> Any:
    """Verify one candidate's checksum and parse it: a pynmea2 sentence object, or a Verdict."""
    payload = _verify(body)
    if isinstance(payload, Verdict):
        return payload
    try:
        text = payload.decode("ascii")
    except UnicodeDecodeError:
        return Verdict.UNPARSABLE
    head, _, rest = text.partition(",")
    if head[:1] == "P":
        try:  # proprietary sentences are rare: let pynmea2 resolve the manufacturer's class
            return pynmea2.parse("$" + body.decode("ascii"), check=True)
        except (pynmea2.ParseError, IndexError):  # UBX/TNL/ASH/VTX index data[1] in __new__
            return Verdict.UNKNOWN
    if len(head) != 5 or not head.isalnum():
        return Verdict.UNPARSABLE
    cls = _TALKER_TYPES.get(head[2:])
    if cls is None:
        return Verdict.UNKNOWN
    return cls(head[:2], head[2:], rest.split(","))


def check(body: bytes) -> Sentence:
    """`parse` with the raw sentence kept, for technicians' views (`alkomctl sniff`)."""
    result = parse(body)
    if isinstance(result, Verdict):
        return Sentence(b"$" + body, result)
    return Sentence(b"$" + body, Verdict.OK, result)


class _Epoch:
    __slots__ = (
        "alt",
        "course",
        "date",
        "emitted",
        "fix_type",
        "hdop",
        "key",
        "last_type",
        "lat",
        "lon",
        "pos_rank",
        "rejects",
        "sats",
        "speed",
        "tod",
    )

    def __init__(self, key: str) -> None:
        self.key = key
        self.tod: time | None = _tod(key)
        self.date: date | None = None
        self.last_type = ""
        self.emitted = False
        self.lat: float | None = None
        self.lon: float | None = None
        self.pos_rank = 9  # GGA 0 beats RMC 1 beats GLL 2
        self.alt: float | None = None
        self.speed: float | None = None
        self.course: float | None = None
        self.hdop: float | None = None
        self.sats: int | None = None
        self.fix_type: int | None = None
        self.rejects: list[Reject] = []

    def reject(self, why: Reject) -> None:
        if not self.rejects:  # the first reason is the one reported; keep memory bounded
            self.rejects.append(why)


class Decoder:
    """Bytes -> `Fix` records for one device; counts what it sees (read the attributes)."""

    def __init__(
        self,
        device: str,
        max_hdop: float = 20.0,
        on_sentence: Callable[[Sentence], None] | None = None,
    ) -> None:
        self.device = device
        self.max_hdop = max_hdop
        self.on_sentence = on_sentence
        self.framer = Framer()
        self.sentences = 0
        self.checksum_errors = 0
        self.parse_errors = 0
        self.unknown = 0
        self.fixes = 0
        self.caller_ids = 0  # Kenwood caller-ID frames (a radio keyed up or unkeyed)
        self.relay_echoes = 0  # standard sentences that repeated a relayed report (not the base's own)
        self.relay_duplicates = 0  # relayed reports of a transmission already reported
        self.rejected: dict[Reject, int] = {}
        self.last_reject: Reject | None = None
        self._epoch: _Epoch | None = None
        self._pending: list[tuple[str, list[str]]] = []  # untimed sentences after their epoch closed
        self._ender = ""  # learnt: the sentence type that ends this receiver's cycle
        self._date: date | None = None
        self._last_when: datetime | None = None
        self._received = datetime.now(UTC)
        self._mono = 0.0
        self._echo: RelayEcho | None = None  # the last relayed report, while its repeats may follow
        self._last_relay: tuple[str, time | None] | None = None  # (radio, time) of the last relayed position
        self._keyed: str | None = None  # the radio whose key-up frame was the last caller ID

    @property
    def garbage_bytes(self) -> int:
        return self.framer.garbage_bytes

    @property
    def rejected_fixes(self) -> int:
        return sum(self.rejected.values())

    def feed(self, data: bytes, received: datetime, mono: float) -> list[Decoded]:
        """Decode a chunk; `received`/`mono` stamp fixes completed by this chunk."""
        self._received, self._mono = received, mono
        out: list[Decoded] = []
        if self.on_sentence is not None:
            for body in self.framer.feed(data):
                self._checked(body, out)
            return out
        message = self._message
        valid = 0
        for body in self.framer.feed(data):
            r = scan(body)
            if r.__class__ is tuple:
                valid += 1
                if r[0]:
                    message(r[0], r[1], out)
            elif isinstance(r, KenwoodSentence):
                self._relayed(r, out)
            elif r is Verdict.NO_CHECKSUM and body[:1] == b"\x02" and self._caller(body, out):
                continue  # a caller-ID frame (the framer hands them on starting with STX)
            else:
                self._count_error(r)  # type: ignore[arg-type]
        self.sentences += valid
        return out

    def close_epoch(self) -> list[Decoded]:
        """Close the open epoch now (the line went quiet: no more sentences of it will come)."""
        out: list[Decoded] = []
        if self._epoch is not None and not self._epoch.emitted:
            self._close(self._epoch, out)
        return out

    def flush(self) -> list[Decoded]:
        """End of input: decode a last line that has no LF, then close the open epoch."""
        out: list[Decoded] = []
        for body in self.framer.flush():
            self._checked(body, out)
        return out + self.close_epoch()

    def _checked(self, body: bytes, out: list[Decoded]) -> None:
        """The slow path, with the real pynmea2 object handed to `on_sentence`."""
        if body[:1] == b"\x02" and self._caller(body, out):
            return
        s = check(body)
        if s.verdict is Verdict.OK and isinstance(s.msg, KenwoodSentence):
            if not self._relayed(s.msg, out):
                s = Sentence(s.raw, Verdict.UNPARSABLE)
        elif s.verdict is Verdict.OK:
            self.sentences += 1
            stype = getattr(s.msg, "sentence_type", "")
            if stype and stype in _TALKER_TYPES and isinstance(s.msg, pynmea2.TalkerSentence):
                self._message(stype, list(s.msg.data), out)
        else:
            self._count_error(s.verdict)
        if self.on_sentence is not None:
            self.on_sentence(s)

    def _relayed(self, msg: KenwoodSentence, out: list[Decoded]) -> bool:
        """A base radio relayed another radio's report: its fix (gated) and its status code.

        False (counted as a parse error) when the radio's identity is unreadable.
        """
        rel = msg.relayed()
        if rel is None:
            self.parse_errors += 1
            return False
        self.sentences += 1
        if rel.has_position and rel.tod is not None and rel.lat is not None and rel.lon is not None:
            self._echo = RelayEcho(rel.radio, rel.tod, rel.lat, rel.lon, self._mono)
        if rel.has_position and self._last_relay == (rel.radio, rel.tod) and rel.tod is not None:
            self.relay_duplicates += 1  # the same transmission again ($PKNDS, then $PKNSH): one fix
        elif rel.has_position:
            self._last_relay = (rel.radio, rel.tod)
            reject: Reject | None = None
            when: datetime | None = None
            if not rel.valid:
                reject = Reject.RELAY_VOID
            elif rel.lat is None or rel.lon is None or (rel.lat == 0.0 and rel.lon == 0.0):
                reject = Reject.NO_POSITION  # radios without a fix often send zeros with status A
            elif not (-90.0 <= rel.lat <= 90.0 and -180.0 <= rel.lon <= 180.0):
                reject = Reject.OUT_OF_RANGE
            elif rel.tod is None:
                reject = Reject.NO_TIME
            else:
                when = datetime.combine(rel.day, rel.tod) if rel.day is not None else day_for(rel.tod, self._received)
                if when - self._received > timedelta(days=1):
                    reject = Reject.FUTURE
            if reject is not None or when is None or rel.lat is None or rel.lon is None:
                self._reject_fix(reject or Reject.NO_POSITION)
            else:
                self.fixes += 1
                out.append(Fix(self.device, when, rel.lat, rel.lon, 2, self._received, self._mono,
                               speed_kmh=rel.speed_kmh, course=rel.course, radio=rel.radio))
        if rel.status is not None:
            out.append(RadioStatus(self.device, rel.radio, rel.status, self._received, self._mono))
        elif not rel.has_position:  # an id alone ($PKNID without a status): the radio was heard
            out.append(RadioHeard(self.device, rel.radio, self._received, self._mono))
        return True

    def _caller(self, body: bytes, out: list[Decoded]) -> bool:
        """A caller-ID frame (STX first): one `RadioHeard` per transmission; False if it is not one."""
        cid = caller_id(body[1:])
        if cid is None:
            return False
        self.caller_ids += 1
        radio, keyed = cid
        if keyed or self._keyed != radio:  # its key-up was heard already: the unkey adds nothing
            out.append(RadioHeard(self.device, radio, self._received, self._mono))
        self._keyed = radio if keyed else None
        return True

    def _reject_fix(self, why: Reject) -> None:
        self.rejected[why] = self.rejected.get(why, 0) + 1
        self.last_reject = why

    def _count_error(self, v: Verdict) -> None:
        if v is Verdict.BAD_CHECKSUM or v is Verdict.NO_CHECKSUM:
            self.checksum_errors += 1
        elif v is Verdict.UNKNOWN:
            self.sentences += 1
            self.unknown += 1
        else:
            self.parse_errors += 1

    def _message(self, stype: str, d: list[str], out: list[Decoded]) -> None:
        if len(d) < 17:
            d = d + _PAD[len(d) :]
        if self._echo is not None and stype != "ZDA" and stype in _TIMED:
            if self._echo.repeated_by(stype, d, self._mono):
                self.relay_echoes += 1  # the relayed radio's report again, not the base radio's fix
                return
            if self._mono - self._echo.mono > ECHO_WINDOW_S or _tod(d[4] if stype == "GLL" else d[0]) != self._echo.tod:
                self._echo = None  # the base radio's own sentences again: the repeats are over
        if stype in _TIMED:
            key = d[4] if stype == "GLL" else d[0]
            ep = self._epoch
            if ep is None or key != ep.key:
                if ep is not None:
                    if not ep.emitted:
                        self._close(ep, out)
                    self._ender = ep.last_type
                ep = self._epoch = _Epoch(key)
                for ptype, pfields in self._pending:
                    self._merge(ep, ptype, pfields)
                self._pending.clear()
            elif ep.emitted:
                ep.last_type = stype  # still this epoch: the next one learns the true cycle end
                return  # a late sentence of an epoch already emitted
            self._merge(ep, stype, d)
        else:
            ep = self._epoch
            if ep is None or ep.emitted:
                if (stype == "GSA" or stype == "VTG") and len(self._pending) < 8:
                    self._pending.append((stype, d))
                return
            self._merge(ep, stype, d)
        if stype == self._ender and not ep.emitted and (stype != "GSV" or d[0] == d[1]):
            self._close(ep, out)

    def _merge(self, ep: _Epoch, stype: str, d: list[str]) -> None:
        """Fold one sentence's fields (padded to at least 17) into its epoch."""
        ep.last_type = stype
        if stype == "GSV":
            return  # satellites in view: nothing a fix needs (its last part may end the cycle)
        if stype == "GGA":
            self._position(ep, 0, d[1], d[2], d[3], d[4])
            q = _int(d[5])
            if q is None or not 1 <= q <= 5:
                ep.reject(Reject.GGA_NO_FIX)
            sats = _int(d[6])
            ep.sats = sats if sats is not None and 0 <= sats <= 99 else None
            hdop = _in(_float(d[7]), 0.0, 99.99)
            if hdop is not None:
                ep.hdop = hdop
            ep.alt = _in(_float(d[8]), -1000.0, 20000.0)
        elif stype == "RMC":
            self._position(ep, 1, d[2], d[3], d[4], d[5])
            if d[1] != "A":
                ep.reject(Reject.RMC_VOID)
            mode = d[11]
            if mode and mode not in _GOOD_MODES:
                ep.reject(Reject.BAD_MODE)
            knots = _in(_float(d[6]), 0.0, 1000.0)
            if knots is not None:
                ep.speed = knots * _KNOTS_TO_KMH
            ep.course = _in(_float(d[7]), 0.0, 360.0)
            ep.date = _ddmmyy(d[8]) or ep.date
        elif stype == "GLL":
            self._position(ep, 2, d[0], d[1], d[2], d[3])
            if d[5] != "A":
                ep.reject(Reject.GLL_VOID)
            mode = d[6]
            if mode and mode not in _GOOD_MODES:
                ep.reject(Reject.BAD_MODE)
        elif stype == "GSA":
            ep.fix_type = _int(d[1])
            if ep.fix_type == 1:
                ep.reject(Reject.GSA_NO_FIX)
            if ep.hdop is None:
                ep.hdop = _in(_float(d[15]), 0.0, 99.99)
        elif stype == "VTG":
            if ep.speed is None:
                ep.speed = _in(_float(d[6]), 0.0, 1852.0)
            if ep.course is None:
                ep.course = _in(_float(d[0]), 0.0, 360.0)
            mode = d[8]
            if mode and mode not in _GOOD_MODES:
                ep.reject(Reject.BAD_MODE)
        elif stype == "ZDA":
            day, month, year = _int(d[1]), _int(d[2]), _int(d[3])
            if day and month and year:
                try:
                    ep.date = date(year, month, day)
                except ValueError:
                    pass

    @staticmethod
    def _position(ep: _Epoch, rank: int, lat_s: str, ns: str, lon_s: str, ew: str) -> None:
        if rank > ep.pos_rank:
            return
        lat, lon = coord(lat_s, ns), coord(lon_s, ew)
        if lat is None or lon is None:
            if lat_s or lon_s:
                ep.reject(Reject.OUT_OF_RANGE)
            return
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            ep.reject(Reject.OUT_OF_RANGE)
            return
        ep.lat, ep.lon, ep.pos_rank = lat, lon, rank

    def _close(self, ep: _Epoch, out: list[Decoded]) -> None:
        ep.emitted = True
        if ep.date is not None:
            self._date = ep.date
        reject = ep.rejects[0] if ep.rejects else None
        if reject is None and (ep.lat is None or ep.lon is None):
            reject = Reject.NO_POSITION
        if reject is None and ep.tod is None:
            reject = Reject.NO_TIME
        if reject is None and ep.hdop is not None and ep.hdop > self.max_hdop:
            reject = Reject.HDOP
        when: datetime | None = None
        if reject is None and ep.tod is not None:
            when = self._when(ep.date, ep.tod)
            if when - self._received > timedelta(days=1):
                reject = Reject.FUTURE
        if reject is not None or when is None or ep.lat is None or ep.lon is None:
            self._reject_fix(reject or Reject.NO_POSITION)
            return
        if ep.fix_type in (2, 3):
            mode = ep.fix_type
        else:
            mode = 3 if ep.alt is not None else 2
        self.fixes += 1
        out.append(
            Fix(
                device=self.device,
                time=when,
                lat=ep.lat,
                lon=ep.lon,
                mode=mode,
                received=self._received,
                received_mono=self._mono,
                alt=ep.alt if mode == 3 else None,
                speed_kmh=ep.speed,
                course=ep.course,
                hdop=ep.hdop,
                sats=ep.sats,
            )
        )

    def _when(self, day: date | None, tod: time) -> datetime:
        """The fix's UTC datetime; without a date in this epoch, the last one seen, else today."""
        if day is None and self._date is not None:
            day = self._date
            if self._last_when is not None and self._last_when - datetime.combine(day, tod) > timedelta(hours=12):
                day = self._date = day + timedelta(days=1)  # midnight passed since the date was seen
        if day is None:
            return day_for(tod, self._received)
        self._last_when = datetime.combine(day, tod)
        return self._last_when

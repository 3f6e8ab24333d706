"""Every fix a receiver reported in a capture, each with the verdict of the daemon's gates (`alkomctl decode`).

The daemon's decoder (`drivers.nmea.Decoder`) emits only the fixes that pass its gates and
counts the rest. A technician decoding a capture wants what the receiver said: every epoch
that has a position and a time is a row, with `ok` or the gate that rejects it (`void`,
`no-fix`, `mode`, `range`, `hdop`, `future`). `JudgingDecoder` is the daemon's decoder with
these changes, and no other:

- its own HDOP bound is off; the daemon's (`--max-hdop`) only gives the verdict `hdop`;
- the receiver's date (RMC, ZDA) dates each fix; a capture's `# Date:` header (or `--date`)
  only dates fixes whose sentences carry none (GGA-only radios), as before;
- `future` is judged against this machine's clock, not the header (a header is a person's note
  and may be wrong; with it as the reading time every fix of a later RMC date was "in the
  future").
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

from alkomd.daemon.records import Fix
from alkomd.drivers.nmea import Decoded, Decoder, Reject, _Epoch
from alkomd.drivers.nmea_fields import day_for

OK = "ok"
VERDICTS: dict[Reject, str] = {
    Reject.RMC_VOID: "void",
    Reject.GLL_VOID: "void",
    Reject.RELAY_VOID: "void",
    Reject.GGA_NO_FIX: "no-fix",
    Reject.GSA_NO_FIX: "no-fix",
    Reject.BAD_MODE: "mode",
    Reject.OUT_OF_RANGE: "range",
    Reject.HDOP: "hdop",
    Reject.FUTURE: "future",
}  # NO_POSITION and NO_TIME: the receiver reported no fix, so there is no row


class JudgingDecoder(Decoder):
    """The daemon's decoder that also emits the fixes its gates reject; `verdict(fix)` says which gate.

    `day` dates fixes without a date of their own (the capture's header or --date; None: today).
    """

    def __init__(self, max_hdop: float, day: date | None = None, now: datetime | None = None) -> None:
        super().__init__("capture", max_hdop=float("inf"))
        self.bound = max_hdop
        self.now = now or datetime.now(UTC)
        self.noon = datetime.combine(day, time(12), UTC) if day is not None else None
        self.verdicts: Counter[str] = Counter()
        self.without_fix = 0  # epochs the receiver reported without a position or a time (no row)
        self._judged: dict[int, str] = {}

    def verdict(self, fix: Fix) -> str:
        """The verdict of a fix this decoder emitted (relayed radios' fixes: only accepted ones are emitted)."""
        return self._judged.pop(id(fix), OK)

    def feed_capture(self, data: bytes) -> list[Decoded]:
        """`feed` with the capture's reference: its header's noon (dates fixes without a date), else now."""
        return self.feed(data, self.noon or self.now, 0.0)

    def _close(self, ep: _Epoch, out: list[Decoded]) -> None:
        mark = len(out)
        super()._close(ep, out)
        if len(out) > mark:
            fix = out[-1]
            assert isinstance(fix, Fix)
            self._judge(fix, "hdop" if fix.hdop is not None and fix.hdop > self.bound else OK)
            return
        why = self.last_reject
        verdict = VERDICTS.get(why) if why is not None else None
        if verdict is None or ep.lat is None or ep.lon is None or ep.tod is None:
            self.without_fix += 1  # no position or no time: nothing the receiver reported as a fix
            return
        when = self._date_of(ep.date, ep.tod)
        if why is Reject.FUTURE and when - self.now <= timedelta(days=1):
            verdict = OK  # in the future of the header only: the receiver's date stands
            self.rejected[Reject.FUTURE] -= 1
            self.fixes += 1
        if ep.fix_type in (2, 3):
            mode = ep.fix_type
        else:
            mode = 3 if ep.alt is not None else 2
        fix = Fix(self.device, when, ep.lat, ep.lon, mode, self._received, self._mono, alt=ep.alt if mode == 3 else None,
                  speed_kmh=ep.speed, course=ep.course, hdop=ep.hdop, sats=ep.sats)
        out.append(fix)
        self._judge(fix, "hdop" if verdict == OK and fix.hdop is not None and fix.hdop > self.bound else verdict)

    def _judge(self, fix: Fix, verdict: str) -> None:
        self._judged[id(fix)] = verdict
        self.verdicts[verdict] += 1

    def _date_of(self, day: date | None, tod: time) -> datetime:
        """A rejected fix's time, as the decoder dates an accepted one (without changing what it learnt)."""
        day = day or self._date
        return datetime.combine(day, tod) if day is not None else day_for(tod, self._received)

"""What `alkomctl sniff udp://...` makes of radio datagrams (MOTOTRBO LRRP and ARS, Hytera LP): a verdict, a summary, records.

No I/O: `DatagramSniffer.feed` takes one datagram and its source and returns what it was (`Seen`)
and the fixes and emergency status it gives through the drivers' gates; the radios heard are kept.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime

from alkomd.daemon.records import Fix, RadioStatus
from alkomd.drivers import hytera, lrrp, lrrp_ars
from alkomd.drivers.location_gate import Position, to_records
from alkomd.drivers.udp_radio import radio_of_address

FORMATS = ("lrrp", "hytera")
DEFAULT_PORTS = {lrrp.PORT: "lrrp", lrrp_ars.PORT: "lrrp", hytera.PORT: "hytera"}
KEEP = 500
OK, BAD_CHECKSUM, UNPARSABLE = "ok", "bad checksum", "unparsable"


@dataclass(frozen=True, slots=True)
class Seen:
    """One datagram and what it was."""

    received: datetime
    source: str  # address:port
    raw: bytes
    verdict: str  # ok, bad checksum, unparsable
    kind: str  # "ARS registration", "triggered report", ... or the decoder's complaint
    radio: str | None = None


@dataclass
class RadioHeard:
    radio: str
    messages: int = 0
    fixes: int = 0
    last: Fix | None = None
    emergency: bool = False
    seen: datetime | None = None


def _name(kind: str) -> str:
    return kind.lower().replace("_", " ")


class DatagramSniffer:
    """Datagrams in, `Seen` items, fixes and emergency statuses out; keeps what the view shows. No I/O."""

    def __init__(self, fmt: str, radio_network: int | None = None, keep: int = KEEP) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        self.format = fmt
        self.radio_network = radio_network if radio_network is not None else (lrrp.CAI_NETWORK if fmt == "lrrp" else 10)
        self.items: deque[Seen] = deque(maxlen=keep)
        self.radios: dict[str, RadioHeard] = {}
        self.datagrams = self.valid = self.bytes = self.checksum_errors = self.parse_errors = self.fixes = 0

    @property
    def errors(self) -> int:
        return self.checksum_errors + self.parse_errors

    def feed(self, data: bytes, host: str, port: int, received: datetime, mono: float) -> list[Seen | Fix | RadioStatus]:
        self.datagrams += 1
        self.bytes += len(data)
        source = f"{host}:{port}"
        if self.format == "hytera":
            seen, pos, emergency = self._hytera(data, source, received)
        else:
            seen, pos, emergency = self._lrrp(data, host, source, received)
        self.items.append(seen)
        if seen.verdict == OK:
            self.valid += 1
        elif seen.verdict == BAD_CHECKSUM:
            self.checksum_errors += 1
        else:
            self.parse_errors += 1
        out: list[Seen | Fix | RadioStatus] = [seen]
        if seen.radio is None:
            return out
        r = self.radios.setdefault(seen.radio, RadioHeard(seen.radio))
        r.messages += 1
        r.seen = received
        m = to_records(pos, "sniff", seen.radio, received, mono, emergency=emergency)
        if m.fix is not None:
            self.fixes += 1
            r.fixes += 1
            r.last = m.fix
            out.append(m.fix)
        if m.status is not None:
            r.emergency = True
            out.append(m.status)
        return out

    def _lrrp(self, data: bytes, host: str, source: str, received: datetime) -> tuple[Seen, Position | None, bool]:
        radio = radio_of_address(host, self.radio_network)
        if data[:1] == b"\x00":  # ARS: a 2-byte length first
            try:
                ev = lrrp_ars.decode(data)
            except lrrp_ars.ArsError as exc:
                return Seen(received, source, data, UNPARSABLE, f"not ARS: {exc}"), None, False
            kind = f"ARS {ev.kind.value}" + (" (refresh)" if ev.refresh else "")
            return Seen(received, source, data, OK, kind, ev.radio_id or radio), None, False
        try:
            msg = lrrp.decode(data)
        except lrrp.LrrpError as exc:
            return Seen(received, source, data, UNPARSABLE, f"not LRRP: {exc}"), None, False
        kind = _name(msg.kind.name)
        if isinstance(msg, lrrp.LocationRequest):
            every = f" every {msg.interval_s} s" if msg.interval_s else ""
            return Seen(received, source, data, OK, kind + every, radio), None, False
        if msg.result not in (None, lrrp.Result.SUCCESS):
            kind += f", result 0x{msg.result:02x}"
        return Seen(received, source, data, OK, kind, radio), msg.position(received), False

    def _hytera(self, data: bytes, source: str, received: datetime) -> tuple[Seen, Position | None, bool]:
        try:
            msg = hytera.decode(data)
        except hytera.HyteraError as exc:
            verdict = BAD_CHECKSUM if str(exc) == "bad checksum" else UNPARSABLE
            return Seen(received, source, data, verdict, f"not Hytera LP: {exc}"), None, False
        kind = _name(msg.opcode.name)
        if msg.result not in (None, hytera.Result.OK):
            kind += f", result {msg.result}"
        return Seen(received, source, data, OK, kind, msg.radio), msg.position(), msg.emergency

"""`alkomctl sniff`: a live view of what a serial port says, line by line, judged by the daemon's decoder.

The port is opened the way the daemon opens it (`open_port`, with its flock), so a port the
daemon holds is refused with a message naming it rather than silently shared. Every line read
is shown with the verdict of each sentence in it (ok, bad checksum, unknown, garbage, ...),
next to the rates, the fix status, satellites, HDOP and the last fix; for a base radio that
relays many units, the units heard (`Fix.radio`) with their last fix. `--json` prints one
object per sentence, garbage line, fix and status code instead, for scripts.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

import serial
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from alkomd.daemon.ctl.decode import fix_dict
from alkomd.daemon.ctl.serial_port import PortError, close_quietly, open_for_tool, printable, stop_on_signals
from alkomd.daemon.exit_codes import EX_OK, EX_PROBLEM, EX_UNAVAILABLE
from alkomd.daemon.records import Fix, RadioStatus, utc_iso, utc_now
from alkomd.drivers.nmea import MAX_PENDING, Decoder, Sentence, Verdict
from alkomd.drivers.nmea_serial import QUIET_CLOSE_S, port_hint

NO_DATA_HINT_S = 5.0  # no valid sentence this long: suggest `alkomctl baud`
RATE_WINDOW_S = 5.0  # sentences per second are counted over this window
FIX_FRESH_S = 5.0  # a fix older than this is shown as stale
KEEP_LINES = 500
REFRESH_S = 0.25
GARBAGE = "garbage"
_STRIP = b"\r\x02\x03 \t"
_GGA_QUALITY = {0: "invalid", 1: "GPS", 2: "DGPS", 3: "PPS", 4: "RTK", 5: "float RTK", 6: "estimated", 7: "manual", 8: "simulated"}
VERDICT_STYLE = {
    Verdict.OK.value: "green",
    Verdict.BAD_CHECKSUM.value: "bold red",
    Verdict.NO_CHECKSUM.value: "red",
    Verdict.UNPARSABLE.value: "red",
    Verdict.UNKNOWN.value: "yellow",
    GARBAGE: "magenta",
}
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


# --- what a person sees --------------------------------------------------------------------------


@dataclass(frozen=True)
class SniffSetup:
    port: str
    baud: int
    framing: str
    raw: bool
    seconds: float | None


def hint(sn: Sniffer, setup: SniffSetup, elapsed: float, final: bool = False) -> str:
    """The one thing to try next, or ''."""
    if sn.valid == 0 and (elapsed >= NO_DATA_HINT_S or final):
        if sn.bytes == 0:
            return (
                f"no byte at all in {elapsed:.0f} s: is the radio on and its GPS/data output enabled? "
                f"Check the cable (TX to RX) and `alkomctl ports {setup.port}`"
            )
        return f"no valid sentence at {setup.baud} baud in {elapsed:.0f} s: try alkomctl baud {setup.port}"
    if sn.valid and sn.errors >= 5 and sn.errors > sn.valid:
        return f"more corrupt than valid sentences: wrong baud rate or a noisy line? try alkomctl baud {setup.port}"
    return ""


def _fmt(v: float | int | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def render(sn: Sniffer, setup: SniffSetup, elapsed: float, mono: float, height: int) -> Group:
    d = sn.decoder
    head = Text()
    head.append(setup.port, style="bold")
    head.append(f"  {setup.baud} {setup.framing}\n")
    head.append(f"alkomctl sniff, running {elapsed:.0f} s  ")
    head.append("Ctrl-C stops" + (f" (or after {setup.seconds:g} s)" if setup.seconds else ""), style="dim")

    stats = Table.grid(padding=(0, 3))
    for _ in range(4):
        stats.add_column()
    fix_text, fix_style = sn.fix_status(mono)
    sats = sn.sky.sats_used if sn.sky.sats_used is not None else (sn.last_fix.sats if sn.last_fix else None)
    in_view = sum(sn.sky.in_view.values()) if sn.sky.in_view else None
    hdop = sn.sky.hdop if sn.sky.hdop is not None else (sn.last_fix.hdop if sn.last_fix else None)
    quality = _GGA_QUALITY.get(sn.sky.quality, str(sn.sky.quality)) if sn.sky.quality is not None else "-"
    stats.add_row(
        Text(f"sentences {d.sentences}"), Text(f"{sn.rate(mono):.1f}/s"),
        Text(f"bad checksum {d.checksum_errors} ({100 * sn.checksum_error_rate():.1f}%)",
             style="red" if d.checksum_errors else ""),
        Text(f"unknown {d.unknown}  unparsable {d.parse_errors}"),
    )  # fmt: skip
    stats.add_row(
        Text(f"lines {sn.line_count}"), Text(f"bytes {sn.bytes}"),
        Text(f"garbage {d.garbage_bytes} bytes in {sn.garbage_lines} lines", style="magenta" if d.garbage_bytes else ""),
        Text(f"fixes {d.fixes}  rejected epochs {d.rejected_fixes}"),
    )  # fmt: skip
    stats.add_row(
        Text(f"fix: {fix_text}", style=fix_style), Text(f"sats used {_fmt(sats, 'd')} in view {_fmt(in_view, 'd')}"),
        Text(f"HDOP {_fmt(hdop, '.2f')}  quality {quality}"), Text(""),
    )  # fmt: skip
    f = sn.last_fix
    if f is not None:
        age = f"{mono - sn.last_fix_mono:.1f} s ago" if sn.last_fix_mono is not None else ""
        last = Text(
            f"last fix {utc_iso(f.time)}  {f.lat:.6f} {f.lon:.6f}  {f.mode}D  {_fmt(f.speed_kmh, '.1f')} km/h"
            f"  course {_fmt(f.course, '.0f')}  alt {_fmt(f.alt, '.1f')} m  ({age})"
        )
    else:
        last = Text("last fix -", style="dim")
    parts: list[Any] = [head, stats, last]

    used = 9
    if sn.units:
        units = Table(title="Units heard (base radio)", expand=True, title_justify="left")
        for col in ("radio", "fixes", "last fix", "lat", "lon", "km/h", "status"):
            units.add_column(col, justify="left" if col in ("radio", "last fix") else "right")
        for u in sorted(sn.units.values(), key=lambda u: u.radio):
            lf = u.last
            units.add_row(
                u.radio, str(u.fixes), utc_iso(lf.time) if lf else "-", f"{lf.lat:.6f}" if lf else "-",
                f"{lf.lon:.6f}" if lf else "-", _fmt(lf.speed_kmh if lf else None, ".1f"), _fmt(u.status, "d"),
            )  # fmt: skip
        parts.append(units)
        used += len(sn.units) + 5
    text = hint(sn, setup, elapsed)
    if text:
        used += 1
    show = max(3, height - used - 4)
    lines = Table(title="Recent lines" + (" (hex)" if setup.raw else ""), expand=True, title_justify="left", box=None)
    lines.add_column("time", no_wrap=True, width=12)
    lines.add_column("verdict", no_wrap=True, width=12)
    lines.add_column("sentence", no_wrap=True, width=8)
    lines.add_column("raw", no_wrap=True, overflow="ellipsis", ratio=1)
    for h in list(sn.lines)[-show:]:
        v = h.verdict
        lines.add_row(
            h.received.strftime("%H:%M:%S.%f")[:12], Text(v, style=VERDICT_STYLE.get(v, "")), h.kinds[:8],
            h.raw.hex(" ") if setup.raw else printable(h.raw),
        )  # fmt: skip
    parts.append(lines)
    if text:
        parts.append(Text("hint: " + text, style="bold yellow"))
    return Group(*parts)


def plain_line(item: Heard | Fix | RadioStatus, raw: bool) -> str:
    """The view for a pipe or a log: one line per line read, fix and status code."""
    if isinstance(item, Heard):
        body = item.raw.hex(" ") if raw else printable(item.raw)
        return f"{item.received.strftime('%H:%M:%S.%f')[:12]}  {item.verdict:<12} {body}"
    if isinstance(item, Fix):
        radio = f"  radio {item.radio}" if item.radio else ""
        return (
            f"fix {utc_iso(item.time)}  {item.lat:.6f} {item.lon:.6f}  {item.mode}D  hdop {_fmt(item.hdop, '.2f')}"
            f"  sats {_fmt(item.sats, 'd')}{radio}"
        )
    return f"radio {item.radio} status {item.code}"


def json_objects(item: Heard | Fix | RadioStatus, raw: bool) -> Iterator[dict[str, object]]:
    """`--json`: one object per sentence (or garbage line), fix and status code."""
    if isinstance(item, Heard):
        when = utc_iso(item.received)
        for s in item.sentences:
            o: dict[str, object] = {"type": "sentence", "received": when, "verdict": s.verdict.value,
                                    "sentence": sentence_name(s.raw), "raw": printable(s.raw)}  # fmt: skip
            if raw:
                o["hex"] = s.raw.hex()
            yield o
        if item.garbage:
            o = {"type": GARBAGE, "received": when, "bytes": item.garbage, "raw": printable(item.raw)}
            if raw:
                o["hex"] = item.raw.hex()
            yield o
    elif isinstance(item, Fix):
        yield {"type": "fix", "received": utc_iso(item.received), **fix_dict(item), "radio": item.radio}
    else:
        yield {"type": "status", "received": utc_iso(item.received), "radio": item.radio, "status": item.code}


def summary(sn: Sniffer, elapsed: float) -> dict[str, object]:
    d = sn.decoder
    return {
        "type": "summary", "seconds": round(elapsed, 1), "bytes": sn.bytes, "lines": sn.line_count,
        "sentences": d.sentences, "unknown": d.unknown, "checksum_errors": d.checksum_errors,
        "parse_errors": d.parse_errors, "garbage_bytes": d.garbage_bytes, "fixes": d.fixes,
        "rejected_epochs": d.rejected_fixes, "units": sorted(sn.units),
    }  # fmt: skip


def summary_line(sn: Sniffer, elapsed: float) -> str:
    d = sn.decoder
    units = f", {len(sn.units)} units heard" if sn.units else ""
    return (
        f"{elapsed:.0f} s: {sn.bytes} bytes, {sn.line_count} lines, {d.sentences} valid sentences ({d.unknown} of unknown types), "
        f"{d.checksum_errors} bad checksums, {d.parse_errors} unparsable, {d.garbage_bytes} garbage bytes, {d.fixes} fixes{units}"
    )


# --- running it ----------------------------------------------------------------------------------


def run(
    port: str,
    baud: int = 9600,
    framing: str = "8N1",
    raw: bool = False,
    seconds: float | None = None,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """`alkomctl sniff`: 0 valid sentences seen, 1 none, 66/69/75/77 the port could not be read."""
    setup = SniffSetup(port, baud, framing, raw, seconds)
    try:
        ser = open_for_tool(port, baud, framing)
    except PortError as exc:
        print(f"alkomctl sniff: {exc}", file=err)
        return exc.code
    sn = Sniffer()
    stop = threading.Event()
    started = time.monotonic()
    lost = ""
    live_view = not as_json and out.isatty()
    console = Console(file=out, highlight=False, markup=False)

    def emit(items: list[Heard | Fix | RadioStatus]) -> None:
        if as_json:
            for item in items:
                for o in json_objects(item, raw):
                    out.write(json.dumps(o, separators=(",", ":")) + "\n")
            out.flush()
        elif not live_view:
            for item in items:
                out.write(plain_line(item, raw) + "\n")
            out.flush()

    hinted = False

    def step(update: Callable[[], None] | None) -> None:
        nonlocal lost, hinted
        next_draw = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if seconds is not None and now - started >= seconds:
                break
            try:
                chunk = ser.read(ser.in_waiting or 1)
            except (serial.SerialException, OSError) as exc:
                lost = port_hint(exc)
                break
            now = time.monotonic()
            emit(sn.feed(chunk, utc_now(), now) if chunk else sn.idle(now))
            if update is not None and now >= next_draw:
                update()
                next_draw = now + REFRESH_S
            if not live_view and not as_json and not hinted:
                text = hint(sn, setup, now - started)
                if text:
                    hinted = True
                    print(f"hint: {text}", file=err, flush=True)

    with stop_on_signals(stop):
        try:
            if live_view:
                with Live(console=console, refresh_per_second=1 / REFRESH_S, transient=False, redirect_stderr=False) as live:

                    def update() -> None:
                        now = time.monotonic()
                        live.update(render(sn, setup, now - started, now, console.size.height))

                    update()
                    step(update)
                    emit(sn.finish(time.monotonic()))
                    update()
            else:
                step(None)
                emit(sn.finish(time.monotonic()))
        finally:
            close_quietly(ser)
    elapsed = time.monotonic() - started
    if as_json:
        out.write(json.dumps(summary(sn, elapsed), separators=(",", ":")) + "\n")
        out.flush()
    print(f"alkomctl sniff: {summary_line(sn, elapsed)}", file=err)
    if lost:
        print(f"alkomctl sniff: lost {port}: {lost}", file=err)
        return EX_UNAVAILABLE
    text = hint(sn, setup, elapsed, final=True)
    if text and (live_view or as_json or not hinted):
        print(f"hint: {text}", file=err)
    return EX_OK if sn.valid else EX_PROBLEM

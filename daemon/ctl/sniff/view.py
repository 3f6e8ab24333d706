"""What `alkomctl sniff` shows: the live table on a terminal, one plain line per item on a pipe, or JSON objects."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from alkomd.daemon.ctl.decoding import fix_dict
from alkomd.daemon.ctl.serial_port import printable
from alkomd.daemon.ctl.sniff.sniffer import GARBAGE, Heard, Sniffer, sentence_name
from alkomd.daemon.records import Fix, RadioStatus, utc_iso
from alkomd.drivers.nmea import Verdict

NO_DATA_HINT_S = 5.0  # no valid sentence this long: suggest `alkomctl baud`
_GGA_QUALITY = {0: "invalid", 1: "GPS", 2: "DGPS", 3: "PPS", 4: "RTK", 5: "float RTK", 6: "estimated", 7: "manual", 8: "simulated"}
VERDICT_STYLE = {
    Verdict.OK.value: "green",
    Verdict.BAD_CHECKSUM.value: "bold red",
    Verdict.NO_CHECKSUM.value: "red",
    Verdict.UNPARSABLE.value: "red",
    Verdict.UNKNOWN.value: "yellow",
    GARBAGE: "magenta",
}


@dataclass(frozen=True)
class SniffSetup:
    """What the sniff was asked for: the port, its line settings, hex or text, and how long."""

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
    )
    stats.add_row(
        Text(f"lines {sn.line_count}"), Text(f"bytes {sn.bytes}"),
        Text(f"garbage {d.garbage_bytes} bytes in {sn.garbage_lines} lines", style="magenta" if d.garbage_bytes else ""),
        Text(f"fixes {d.fixes}  rejected epochs {d.rejected_fixes}"),
    )
    stats.add_row(
        Text(f"fix: {fix_text}", style=fix_style), Text(f"sats used {_fmt(sats, 'd')} in view {_fmt(in_view, 'd')}"),
        Text(f"HDOP {_fmt(hdop, '.2f')}  quality {quality}"), Text(""),
    )
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
            )
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
        )
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
                                    "sentence": sentence_name(s.raw), "raw": printable(s.raw)}
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
    }


def summary_line(sn: Sniffer, elapsed: float) -> str:
    d = sn.decoder
    units = f", {len(sn.units)} units heard" if sn.units else ""
    return (
        f"{elapsed:.0f} s: {sn.bytes} bytes, {sn.line_count} lines, {d.sentences} valid sentences ({d.unknown} of unknown types), "
        f"{d.checksum_errors} bad checksums, {d.parse_errors} unparsable, {d.garbage_bytes} garbage bytes, {d.fixes} fixes{units}"
    )

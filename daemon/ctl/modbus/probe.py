"""`alkomctl modbus probe`: read every known register map and say which modem this looks like, and whether its GPS works."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from rich.table import Table
from rich.text import Text

from alkomd.daemon.ctl.modbus.device import Device, console, failure, fmt, jsonable, open_bus, report_failure
from alkomd.daemon.exit_codes import EX_OK, EX_PROBLEM, EX_USAGE
from alkomd.daemon.schema import ConfigError
from alkomd.drivers.modbus_link import ModbusError, PollResult, exception_text, read_blocks
from alkomd.drivers.modbus_map import (
    BUILTIN_MAPS,
    LAT,
    LON,
    RegisterMap,
    decode_field,
    detect_word_order,
    fix_problem,
    gps_reading,
    load_map_file,
    modem_health,
    plan_reads,
)


@dataclass(frozen=True)
class FieldReport:
    name: str
    address: int
    count: int
    type: str
    meaning: str
    registers: tuple[int, ...] | None
    value: object


@dataclass(frozen=True)
class MapReport:
    """What one register map found on the device."""

    name: str
    title: str
    looks_like: bool
    verdict: str
    word_order: str | None
    word_order_reason: str
    fields: tuple[FieldReport, ...]
    exceptions: tuple[tuple[int, int], ...]  # (address, code)


def probe_cmd(device: Device, map_files: Sequence[Path], as_json: bool, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    maps = list(BUILTIN_MAPS.values())
    for path in map_files:
        try:
            maps.append(load_map_file(path))
        except ConfigError as exc:
            print(f"alkomctl modbus: map file {exc}", file=err)
            return EX_USAGE
    bus = open_bus(device, err)
    if bus is None:
        return EX_USAGE
    extra = {"url": device.url, "unit": device.unit}
    reports: list[MapReport] = []
    try:
        for m in maps:
            with bus.session(threading.Event(), device.timeout_s) as s:
                result = read_blocks(s, plan_reads(m.fields, m.max_gap), device.unit, m.registers, device.retries)
            if result.no_reply is not None and not result.replies:
                raise result.no_reply
            reports.append(_judge(m, result))
    except ModbusError as exc:
        return report_failure(failure(exc, bus, device.unit), as_json, out, err, extra)
    found = any(r.looks_like for r in reports)
    if as_json:
        doc = {**extra, "ok": found, "maps": [_report_json(r) for r in reports]}
        print(json.dumps(doc), file=out)
    else:
        _print_probe(device, reports, out)
    return EX_OK if found else EX_PROBLEM


def _judge(m: RegisterMap, result: PollResult) -> MapReport:
    """Decode what a map read and say what the device looks like."""
    regs = result.registers
    guess = detect_word_order(m, regs)
    order = guess.order
    fields = []
    for f in m.fields:
        raw = tuple(regs[a] for a in range(f.address, f.end)) if all(a in regs for a in range(f.address, f.end)) else None
        fields.append(FieldReport(f.name, f.address, f.count, f.type, f.meaning, raw, decode_field(f, regs, order)))
    exceptions = tuple((e.address, e.code) for e in result.exceptions)
    gps_addrs = {a for f in m.fields if f.meaning in (LAT, LON) for a in range(f.address, f.end)}
    gps_read = bool(gps_addrs) and gps_addrs <= set(regs)
    health = modem_health(m, regs)
    label = m.label
    gps_exc = next((e for e in result.exceptions if any(e.address <= a < e.address + e.count for a in gps_addrs)), None)
    if not regs:
        codes = ", ".join(sorted({str(c) for _, c in exceptions})) or "none"
        verdict, looks = f"not a {label}: every read got an exception (codes {codes})", False
    elif gps_read and order is not None and not fix_problem(gps_reading(m, regs, order)):
        g = gps_reading(m, regs, order)
        where = "" if guess.in_indonesia else " (outside Indonesia!)"
        verdict = f"this looks like a {label} with GPS: fix at {g.lat:.6f}, {g.lon:.6f}{where}, word order {order}"
        looks = True
    elif gps_read and health is not None:
        verdict = f"this looks like a {label}, but its GPS has no fix: {guess.reason} (antenna, sky view, GPS enabled?)"
        looks = True
    elif gps_read:
        verdict = f"GPS registers answer but there is no position ({guess.reason}), and no modem health: not a {label}?"
        looks = False
    elif health is not None:
        why = str(gps_exc) if gps_exc else "GPS registers not read"
        verdict = f"this looks like a {label} without GPS ({why}): a model without GPS (RUT240?), or the wrong map"
        looks = True
    else:
        verdict, looks = f"not a {label}: its registers do not decode to plausible values", False
    return MapReport(m.name, label, looks, verdict, order, guess.reason, tuple(fields), exceptions)


def _report_json(r: MapReport) -> dict[str, Any]:
    return {
        "map": r.name, "title": r.title, "looks_like": r.looks_like, "verdict": r.verdict, "word_order": r.word_order,
        "word_order_reason": r.word_order_reason,
        "fields": [
            {"name": f.name, "address": f.address, "count": f.count, "type": f.type, "meaning": f.meaning or None,
             "registers": list(f.registers) if f.registers is not None else None, "value": jsonable(f.value)}
            for f in r.fields
        ],
        "exceptions": [{"address": a, "code": c, "text": exception_text(c)} for a, c in r.exceptions],
    }


def _print_probe(device: Device, reports: Sequence[MapReport], out: TextIO) -> None:
    con = console(out)
    for r in reports:
        con.print(Text(r.name, style="bold") + Text(f" map on unit {device.unit} at {device.url}"))
        t = Table(show_edge=False, pad_edge=False)
        for col, just in (("field", "left"), ("address", "right"), ("type", "left"), ("registers", "left"), ("value", "right"),
                          ("meaning", "left")):
            t.add_column(col, justify=just)  # type: ignore[arg-type]
        for f in r.fields:
            raw = " ".join(f"{x:04X}" for x in f.registers[:4]) + (" ..." if len(f.registers) > 4 else "") if f.registers else "-"
            value = "-" if f.value is None else fmt(f.value)
            t.add_row(f.name, str(f.address), f.type, raw, value, f.meaning)
        con.print(t)
        for a, c in r.exceptions:
            con.print(f"  {exception_text(c)} at register {a}")
        con.print(f"word order: {r.word_order or 'unknown'} ({r.word_order_reason})")
        style = "green" if r.looks_like else "yellow"
        con.print(r.verdict, style=style)

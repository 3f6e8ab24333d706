"""`alkomctl modbus read|probe`: read registers from a Modbus device, or find out which modem it is and whether its GPS works.

Both use the driver's own transport (drivers/modbus_link.py) and register maps
(drivers/modbus_map.py), so what the tool says is what the daemon will see. One connection per
command, closed at the end: safe while the daemon polls the same modem.

Exit codes: 0 all well; 1 the device answered with an exception, or is not a known modem; 2 bad
usage; 69 the device cannot be reached or does not answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from alkomd.daemon.exit_codes import EX_OK, EX_PROBLEM, EX_UNAVAILABLE, EX_USAGE
from alkomd.drivers.modbus_map import TYPES, WORD_ORDERS
from alkomd.drivers.nmea_serial import FRAMINGS

EXCEPTION_HINTS = {
    1: "the device does not support this function here (holding vs input registers? try --input)",
    2: "no register there: check the address (0-based: a manual's register number minus 1) and the count",
    3: "the device refused the count or the value: read fewer registers",
    4: "the device failed to read it (for a gateway or a router answering any id: is --unit right?)",
    6: "the device is busy: try again",
    10: "the gateway cannot route to that unit: check --unit",
    11: "the gateway got no answer from that unit: check --unit and the wiring behind the gateway",
}
EPILOG = """\
URL is tcp://host[:port] for Modbus TCP (port 502 if omitted), or a serial port or pyserial URL
for Modbus RTU (/dev/serial/by-id/..., rfc2217://host:port). Addresses are 0-based: a manual's
register number minus 1 (Teltonika's latitude: register 144, address 143).

examples:
  alkomctl modbus probe tcp://192.168.1.1            which modem is this, and does its GPS work?
  alkomctl modbus read tcp://192.168.1.1 143 4 --type float32 --word-order little
  alkomctl modbus read /dev/ttyUSB0 --unit 2 --baud 19200 0 10
  alkomctl modbus probe tcp://10.8.0.12 --json       for scripts

exit codes: 0 ok; 1 exception reply or not a known modem; 2 usage; 69 unreachable or no reply
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `modbus` subcommand and its actions (cheap: imports no Modbus library)."""
    m = sub.add_parser(
        "modbus",
        help="read a Modbus modem's registers, or probe which modem it is",
        description="Talk to a Modbus TCP or RTU device with the driver's own code: read registers, or\n"
        "probe for a known modem (decoded values, word order, whether its GPS has a fix).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    msub = m.add_subparsers(dest="modbus_command", metavar="ACTION", required=True)
    r = msub.add_parser(
        "read",
        help="read registers and decode them",
        description="Read COUNT registers from ADDR (0-based) and print them raw and decoded.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("url", metavar="URL")
    r.add_argument("address", type=_register_address, metavar="ADDR", help="first register, 0-based")
    r.add_argument("count", type=_register_count, nargs="?", default=None, metavar="COUNT",
                   help="registers to read, 1-125 (default: one value of --type)")  # fmt: skip
    r.add_argument("--type", choices=tuple(TYPES), default="uint16", help="decode as this type (default uint16)")
    r.add_argument("--word-order", choices=WORD_ORDERS, default="big",
                   help="32-bit types: big=ABCD (default), little=CDAB, big-byteswap=BADC, little-byteswap=DCBA")  # fmt: skip
    r.add_argument("--input", action="store_true", help="input registers (function 4) instead of holding registers (3)")
    _common(r)
    p = msub.add_parser(
        "probe",
        help="which modem is this? reads the known register maps",
        description="Read every known register map (and --map FILE) and say what the device looks like:\n"
        "decoded values, the word order of its GPS floats, and whether it has a GPS fix.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url", metavar="URL")
    p.add_argument("--map", type=Path, action="append", default=[], metavar="FILE", help="also try this map file")
    _common(p)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--unit", type=int, default=1, choices=range(256), metavar="N", help="unit id, 0-255 (default 1)")
    p.add_argument("--timeout", type=float, default=2.0, metavar="S", help="seconds to wait for each reply (default 2)")
    p.add_argument("--retries", type=int, default=1, choices=range(6), metavar="N", help="retries after a timeout (default 1)")
    p.add_argument("--baud", type=int, default=9600, help="RTU: baud rate (default 9600)")
    p.add_argument("--framing", choices=FRAMINGS, default="8N1", help="RTU: data bits, parity, stop bits (default 8N1)")
    p.add_argument("--json", action="store_true", help="JSON output")


def _register_address(text: str) -> int:
    value = int(text, 0)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535, got {text}")
    return value


def _register_count(text: str) -> int:
    value = int(text, 0)
    if not 1 <= value <= 125:
        raise argparse.ArgumentTypeError(f"must be 1..125 (one request), got {text}")
    return value


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    if args.modbus_command == "read":
        return read_cmd(args, out, err)
    return probe_cmd(args, out, err)


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    code: int
    error: str
    hint: str = ""


def _open(args: argparse.Namespace, err: TextIO) -> Any:
    """A Bus for the URL, or None (the reason printed) for a bad one."""
    from alkomd.drivers.modbus_link import Bus, parse_url

    try:
        return Bus(parse_url(args.url), args.baud, args.framing, args.timeout, keep_open=False)
    except ValueError as exc:
        print(f"alkomctl modbus: bad URL: {exc}", file=err)
        return None


def _failure(exc: BaseException, bus: Any, unit: int) -> _Failure:
    from alkomd.drivers.modbus_link import ExceptionReply, LinkDown, NoReply

    if isinstance(exc, ExceptionReply):
        return _Failure(EX_PROBLEM, str(exc), EXCEPTION_HINTS.get(exc.code, ""))
    if isinstance(exc, NoReply):
        hint = (
            f"is unit {unit} right? (Teltonika: 1, see Services > Modbus)"
            if bus.target.kind == "tcp"
            else f"is unit {unit} right? check baud rate and framing, wiring (A/B swapped?) and termination"
        )
        return _Failure(EX_UNAVAILABLE, str(exc), hint)
    if isinstance(exc, LinkDown):
        return _Failure(EX_UNAVAILABLE, str(exc))
    return _Failure(EX_PROBLEM, str(exc))


def _report_failure(f: _Failure, as_json: bool, out: TextIO, err: TextIO, extra: dict[str, Any]) -> int:
    if as_json:
        print(json.dumps({**extra, "ok": False, "error": f.error, "hint": f.hint or None}), file=out)
    else:
        print(f"alkomctl modbus: {f.error}", file=err)
        if f.hint:
            print(f"  hint: {f.hint}", file=err)
    return f.code


def read_cmd(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    from alkomd.drivers.modbus_link import ModbusError
    from alkomd.drivers.modbus_map import decode_registers

    size = TYPES[args.type]
    count = args.count if args.count is not None else max(size, 1)
    if size and count % size:
        print(f"alkomctl modbus: a {args.type} spans {size} registers: COUNT must be a multiple of {size}", file=err)
        return EX_USAGE
    if args.address + count > 65536:
        print("alkomctl modbus: ADDR + COUNT goes past register 65535", file=err)
        return EX_USAGE
    bus = _open(args, err)
    if bus is None:
        return EX_USAGE
    extra = {"url": args.url, "unit": args.unit, "address": args.address, "count": count}
    try:
        with bus.session(threading.Event(), args.timeout) as s:
            regs = s.read(args.address, count, args.unit, "input" if args.input else "holding", args.retries)
    except ModbusError as exc:
        return _report_failure(_failure(exc, bus, args.unit), args.json, out, err, extra)
    values: list[tuple[int, object]] = []
    if size == 0:
        values.append((args.address, decode_registers(regs, "ascii")))
    else:
        for i in range(0, count, size):
            values.append((args.address + i, decode_registers(regs[i : i + size], args.type, args.word_order)))
    if args.json:
        doc = {**extra, "ok": True, "registers": regs, "type": args.type, "word_order": args.word_order,
               "values": [{"address": a, "value": _jsonable(v)} for a, v in values]}  # fmt: skip
        print(json.dumps(doc), file=out)
        return EX_OK
    _print_read(args, regs, values, out)
    return EX_OK


def _jsonable(v: object) -> object:
    if isinstance(v, float) and v != v:
        return None  # NaN is not JSON
    if isinstance(v, float) and v in (float("inf"), float("-inf")):
        return None
    return v


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.7g}"
    if isinstance(v, str):
        return repr(v)
    return str(v)


def _console(out: TextIO) -> Any:
    from rich.console import Console

    return Console(file=out, highlight=False, soft_wrap=False, markup=False, width=None if out.isatty() else 120)


def _print_read(args: argparse.Namespace, regs: Sequence[int], values: Sequence[tuple[int, object]], out: TextIO) -> None:
    from rich.table import Table

    con = _console(out)
    kind = "input" if args.input else "holding"
    con.print(f"unit {args.unit} at {args.url}: {len(regs)} {kind} register(s) from address {args.address}")
    t = Table(show_edge=False, pad_edge=False)
    t.add_column("address", justify="right")
    t.add_column("hex", justify="right")
    t.add_column("uint16", justify="right")
    t.add_column("int16", justify="right")
    t.add_column("ascii")
    for i, r in enumerate(regs):
        chars = "".join(chr(b) if 32 <= b < 127 else "." for b in (r >> 8, r & 0xFF))
        t.add_row(str(args.address + i), f"0x{r:04X}", str(r), str(r - 65536 if r >= 32768 else r), chars)
    con.print(t)
    if args.type not in ("uint16",):
        order = f", word order {args.word_order}" if TYPES[args.type] == 2 else ""
        con.print(f"as {args.type}{order}:")
        for a, v in values:
            con.print(f"  {a}: {_fmt(v)}")


# ---------------------------------------------------------------------------------------------


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


def probe_cmd(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    from alkomd.daemon.schema import ConfigError
    from alkomd.drivers.modbus_link import ModbusError
    from alkomd.drivers.modbus_map import BUILTIN_MAPS, load_map_file

    maps = list(BUILTIN_MAPS.values())
    for path in args.map:
        try:
            maps.append(load_map_file(path))
        except ConfigError as exc:
            print(f"alkomctl modbus: map file {exc}", file=err)
            return EX_USAGE
    bus = _open(args, err)
    if bus is None:
        return EX_USAGE
    extra = {"url": args.url, "unit": args.unit}
    reports: list[MapReport] = []
    try:
        for m in maps:
            with bus.session(threading.Event(), args.timeout) as s:
                result = _read_map(s, m, args)
            if result.no_reply is not None and not result.replies:
                raise result.no_reply
            reports.append(_judge(m, result))
    except ModbusError as exc:
        return _report_failure(_failure(exc, bus, args.unit), args.json, out, err, extra)
    found = any(r.looks_like for r in reports)
    if args.json:
        doc = {**extra, "ok": found, "maps": [_report_json(r) for r in reports]}
        print(json.dumps(doc), file=out)
    else:
        _print_probe(args, reports, out)
    return EX_OK if found else EX_PROBLEM


def _read_map(s: Any, m: Any, args: argparse.Namespace) -> Any:
    from alkomd.drivers.modbus_link import read_blocks
    from alkomd.drivers.modbus_map import plan_reads

    return read_blocks(s, plan_reads(m.fields, m.max_gap), args.unit, m.registers, args.retries)


def _judge(m: Any, result: Any) -> MapReport:
    """Decode what a map read and say what the device looks like."""
    from alkomd.drivers.modbus_map import (
        LAT,
        LON,
        decode_field,
        detect_word_order,
        fix_problem,
        gps_reading,
        modem_health,
    )

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


def _exc_text(code: int) -> str:
    from alkomd.drivers.modbus_link import exception_text

    return exception_text(code)


def _report_json(r: MapReport) -> dict[str, Any]:
    return {
        "map": r.name, "title": r.title, "looks_like": r.looks_like, "verdict": r.verdict, "word_order": r.word_order,
        "word_order_reason": r.word_order_reason,
        "fields": [
            {"name": f.name, "address": f.address, "count": f.count, "type": f.type, "meaning": f.meaning or None,
             "registers": list(f.registers) if f.registers is not None else None, "value": _jsonable(f.value)}
            for f in r.fields
        ],
        "exceptions": [{"address": a, "code": c, "text": _exc_text(c)} for a, c in r.exceptions],
    }  # fmt: skip


def _print_probe(args: argparse.Namespace, reports: Sequence[MapReport], out: TextIO) -> None:
    from rich.table import Table
    from rich.text import Text

    con = _console(out)
    for r in reports:
        con.print(Text(r.name, style="bold") + Text(f" map on unit {args.unit} at {args.url}"))
        t = Table(show_edge=False, pad_edge=False)
        for col, just in (("field", "left"), ("address", "right"), ("type", "left"), ("registers", "left"), ("value", "right"),
                          ("meaning", "left")):  # fmt: skip
            t.add_column(col, justify=just)  # type: ignore[arg-type]
        for f in r.fields:
            raw = " ".join(f"{x:04X}" for x in f.registers[:4]) + (" ..." if len(f.registers) > 4 else "") if f.registers else "-"
            value = "-" if f.value is None else _fmt(f.value)
            t.add_row(f.name, str(f.address), f.type, raw, value, f.meaning)
        con.print(t)
        for a, c in r.exceptions:
            con.print(f"  {_exc_text(c)} at register {a}")
        con.print(f"word order: {r.word_order or 'unknown'} ({r.word_order_reason})")
        style = "green" if r.looks_like else "yellow"
        con.print(r.verdict, style=style)

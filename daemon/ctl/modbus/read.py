"""`alkomctl modbus read`: read registers and print them raw and decoded."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from rich.table import Table

from alkomd.daemon.ctl.modbus.device import Device, console, failure, fmt, jsonable, open_bus, report_failure
from alkomd.daemon.exit_codes import EX_OK, EX_USAGE
from alkomd.drivers.modbus_link import ModbusError
from alkomd.drivers.modbus_map import TYPES, decode_registers


@dataclass(frozen=True)
class ReadRequest:
    """Which registers, and how to decode them."""

    address: int
    count: int | None  # None: one value of `type`
    type: str
    word_order: str
    input: bool  # input registers (function 4), else holding registers (3)


def read_cmd(device: Device, req: ReadRequest, as_json: bool, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    size = TYPES[req.type]
    count = req.count if req.count is not None else max(size, 1)
    if size and count % size:
        print(f"alkomctl modbus: a {req.type} spans {size} registers: COUNT must be a multiple of {size}", file=err)
        return EX_USAGE
    if req.address + count > 65536:
        print("alkomctl modbus: ADDR + COUNT goes past register 65535", file=err)
        return EX_USAGE
    bus = open_bus(device, err)
    if bus is None:
        return EX_USAGE
    extra = {"url": device.url, "unit": device.unit, "address": req.address, "count": count}
    try:
        with bus.session(threading.Event(), device.timeout_s) as s:
            regs = s.read(req.address, count, device.unit, "input" if req.input else "holding", device.retries)
    except ModbusError as exc:
        return report_failure(failure(exc, bus, device.unit), as_json, out, err, extra)
    values: list[tuple[int, object]] = []
    if size == 0:
        values.append((req.address, decode_registers(regs, "ascii")))
    else:
        for i in range(0, count, size):
            values.append((req.address + i, decode_registers(regs[i : i + size], req.type, req.word_order)))
    if as_json:
        doc = {
            **extra,
            "ok": True,
            "registers": regs,
            "type": req.type,
            "word_order": req.word_order,
            "values": [{"address": a, "value": jsonable(v)} for a, v in values],
        }
        print(json.dumps(doc), file=out)
        return EX_OK
    _print_read(device, req, regs, values, out)
    return EX_OK


def _print_read(device: Device, req: ReadRequest, regs: Sequence[int], values: Sequence[tuple[int, object]], out: TextIO) -> None:
    con = console(out)
    kind = "input" if req.input else "holding"
    con.print(f"unit {device.unit} at {device.url}: {len(regs)} {kind} register(s) from address {req.address}")
    t = Table(show_edge=False, pad_edge=False)
    t.add_column("address", justify="right")
    t.add_column("hex", justify="right")
    t.add_column("uint16", justify="right")
    t.add_column("int16", justify="right")
    t.add_column("ascii")
    for i, r in enumerate(regs):
        chars = "".join(chr(b) if 32 <= b < 127 else "." for b in (r >> 8, r & 0xFF))
        t.add_row(str(req.address + i), f"0x{r:04X}", str(r), str(r - 65536 if r >= 32768 else r), chars)
    con.print(t)
    if req.type not in ("uint16",):
        order = f", word order {req.word_order}" if TYPES[req.type] == 2 else ""
        con.print(f"as {req.type}{order}:")
        for a, v in values:
            con.print(f"  {a}: {fmt(v)}")

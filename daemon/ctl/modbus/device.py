"""What `modbus read` and `modbus probe` share: the device to reach, the driver's connection to it, its failures in plain words."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console

from alkomd.daemon.exit_codes import EX_PROBLEM, EX_UNAVAILABLE
from alkomd.drivers.modbus_link import Bus, ExceptionReply, LinkDown, NoReply, parse_url

EXCEPTION_HINTS = {
    1: "the device does not support this function here (holding vs input registers? try --input)",
    2: "no register there: check the address (0-based: a manual's register number minus 1) and the count",
    3: "the device refused the count or the value: read fewer registers",
    4: "the device failed to read it (for a gateway or a router answering any id: is --unit right?)",
    6: "the device is busy: try again",
    10: "the gateway cannot route to that unit: check --unit",
    11: "the gateway got no answer from that unit: check --unit and the wiring behind the gateway",
}


@dataclass(frozen=True)
class Device:
    """Where the device is and how to talk to it (--unit, --timeout, --retries; --baud and --framing for RTU)."""

    url: str
    unit: int
    timeout_s: float
    retries: int
    baud: int
    framing: str


@dataclass(frozen=True)
class Failure:
    """Why a request failed, for people: the error, a hint, and the exit code."""

    code: int
    error: str
    hint: str = ""


def open_bus(device: Device, err: TextIO) -> Bus | None:
    """A Bus for the URL, or None (the reason printed) for a bad one."""
    try:
        return Bus(parse_url(device.url), device.baud, device.framing, device.timeout_s, keep_open=False)
    except ValueError as exc:
        print(f"alkomctl modbus: bad URL: {exc}", file=err)
        return None


def failure(exc: BaseException, bus: Bus, unit: int) -> Failure:
    if isinstance(exc, ExceptionReply):
        return Failure(EX_PROBLEM, str(exc), EXCEPTION_HINTS.get(exc.code, ""))
    if isinstance(exc, NoReply):
        hint = (
            f"is unit {unit} right? (Teltonika: 1, see Services > Modbus)"
            if bus.target.kind == "tcp"
            else f"is unit {unit} right? check baud rate and framing, wiring (A/B swapped?) and termination"
        )
        return Failure(EX_UNAVAILABLE, str(exc), hint)
    if isinstance(exc, LinkDown):
        return Failure(EX_UNAVAILABLE, str(exc))
    return Failure(EX_PROBLEM, str(exc))


def report_failure(f: Failure, as_json: bool, out: TextIO, err: TextIO, extra: dict[str, Any]) -> int:
    if as_json:
        print(json.dumps({**extra, "ok": False, "error": f.error, "hint": f.hint or None}), file=out)
    else:
        print(f"alkomctl modbus: {f.error}", file=err)
        if f.hint:
            print(f"  hint: {f.hint}", file=err)
    return f.code


def jsonable(v: object) -> object:
    if isinstance(v, float) and v != v:
        return None  # NaN is not JSON
    if isinstance(v, float) and v in (float("inf"), float("-inf")):
        return None
    return v


def fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.7g}"
    if isinstance(v, str):
        return repr(v)
    return str(v)


def console(out: TextIO) -> Console:
    return Console(file=out, highlight=False, soft_wrap=False, markup=False, width=None if out.isatty() else 120)

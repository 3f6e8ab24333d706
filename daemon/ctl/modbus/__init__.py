"""`alkomctl modbus read|probe`: read registers from a Modbus device, or find out which modem it is and whether its GPS works.

Both use the driver's own transport (drivers/modbus_link.py) and register maps
(drivers/modbus_map.py), so what the tool says is what the daemon will see. One connection per
command, closed at the end: safe while the daemon polls the same modem.

Exit codes: 0 all well; 1 the device answered with an exception, or is not a known modem; 2 bad
usage; 69 the device cannot be reached or does not answer.

The parts: `read`, `probe`, and `device` (the connection and its failures, which both share).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alkomd.daemon.ctl.common import FRAMINGS, RAW, Subparsers

# The value types and word orders of alkomd.drivers.modbus_map (TYPES, WORD_ORDERS), written out so
# that --help does not import the driver (tests/test_ctl.py checks that they agree).
TYPES = ("float32", "int32", "uint32", "uint16", "int16", "ascii")
WORD_ORDERS = ("big", "little", "big-byteswap", "little-byteswap")
ACTIONS = ("read", "probe")
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


def add_parser(sub: Subparsers) -> None:
    m = sub.add_parser(
        "modbus",
        help="read a Modbus modem's registers, or probe which modem it is",
        description="Talk to a Modbus TCP or RTU device with the driver's own code: read registers, or\n"
        "probe for a known modem (decoded values, word order, whether its GPS has a fix).",
        epilog=EPILOG,
        formatter_class=RAW,
    )
    msub = m.add_subparsers(dest="modbus_command", metavar="ACTION", required=True)
    r = msub.add_parser(
        "read",
        help="read registers and decode them",
        description="Read COUNT registers from ADDR (0-based) and print them raw and decoded.",
        epilog=EPILOG,
        formatter_class=RAW,
    )
    r.add_argument("url", metavar="URL")
    r.add_argument("address", type=_register_address, metavar="ADDR", help="first register, 0-based")
    r.add_argument(
        "count",
        type=_register_count,
        nargs="?",
        default=None,
        metavar="COUNT",
        help="registers to read, 1-125 (default: one value of --type)",
    )
    r.add_argument("--type", choices=TYPES, default="uint16", help="decode as this type (default uint16)")
    r.add_argument(
        "--word-order",
        choices=WORD_ORDERS,
        default="big",
        help="32-bit types: big=ABCD (default), little=CDAB, big-byteswap=BADC, little-byteswap=DCBA",
    )
    r.add_argument("--input", action="store_true", help="input registers (function 4) instead of holding registers (3)")
    _common(r)
    p = msub.add_parser(
        "probe",
        help="which modem is this? reads the known register maps",
        description="Read every known register map (and --map FILE) and say what the device looks like:\n"
        "decoded values, the word order of its GPS floats, and whether it has a GPS fix.",
        epilog=EPILOG,
        formatter_class=RAW,
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


def issue_order(argv: list[str]) -> list[str]:
    """`modbus URL [--unit N] read ADDR ...` (the order the toolbox was specified in) as `modbus read URL ...`."""
    if len(argv) >= 3 and argv[0] == "modbus" and argv[1] not in ACTIONS and not argv[1].startswith("-"):
        rest = argv[2:]
        for action in ACTIONS:
            if action in rest:
                i = rest.index(action)
                return ["modbus", action, argv[1], *rest[:i], *rest[i + 1 :]]
    return argv


def run(args: argparse.Namespace) -> int:
    from alkomd.daemon.ctl.modbus.device import Device

    device = Device(args.url, args.unit, args.timeout, args.retries, args.baud, args.framing)
    if args.modbus_command == "read":
        from alkomd.daemon.ctl.modbus.read import ReadRequest, read_cmd

        return read_cmd(device, ReadRequest(args.address, args.count, args.type, args.word_order, args.input), args.json)
    from alkomd.daemon.ctl.modbus.probe import probe_cmd

    return probe_cmd(device, args.map, args.json)

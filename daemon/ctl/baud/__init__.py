"""`alkomctl baud`: find a port's baud rate and framing (gpsd's hunt; the part that listens is `hunt`)."""

from __future__ import annotations

import argparse

from alkomd.daemon.ctl.common import RAW, Subparsers, epilog, wrap


def add_parser(sub: Subparsers) -> None:
    bd = sub.add_parser(
        "baud",
        help="find a port's baud rate and framing (gpsd's hunt)",
        formatter_class=RAW,
        description=wrap(
            "Listen to the port at each baud rate from 1200 to 115200 (in gpsd's order: 4800 first, then up, then the "
            "radio rates 2400 and 1200), in 8N1 and then 7N2, each until two sentences with a valid checksum arrive or "
            "a few seconds pass; report the setting that gives NMEA with the evidence (valid and invalid sentences per "
            "setting, a sample sentence). The port is opened exclusively, as the daemon does."
        ),
        epilog=epilog(
            "0 found, 1 no setting gives NMEA, 2 usage (an unknown framing), 66 no such port, 69 port failed, 75 port "
            "busy, 77 permission denied",
            "alkomctl baud /dev/serial/by-id/usb-Prolific_Technology_Inc._USB-Serial_Controller-if00-port0",
            "alkomctl baud /dev/ttyUSB0 --rates 9600,4800 --dwell 10     a radio that reports every few seconds",
            "alkomctl baud /dev/ttyUSB0 --framings 8N1 --all --json      every setting's evidence, for scripts",
        ),
    )
    bd.add_argument("port", metavar="PORT", help="a device path or pyserial URL")
    bd.add_argument("--rates", type=_int_list, default=None, metavar="N,N,...", help="rates to try, in order")
    bd.add_argument(
        "--framings",
        type=lambda v: v.split(","),
        default=None,
        metavar="8N1,7N2",
        help="framings to try, in order (default 8N1,7N2)",
    )
    bd.add_argument("--dwell", type=float, default=None, metavar="S", help="seconds per setting (default 3)")
    bd.add_argument("--all", action="store_true", help="try every setting even after one gives NMEA")
    bd.add_argument("--json", action="store_true", help="JSON output")


def _int_list(value: str) -> list[int]:
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {value!r}") from None
    if not out or any(v < 50 or v > 4_000_000 for v in out):
        raise argparse.ArgumentTypeError(f"rates must be between 50 and 4000000: {value!r}")
    return out


def run(args: argparse.Namespace) -> int:
    from alkomd.daemon.ctl.baud.hunt import DWELL_S, FRAMINGS, RATES, find_baud

    return find_baud(args.port, args.rates or RATES, args.framings or FRAMINGS, args.dwell or DWELL_S, args.all, args.json)

"""`alkomctl capture` and `alkomctl replay`: record a port's raw bytes into a capture file, and play one back.

The parts: `file` (the capture format: header, `#t=` marks, when each line is sent), `record`
(capture) and `replay`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alkomd.daemon.ctl.common import FRAMINGS, RAW, Subparsers, epilog, line_args, wrap


def add_parser(sub: Subparsers) -> None:
    cp = sub.add_parser(
        "capture",
        help="record a port's raw bytes into a capture file (decode and replay read it)",
        formatter_class=RAW,
        description=wrap(
            "Record what a port says for SECONDS into FILE: a metadata header (device, place, date, baud, notes, "
            "alkomctl version) in the tests/captures format, then the bytes exactly as read, with '#t=' lines giving "
            "the arrival time of each burst so `alkomctl replay` keeps the pace. `alkomctl decode FILE` reads it; a "
            "capture with its expected output becomes a regression test. The port is opened exclusively, as the "
            "daemon does: stop the daemon first for a port it reads."
        ),
        epilog=epilog(
            "0 captured valid sentences, 1 none, 66 no such port, 69 port lost, 73 FILE exists (--force) or cannot be "
            "created, 75 port busy, 77 permission denied",
            "alkomctl capture /dev/ttyUSB0 60 r2-12.nmea --device 'R2-12 Kenwood NX-3220 GPS' --place 'Jl. Ahmad Yani, Limboto'",
            "alkomctl capture /dev/ttyUSB0 600 base.nmea --baud 4800 --notes 'base radio, 5 units on air'",
            "alkomctl capture /dev/ttyUSB0 30 again.nmea --force --json",
        ),
    )
    cp.add_argument("port", metavar="PORT", help="a device path or pyserial URL")
    cp.add_argument("seconds", type=float, metavar="SECONDS", help="how long to record (Ctrl-C stops early; the file is kept)")
    cp.add_argument("file", type=Path, metavar="FILE", help="the capture to write (not overwritten without --force)")
    line_args(cp)
    cp.add_argument("--device", default="", metavar="TEXT", help="which device: model, unit, firmware, output settings")
    cp.add_argument("--place", default="", metavar="TEXT", help="where it was recorded")
    cp.add_argument("--notes", default="", metavar="TEXT", help="anything odd about it")
    cp.add_argument("--name", default="", metavar="TEXT", help="a title (default: capture of DEVICE)")
    cp.add_argument("--force", action="store_true", help="overwrite FILE")
    cp.add_argument("--json", action="store_true", help="the summary as JSON")

    rp = sub.add_parser(
        "replay",
        help="play a capture into a pty, a serial port or socket:// at the recorded pace",
        formatter_class=RAW,
        description=wrap(
            "Write a capture's data lines (not its # lines) to TARGET: pty:PATH creates a pseudo-terminal with PATH "
            "linked to it and waits for a program to open it (like gpsfake: point a daemon's url at PATH); a device "
            "path writes to that serial port (a null-modem cable into another port); socket://host:port connects to "
            "a listening TCP server. The pace is the capture's '#t=' times, else the NMEA times in the sentences, "
            "else --rate lines per second; --speed multiplies it, --speed 0 sends as fast as the reader takes it."
        ),
        epilog=epilog(
            "0 played, 2 usage, 66 no such FILE, 69 nobody opened the pty or the target failed, 73 cannot create the "
            "pty's PATH, 75 target busy, 77 permission denied",
            'alkomctl replay r2-12.nmea --to pty:/tmp/ttyR212              then run a daemon with url = "/tmp/ttyR212"',
            "alkomctl replay base.nmea --to /dev/ttyUSB1 --speed 4         four times faster, into a null-modem cable",
            "alkomctl replay r2-12.nmea --to socket://127.0.0.1:4001 --speed 0",
            "alkomctl replay r2-12.nmea --to pty:/tmp/x --dry-run           when each line would be sent",
            "alkomctl replay tests/captures/ublox-m8-gn-gorontalo-drive.nmea --to pty:/tmp/gps --retime   a 2024 capture, live",
        ),
    )
    rp.add_argument("file", type=Path, metavar="FILE", help="a capture (alkomctl capture, tests/captures/*.nmea)")
    rp.add_argument("--to", required=True, metavar="TARGET", help="pty:PATH, a serial port, or socket://host:port")
    rp.add_argument("--speed", type=_speed, default=1.0, metavar="X", help="pace multiplier (default 1; 0: as fast as possible)")
    rp.add_argument("--rate", type=float, default=None, metavar="N", help="lines per second for captures without times (default 10)")
    rp.add_argument("--max-gap", type=float, default=None, metavar="S", help="cap every pause at S seconds (default 60)")
    rp.add_argument("--baud", type=int, default=None, metavar="N", help="baud rate of a serial TARGET (default: the capture's)")
    rp.add_argument("--framing", default=None, choices=FRAMINGS, help="framing of a serial TARGET (default: the capture's)")
    rp.add_argument("--wait", type=float, default=None, metavar="S", help="pty: how long to wait for a reader (default 60)")
    rp.add_argument("--retime", action="store_true",
                    help="move the sentences' times and dates to now (checksums redone): a daemon takes an old capture's fixes")
    rp.add_argument("--dry-run", action="store_true", help="print when each line would be sent; send nothing")
    rp.add_argument("--json", action="store_true", help="JSON output")


def _speed(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError("the speed is 0 (as fast as possible) or more")
    return v


def run(args: argparse.Namespace) -> int:
    if args.command == "capture":
        from alkomd.daemon.ctl.capture.file import CaptureInfo
        from alkomd.daemon.ctl.capture.record import capture

        info = CaptureInfo(args.port, args.baud, args.framing, args.seconds, args.device, args.place, args.notes, args.name)
        return capture(info, args.file, args.force, args.json)
    from alkomd.daemon.ctl.capture.file import DEFAULT_RATE, MAX_GAP_S
    from alkomd.daemon.ctl.capture.replay import WAIT_FOR_READER_S, replay

    return replay(
        args.file,
        args.to,
        args.speed,
        args.rate or DEFAULT_RATE,
        args.max_gap or MAX_GAP_S,
        args.baud,
        args.framing,
        args.wait or WAIT_FOR_READER_S,
        dry_run=args.dry_run,
        as_json=args.json,
        retime=args.retime,
    )

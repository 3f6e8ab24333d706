"""`alkomctl`: the technician's and operator's tool (one subcommand per job)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

from alkomd.daemon import __version__
from alkomd.daemon.config import DEFAULT_PATH

DESCRIPTION = """\
alkomctl helps a station technician check captures, configurations and the whole
station. Every command exits 0 when all is well; see each command's --help.
"""

EPILOG = """\
examples:
  alkomctl decode capture.nmea            one line per fix in a recorded capture
  alkomctl decode --json - < capture.nmea one JSON object per fix, for scripts
  alkomctl check-config /etc/alkomd/alkomd.toml
  alkomctl demo                           a simulated station with a live view (Ctrl-C stops it)
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="alkomctl", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version=f"alkomctl {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    d = sub.add_parser(
        "decode",
        help="decode an NMEA capture with the daemon's decoder",
        description="Decode a capture (a file, or - for standard input) with the same code the daemon "
        "runs, and print one line per valid fix. Lines starting with # are comments (capture headers). "
        "A summary of sentences, errors and rejected epochs goes to standard error.",
    )
    d.add_argument("file", metavar="FILE|-")
    d.add_argument("--json", action="store_true",
                   help='one JSON object per fix: {"time","lat","lon","mode","alt","speed_kmh","course","hdop","sats"}')  # fmt: skip
    d.add_argument("--max-hdop", type=float, default=20.0, help="reject fixes with a larger HDOP (default 20)")
    d.add_argument("--date", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                   help="date for sentences without one (GGA-only radios); default: the '# Date:' header, else today")  # fmt: skip

    c = sub.add_parser("check-config", help="validate a configuration file (exit 0 valid, 78 invalid)")
    c.add_argument("file", nargs="?", type=Path, default=DEFAULT_PATH, metavar="FILE")

    m = sub.add_parser(
        "demo",
        help="run a whole simulated station with a live view",
        description="Start a private broker (mosquitto if installed, else an embedded one), simulated "
        "radios writing real NMEA into pseudo-terminals, and the daemon; show the positions arriving "
        "over MQTT. Ctrl-C stops all of it and leaves nothing running.",
    )
    m.add_argument("--units", type=int, default=6, choices=range(1, 100), metavar="N", help="simulated units, 1 to 99 (default 6)")
    m.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="stop after this long")
    m.add_argument("--embedded-broker", action="store_true", help="use the embedded broker even if mosquitto exists")
    m.add_argument("--workdir", type=Path, default=None, help="keep the demo's config, database and logs here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return dispatch(args)
    except BrokenPipeError:  # `alkomctl decode big.nmea | head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "decode":
        from alkomd.daemon import cmd_decode

        return cmd_decode.run(args.file, args.json, args.max_hdop, args.date)
    if args.command == "check-config":
        from alkomd.daemon import cli

        return cli.main(["--check-config", str(args.file)])
    if args.command == "demo":
        from alkomd.daemon import demo

        return demo.run_demo(
            duration_s=args.duration, units=args.units, embedded_broker=args.embedded_broker, workdir=args.workdir
        )
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""`alkomctl`: the technician's and operator's tool, one command per module of this package.

A command is a module here, or a sub-package whose `__init__` is the command and whose other
modules do its work. The command module has two functions:

- `add_parser(sub)` adds its parser to alkomctl's subparsers (or several: `status`, `units`,
  `devices`), with its help, a description and an epilog of exit codes and examples
  (`common.epilog`; tests/test_docs.py holds every --help and the README table to them). A
  command with actions (`audit verify`, `modbus read|probe`) adds its own sub-parsers.
- `run(args) -> int` does the work for the parsed arguments and returns the exit code
  (`alkomd.daemon.exit_codes`).

At its top a command module imports only `common`, `exit_codes` and small standard modules
(argparse, pathlib): every `alkomctl ... --help` imports all of them, and must not pay for
shapely, numpy, rich, pyserial, paho, pymodbus or sqlite-utils. `run` imports the work, which
lives in the command's package (`ports.scan`, `sniff.watch`, ...) or in the modules the commands
share (`decoding`, `serial_port`).

Adding a command: one new module, and one line in COMMANDS below (the order of `alkomctl --help`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Protocol

from alkomd.daemon import __version__
from alkomd.daemon.ctl import (
    audit,
    backup,
    baud,
    calls,
    capture,
    check_config,
    decode,
    demo,
    init_config,
    modbus,
    mqtt_check,
    ports,
    sniff,
    status,
    support,
)
from alkomd.daemon.ctl.common import Subparsers
from alkomd.daemon.exit_codes import EX_INTERRUPTED, EX_OK


class Command(Protocol):
    """What a command module provides (see the module docstring)."""

    def add_parser(self, sub: Subparsers) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


COMMANDS: tuple[Command, ...] = (
    decode,
    check_config,
    init_config,
    status,  # status, units, devices
    backup,
    audit,  # audit verify, call show
    calls,
    demo,
    ports,
    sniff,
    baud,
    capture,  # capture, replay
    support,
    modbus,
    mqtt_check,
)

DESCRIPTION = """\
alkomctl helps a station technician check captures, configurations and the whole
station. Every command exits 0 when all is well; see each command's --help.
"""

EPILOG = """\
examples:
  alkomctl decode capture.nmea            one line per fix in a recorded capture
  alkomctl decode --json - < capture.nmea one JSON object per fix, for scripts
  alkomctl init-config /etc/alkomd        the example configuration and its polygons, to edit
  alkomctl check-config /etc/alkomd/alkomd.toml
  alkomctl status                         the running daemon: broker link, outbox, devices, units
  alkomctl backup /root/alkomd-backup.db  online copy of the database, verified
  alkomctl audit verify                   is the station's audit record intact?
  alkomctl call show C-0001               a call's timeline
  alkomctl calls --open                   the calls still open, emergencies first
  alkomctl demo                           a simulated station with a live view (Ctrl-C stops it)
  alkomctl modbus probe tcp://192.168.1.1 which modem is this, and does its GPS work?
  alkomctl ports                          serial ports, who holds them, what may steal them
  alkomctl sniff /dev/ttyUSB0             what the port says, live (Ctrl-C stops)
  alkomctl baud /dev/ttyUSB0              which baud rate gives NMEA?
  alkomctl capture /dev/ttyUSB0 60 x.nmea record a port for 60 s (decode and replay read it)
  alkomctl replay x.nmea --to pty:/tmp/gps play it into a pty that a daemon reads
  alkomctl support-bundle /tmp/b.tar.gz   versions, ports, config without secrets, errors
  alkomctl mqtt-check                     log in to the broker as the daemon does; probe round trip
"""


def parser() -> argparse.ArgumentParser:
    """alkomctl's whole parser: every command's, each parser remembering the `run` it belongs to."""
    p = argparse.ArgumentParser(
        prog="alkomctl", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version=f"alkomctl {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        before = set(sub.choices)
        command.add_parser(sub)
        for name in [n for n in sub.choices if n not in before]:
            sub.choices[name].set_defaults(run=command.run)
    return p


def dispatch(args: argparse.Namespace) -> int:
    """Run the command `args` were parsed for."""
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


def main(argv: list[str] | None = None) -> int:
    # `modbus URL ... read ...` is the one older word order still taken (the modbus module rewrites it).
    args = parser().parse_args(modbus.issue_order(sys.argv[1:] if argv is None else argv))
    try:
        return dispatch(args)
    except BrokenPipeError:  # `alkomctl decode big.nmea | head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EX_OK
    except KeyboardInterrupt:  # Ctrl-C in a command that does not catch it itself (a query, a Modbus read): no traceback
        print("alkomctl: interrupted", file=sys.stderr)
        return EX_INTERRUPTED

"""`alkomctl ports`: every serial port, who holds it, and what may steal it (ModemManager, brltty, gpsd, permissions).

The parts: `scan` (what the system says: /proc, sysfs, udev rules, users), `report` (each port
with its holders, its [[device]] and the thieves' warnings) and `view` (text or JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from alkomd.daemon.ctl.common import DEFAULT_PATH, RAW, Subparsers, epilog, wrap
from alkomd.daemon.exit_codes import EX_CONFIG, EX_NOINPUT, EX_OK, EX_PROBLEM


def add_parser(sub: Subparsers) -> None:
    po = sub.add_parser(
        "ports",
        help="list serial ports, who holds them, and what may steal them",
        formatter_class=RAW,
        description=wrap(
            "Every serial port (or the ports named): its stable /dev/serial/by-id name, USB VID:PID, serial number, "
            "kernel driver, the processes holding it open (other users' processes need root), whether the alkomd "
            "daemon holds it and as which [[device]], and warnings with the fix for the usual thieves of USB-serial "
            "adapters: ModemManager, brltty, gpsd's hotplug, and permissions (dialout)."
        ),
        epilog=epilog(
            "0 no problem, 1 problems found, 66 a named port does not exist, 78 --config cannot be read",
            "alkomctl ports",
            "sudo alkomctl ports /dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K4Z9B-if00-port0",
            "alkomctl ports --config /etc/alkomd/alkomd.toml --user www-data --json",
        ),
    )
    po.add_argument("ports", nargs="*", metavar="PORT", help="only these ports (default: every port, and the config's)")
    po.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"label ports with the [[device]] that uses them (default {DEFAULT_PATH} if it exists)",
    )
    po.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="NAME",
        help="also check that this user may open the ports (repeatable; alkomd is always checked)",
    )
    po.add_argument("--json", action="store_true", help="JSON output")


def run(args: argparse.Namespace) -> int:
    """Exit 0 no problem, 1 problems found, 66 a named port does not exist, 78 --config unreadable."""
    from rich.console import Console

    from alkomd.daemon.ctl.ports.report import ConfigPorts, collect, read_config_ports
    from alkomd.daemon.ctl.ports.view import render, report_dict

    names: list[str] = args.ports
    config: Path | None = args.config
    found: ConfigPorts | None = None
    path = config if config is not None else (DEFAULT_PATH if os.path.exists(DEFAULT_PATH) else None)  # False in a folder we may not enter
    if path is not None:
        found = read_config_ports(path)
        if found is None and config is not None:
            print(f"alkomctl ports: cannot read {config} (missing, unreadable or not TOML)", file=sys.stderr)
            return EX_CONFIG
    report = collect(names, found, users=args.user)
    if args.json:
        sys.stdout.write(json.dumps(report_dict(report), indent=2) + "\n")
    else:
        render(report, Console(file=sys.stdout, highlight=False, soft_wrap=True, markup=False))
    if names and any(not p.exists for p in report.ports):
        return EX_NOINPUT
    return EX_PROBLEM if report.problems else EX_OK

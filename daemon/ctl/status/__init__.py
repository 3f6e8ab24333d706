"""`alkomctl status|units|devices`: ask the running daemon over its control socket, print tables or JSON.

The parts: `ask` (finding the daemon, asking it, printing its reply) and `view` (the tables).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alkomd.daemon.ctl.common import DEFAULT_PATH, RAW, Subparsers, epilog, wrap

QUERIES = (
    ("status", "the daemon at a glance: broker link, outbox, database, devices and units by state, last reload"),
    ("units", "every unit: status, last fix, its age and place, where it came from"),
    ("devices", "every device: state and since when, counters, age of the last data, modem health"),
)


def add_parser(sub: Subparsers) -> None:
    where = (
        "The daemon answers on its control socket: /run/alkomd/control.sock under systemd, else control.sock next "
        "to the database. Works while the broker is down."
    )
    codes = (
        "0 ok, 69 no daemon answers (is alkomd running?), 76 the reply is not understood (alkomctl older than the "
        "daemon?), 77 permission denied (join the alkomd group), 78 --config cannot be read"
    )
    for name, what in QUERIES:
        q = sub.add_parser(
            name,
            help=what,
            description=wrap(f"{what[0].upper()}{what[1:]}. {where}"),
            epilog=epilog(
                codes, f"alkomctl {name}", f"alkomctl {name} --json | jq .", f"alkomctl {name} --socket /run/alkomd/control.sock"
            ),
            formatter_class=RAW,
        )
        q.add_argument("--socket", type=Path, default=None, metavar="PATH", help="the daemon's control socket")
        q.add_argument(
            "--config",
            type=Path,
            default=None,
            metavar="FILE",
            help=f"find the socket from this configuration's [store] path (default {DEFAULT_PATH})",
        )
        q.add_argument("--json", action="store_true", help="the daemon's reply as JSON, for scripts")


def run(args: argparse.Namespace) -> int:
    from alkomd.daemon.ctl.status.ask import query

    return query(args.command, args.socket, args.config, args.json)



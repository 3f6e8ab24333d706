"""`alkomctl calls`: the station's calls from its database, read-only (`listing`), newest first.

Read from the database, like `audit verify` and `call show`, rather than asked over the control
socket: the calls table keeps every call (open and closed) with its whole stored state, so the
list works while the daemon is stopped or restarting, on a copy made by `alkomctl backup`, and
without a new control-socket command in every daemon version. Read-only (SQLite WAL readers
never block the daemon's writes).
"""

from __future__ import annotations

import argparse

from alkomd.daemon.ctl.common import RAW, Subparsers, db_args, db_path, epilog, wrap
from alkomd.daemon.exit_codes import EX_CONFIG


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "calls",
        help="the station's calls: state, priority, location, unit, age, flags",
        formatter_class=RAW,
        description=wrap(
            "List the calls in the station's database, newest first: id, state, priority and category, location "
            "status and jurisdiction, assigned unit, age (since the call was received), flags (emergency, "
            "no_candidate, invalid_location, repeat_caller, ...). Open emergencies first with --open. Read-only: safe "
            "while the daemon runs. A call's whole timeline: alkomctl call show CALL_ID."
        ),
        epilog=epilog(
            "0 listed (also when there is none), 66 no database, 77 permission denied (run as root or as the alkomd "
            "user), 78 --config cannot be read",
            "alkomctl calls --open                 the calls still open, emergencies and most urgent first",
            "alkomctl calls --limit 0 --json | jq -r '.[] | select(.flags | index(\"no_candidate\")) | .call_id'",
            "alkomctl calls --db /var/backups/alkomd/alkomd-2024-10-15.db",
        ),
    )
    p.add_argument("--open", action="store_true", help="only the calls still open (all of them, emergencies first)")
    p.add_argument("--limit", type=int, default=100, metavar="N", help="at most N calls, newest first (default 100; 0: all)")
    db_args(p)


def run(args: argparse.Namespace) -> int:
    db = db_path(args)
    if db is None:
        return EX_CONFIG
    from alkomd.daemon.ctl.calls.listing import calls_cmd

    return calls_cmd(db, args.open, args.limit, args.json)

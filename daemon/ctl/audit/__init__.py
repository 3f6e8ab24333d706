"""`alkomctl audit verify` and `alkomctl call show`: read the audit record of a station's database (`record`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from alkomd.daemon.ctl.common import RAW, Subparsers, db_args, db_path, epilog, wrap
from alkomd.daemon.exit_codes import EX_CONFIG

AUDIT_EXAMPLES = (
    "alkomctl audit verify",
    "alkomctl audit verify --db /var/backups/alkomd/alkomd-2024-10-15.db --json",
    "mosquitto_sub -C 1 -t polri110/gorontalo/bone-bolango/audit/head > anchor.json && alkomctl audit verify --anchor anchor.json",
)
CALL_EXAMPLES = ("alkomctl call show C-0001", "alkomctl call show C-0001 --json | jq '.timeline[].kind'")


def add_parser(sub: Subparsers) -> None:
    a = sub.add_parser(
        "audit",
        help="check the tamper-evident audit record",
        formatter_class=RAW,
        epilog=epilog("see alkomctl audit verify --help", *AUDIT_EXAMPLES),
    )
    asub = a.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    av = asub.add_parser(
        "verify",
        help="verify the audit record's hash chain (exit 0 intact, 65 broken)",
        formatter_class=RAW,
        description=wrap(
            "Walk the audit record of a station's database and check that every entry holds the hash of the previous "
            "one: an altered, removed or reordered entry is reported with its id. With --anchor, also check it against "
            "the record's end as the station published it (<node>/audit/head, kept by the broker and the parent tier): "
            "a record whose last entries were removed, or an older copy of the database put back, still has an intact "
            "chain, and only the anchor tells. Safe while the daemon runs (read-only)."
        ),
        epilog=epilog(
            "0 intact, 3 behind its anchor (cut short or an older copy), 65 broken (the first bad entry is named), 66 "
            "no database or no audit record in it, or the anchor file cannot be read, 77 permission denied (run as "
            "root or as the alkomd user), 78 --config cannot be read",
            *AUDIT_EXAMPLES,
        ),
    )
    db_args(av)
    av.add_argument("--anchor", type=Path, default=None, metavar="FILE",
                    help="an <node>/audit/head payload (JSON) to check the record's end against")

    c = sub.add_parser(
        "call", help="look at calls", formatter_class=RAW, epilog=epilog("see alkomctl call show --help", *CALL_EXAMPLES)
    )
    csub = c.add_subparsers(dest="call_command", metavar="ACTION", required=True)
    cs = csub.add_parser(
        "show",
        help="a call's whole timeline from the audit record",
        formatter_class=RAW,
        description=wrap(
            "Every step of one call from the station's audit record (intake, jurisdiction, offers, answers, alerts, "
            "escalations, closing), oldest first, as a timeline: time, kind, who did it (- for the daemon itself), "
            "unit, detail; with its last stored state (category, location, unit, flags) on top. --json: the entries as "
            "stored, for scripts. Read-only: safe while the daemon runs. The list of calls: alkomctl calls."
        ),
        epilog=epilog(
            "0 shown, 1 no such call in this database, 66 no database, 77 permission denied, 78 --config cannot be read",
            *CALL_EXAMPLES,
        ),
    )
    cs.add_argument("call_id", metavar="CALL_ID")
    db_args(cs)


def run(args: argparse.Namespace) -> int:
    db = db_path(args)
    if db is None:
        return EX_CONFIG
    from alkomd.daemon.ctl.audit.record import call_show, verify_cmd

    if args.command == "audit":
        return verify_cmd(db, args.json, anchor=args.anchor)
    return call_show(db, args.call_id, args.json)

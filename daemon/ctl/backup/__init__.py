"""`alkomctl backup FILE`: an online copy of the station's database (SQLite backup API), verified before it is kept.

The copy is taken inside one read transaction on the source, so it is one consistent snapshot:
every transaction the daemon committed before the backup started, nothing half-written. The
database is in WAL mode, where a reader never blocks the writer: the daemon goes on storing
fixes while the pages are copied, `STEP_PAGES` at a time (a stepped backup without the held
snapshot would restart from the first page whenever the daemon commits, and might never end on a
busy station). The pages go to a temporary file next to FILE, which is switched to a plain
rollback journal, checked (`PRAGMA integrity_check`, schema version, the audit record's hash
chain), synced, and only then renamed to FILE. The file is 0600: it holds callers' data. That
work is `snapshot`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alkomd.daemon.ctl.common import RAW, Subparsers, db_args, db_path, epilog, wrap
from alkomd.daemon.exit_codes import EX_CONFIG


def add_parser(sub: Subparsers) -> None:
    b = sub.add_parser(
        "backup",
        help="online backup of the station's database, verified",
        description=wrap(
            "Copy the station's database while the daemon runs (SQLite's backup API, one consistent snapshot: "
            "everything committed before the backup started), then check the copy (integrity_check, schema version, "
            "the audit record's hash chain) and only then rename it to FILE (mode 0600: it holds callers' data). Run "
            "it as root or as the alkomd user."
        ),
        epilog=epilog(
            "0 written and sound, 65 the copy fails a check (a broken audit chain is still written: the copy is "
            "faithful), 66 no database, 73 FILE exists (--force) or cannot be created, 77 permission denied, 78 "
            "--config cannot be read",
            "sudo alkomctl backup /var/backups/alkomd/alkomd-$(date +%F).db",
            "alkomctl backup --db /var/lib/alkomd/alkomd.db --json /srv/backup/alkomd.db",
        ),
        formatter_class=RAW,
    )
    b.add_argument("file", type=Path, metavar="FILE", help="where the copy goes")
    db_args(b)
    b.add_argument("--force", action="store_true", help="replace FILE if it exists")


def run(args: argparse.Namespace) -> int:
    db = db_path(args)
    if db is None:
        return EX_CONFIG
    from alkomd.daemon.ctl.backup.snapshot import backup_cmd

    return backup_cmd(db, args.file, args.force, args.json)

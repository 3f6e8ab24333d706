"""What the alkomctl commands share: the layout of their help, their common arguments, and where the database is."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import TypeAlias

# The daemon's default configuration, alkomd.daemon.config.DEFAULT_PATH, and the line settings the
# serial driver takes, alkomd.drivers.nmea_serial.FRAMINGS. Written out rather than imported: those
# modules pull in shapely, numpy and pynmea2, which every `--help` would pay for (tests/test_ctl.py
# checks that the copies agree).
DEFAULT_PATH = Path("/etc/alkomd/alkomd.toml")
FRAMINGS = ("8N1", "8N2", "8E1", "8O1", "7N2", "7E1", "7O1")

RAW = argparse.RawDescriptionHelpFormatter
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def wrap(text: str) -> str:
    return textwrap.fill(text, 100)


def epilog(exit_codes: str, *examples: str) -> str:
    """The end of a command's --help: its exit codes and examples (kept true by tests/test_docs.py)."""
    return f"{wrap('exit codes: ' + exit_codes)}\n\nexamples:\n" + "\n".join(f"  {e}" for e in examples)


def line_args(p: argparse.ArgumentParser) -> None:
    """--baud and --framing of a serial port the tool opens."""
    p.add_argument("--baud", type=int, default=9600, metavar="N", help="baud rate (default 9600)")
    p.add_argument("--framing", default="8N1", choices=FRAMINGS, help="data bits, parity, stop bits (default 8N1)")


def db_args(p: argparse.ArgumentParser) -> None:
    """--db, --config and --json of the commands that read the station's database."""
    p.add_argument("--db", type=Path, default=None, metavar="FILE", help="the database (default: [store] path of --config)")
    p.add_argument("--config", type=Path, default=DEFAULT_PATH, metavar="FILE", help=f"configuration (default {DEFAULT_PATH})")
    p.add_argument("--json", action="store_true", help="JSON output")


def store_path(config: Path) -> Path:
    """`[store] path` of a configuration, read without validating the rest.

    alkomctl only needs to know where the daemon is; the whole file may name credentials
    (`/run/credentials/alkomd.service/...`) that only the service itself can see.
    """
    import tomllib

    with config.open("rb") as fh:
        raw = tomllib.load(fh)
    store = raw.get("store", {})
    value = store.get("path") if isinstance(store, dict) else None
    if not isinstance(value, str):
        from alkomd.daemon.config import StoreConfig

        default: Path = StoreConfig().path
        return default
    p = Path(value)
    return p if p.is_absolute() else config.parent / p


def db_path(args: argparse.Namespace) -> Path | None:
    """--db, else the [store] path of --config read as plain TOML (None, with the reason printed, if it cannot be read).

    Not validated: the whole file may name secrets only the service can see (a systemd credential).
    """
    if args.db is not None:
        return Path(args.db)
    try:
        return store_path(args.config)
    except (OSError, ValueError) as exc:
        print(f"alkomctl: cannot read {args.config}: {exc} (or name the database with --db)", file=sys.stderr)
        return None

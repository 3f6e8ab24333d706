"""`alkomctl check-config`: validate a configuration as the daemon does (`alkomd --check-config`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from alkomd.daemon.ctl.common import DEFAULT_PATH, RAW, Subparsers, epilog, wrap
from alkomd.daemon.exit_codes import EX_CONFIG, EX_OK


def add_parser(sub: Subparsers) -> None:
    c = sub.add_parser(
        "check-config",
        help="validate a configuration file (exit 0 valid, 78 invalid)",
        formatter_class=RAW,
        description=wrap(
            "Validate a configuration as the daemon does at start and on reload (alkomd --check-config): every key, "
            "type and range, the files it names, the jurisdictions. A problem is one line naming the file and the key."
        ),
        epilog=epilog(
            "0 valid, 78 invalid",
            "alkomctl check-config /etc/alkomd/alkomd.toml",
            "sudo -u alkomd alkomctl check-config    as the service user, who may read its secrets",
        ),
    )
    c.add_argument("file", nargs="?", type=Path, default=DEFAULT_PATH, metavar="FILE", help=f"default {DEFAULT_PATH}")


def run(args: argparse.Namespace) -> int:
    """The daemon's own validation (`alkomd --check-config`), its error line said as alkomctl's."""
    import sys

    from alkomd.daemon.config import load, load_jurisdictions
    from alkomd.daemon.schema import ConfigError

    path: Path = args.file
    try:
        cfg = load(path)
        index = load_jurisdictions(cfg)
    except ConfigError as exc:
        print(f"alkomctl: config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    areas = f", {len(index.ids)} jurisdictions" if index else ""
    print(f"{path}: ok ({len(cfg.devices)} devices, {len(cfg.units)} units{areas}, node {cfg.node.topic})")
    return EX_OK

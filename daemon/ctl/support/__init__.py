"""`alkomctl support-bundle`: one tar.gz for the maintainers: versions, ports, config without secrets, counters, recent errors.

What never goes in: the contents of password, key or certificate files, calls, caller numbers and
unit positions (`bundle` says how).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alkomd.daemon.ctl.common import DEFAULT_PATH, RAW, Subparsers, epilog, wrap


def add_parser(sub: Subparsers) -> None:
    sb = sub.add_parser(
        "support-bundle",
        help="one tar.gz for the maintainers: versions, ports, config without secrets, counters, recent errors",
        formatter_class=RAW,
        description=wrap(
            "Collect what the maintainers need to help into OUT.tar.gz: versions (alkomd, Python, libraries, "
            "mosquitto, OS), `alkomctl ports`, the effective configuration with secrets as paths only, the daemon's "
            "status and counters (from its control socket, else its database read-only), the recent warnings and "
            "errors of the journal (journalctl -u alkomd) or of a log file, udev rules. Never included: password or "
            "key file contents, calls, caller numbers, unit positions."
        ),
        epilog=epilog(
            "0 written, 73 cannot create OUT",
            "sudo alkomctl support-bundle /tmp/alkomd-support.tar.gz",
            "alkomctl support-bundle bundle.tar.gz --config ./alkomd.toml --log ./alkomd.log --json",
        ),
    )
    sb.add_argument("out", type=Path, metavar="OUT.tar.gz", help="the bundle to write (replaced if it exists)")
    sb.add_argument("--config", type=Path, default=None, metavar="FILE", help=f"the daemon's configuration (default {DEFAULT_PATH})")
    sb.add_argument("--log", type=Path, default=None, metavar="FILE", help="a log file to take recent errors from (besides the journal)")
    sb.add_argument("--socket", type=Path, default=None, metavar="PATH", help="the daemon's control socket (default: from the config)")
    sb.add_argument("--json", action="store_true", help="what was written, as JSON")


def run(args: argparse.Namespace) -> int:
    from alkomd.daemon.ctl.support.bundle import bundle_cmd

    return bundle_cmd(args.out, args.config, args.log, args.socket, args.json)

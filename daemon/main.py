"""`alkomd`: the daemon's command line (run, or only validate the configuration)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from alkomd.daemon import __version__
from alkomd.daemon.calls.jurisdictions import JurisdictionIndex
from alkomd.daemon.config import DEFAULT_PATH, Config, load, load_jurisdictions
from alkomd.daemon.exit_codes import EX_CONFIG, EX_IOERR, EX_OK, EX_SOFTWARE
from alkomd.daemon.logsetup import setup_logging
from alkomd.daemon.schema import ConfigError
from alkomd.daemon.store.database import StoreError

DESCRIPTION = """\
alkomd reads GPS from the station's radios and patrol-car receivers (serial NMEA and other
drivers), keeps every fix in SQLite, and publishes unit positions over MQTT (QoS 1, retained)
to the broker, delivering everything it stored once the broker is reachable.
"""

EPILOG = """\
signals:
  SIGTERM, SIGINT  stop cleanly
  SIGHUP           reload the configuration file (systemctl reload alkomd); an invalid file is
                   logged and the running configuration kept

one process per node:
  alkomd takes the kernel lock on <database>.lock before it opens anything. While another process
  of the same node holds it, this one is its standby: it waits ("standby: waiting for the active
  process (pid N) to stop"), and takes over (same database, same MQTT session) when that process
  stops or dies. Always on: a node never runs two active processes.

exit codes:
  0   stopped cleanly (SIGTERM or SIGINT)
  70  internal error (a bug: the log has the traceback)
  74  the database cannot be opened or written
  78  configuration error (one line names the file and the key); systemd does not restart

examples:
  alkomd --check-config /etc/alkomd/alkomd.toml
  alkomd --config /etc/alkomd/alkomd.toml
  alkomctl demo              # a whole simulated station, with a live view
"""


def config_error(exc: ConfigError) -> int:
    print(f"alkomd: config error: {exc}", file=sys.stderr)
    return EX_CONFIG


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="alkomd",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-c", "--config", type=Path, default=DEFAULT_PATH, metavar="FILE",
                   help=f"configuration file (TOML; default {DEFAULT_PATH})")
    p.add_argument("--check-config", nargs="?", const=True, default=None, metavar="FILE",
                   help="validate the configuration (FILE, or --config) and exit: 0 valid, 78 invalid")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   help="override [log] level from the configuration")
    p.add_argument("--version", action="version", version=f"alkomd {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    path = args.config if args.check_config in (None, True) else Path(args.check_config)
    try:
        cfg = load(path)
        index = load_jurisdictions(cfg)
    except ConfigError as exc:
        return config_error(exc)
    if args.check_config is not None:
        areas = f", {len(index.ids)} jurisdictions" if index else ""
        print(f"{path}: ok ({len(cfg.devices)} devices, {len(cfg.units)} units{areas}, node {cfg.node.topic})")
        return EX_OK
    setup_logging(args.log_level or cfg.log.level)
    return run(cfg, index, args.log_level)


def run(cfg: Config, index: JurisdictionIndex | None = None, log_level_override: str | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT; SIGHUP reloads the configuration (`--log-level` stays in force)."""
    from alkomd.daemon.runtime import Runtime  # imported late: --check-config stays fast

    try:
        return asyncio.run(Runtime(cfg, index, log_level_override).run())
    except StoreError as exc:
        logging.getLogger("alkomd").error("%s", exc)
        return EX_IOERR
    except Exception:
        logging.getLogger("alkomd").exception("internal error")
        return EX_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())

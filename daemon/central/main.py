"""`alkomd-history`: run one history worker of a Polda or Mabes node (several may run: they share the flood)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from alkomd.daemon import __version__
from alkomd.daemon.config import DEFAULT_PATH, load
from alkomd.daemon.exit_codes import EX_CONFIG, EX_IOERR, EX_OK
from alkomd.daemon.logsetup import setup_logging
from alkomd.daemon.schema import ConfigError
from alkomd.daemon.sdnotify import Notifier
from alkomd.daemon.store.database import StoreError

log = logging.getLogger("alkomd.history")

DESCRIPTION = """\
A history worker of a Polda or Mabes node: it stores the positions of the units below the node
(every Polres's units at a Polda; every unit in the country at Mabes) in the SQLite file of the
configuration's [history] section, so that a call can be investigated later. It reads [node],
[mqtt], [store] synchronous and [history] of the daemon's configuration file; the daemon itself
does not write this history.

Run one or more per node, each with its own --name: they take their shares of the positions
through an MQTT 5 shared subscription ($share/alkomd-history-<node>/...), so the broker spreads the
flood over the workers that are up. A position is acknowledged to the broker only once it is
stored, and stored once even when delivered twice.

examples:
  alkomd-history --config /etc/alkomd/alkomd.toml --name 1
  systemctl enable --now alkomd-history@1 alkomd-history@2     # two workers

exit codes: 0 stopped, 74 the history file cannot be opened, 78 configuration error
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alkomd-history", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", type=Path, default=DEFAULT_PATH, metavar="FILE", help=f"configuration file (default {DEFAULT_PATH})")
    p.add_argument("--name", default="1", help="this worker's name, unique within the node (its MQTT client id ends with it)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="override [log] level")
    p.add_argument("--version", action="version", version=f"alkomd-history {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        cfg = load(args.config)
        if cfg.history is None:
            raise ConfigError(args.config, "history", "missing: a history worker needs a [history] section (at least its path)")
        if cfg.node.tier == "polres":
            raise ConfigError(args.config, "node.tier", "a Polres has no units below it: history workers run at a Polda or Mabes")
        if not args.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(args.config, "", f"--name {args.name!r}: letters, digits, - and _ only")
    except ConfigError as exc:
        print(f"alkomd-history: config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    setup_logging(args.log_level or cfg.log.level)
    from alkomd.daemon.central.history import HistoryWorker  # imported late: --help stays fast

    try:
        worker = HistoryWorker(cfg, cfg.history, args.name)
    except StoreError as exc:
        log.error("%s", exc)
        return EX_IOERR

    def stop(signum: int, frame: FrameType | None) -> None:
        worker.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    notify = Notifier()
    notify.ready(f"storing the positions below {cfg.node.topic} in {cfg.history.path}")
    worker.run()
    notify.stopping()
    return EX_OK


if __name__ == "__main__":
    sys.exit(main())

"""Logging set up the same way in every alkomd process (the daemon, its below child, central workers, the console)."""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(level: str) -> None:
    """Journal-friendly logs: no timestamps under systemd (the journal adds them)."""
    fmt = "%(levelname)s %(name)s: %(message)s"
    if "JOURNAL_STREAM" not in os.environ and "INVOCATION_ID" not in os.environ:
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr, force=True)

"""Asking the running daemon over its control socket (`alkomctl status|units|devices`), and printing its reply."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any, TextIO

from alkomd.daemon import control
from alkomd.daemon.ctl.common import DEFAULT_PATH, store_path
from alkomd.daemon.exit_codes import EX_CONFIG, EX_NOPERM, EX_OK, EX_PROTOCOL, EX_UNAVAILABLE

HINT_UNAVAILABLE = (
    "is alkomd running? systemctl status alkomd; a daemon started with another configuration: --config FILE "
    "(its [store] path says where its socket is), or --socket PATH"
)
HINT_NOPERM = "add yourself to the alkomd group (sudo usermod -aG alkomd $USER, then log in again), or use sudo"


def candidates(socket: Path | None, config: Path | None, err: TextIO) -> list[Path] | None:
    """Where to look for the daemon, in order; None when an explicit --config cannot be read."""
    if socket is not None:
        return [socket]
    found: list[Path] = []
    try:
        found.append(control.socket_path(store_path(config or DEFAULT_PATH), env={}))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        if config is not None:
            print(f"alkomctl: cannot read {config}: {exc}", file=err)
            return None
    # systemd's RuntimeDirectory comes first unless a configuration was named.
    if config is None:
        found.insert(0, control.SYSTEMD_SOCKET)
    else:
        found.append(control.SYSTEMD_SOCKET)
    return list(dict.fromkeys(found))


def ask(command: str, socket: Path | None, config: Path | None, err: TextIO) -> tuple[int, Any]:
    """(0, reply data) from the first daemon that answers, or (exit code, None) with the reason printed."""
    paths = candidates(socket, config, err)
    if paths is None:
        return EX_CONFIG, None
    refused: list[str] = []
    absent: list[str] = []
    for path in paths:
        try:
            return EX_OK, control.request(path, command)
        except control.Refused as exc:
            refused.append(str(exc))
        except control.Unavailable as exc:
            absent.append(str(exc))
        except control.ReplyError as exc:
            print(f"alkomctl: {exc}", file=err)
            return EX_PROTOCOL, None
    if refused:
        print(f"alkomctl: permission denied: {'; '.join(refused)}\nhint: {HINT_NOPERM}", file=err)
        return EX_NOPERM, None
    print(f"alkomctl: no daemon answers: {'; '.join(absent)}\nhint: {HINT_UNAVAILABLE}", file=err)
    return EX_UNAVAILABLE, None


def query(
    command: str, socket: Path | None, config: Path | None, as_json: bool, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """One query, printed for people (rich tables) or scripts (--json); returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    code, data = ask(command, socket, config, err)
    if code:
        return code
    try:
        typed = control.decode(control.REPLY_TYPES[command], data, command)
    except control.ReplyError as exc:
        print(f"alkomctl: the daemon's reply is not understood ({exc}): is alkomctl older than the daemon?", file=err)
        return EX_PROTOCOL
    if as_json:
        print(json.dumps(data, ensure_ascii=False), file=out)
        return EX_OK
    from rich.console import Console  # imported late: --json and the errors stay fast

    from alkomd.daemon.ctl.status.view import devices_view, status_view, units_view

    console = Console(file=out, width=None if out.isatty() else 200, highlight=False, markup=False)
    if command == "status":
        console.print(status_view(typed))
    elif command == "units":
        console.print(units_view(typed))
    else:
        console.print(devices_view(typed))
    return EX_OK

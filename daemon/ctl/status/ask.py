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
STANDBY_TIMEOUT_S = 2.0  # a standby answers from an idle loop: this is only for one that is stuck
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
    code, data, _ = _ask(command, socket, config, err)
    return code, data


def _ask(command: str, socket: Path | None, config: Path | None, err: TextIO) -> tuple[int, Any, list[Path]]:
    """`ask`, and the sockets in the order tried (the one that answered first when one did)."""
    paths = candidates(socket, config, err)
    if paths is None:
        return EX_CONFIG, None, []
    refused: list[str] = []
    absent: list[str] = []
    for path in paths:
        try:
            return EX_OK, control.request(path, command), [path]
        except control.Refused as exc:
            refused.append(str(exc))
        except control.Unavailable as exc:
            absent.append(str(exc))
        except control.ReplyError as exc:
            print(f"alkomctl: {exc}", file=err)
            return EX_PROTOCOL, None, paths
    if refused:
        print(f"alkomctl: permission denied: {'; '.join(refused)}\nhint: {HINT_NOPERM}", file=err)
        return EX_NOPERM, None, paths
    print(f"alkomctl: no daemon answers: {'; '.join(absent)}\nhint: {HINT_UNAVAILABLE}", file=err)
    return EX_UNAVAILABLE, None, paths


def standby_of(paths: list[Path]) -> control.StandbyStatus | None:
    """The node's standby process, if one answers beside one of these control sockets (daemon/standby.py)."""
    for path in paths:
        try:
            return control.query_standby(control.standby_socket_path(path), STANDBY_TIMEOUT_S)
        except (control.ControlError, control.ReplyError):
            continue
    return None


def query(
    command: str, socket: Path | None, config: Path | None, as_json: bool, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """One query, printed for people (rich tables) or scripts (--json); returns the exit code.

    `status` also asks the node's standby (standby.sock beside the control socket) and shows it; when only
    a standby answers, its state is printed and the exit code is still 69 (no active process answers).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    code, data, tried = _ask(command, socket, config, err)
    standby = standby_of(tried) if command == "status" and code in (EX_OK, EX_UNAVAILABLE) else None
    if code:
        if standby is not None:
            print(f"alkomctl: a standby answers: pid {standby.pid}, waiting since {standby.started} for the active "
                  f"process (pid {standby.active_pid or 'unknown'}) to stop", file=err)
            if as_json:
                print(json.dumps(control.encode(standby), ensure_ascii=False), file=out)
        return code
    try:
        typed = control.decode(control.REPLY_TYPES[command], data, command)
    except control.ReplyError as exc:
        print(f"alkomctl: the daemon's reply is not understood ({exc}): is alkomctl older than the daemon?", file=err)
        return EX_PROTOCOL
    if as_json:
        if command == "status":
            data["standby"] = control.encode(standby) if standby is not None else None
        print(json.dumps(data, ensure_ascii=False), file=out)
        return EX_OK
    from rich.console import Console  # imported late: --json and the errors stay fast

    from alkomd.daemon.ctl.status.view import devices_view, status_view, units_view

    console = Console(file=out, width=None if out.isatty() else 200, highlight=False, markup=False)
    if command == "status":
        console.print(status_view(typed, standby))
    elif command == "units":
        console.print(units_view(typed))
    else:
        console.print(devices_view(typed))
    return EX_OK

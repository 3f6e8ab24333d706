"""The daemon's control socket: read-only JSON queries (status, units, devices) on a local Unix socket.

Where: `$RUNTIME_DIRECTORY/control.sock` when systemd runs the daemon (`RuntimeDirectory=alkomd`:
`/run/alkomd/control.sock`), else `control.sock` next to the database. Mode 0660: the daemon's
user and group (`alkomd`) may ask; the folder's own mode (0750) keeps others out as well. Only
the node's active process serves it; a standby (`daemon/standby.py`) answers `status` alone, with
a `StandbyStatus`, on `standby.sock` in the same folder, until it takes over.

Protocol: one request line, `{"cmd": "status"}` (or `units`, `devices`), then one reply line,
`{"ok": true, "cmd": ..., "data": ...}` or `{"ok": false, "error": ...}`, then the daemon closes
the connection. Served by the event loop, which owns the state it reports: a request is at most
`MAX_REQUEST_BYTES`, a client gets `REQUEST_TIMEOUT_S` to send it and `REPLY_TIMEOUT_S` to read
the reply, and at most `MAX_CLIENTS` are served at once, so a slow or broken client costs the
loop nothing but a socket. The replies are the frozen dataclasses below, turned into JSON here
(`encode`) and back into the same dataclasses by the client (`decode`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import json
import logging
import os
import socket
import stat
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alkomd.daemon.records import Counters, ModemHealth

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
STANDBY_SOCKET_NAME = "standby.sock"  # a standby's (beside control.sock): it answers `status` only
SYSTEMD_SOCKET = Path("/run/alkomd") / SOCKET_NAME  # RuntimeDirectory=alkomd in systemd/alkomd.service
SOCKET_MODE = 0o660
MAX_REQUEST_BYTES = 4096
REQUEST_TIMEOUT_S = 5.0
REPLY_TIMEOUT_S = 10.0
MAX_CLIENTS = 16
COMMANDS = ("status", "units", "devices")


def socket_path(store_path: Path, env: Mapping[str, str] | None = None) -> Path:
    """The control socket of a daemon whose database is `store_path` (see the module docstring)."""
    env = os.environ if env is None else env
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime) / SOCKET_NAME if runtime else store_path.parent / SOCKET_NAME


def standby_socket_path(control_path: Path) -> Path:
    """Where the standby of the daemon that serves `control_path` answers (the same folder)."""
    return control_path.with_name(STANDBY_SOCKET_NAME)


# -- the replies ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerLink:
    host: str
    port: int
    connected: bool
    since: str  # UTC time of the last change (or of the start)
    last_error: str


@dataclass(frozen=True)
class OutboxInfo:
    depth: int  # messages not yet acknowledged by the broker
    oldest_unsent_age_s: float | None
    # Of those, held though the link is up (defaults: older daemons): the broker answered 0x10 "no
    # subscriber" soon after a connect, or refused them (ACL, quota, size); `held_reason` in plain words.
    held_no_subscriber: int = 0
    held_refused: int = 0
    held_reason: str = ""


@dataclass(frozen=True)
class DatabaseInfo:
    path: str
    size_bytes: int
    wal_bytes: int
    schema_version: int


@dataclass(frozen=True)
class ReloadInfo:
    """The outcome of the last configuration reload (SIGHUP)."""

    time: str
    ok: bool
    summary: str


@dataclass(frozen=True)
class Emergency:
    """An open call raised by a unit's radio emergency button (flag `emergency`)."""

    call_id: str
    unit: str  # the unit whose radio raised it (the call's caller)
    state: str
    age_s: float | None  # seconds since it was received


@dataclass(frozen=True)
class CallsInfo:
    """The station's open calls: how many in each state, the emergencies among them, the age of the oldest."""

    open: int
    states: dict[str, int]  # state -> open calls in it
    emergencies: list[Emergency]
    oldest_age_s: float | None  # seconds since the oldest open call was received


@dataclass(frozen=True)
class BelowInfo:
    """The units of the nodes below that a Polda or Mabes follows (their retained positions and statuses)."""

    units: int  # units known (any status)
    located: int  # of those, units with a position: what the recommendation ranks
    positions: int  # position messages taken in since the start
    statuses: int  # status messages taken in since the start
    from_snapshot: int  # units loaded at start from the database's snapshot (before the broker's retained flood)
    snapshot_time: str | None  # UTC time the loaded snapshot was written (None: there was none)
    child_pid: int | None = None  # `below_connection = "separate"`: the below link's child process (None: not running)
    child_restarts: int = 0  # times that child was started again after it ended


@dataclass(frozen=True)
class Status:
    version: str
    node: str
    name: str
    tier: str
    pid: int
    config: str
    started: str
    uptime_s: float
    ready: bool
    broker: BrokerLink
    outbox: OutboxInfo
    database: DatabaseInfo
    devices: dict[str, int]  # state -> number of configured devices
    units: dict[str, int]  # status -> number of configured units
    last_reload: ReloadInfo | None
    implausible_fixes: int = 0  # unit fixes the plausibility gate rejected since the start (a default: older daemons)
    calls: CallsInfo | None = None  # open calls and emergencies (None: an older daemon that does not say)
    role: str = "active"  # the process serving control.sock is always the node's active one (daemon/standby.py)
    took_over: str | None = None  # UTC time it took over as the active process after waiting as a standby

    below: BelowInfo | None = None  # units followed below (None: a Polres, or an older daemon)


@dataclass(frozen=True)
class StandbyStatus:
    """A standby's answer on standby.sock: it waits for the node's lock; nothing of the node is open yet."""

    version: str
    node: str
    pid: int
    config: str
    started: str  # UTC time it started waiting
    uptime_s: float
    active_pid: int | None  # the pid the active process wrote into the lock file (None: not known)
    lock: str  # the lock file
    role: str = "standby"


@dataclass(frozen=True)
class UnitRow:
    id: str
    callsign: str
    type: str
    device: str
    radio: str
    status: str
    status_since: str | None
    call_id: str | None
    last_fix: str | None  # UTC time of the newest fix
    age_s: float | None  # seconds since that fix's time
    lat: float | None
    lon: float | None
    source: str | None  # the device (and radio) it came from
    implausible_fixes: int = 0  # its fixes the plausibility gate rejected since the start (a default: older daemons)
    last_heard: str | None = None  # UTC time its radio was last heard (a fix, a status code or a key-up; since the start)
    heard_age_s: float | None = None  # seconds since then


@dataclass(frozen=True)
class DeviceRow:
    id: str
    driver: str
    enabled: bool
    state: str  # a DeviceState, or starting / disabled
    since: str | None
    detail: str
    counters: Counters | None
    last_data_age_s: float | None
    modem: ModemHealth | None
    refused_fixes: int = 0  # its fixes the station's plausibility gate refused since the start (a default: older daemons)


Reply = Status | StandbyStatus | list[UnitRow] | list[DeviceRow]


# -- serialising ----------------------------------------------------------------------------------


_PRIMITIVE = (str, int, float, bool, type(None))


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def encode(data: object) -> Any:
    """A reply as JSON-ready values (dataclasses become objects)."""
    if isinstance(data, _PRIMITIVE):
        return data
    if isinstance(data, list | tuple):
        return [encode(x) for x in data]
    if isinstance(data, dict):
        return {str(k): encode(v) for k, v in data.items()}
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        out = {}
        for name in _field_names(type(data)):
            value = getattr(data, name)
            out[name] = value if isinstance(value, _PRIMITIVE) else encode(value)
        return out
    return data


class ReplyError(Exception):
    """The daemon's reply is not what this alkomctl understands (or the daemon reported an error)."""


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def decode(tp: Any, value: Any, where: str = "reply") -> Any:
    """Rebuild a reply type from JSON values; unknown fields are ignored (a newer daemon may add some)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None):
                return decode(arg, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ReplyError(f"{where}: expected a list")
        (item,) = typing.get_args(tp)
        return [decode(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ReplyError(f"{where}: expected an object")
        _, vt = typing.get_args(tp)
        return {str(k): decode(vt, v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ReplyError(f"{where}: expected an object")
        hints = _hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in value:
                kwargs[f.name] = decode(hints[f.name], value[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING:
                raise ReplyError(f"{where}: missing {f.name!r}")
        return tp(**kwargs)
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(tp, type) and isinstance(value, tp) and not (isinstance(value, bool) and tp is not bool):
        return value
    raise ReplyError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {type(value).__name__}")


# -- the server -----------------------------------------------------------------------------------


class ControlServer:
    """Serves the queries on a Unix socket, from the event loop."""

    def __init__(self, path: Path, handlers: Mapping[str, Callable[[], Reply]]) -> None:
        self.path = path
        self.handlers = dict(handlers)
        self.clients = 0
        self.requests = 0
        self.refused = 0
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None

    async def start(self) -> bool:
        """Listen (True), or log why not and return False: the daemon runs on without it."""
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not _claim(path):
                return False
            self._server = await asyncio.start_unix_server(self._serve, path=str(path), limit=MAX_REQUEST_BYTES)
            os.chmod(path, SOCKET_MODE)
            self._inode = path.stat().st_ino
        except OSError as exc:
            log.error("control socket %s: cannot listen: %s; alkomctl status will not reach this daemon", path, exc)
            return False
        log.info("control socket: listening on %s", path)
        return True

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        self._server = None
        with contextlib.suppress(OSError):
            if self._inode is not None and self.path.stat().st_ino == self._inode:
                self.path.unlink()  # ours still: a newer daemon may have taken the name

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.clients >= MAX_CLIENTS:
                self.refused += 1
                reply: dict[str, Any] = {"ok": False, "error": f"busy: {MAX_CLIENTS} clients already; try again"}
            else:
                self.clients += 1
                try:
                    reply = await self._answer(reader)
                finally:
                    self.clients -= 1
            writer.write(json.dumps(reply, separators=(",", ":"), allow_nan=False).encode() + b"\n")
            await asyncio.wait_for(writer.drain(), REPLY_TIMEOUT_S)
            writer.close()
        except (TimeoutError, OSError) as exc:  # a client that does not read, or went away
            log.debug("control socket: client dropped: %s", exc or type(exc).__name__)
            writer.transport.abort()
        except Exception:  # supervision boundary: one bad request must not take the socket down
            log.exception("control socket: request failed")
            writer.transport.abort()

    async def _answer(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        try:
            line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT_S)
        except TimeoutError:
            return {"ok": False, "error": f"no request line within {REQUEST_TIMEOUT_S:g} s"}
        except ValueError:  # longer than the stream limit
            return {"ok": False, "error": f"request longer than {MAX_REQUEST_BYTES} bytes"}
        try:
            req = json.loads(line)
        except (ValueError, RecursionError):
            req = None
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            return {"ok": False, "error": 'not a request: send one JSON line such as {"cmd": "status"}'}
        cmd = req["cmd"]
        handler = self.handlers.get(cmd)
        if handler is None:
            return {"ok": False, "error": f"unknown command {cmd[:40]!r} (known: {', '.join(self.handlers)})"}
        self.requests += 1
        try:
            data = handler()
        except Exception:  # supervision boundary: report, keep serving
            log.exception("control socket: %s failed", cmd)
            return {"ok": False, "error": f"{cmd} failed inside the daemon (its log has the traceback)"}
        return {"ok": True, "cmd": cmd, "data": encode(data)}


def _claim(path: Path) -> bool:
    """Remove a stale socket left by a killed daemon; never a live one, never another kind of file."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return True
    if not stat.S_ISSOCK(st.st_mode):
        log.error("control socket %s: a file that is not a socket is in the way; not serving the control socket", path)
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()
        return True
    finally:
        probe.close()
    log.error("control socket %s: another daemon answers on it; not serving the control socket", path)
    return False


# -- the client -----------------------------------------------------------------------------------


class ControlError(Exception):
    """The daemon could not be asked (see the subclasses)."""


class Unavailable(ControlError):
    """No daemon listens at the socket (absent, refused, or not answering)."""


class Refused(ControlError):
    """The socket exists but this user may not use it (not in the daemon's group)."""


def request(path: Path, cmd: str, timeout_s: float = REPLY_TIMEOUT_S) -> Any:
    """Send one command, return the reply's `data` (JSON values). Raises ControlError, ReplyError."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout_s)
    try:
        try:
            s.connect(str(path))
        except PermissionError as exc:
            raise Refused(f"{path}: {exc.strerror}") from None
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise Refused(f"{path}: {exc.strerror}") from None
            raise Unavailable(f"{path}: {exc.strerror or exc}") from None
        try:
            s.sendall(json.dumps({"cmd": cmd}).encode() + b"\n")
            chunks = []
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except TimeoutError:
            raise Unavailable(f"{path}: the daemon did not answer within {timeout_s:g} s") from None
        except OSError as exc:
            raise Unavailable(f"{path}: {exc.strerror or exc}") from None
    finally:
        s.close()
    try:
        reply = json.loads(b"".join(chunks))
    except ValueError:
        raise ReplyError(f"{path}: the reply is not JSON") from None
    if not isinstance(reply, dict):
        raise ReplyError(f"{path}: the reply is not a JSON object")
    if not reply.get("ok"):
        raise ReplyError(f"the daemon refused {cmd!r}: {reply.get('error', 'no reason given')}")
    return reply.get("data")


REPLY_TYPES: dict[str, Any] = {"status": Status, "units": list[UnitRow], "devices": list[DeviceRow]}


def query(path: Path, cmd: str, timeout_s: float = REPLY_TIMEOUT_S) -> Any:
    """`request`, with the reply rebuilt into its dataclasses (Status, list[UnitRow], list[DeviceRow])."""
    return decode(REPLY_TYPES[cmd], request(path, cmd, timeout_s), cmd)


def query_status(path: Path, timeout_s: float = REPLY_TIMEOUT_S) -> Status:
    status: Status = query(path, "status", timeout_s)
    return status


def query_standby(path: Path, timeout_s: float = REPLY_TIMEOUT_S) -> StandbyStatus:
    """A standby's `status` on its standby.sock."""
    standby: StandbyStatus = decode(StandbyStatus, request(path, "status", timeout_s), "status")
    return standby

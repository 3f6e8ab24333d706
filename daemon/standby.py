"""One active process per node: the kernel's exclusive lock on `<database>.lock`; a second process waits as its standby.

Every `alkomd` takes `flock(LOCK_EX)` on the lock file next to its database before it opens the
database or connects to the broker. The process that holds it is the node's active process; any
other (same configuration, same database, same host) is a standby: it waits, polling the lock
every POLL_S, with its event loop free for SIGTERM, and becomes the active process the moment the
lock is free. The kernel releases the lock when its holder's last file descriptor closes, so also
when the holder is SIGKILLed or crashes: no lease to expire, no consensus of our own. The holder
writes its pid into the file (for the standby's log line and `alkomctl status`); the file itself
is never removed (removing a lock file races with a process that just opened it).

flock(2) locks are per open file description and local to one host: the database is a local
SQLite file, so both processes run on the host that has it.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from alkomd.daemon import __version__
from alkomd.daemon.config import Config
from alkomd.daemon.control import ControlServer, StandbyStatus, socket_path, standby_socket_path
from alkomd.daemon.records import utc_iso, utc_now
from alkomd.daemon.sdnotify import Notifier
from alkomd.daemon.store.database import StoreError

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"
POLL_S = 0.2


def lock_path(store_path: Path) -> Path:
    """The lock file of a node whose database is `store_path`: `<database>.lock` beside it."""
    return store_path.with_name(store_path.name + LOCK_SUFFIX)


class NodeLock:
    """The node's exclusive lock; `try_acquire` once, or `wait` for it as a standby."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.held = False

    def _open(self) -> int:
        if self._fd is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise StoreError(f"cannot open the node's lock file {self.path}: {exc}") from exc
        return self._fd

    def try_acquire(self) -> bool:
        """Take the lock if it is free (True), writing this process's pid into the file; False if another holds it."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as exc:
            raise StoreError(f"cannot lock {self.path}: {exc}") from exc
        self.held = True
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # the lock is what matters; the pid is only for people
            pass
        return True

    def holder(self) -> int | None:
        """The pid the holder wrote into the file (None: not written yet, or unreadable)."""
        try:
            text = os.pread(self._open(), 32, 0).decode("ascii", "replace").strip()
        except (OSError, StoreError):
            return None
        return int(text) if text.isdigit() else None

    async def wait(self, stopping: Callable[[], bool]) -> bool:
        """Poll until the lock is ours (True) or `stopping()` (False)."""
        while not stopping():
            if self.try_acquire():
                return True
            await asyncio.sleep(POLL_S)
        return False

    def release(self) -> None:
        """Close the file: the kernel releases the lock (it would at exit anyway, SIGKILL included)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self.held = False


async def stand_by(lock: NodeLock, cfg: Config, notify: Notifier, stopping: Callable[[], bool]) -> bool:
    """Wait as the node's standby until the lock is ours (True) or the process is told to stop (False).

    Meanwhile: one log line, READY=1 with a STATUS saying so (systemd's start does not time out),
    watchdog pings from this loop, and `status` answered on standby.sock.
    """
    started_at, started_mono = utc_now(), time.monotonic()
    active = lock.holder()
    log.info("standby: waiting for the active process (pid %s) to stop (%s is locked)", active or "unknown", lock.path)
    notify.ready(f"standby: waiting for the active process (pid {active or 'unknown'}) to stop")

    def status() -> StandbyStatus:
        return StandbyStatus(__version__, cfg.node.topic, os.getpid(), str(cfg.source), utc_iso(started_at),
                             round(time.monotonic() - started_mono, 3), lock.holder(), str(lock.path))

    server = ControlServer(standby_socket_path(socket_path(cfg.store.path)), {"status": status})
    await server.start()
    pings = asyncio.create_task(_ping(notify, notify.watchdog_s), name="standby-watchdog") if notify.watchdog_s else None
    try:
        got = await lock.wait(stopping)
    finally:
        if pings is not None:
            pings.cancel()
        await server.close()
    if got:
        log.info("standby: the active process (pid %s) stopped; taking over after %.1f s as its standby",
                 active or "unknown", time.monotonic() - started_mono)
    return got


async def _ping(notify: Notifier, watchdog_s: float) -> None:
    while True:
        notify.watchdog()
        await asyncio.sleep(watchdog_s / 2)

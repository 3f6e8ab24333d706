"""A pseudo-terminal standing in for a USB GPS port, reached through a stable symlink (`socat pty,link=...`).

The simulator writes into it, `alkomctl capture` replays into it, and the tests use it for a
receiver that can be unplugged and plugged back as a new tty.
"""

from __future__ import annotations

import errno
import os
import select
import threading
import tty
from pathlib import Path
from types import TracebackType
from typing import Any, Self


class PtyGps:
    """A pseudo-terminal standing in for a USB GPS: the slave is reached through a stable symlink.

    `write` never blocks: the master is non-blocking, and bytes are dropped (and counted) when no
    program has the port open or its buffer is full, as a real receiver's bytes are lost then.
    """

    def __init__(self, link: Path | str) -> None:
        self.link = Path(link)
        self.slave_name = ""
        self.written_bytes = 0
        self.dropped_bytes = 0
        self.plugs = 0
        self._master: int | None = None
        self._poll: Any = None
        self._lock = threading.Lock()
        if self.link.exists() and not self.link.is_symlink():
            raise FileExistsError(errno.EEXIST, "refusing to replace a file that is not a symlink", str(self.link))
        self.link.parent.mkdir(parents=True, exist_ok=True)
        self.replug()

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def replug(self) -> None:
        """Create a new pty pair and point the symlink at its slave (atomically)."""
        with self._lock:
            self._close_master()
            master, slave = os.openpty()
            try:
                tty.setraw(slave)
                name = os.ttyname(slave)
            finally:
                os.close(slave)  # the reader opens it by path; no open slave means "nobody listens"
            os.set_blocking(master, False)
            poll = select.poll()
            poll.register(master, select.POLLOUT | select.POLLHUP | select.POLLERR)
            tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            try:
                if tmp.is_symlink():
                    tmp.unlink()
                os.symlink(name, tmp)
                os.replace(tmp, self.link)
            except OSError:
                os.close(master)
                raise
            self._master, self._poll, self.slave_name = master, poll, name
            self.plugs += 1

    def unplug(self) -> None:
        """Close the master (readers get an error) and remove the symlink (opening it fails)."""
        with self._lock:
            self._close_master()
            if self.link.is_symlink():
                try:
                    self.link.unlink()
                except FileNotFoundError:
                    pass

    close = unplug

    def _close_master(self) -> None:
        if self._master is not None:
            try:
                os.close(self._master)
            except OSError:
                pass
            self._master = self._poll = None

    def write(self, data: bytes) -> int:
        """Write what the port accepts now; drop and count the rest. Returns bytes written."""
        with self._lock:
            fd = self._master
            if fd is None:
                self.dropped_bytes += len(data)
                return 0
            events = self._poll.poll(0)
            if any(ev & (select.POLLHUP | select.POLLERR) for _, ev in events):
                self.dropped_bytes += len(data)  # no program has the port open
                return 0
            done = 0
            while done < len(data):
                try:
                    n = os.write(fd, data[done:])
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # EIO: the slave side went away
                    break
                if n <= 0:
                    break
                done += n
            self.written_bytes += done
            self.dropped_bytes += len(data) - done
            return done

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

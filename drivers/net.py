"""A TCP connect that a driver's stop event can cut short (gpsd, Modbus TCP)."""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
import time

_PENDING = (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK)


def connect_tcp(host: str, port: int, timeout_s: float, stop: threading.Event, slice_s: float = 0.1) -> socket.socket | None:
    """`socket.create_connection`, but its waits are cut into `slice_s` slices that check `stop`.

    Returns a blocking socket, or None when `stop` was set first. Raises OSError: the address
    cannot be resolved (`socket.gaierror`), `ConnectionRefusedError`, `TimeoutError` after
    `timeout_s` per address, or another error of the last address tried.
    """
    last: OSError | None = None
    for family, kind, proto, _, addr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            err = sock.connect_ex(addr)
            deadline = time.monotonic() + timeout_s
            while err in _PENDING:
                if stop.is_set():
                    sock.close()
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    err = errno.ETIMEDOUT
                    break
                _, writable, _ = select.select([], [sock], [], min(slice_s, left))
                if writable:
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == 0:
                sock.setblocking(True)
                return sock
            raise OSError(err, os.strerror(err))  # ECONNREFUSED, ETIMEDOUT: the matching subclass
        except OSError as exc:
            sock.close()
            last = exc
        except BaseException:
            sock.close()
            raise
    raise last or OSError(errno.EADDRNOTAVAIL, f"no address for {host}")

"""What the serial-port tools share: opening a port as the daemon does with a clear error, closing it, Ctrl-C."""

from __future__ import annotations

import errno
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import serial

from alkomd.daemon.exit_codes import EX_NOINPUT, EX_NOPERM, EX_TEMPFAIL, EX_UNAVAILABLE
from alkomd.drivers.nmea_serial import open_port, port_hint

READ_TIMEOUT_S = 0.25  # bounds how long Ctrl-C or the end of --seconds waits for a blocked read


class PortError(Exception):
    """A port could not be opened: a technician-facing message and the exit code that says why."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def exit_code_for(exc: BaseException) -> int:
    """66 no such port, 77 permission denied, 75 busy (locked), else 69."""
    err = getattr(exc, "errno", None)
    text = str(exc)
    if err in (errno.ENOENT, errno.ENODEV, errno.ENXIO) or "No such file" in text:
        return EX_NOINPUT
    if err in (errno.EACCES, errno.EPERM) or "Permission denied" in text:
        return EX_NOPERM
    if err in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in text:
        return EX_TEMPFAIL
    return EX_UNAVAILABLE


def busy_message(url: str) -> str:
    """Who holds a busy port, and what to do about it."""
    from alkomd.daemon.ctl.ports.report import collect

    report = collect([url])
    holders = report.ports[0].holders if report.ports else ()
    daemon = [h for h in holders if h.alkomd]
    if daemon:
        h = daemon[0]
        what = f"the alkomd daemon (pid {h.pid}" + (f", [[device]] {h.device}" if h.device else "") + ")"
        return (
            f"{url} is in use by {what}; it is not shared. Stop the daemon first (sudo systemctl stop alkomd) "
            "and start it again afterwards"
        )
    if holders:
        names = ", ".join(f"{h.name} (pid {h.pid})" for h in holders)
        return f"{url} is in use by {names}; `alkomctl ports {url}` says more"
    return f"{url} is in use by another program (it holds the port's lock); `sudo alkomctl ports {url}` shows which"


def open_for_tool(url: str, baud: int, framing: str, exclusive: bool = True, timeout: float = READ_TIMEOUT_S) -> serial.SerialBase:
    """`open_port` with the driver's flock; a failure becomes a PortError naming the holder and the fix."""
    try:
        return open_port(url, baud, framing, exclusive, timeout=timeout)
    except (serial.SerialException, OSError, ValueError) as exc:
        code = exit_code_for(exc)
        if code == EX_NOPERM:
            message = f"permission denied on {url}: add the user to dialout (sudo usermod -aG dialout $USER, then log in again)"
        elif code == EX_TEMPFAIL:
            message = busy_message(url) if "://" not in url else f"{url}: busy ({exc})"
        elif code == EX_NOINPUT:
            message = f"{url}: no such port: unplugged, or a wrong path? (`alkomctl ports` lists the ports)"
        else:
            message = f"{url}: {port_hint(exc)}"
        raise PortError(message, code) from exc


def close_quietly(port: serial.SerialBase) -> None:
    """Close a port at the end of a tool's run; a port already gone (unplugged) has nothing left to close."""
    try:
        port.close()
    except (serial.SerialException, OSError):
        pass


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM set `stop` instead of raising (in the main thread; restored afterwards)."""
    old: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def printable(raw: bytes) -> str:
    """Bytes as text with every non-printable byte as \\xNN (STX, NUL, binary noise)."""
    return "".join(chr(b) if 32 <= b < 127 else f"\\x{b:02x}" for b in raw)

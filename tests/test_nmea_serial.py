"""The NMEA serial driver on real ptys and a real TCP socket: states, counters, URLs, locking."""

from __future__ import annotations

import itertools
import os
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import serial
from conftest import wait_until

from alkomd.daemon.records import DeviceState, DeviceStatus, Fix, Record
from alkomd.drivers.nmea_serial import NmeaOptions, NmeaSerial, open_port, port_hint
from alkomd.drivers.nmea_writer import EpochSpec, epoch
from alkomd.drivers.simulator import PtyGps


class Run:
    """A driver running in its own thread, as the runtime runs it."""

    def __init__(self, url: str, **opts: object) -> None:
        self.records: list[Record] = []
        self.driver = NmeaSerial("gps", NmeaOptions(url=url, **opts))  # type: ignore[arg-type]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.driver.run, args=(self.stop, self.records.append), daemon=True)
        self.thread.start()

    def states(self) -> list[DeviceState]:
        return [r.state for r in self.records if isinstance(r, DeviceStatus)]

    def fixes(self) -> list[Fix]:
        return [r for r in self.records if isinstance(r, Fix)]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive(), "driver must stop within the read timeout"


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[PtyGps]:
    p = PtyGps(tmp_path / "ttyGPS")
    yield p
    p.unplug()


def _epochs(n: int, valid: bool = True, start: datetime | None = None) -> bytes:
    t0 = start or datetime.now(timezone.utc).replace(microsecond=0)
    return b"".join(epoch(EpochSpec(t0 + timedelta(seconds=i), 0.55 + i * 1e-4, 123.1, valid=valid)) for i in range(n))


def test_states_follow_the_line_waiting_connected_no_fix_silent_degraded(pty: PtyGps) -> None:
    run = Run(str(pty.link), silent_after_s=1.0, no_fix_after_s=1.0)
    try:
        wait_until(lambda: run.states() == [DeviceState.WAITING], what="port open")
        pty.write(_epochs(3))
        wait_until(lambda: len(run.fixes()) >= 2, what="fixes")
        # Receiver without a fix: sentences flow, no valid fix -> no_fix, and no phantom fix.
        before = len(run.fixes())
        for _ in range(8):
            pty.write(_epochs(1, valid=False, start=datetime.now(timezone.utc)))
            if run.states()[-1] is DeviceState.NO_FIX:
                break
            threading.Event().wait(0.3)
        wait_until(lambda: run.states()[-1] is DeviceState.NO_FIX, what="no_fix")
        assert len(run.fixes()) <= before + 1  # at most the epoch that was open
        # Only garbage (high-bit bytes, like a wrong baud rate): no valid sentence -> silent.
        for _ in range(10):
            pty.write(bytes(range(128, 256)) + b"\r\n")
            if run.states()[-1] is DeviceState.SILENT:
                break
            threading.Event().wait(0.25)
        wait_until(lambda: run.states()[-1] is DeviceState.SILENT, what="silent")
        # Corrupt sentences outnumbering good ones -> degraded.
        bad = _epochs(2).replace(b"*", b"*F")
        for _ in range(10):
            pty.write(bad + _epochs(1, start=datetime.now(timezone.utc)))
            if run.states()[-1] is DeviceState.DEGRADED:
                break
            threading.Event().wait(0.2)
        wait_until(lambda: run.states()[-1] is DeviceState.DEGRADED, what="degraded")
        c = run.driver.counters()
        assert c.garbage_bytes >= 128 and c.checksum_errors + c.parse_errors >= 10 and c.sentences >= 30
    finally:
        run.close()
    # Changes only: never the same state with the same detail twice in a row.
    seen = [(r.state, r.detail) for r in run.records if isinstance(r, DeviceStatus)]
    assert all(a != b for a, b in itertools.pairwise(seen))


def test_socket_url_is_read_like_a_serial_port() -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    run = Run(f"socket://127.0.0.1:{port}")
    try:
        conn, _ = srv.accept()
        # pyserial's socket handler discards what arrived while it was opening: wait for "open".
        wait_until(lambda: bool(run.states()), what="port open")
        conn.sendall(_epochs(4))
        wait_until(lambda: len(run.fixes()) >= 3, what="fixes over TCP")
        assert abs(run.fixes()[0].lat - 0.55) < 1e-6
        conn.close()  # the modem drops the connection: disconnected, then reconnects
        wait_until(lambda: DeviceState.DISCONNECTED in run.states(), what="disconnected")
        conn2, _ = srv.accept()
        conn2.close()
    finally:
        run.close()
        srv.close()


def test_a_port_held_by_another_program_is_refused_with_a_hint(pty: PtyGps) -> None:
    held = open_port(str(pty.link), 9600, "8N1", exclusive=True)
    try:
        with pytest.raises(serial.SerialException) as err:
            open_port(str(pty.link), 9600, "8N1", exclusive=True)
        assert "in use by another program" in port_hint(err.value)
    finally:
        held.close()


def test_missing_port_reports_disconnected_with_reason(tmp_path: Path) -> None:
    run = Run(str(tmp_path / "nothing-here"), reconnect_max_s=0.5)
    try:
        wait_until(lambda: bool(run.states()), what="a state")
        status = next(r for r in run.records if isinstance(r, DeviceStatus))
        assert status.state is DeviceState.DISCONNECTED and "not found" in status.detail
    finally:
        run.close()
    assert run.states() == [DeviceState.DISCONNECTED]  # reported once, not at every retry


def test_permission_hint_names_dialout() -> None:
    exc = serial.SerialException(13, "could not open port /dev/ttyUSB0: [Errno 13] Permission denied: '/dev/ttyUSB0'")
    assert "dialout" in port_hint(exc)
    assert os.path.basename("/dev/ttyUSB0") in port_hint(exc)

"""The service as systemd sees it: the unit passes both analyzers; the notify protocol is kept."""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Station, wait_until

from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.drivers.simulator import PtyGps

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "alkomd.service"


STANDBY_UNIT = ROOT / "systemd" / "alkomd-standby.service"
HISTORY_UNIT = ROOT / "systemd" / "alkomd-history@.service"


@pytest.fixture(params=[UNIT, STANDBY_UNIT, HISTORY_UNIT], ids=["alkomd", "alkomd-standby", "alkomd-history@"])
def unit_copy(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A shipped unit with ExecStart pointing at this environment's alkomd (verify needs it to exist)."""
    unit: Path = request.param
    exe = Path(sys.executable).parent / "alkomd"
    assert exe.is_file(), "the test environment has the alkomd console script"
    text = unit.read_text().replace("/opt/alkomd/venv/bin/alkomd", str(exe))
    assert str(exe) in text
    out = tmp_path / unit.name.replace("@.", "@1.")  # a template is verified as one of its instances
    out.write_text(text)
    return out


def test_unit_passes_systemd_analyze_verify(unit_copy: Path) -> None:
    r = subprocess.run(["systemd-analyze", "verify", str(unit_copy)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_unit_exposure_is_at_most_1_5(unit_copy: Path) -> None:
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=15", str(unit_copy)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(rf"Overall exposure level for {re.escape(unit_copy.name)}: ([0-9.]+)", r.stdout)
    assert m is not None, r.stdout[-500:]
    assert float(m.group(1)) <= 1.5 and r.returncode == 0, m.group(0)


def test_the_standby_unit_is_the_unit_but_for_its_name_order_and_credentials_view() -> None:
    """alkomd-standby.service runs the same daemon with the same configuration and hardening: only Description=,
    After= (alkomd.service first at boot) and the BindReadOnlyPaths= that shows it its credentials where the shared
    configuration's password_file looks differ; both keep /run/alkomd when they stop (RuntimeDirectoryPreserve)."""
    def settings(path: Path) -> list[str]:
        return [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]

    main, standby = settings(UNIT), settings(STANDBY_UNIT)
    assert [ln for ln in standby if ln not in main] == [
        "Description=alkomd GPS tracking and 110 dispatch daemon (standby process of the node)",
        "After=network-online.target time-sync.target modprobe@usbserial.service modprobe@cdc_acm.service alkomd.service",
        "BindReadOnlyPaths=/run/credentials/alkomd-standby.service:/run/credentials/alkomd.service",
    ]
    assert [ln for ln in main if ln not in standby] == [ln for ln in main if ln.startswith(("Description=", "After="))]
    assert "RuntimeDirectoryPreserve=yes" in main


def test_unit_keeps_the_promises_the_readme_makes() -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "NotifyAccess=main", "Restart=on-failure", "RestartPreventExitStatus=78", "User=alkomd",
                 "SupplementaryGroups=dialout", "StateDirectory=alkomd", "RuntimeDirectory=alkomd",
                 "ConfigurationDirectory=alkomd", "LoadCredential=mqtt-password:"):
        assert line in text, line
    assert re.search(r"^WatchdogSec=\d+", text, re.M)
    sysusers = (ROOT / "systemd" / "alkomd.sysusers").read_text()
    assert re.search(r"^u alkomd ", sysusers, re.M) and re.search(r"^m alkomd dialout$", sysusers, re.M)


class NotifySocket:
    """A systemd-like NOTIFY_SOCKET: a datagram socket that records each message and its sender's PID."""

    def __init__(self, address: str) -> None:
        self.env = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        size = socket.CMSG_SPACE(struct.calcsize("3i"))
        while not self._stop.is_set():
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, size)
            except TimeoutError:
                continue
            pid = -1
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", payload[: struct.calcsize("3i")])[0]
            self.messages.append((pid, data.decode()))

    def fields(self, key: str) -> list[str]:
        return [line for _, text in self.messages for line in text.split("\n") if line.startswith(key + "=")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def notify(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifySocket]:
    address = str(tmp_path / "notify.sock") if request.param == "path" else f"@alkomd-test-{os.getpid()}-{id(tmp_path)}"
    n = NotifySocket(address)
    yield n
    n.close()


def test_sd_notify_contract_ready_status_watchdog_stopping(
    notify: NotifySocket, station: Station, broker: Broker, tmp_path: Path
) -> None:
    """READY=1 exactly once (not waiting for the broker), watchdog pings while running, STOPPING=1 on SIGTERM,
    every message from the main PID (NotifyAccess=main)."""
    station.write_config()
    pty = PtyGps(station.links[0])
    env = dict(os.environ, NOTIFY_SOCKET=notify.env, WATCHDOG_USEC="400000", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "alkomd.daemon.main", "--config", str(station.config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_until(lambda: bool(notify.fields("READY")), 20, "READY=1")
        wait_until(lambda: len(notify.fields("WATCHDOG")) >= 3, 20, "watchdog pings")
        wait_until(lambda: any("broker connected" in s for s in notify.fields("STATUS")), 20, "a STATUS line")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        pty.unplug()
    assert notify.fields("READY") == ["READY=1"]
    assert notify.fields("STOPPING") == ["STOPPING=1"]
    assert {pid for pid, _ in notify.messages} == {proc.pid}
    order = [text.split("\n")[0] for _, text in notify.messages]
    assert order.index("READY=1") < order.index("STOPPING=1") == len(order) - 1

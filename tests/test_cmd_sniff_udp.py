"""`alkomctl sniff udp://...` on loopback: MOTOTRBO and Hytera datagrams judged, fixes and emergencies shown, a held port refused."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from conftest import wait_until
from helpers_radio import free_udp_port

from alkomd.daemon.ctl.sniff.datagrams import DatagramSniffer
from alkomd.daemon.ctl.sniff.udp import parse_url, render
from alkomd.daemon.exit_codes import EX_OK, EX_TEMPFAIL, EX_USAGE
from alkomd.daemon.records import Fix, RadioStatus
from alkomd.drivers import hytera, lrrp, lrrp_ars
from alkomd.drivers.lrrp import LocationReport, MessageType, Shape
from alkomd.drivers.lrrp_build import encode_report
from alkomd.drivers.sim_hytera import HyteraSim
from alkomd.drivers.sim_mototrbo import MototrboSim, SimRadio

NOW = datetime.now(UTC).replace(microsecond=0)
CLI = [sys.executable, "-m", "alkomd.daemon.ctl"]


def test_datagram_sniffer_judges_lrrp_and_ars() -> None:
    sn = DatagramSniffer("lrrp")
    report = encode_report(LocationReport(MessageType.TRIGGERED_REPORT, b"T1001", None, b"", Shape.CIRCLE_2D, 0.54, 123.06, 7.0, time=NOW))
    out = sn.feed(report, "12.0.3.233", 4001, NOW, 1.0)
    assert out[0].verdict == "ok" and out[0].radio == "1001" and "triggered report" in out[0].kind  # type: ignore[union-attr]
    fix = out[1]
    assert isinstance(fix, Fix) and fix.radio == "1001" and fix.accuracy_m == 7.0
    ars = sn.feed(lrrp_ars.encode_registration(1002), "12.0.3.234", 4005, NOW, 1.0)
    assert ars[0].kind == "ARS registered" and ars[0].radio == "1002"  # type: ignore[union-attr]
    req = sn.feed(lrrp.triggered_start(b"T1", 30), "10.1.1.1", 4001, NOW, 1.0)
    assert "every 30 s" in req[0].kind  # type: ignore[union-attr]
    bad = sn.feed(b"\x13\x09junk", "12.0.3.233", 4001, NOW, 1.0)
    assert bad[0].verdict == "unparsable" and sn.parse_errors == 1 and sn.valid == 3  # type: ignore[union-attr]
    assert sorted(sn.radios) == ["1001", "1002"] and sn.fixes == 1
    assert render(sn, "udp 0.0.0.0:4001", False, 3.0, 40) is not None


def test_datagram_sniffer_judges_hytera() -> None:
    sn = DatagramSniffer("hytera")
    gps = hytera.gps_block(True, NOW, 0.54, 123.06, 10.0, 90)
    out = sn.feed(hytera.encode_report(hytera.Opcode.EMERGENCY_REPORT, 0, 1001, gps, emergency_type=1), "10.0.3.233", 3003, NOW, 1.0)
    assert [type(o).__name__ for o in out] == ["Seen", "Fix", "RadioStatus"]
    assert isinstance(out[2], RadioStatus) and out[2].code == 99 and sn.radios["1001"].emergency
    broken = bytearray(hytera.standard_request(1, 1001))
    broken[-2] ^= 0xFF
    assert sn.feed(bytes(broken), "10.0.0.1", 3003, NOW, 1.0)[0].verdict == "bad checksum"  # type: ignore[union-attr]


def test_udp_urls() -> None:
    assert parse_url("udp://0.0.0.0:4001") == ("0.0.0.0", 4001)
    assert parse_url("udp://:3003") == ("0.0.0.0", 3003)
    for bad in ("udp://0.0.0.0", "tcp://1.2.3.4:5", "udp://host:99999"):
        with pytest.raises(ValueError):
            parse_url(bad)


class Sniff:
    """`alkomctl sniff udp://...` as a process, its JSON lines collected."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([*CLI, "sniff", *args, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[dict[str, object]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def of(self, kind: str) -> list[dict[str, object]]:
        return [o for o in self.lines if o["type"] == kind]

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=20)
        self.thread.join(5)  # the reader has the rest of stdout
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()


def _until(sniff: Sniff, send: Callable[[], None], pred: Callable[[], bool], what: str) -> None:
    def again() -> bool:
        send()  # datagrams sent before the sniff listens are lost: send until seen
        return pred()

    wait_until(again, 20, what)


def test_sniff_shows_mototrbo_reports_and_garbage() -> None:
    lrrp_port, ars_port = free_udp_port(), free_udp_port()
    sim = MototrboSim([SimRadio(1001), SimRadio(1002)], lrrp_port=lrrp_port, ars_port=ars_port)
    sniff = Sniff(f"udp://127.0.0.1:{lrrp_port}", "--format", "lrrp", "--radio-network", "127")
    try:
        _until(sniff, lambda: sim.emergency("1002"), lambda: bool(sniff.of("fix")), "a fix in the sniff")
        sim.send_raw("1001", b"\x07\x03garbage")
        wait_until(lambda: any(o["verdict"] == "unparsable" for o in sniff.of("datagram")), what="the garbage shown")
    finally:
        code, err = sniff.stop()
        sim.close()
    assert code == EX_OK, err
    fix = sniff.of("fix")[0]
    assert fix["radio"] == "1002" and fix["accuracy_m"] == 5.0
    summary = sniff.of("summary")[0]
    assert summary["format"] == "lrrp" and "1002" in summary["radios"]  # type: ignore[operator]
    assert any(o["kind"] == "unsolicited report" and o["radio"] == "1002" for o in sniff.of("datagram"))


def test_sniff_shows_hytera_emergencies() -> None:
    port = free_udp_port()
    sim = HyteraSim([SimRadio(1001)], server_port=port)
    sniff = Sniff(f"udp://127.0.0.1:{port}", "--format", "hytera")
    try:
        _until(sniff, lambda: sim.emergency("1001"), lambda: bool(sniff.of("status")), "an emergency in the sniff")
    finally:
        code, err = sniff.stop()
        sim.close()
    assert code == EX_OK, err
    assert sniff.of("status")[0]["status"] == 99 and sniff.of("fix")[0]["radio"] == "1001"


def test_a_port_the_daemon_holds_is_refused_and_formats_are_checked() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        r = subprocess.run([*CLI, "sniff", f"udp://127.0.0.1:{port}", "--format", "lrrp", "--seconds", "5"],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode == EX_TEMPFAIL and "in use" in r.stderr
    r = subprocess.run([*CLI, "sniff", f"udp://127.0.0.1:{free_udp_port()}"], capture_output=True, text=True, timeout=30)
    assert r.returncode == EX_USAGE and "--format" in r.stderr
    r = subprocess.run([*CLI, "sniff", "/dev/null", "--format", "lrrp"], capture_output=True, text=True, timeout=30)
    assert r.returncode == EX_USAGE and "udp://" in r.stderr

"""`alkomctl baud` against a pty that speaks NMEA only at one baud rate (and garbage at every other), like a real receiver."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alkomd.drivers.nmea_writer import EpochSpec, epoch

SPEEDS = {b: getattr(termios, f"B{b}") for b in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)}


class OneBaudGps:
    """A receiver fixed at `baud` 8N1 behind a pty: a pty ignores line speed, so this one reads the reader's
    termios (the master sees the slave's settings) and sends valid NMEA only when they match, else the
    high-bit garbage a UART produces at a wrong rate."""

    def __init__(self, link: Path, baud: int) -> None:
        self.baud = baud
        self.master, slave = os.openpty()
        tty.setraw(slave)
        name = os.ttyname(slave)
        os.close(slave)
        os.set_blocking(self.master, False)
        link.symlink_to(name)
        self.link = link
        self.stop = threading.Event()
        self.valid_writes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def matches(self) -> bool:
        attrs = termios.tcgetattr(self.master)
        return attrs[4] == SPEEDS[self.baud] and attrs[2] & termios.CSIZE == termios.CS8

    def _run(self) -> None:
        rng = random.Random(7)
        t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        while not self.stop.is_set():
            if self.matches():
                t += timedelta(seconds=1)
                data = epoch(EpochSpec(t, 0.54, 123.06), types=("RMC", "GGA"))
                self.valid_writes += 1
            else:
                data = bytes(b | 0x80 if i % 3 else b for i, b in enumerate(rng.randbytes(60)))
            try:
                os.write(self.master, data)
            except OSError:  # nobody has the slave open (EIO) or its buffer is full (EAGAIN)
                pass
            self.stop.wait(0.1)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        os.close(self.master)
        self.link.unlink()


@pytest.fixture
def gps_at(tmp_path: Path) -> Iterator[type[OneBaudGps]]:
    made: list[OneBaudGps] = []

    class Made(OneBaudGps):
        def __init__(self, baud: int, name: str = "ttyGPS") -> None:
            super().__init__(tmp_path / name, baud)
            made.append(self)

    yield Made
    for g in made:
        g.close()


def baud(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", "baud", *args], capture_output=True, text=True, timeout=120)


def test_the_hunt_finds_the_one_rate_that_gives_nmea(gps_at: type[OneBaudGps]) -> None:
    gps = gps_at(38400)
    r = baud(str(gps.link), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["found"]["baud"] == 38400 and report["found"]["framing"] == "8N1"
    assert report["found"]["sample"].startswith(("$GPRMC,", "$GPGGA,"))
    trials = report["trials"]
    assert [(t["baud"], t["framing"]) for t in trials] == [(4800, "8N1"), (9600, "8N1"), (19200, "8N1"), (38400, "8N1")]
    for wrong in trials[:-1]:
        assert wrong["valid"] == 0 and wrong["bytes"] > 0  # garbage, the evidence against it
    assert trials[-1]["valid"] >= 2 and trials[-1]["valid"] > trials[-1]["invalid"]
    assert gps.valid_writes > 0


def test_every_setting_is_reported_with_all_and_a_pty_refuses_seven_bits(gps_at: type[OneBaudGps]) -> None:
    gps = gps_at(2400)
    r = baud(str(gps.link), "--json", "--all", "--rates", "4800,2400", "--dwell", "1")
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["found"]["baud"] == 2400
    settings = [(t["baud"], t["framing"]) for t in report["trials"]]
    assert settings == [(4800, "8N1"), (2400, "8N1"), (4800, "7N2"), (2400, "7N2")]
    by = {(t["baud"], t["framing"]): t for t in report["trials"]}
    assert by[(4800, "8N1")]["valid"] == 0 and by[(2400, "8N1")]["valid"] >= 2
    assert all("refuses" in by[(b, "7N2")]["error"] for b in (4800, 2400))  # a pty takes 8 data bits only


def test_a_silent_port_is_no_setting_and_says_so(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        (tmp_path / "ttySILENT").symlink_to(os.ttyname(slave))
        r = baud(str(tmp_path / "ttySILENT"), "--rates", "9600,4800", "--framings", "8N1", "--dwell", "0.5")
    finally:
        os.close(slave)
        os.close(master)
    assert r.returncode == 1
    assert "no setting gave valid NMEA" in r.stdout and "no byte at any setting" in r.stdout
    assert "9600 8N1" in r.stdout and "4800 8N1" in r.stdout and "silence" in r.stdout


def test_the_human_report_gives_the_config_lines(gps_at: type[OneBaudGps]) -> None:
    gps = gps_at(9600)
    r = baud(str(gps.link), "--rates", "4800,9600")
    assert r.returncode == 0, r.stderr
    assert "found: 9600 8N1" in r.stdout and "baud = 9600" in r.stdout and 'framing = "8N1"' in r.stdout
    assert "sample: $GP" in r.stdout


def test_usage_and_port_errors(tmp_path: Path) -> None:
    assert baud(str(tmp_path / "nope")).returncode == 66
    assert baud(str(tmp_path / "nope"), "--rates", "fast").returncode == 2
    assert baud(str(tmp_path / "nope"), "--framings", "9X9").returncode == 2

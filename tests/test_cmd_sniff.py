"""`alkomctl sniff` on real ptys: verdicts, fixes, base-radio units, refusal of the daemon's port, and the live view in tmux."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import serial
from conftest import Daemon, Station, wait_until
from rich.console import Console

from alkomd.daemon.ctl.serial_port import exit_code_for
from alkomd.daemon.ctl.sniff.sniffer import Sniffer
from alkomd.daemon.ctl.sniff.view import SniffSetup, render
from alkomd.drivers.nmea_writer import EpochSpec, epoch, sentence
from alkomd.drivers.simulator import PtyGps

CAPTURES = Path(__file__).parent / "captures"
BASE_RADIO = CAPTURES / "kenwood-fleetsync-base.nmea"
GARBAGE = b"\x8f\xfe\x00\x81\xc3noise\xff\r\n"


def bad_checksum(s: bytes) -> bytes:
    """The same sentence with a wrong checksum (one hex digit changed)."""
    star = s.rindex(b"*")
    digit = s[star + 1 : star + 2]
    return s[: star + 1] + (b"0" if digit != b"0" else b"1") + s[star + 2 :]


class Sniff:
    """`alkomctl sniff` as a child process, its stdout lines collected by a thread."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alkomd.daemon.ctl", "sniff", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def objects(self) -> list[dict[str, object]]:
        return [json.loads(ln) for ln in list(self.lines)]

    def of(self, kind: str) -> list[dict[str, object]]:
        return [o for o in self.objects() if o["type"] == kind]

    def finish(self, sig: int | None = signal.SIGINT) -> tuple[int, str]:
        if sig is not None:
            self.proc.send_signal(sig)
        code = self.proc.wait(30)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def sniffs() -> Iterator[Callable[..., Sniff]]:
    made: list[Sniff] = []

    def make(*args: str) -> Sniff:
        s = Sniff(*args)
        made.append(s)
        return s

    yield make
    for s in made:
        s.kill()


def write_when_open(pty: PtyGps, data: bytes, timeout: float = 20.0) -> None:
    """Write once the reader has the port open (a pty drops bytes nobody reads), all of it."""
    end = time.monotonic() + timeout
    while data:
        n = pty.write(data)
        data = data[n:]
        if data:
            assert time.monotonic() < end, "nobody opened the pty"
            time.sleep(0.02)


SYNC = sentence("GPTXT,01,01,02,sync")


def sync(pty: PtyGps, s: Sniff) -> int:
    """Write a TXT sentence until sniff reports one: it is reading (pyserial's open flushes what came before)."""
    end = time.monotonic() + 20
    while not [o for o in s.of("sentence") if o["sentence"] == "GPTXT"]:
        assert time.monotonic() < end, "sniff never read the port"
        pty.write(SYNC)
        time.sleep(0.1)
    time.sleep(0.3)  # a TXT written while the first was being judged arrives now
    return len([o for o in s.of("sentence") if o["sentence"] == "GPTXT"])


def test_sniff_json_judges_every_sentence_and_stops_cleanly_on_ctrl_c(tmp_path: Path, sniffs: Callable[..., Sniff]) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    epochs = [epoch(EpochSpec(t0 + timedelta(seconds=i), 0.54 + i * 1e-4, 123.06, speed_kmh=30, course=90)) for i in range(4)]
    per_epoch = epochs[0].count(b"$")  # RMC VTG GGA GSA GSV GSV GSV GLL
    with PtyGps(tmp_path / "ttyGPS") as pty:
        s = sniffs(str(pty.link), "--json")
        sync(pty, s)
        for e in epochs:
            write_when_open(pty, e)
        wait_until(lambda: len(s.of("fix")) == 4, 20, "four fixes")
        write_when_open(pty, bad_checksum(sentence("GPGGA,120000.00,0032.4000,N,12303.6000,E,1,08,1.0,20.0,M,18.5,M,,")))
        write_when_open(pty, sentence("GPXYZ,1,2,3"))
        write_when_open(pty, GARBAGE)
        wait_until(lambda: len(s.of("garbage")) == 1, 20, "the garbage line")
        code, err = s.finish(signal.SIGINT)
    synced = len([o for o in s.of("sentence") if o["sentence"] == "GPTXT"])
    verdicts = [o["verdict"] for o in s.of("sentence") if o["sentence"] != "GPTXT"]
    assert verdicts.count("bad checksum") == 1 and verdicts.count("unknown") == 1
    assert verdicts.count("ok") == 4 * per_epoch
    assert [o["time"] for o in s.of("fix")] == [(t0 + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z") for i in range(4)]
    assert all(o["radio"] is None and o["mode"] == 3 for o in s.of("fix"))
    [garbage] = s.of("garbage")
    assert garbage["bytes"] == len(GARBAGE.strip(b"\r\n")) and "\\x8f" in str(garbage["raw"])
    [summary] = s.of("summary")
    assert summary["sentences"] == synced + 4 * per_epoch + 1 and summary["checksum_errors"] == 1 and summary["fixes"] == 4
    assert s.objects()[-1]["type"] == "summary"
    assert code == 0, err
    assert f"{synced + 4 * per_epoch + 1} valid sentences (1 of unknown types), 1 bad checksums" in err  # the human summary


def test_no_valid_sentence_suggests_the_baud_hunt(tmp_path: Path, sniffs: Callable[..., Sniff]) -> None:
    with PtyGps(tmp_path / "ttyGPS") as pty:
        s = sniffs(str(pty.link), "--seconds", "2", "--json")
        stop = threading.Event()

        def noise() -> None:
            while not stop.is_set():
                pty.write(GARBAGE * 3)
                time.sleep(0.05)

        t = threading.Thread(target=noise, daemon=True)
        t.start()
        try:
            code, err = s.finish(sig=None)
        finally:
            stop.set()
            t.join(5)
    assert code == 1
    assert f"no valid sentence at 9600 baud in 2 s: try alkomctl baud {pty.link}" in err
    [summary] = s.of("summary")
    assert summary["sentences"] == 0 and summary["garbage_bytes"] > 0 and s.of("garbage")


def test_a_silent_port_says_so_after_seconds(tmp_path: Path) -> None:
    with PtyGps(tmp_path / "ttyGPS") as pty:
        r = subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", "sniff", str(pty.link), "--seconds", "1"],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "no byte at all" in r.stderr and "alkomctl ports" in r.stderr


def test_sniff_refuses_the_port_the_daemon_holds(
    station: Station, ptys: Callable[[Path], PtyGps], daemons: Callable[[Path], Daemon]
) -> None:
    station.write_config(devices=1)
    pty = ptys(station.links[0])
    daemon = daemons(station.config)
    assert daemon.proc is not None
    wait_until(lambda: "opened" in daemon.log, 15, "the daemon opening its port")
    r = subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", "sniff", str(pty.link), "--seconds", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 75, r.stderr
    assert f"the alkomd daemon (pid {daemon.proc.pid}, [[device]] gps0)" in r.stderr and "not shared" in r.stderr
    assert daemon.proc.poll() is None  # the daemon keeps its port


def test_missing_port_is_66_and_errors_map_to_exit_codes(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", "sniff", str(tmp_path / "ttyUSB7"), "--seconds", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 66 and "no such port" in r.stderr
    assert exit_code_for(serial.SerialException(errno.EACCES, "could not open port: [Errno 13] Permission denied")) == 77
    assert exit_code_for(serial.SerialException(errno.EWOULDBLOCK, "Could not exclusively lock port /dev/ttyUSB0")) == 75
    assert exit_code_for(OSError(errno.EIO, "Input/output error")) == 69


def _base_radio_bytes() -> bytes:
    return b"".join(ln for ln in BASE_RADIO.read_bytes().splitlines(keepends=True) if not ln.startswith(b"#"))


def _expected_radios() -> set[str]:
    rows = [json.loads(ln) for ln in BASE_RADIO.with_suffix(".expected.jsonl").read_text().splitlines()]
    return {r["radio"] for r in rows if "radio" in r}


def test_base_radio_units_are_heard_by_their_radio_id(tmp_path: Path, sniffs: Callable[..., Sniff]) -> None:
    data = _base_radio_bytes()
    with PtyGps(tmp_path / "ttyBASE") as pty:
        s = sniffs(str(pty.link), "--json")
        sync(pty, s)
        for i in range(0, len(data), 1024):
            write_when_open(pty, data[i : i + 1024])
        want = _expected_radios()
        wait_until(lambda: {o["radio"] for o in s.of("fix") if o["radio"]} == want, 20, "every relayed radio")
        code, _ = s.finish()
    assert code == 0
    [summary] = s.of("summary")
    assert set(summary["units"]) == want  # type: ignore[call-overload]
    assert any(o["radio"] == "100-1002" and o["status"] == 99 for o in s.of("status"))  # the emergency button


def test_the_live_view_lists_units_only_for_a_base_radio() -> None:
    def view(data: bytes) -> str:
        sn = Sniffer()
        sn.feed(data, datetime.now(UTC), time.monotonic())
        sn.finish(time.monotonic())
        buf = io.StringIO()
        setup = SniffSetup("/dev/ttyUSB0", 9600, "8N1", False, None)
        Console(file=buf, width=120, height=40).print(render(sn, setup, 3.0, time.monotonic(), 40))
        return buf.getvalue()

    base = view(_base_radio_bytes())
    assert "Units heard (base radio)" in base and "100-1001" in base and "U00017" in base
    one = epoch(EpochSpec(datetime.now(UTC).replace(microsecond=0), 0.54, 123.06))
    gps = view(one)
    assert "Units heard" not in gps and f"sentences {one.count(b'$')} " in gps and "3D fix" in gps


# --- the live view in a real terminal -----------------------------------------------------------


class Tmux:
    """A private tmux server (its own socket), 120x40, running one command."""

    def __init__(self, command: str) -> None:
        self.sock = f"alkomd-test-{uuid.uuid4().hex[:8]}"
        self.run("-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "40", command)

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True, timeout=10, check=True).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True, timeout=10)


def _sniff_pids(link: Path) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"sniff" in cmd and str(link).encode() in cmd:
            found.append(int(pid))
    return found


def _count(screen: str, label: str) -> int:
    for word_line in screen.splitlines():
        if label in word_line:
            rest = word_line.split(label, 1)[1].split()
            if rest and rest[0].isdigit():
                return int(rest[0])
    return -1


def test_live_view_in_a_terminal_shows_counts_verdicts_and_ctrl_c_leaves_nothing(tmp_path: Path) -> None:
    assert shutil.which("tmux"), "tmux is needed (./run-tests installs it)"
    link = tmp_path / "ttyGPS"
    stop = threading.Event()
    with PtyGps(link) as pty:
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)

        def feed() -> None:
            i = 0
            while not stop.is_set():
                if pty.write(epoch(EpochSpec(t0 + timedelta(seconds=i), 0.54 + i * 1e-4, 123.06, speed_kmh=30))):
                    i += 1
                stop.wait(0.2)

        feeder = threading.Thread(target=feed, daemon=True)
        tmux = Tmux(f"{sys.executable} -m alkomd.daemon.ctl sniff {link}; echo SNIFF-EXIT=$?; sleep 60")
        try:
            feeder.start()
            wait_until(lambda: _count(tmux.screen(), "sentences") >= 30, 30, "sentences counted on screen")
            screen = tmux.screen()
            assert f"{link}  9600 8N1" in screen and "Ctrl-C stops" in screen
            assert "3D fix" in screen and "sats used 9" in screen and "HDOP 0.90" in screen and "last fix" in screen
            assert " ok " in screen and "$GPGGA," in screen and "bad checksum 0 " in screen
            pty.write(bad_checksum(sentence("GPGGA,120000.00,0032.4000,N,12303.6000,E,1,08,1.0,20.0,M,18.5,M,,")))
            wait_until(lambda: _count(tmux.screen(), "bad checksum") == 1, 20, "the bad checksum counted")
            wait_until(lambda: any(" bad checksum " in ln and "$GPGGA,120000.00" in ln for ln in tmux.screen().splitlines()),
                       20, "the bad sentence's verdict in the recent lines")
            pty.write(b"junk [/x] and [red]red[/red]\r\n")  # noise is data, not rich markup (`[/x]` crashed the view)
            wait_until(lambda: "junk [/x] and [red]red[/red]" in tmux.screen(), 20, "the noise shown as it came")
            pids = _sniff_pids(link)
            assert len(pids) == 1
            tmux.run("send-keys", "C-c")
            wait_until(lambda: "SNIFF-EXIT=0" in tmux.screen(), 20, "sniff to exit 0 on Ctrl-C")
            assert "valid sentences" in tmux.screen()  # the summary
            wait_until(lambda: not _sniff_pids(link), 10, "no sniff process left")
        finally:
            stop.set()
            feeder.join(5)
            tmux.close()

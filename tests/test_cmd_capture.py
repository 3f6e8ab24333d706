"""`alkomctl capture` and `alkomctl replay` on real ptys: a field capture becomes a fixture and feeds a real daemon."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import serial
from conftest import Daemon, Station, Subscriber, wait_until

from alkomd.daemon import __version__
from alkomd.daemon.ctl.capture.file import line_time, plan
from alkomd.drivers.nmea_writer import EpochSpec, epoch, sentence
from alkomd.drivers.simulator import PtyGps

CAPTURES = Path(__file__).parent / "captures"
SYNC = sentence("GPTXT,01,01,02,capture test")


def alkomctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", *args], capture_output=True, text=True, timeout=timeout)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def record(pty: PtyGps, out: Path, epochs: int, *extra: str) -> tuple[subprocess.CompletedProcess[str], list[datetime]]:
    """Run `alkomctl capture` on `pty` while feeding it `epochs` epochs, one burst each; returns the fix times written.

    Every step waits for a condition, never for a time (issue 13 item 10: the $GPTXT written as soon as the pty
    accepted bytes was lost under load: pyserial flushes the port's input after the open() that makes the pty
    writable). The capture says "recording" once the port is open and flushed; each burst is written after the one
    before it is in the file, 0.3 s later at least (so each gets its own #t= mark); Ctrl-C ends the capture once the
    last burst is in the file (its duration, 600 s, is only a bound).
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "alkomd.daemon.ctl", "capture", str(pty.link), "600", str(out), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    first_err = ""
    try:
        assert proc.stderr is not None
        first_err = proc.stderr.readline()  # "alkomctl capture: recording ...", or why it could not start
        assert "recording" in first_err, first_err + proc.stderr.read()
        assert pty.write(SYNC) == len(SYNC)
        wait_until(lambda: out.read_bytes().count(b"$GPTXT") == 1, 60, "the capture to write $GPTXT")
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
        times = [t0 + timedelta(seconds=i) for i in range(epochs)]
        for i, t in enumerate(times):
            time.sleep(0.3)  # a gap in the capture's timing marks, not a wait for the capture
            burst = epoch(EpochSpec(t, 0.5412 + i * 1e-4, 123.0595, speed_kmh=36, course=45))
            assert pty.write(burst) == len(burst)
            wait_until(lambda n=i + 1: out.read_bytes().count(b"$GPRMC") == n, 60, f"burst {i + 1} in the capture")
        proc.send_signal(signal.SIGINT)
        out_text, err_text = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out_text, first_err + err_text), times


def test_capture_writes_the_header_timing_and_bytes_that_decode_reads(tmp_path: Path) -> None:
    out = tmp_path / "r2-12.nmea"
    with PtyGps(tmp_path / "ttyGPS") as pty:
        r, times = record(pty, out, 5, "--device", "R2-12 test receiver, GP talker", "--place", "Jl. Nani Wartabone\nKota Gorontalo",
                          "--notes", "car parked")
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    head = dict(re.findall(r"^# ([A-Za-z-]+): (.*)$", text, re.M))
    assert head["Device"] == "R2-12 test receiver, GP talker" and head["Place"] == "Jl. Nani Wartabone Kota Gorontalo"
    assert head["Baud"] == "9600 8N1" and head["Port"] == str(pty.link) and head["Notes"] == "car parked"
    assert head["Date"] in {(datetime.now(UTC) - timedelta(minutes=m)).date().isoformat() for m in (0, 1)}
    assert head["Captured-with"].startswith(f"alkomctl {__version__} capture")
    assert "5 fixes" in head["End"]
    marks = [float(m) for m in re.findall(r"^#t=(\d+\.\d+)$", text, re.M)]
    assert len(marks) >= 5 and marks == sorted(marks) and marks[-1] - marks[0] >= 1.0  # one per burst, 0.3 s apart
    body = b"".join(ln for ln in out.read_bytes().splitlines(keepends=True) if not ln.startswith(b"#"))
    assert body.count(b"$GPRMC") == 5 and body.count(b"$GPTXT") >= 1

    d = alkomctl("decode", "--json", str(out))
    assert d.returncode == 0, d.stderr
    fixes = [json.loads(ln) for ln in d.stdout.splitlines()]
    assert [f["time"] for f in fixes] == [iso(t) for t in times]
    assert all(f["speed_kmh"] == 36.0 and f["mode"] == 3 for f in fixes)
    assert "5 fixes" in r.stdout


def test_a_capture_replayed_into_a_daemon_publishes_its_positions(
    tmp_path: Path,
    station: Station,
    ptys: Callable[[Path], PtyGps],
    daemons: Callable[[Path], Daemon],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    capture = tmp_path / "field.nmea"
    with PtyGps(tmp_path / "ttyFIELD") as field:
        r, times = record(field, capture, 6, "--device", "patrol car receiver", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["fixes"] == 6 and summary["checksum_errors"] == 0 and summary["file"] == str(capture) and not summary["lost"]

    station.write_config(devices=1)
    link = station.links[0]  # the daemon's url; replay makes the pty there
    sub = subscriber_factory(station.port)
    daemon = daemons(station.config)
    rp = alkomctl("replay", str(capture), "--to", f"pty:{link}", "--speed", "3", "--wait", "30", "--json")
    assert rp.returncode == 0, rp.stderr + daemon.log
    result = json.loads(rp.stdout)
    assert result["lines"] == result["of"] and result["pace"] == "the capture's #t= times"
    want = [iso(t) for t in times]
    wait_until(lambda: [m.payload["time"] for m in sub.on("/unit/R2-00/position")][-len(want):] == want, 20,
               "every captured fix published as R2-00's position")
    positions = [m.payload for m in sub.on("/unit/R2-00/position")]
    assert positions[-1]["lat"] == round(0.5412 + 5e-4, 7) and positions[-1]["source"].startswith("gps0")
    assert not link.exists()  # replay removed its pty when done


def test_replay_sends_every_byte_in_order_at_speed_0(tmp_path: Path) -> None:
    capture = CAPTURES / "radio-noisy-stx-etx.nmea"  # NULs, binary bursts, STX/ETX framing
    body = b"".join(ln for ln in capture.read_bytes().splitlines(keepends=True) if not ln.startswith(b"#"))
    link = tmp_path / "ttyREPLAY"
    proc = subprocess.Popen([sys.executable, "-m", "alkomd.daemon.ctl", "replay", str(capture), "--to", f"pty:{link}", "--speed", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    got = bytearray()
    try:
        wait_until(link.exists, 20, "replay's pty")
        with serial.Serial(str(link), 9600, timeout=0.2) as port:
            end = time.monotonic() + 30
            while time.monotonic() < end and not got.endswith(body):
                got += port.read(4096)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    assert got.endswith(body) and not got[: len(got) - len(body)].strip(b"\n")  # at most the reader probe's newline before
    assert f"sent {len(plan(capture.read_bytes()).lines)} of" in out


def test_the_pace_comes_from_the_marks_else_nmea_times_else_a_rate(tmp_path: Path) -> None:
    marked = tmp_path / "marked.nmea"
    marked.write_bytes(b"# Baud: 4800 8N1\n#t=0.250\n$GPTXT,a\n$GPTXT,b\n#t=1.750\n$GPTXT,c\n#t=100.0\n$GPTXT,d\n")
    p = plan(marked.read_bytes(), max_gap_s=5)
    assert [ln.offset_s for ln in p.lines] == [0.0, 0.0, 1.5, 6.5] and p.baud == 4800 and p.framing == "8N1"
    dry = alkomctl("replay", str(marked), "--to", "pty:/nonexistent/x", "--dry-run", "--json", "--speed", "2")
    assert [json.loads(ln)["at_s"] for ln in dry.stdout.splitlines()] == [0.0, 0.0, 0.75, 30.75]  # the 60 s default cap

    kenwood = alkomctl("replay", str(CAPTURES / "kenwood-gga-only.nmea"), "--to", "pty:/x", "--dry-run", "--json")
    at = [json.loads(ln)["at_s"] for ln in kenwood.stdout.splitlines()]
    assert at[:4] == [0.0, 2.0, 4.0, 6.0]  # one GGA every 2 s, from the NMEA times
    assert "paced by the NMEA times" in alkomctl("replay", str(CAPTURES / "kenwood-gga-only.nmea"), "--to", "pty:/x", "--dry-run").stdout

    untimed = tmp_path / "untimed.nmea"
    untimed.write_bytes(b"$GPTXT,1*00\r\n$GPTXT,2*00\r\n$GPTXT,3*00\r\n")
    assert [ln.offset_s for ln in plan(untimed.read_bytes(), rate=4).lines] == [0.0, 0.25, 0.5]

    midnight = plan((CAPTURES / "quectel-beidou-midnight.nmea").read_bytes())
    offsets = [ln.offset_s for ln in midnight.lines]
    assert offsets == sorted(offsets) and 0 < offsets[-1] < 120  # 23:59:52 to past 00:00: no day-long wait
    assert line_time(b"$PKLSH,0033.8700,N,12310.8060,E,010005,A,100,1003,*2D\r\n") == 3605.0
    assert line_time(b"$GNGLL,0033.7440,N,12259.1000,E,235952.00,A,A*76") == 86392.0


def test_capture_never_overwrites_and_port_errors_have_their_codes(tmp_path: Path) -> None:
    existing = tmp_path / "keep.nmea"
    existing.write_text("precious\n")
    with PtyGps(tmp_path / "ttyGPS") as pty:
        r = alkomctl("capture", str(pty.link), "1", str(existing))
        assert r.returncode == 73 and "--force" in r.stderr and existing.read_text() == "precious\n"
        assert alkomctl("capture", str(pty.link), "1", str(tmp_path / "no" / "dir" / "x.nmea")).returncode == 73
        silent = alkomctl("capture", str(pty.link), "0.5", str(existing), "--force")
        assert silent.returncode == 1 and "no byte at all" in silent.stderr
        assert existing.read_text().startswith("# Name: capture of ")
    missing = tmp_path / "never.nmea"
    assert alkomctl("capture", str(tmp_path / "ttyNONE"), "1", str(missing)).returncode == 66
    assert not missing.exists()
    existing.write_text("precious\n")  # --force replaces a capture only once the port is open
    assert alkomctl("capture", str(tmp_path / "ttyNONE"), "1", str(existing), "--force").returncode == 66
    assert existing.read_text() == "precious\n"


def test_replay_gives_up_when_nobody_reads_and_without_a_file(tmp_path: Path) -> None:
    r = alkomctl("replay", str(CAPTURES / "kenwood-gga-only.nmea"), "--to", f"pty:{tmp_path / 'ttyX'}", "--wait", "1")
    assert r.returncode == 69 and "nobody opened" in r.stderr
    assert not (tmp_path / "ttyX").exists()
    assert alkomctl("replay", str(tmp_path / "none.nmea"), "--to", "pty:/tmp/x").returncode == 66
    occupied = tmp_path / "notes.txt"  # a pty's PATH never replaces a file
    occupied.write_text("keep\n")
    r = alkomctl("replay", str(CAPTURES / "kenwood-gga-only.nmea"), "--to", f"pty:{occupied}", "--wait", "1")
    assert r.returncode == 73 and f"cannot create {occupied}" in r.stderr and "Traceback" not in r.stderr
    assert occupied.read_text() == "keep\n"
    assert alkomctl("replay", str(tmp_path / "none.nmea"), "--to", "pty:/tmp/x", "--speed", "-1").returncode == 2


def test_replay_stops_on_ctrl_c(tmp_path: Path) -> None:
    link = tmp_path / "ttySLOW"
    proc = subprocess.Popen([sys.executable, "-m", "alkomd.daemon.ctl", "replay", str(CAPTURES / "kenwood-gga-only.nmea"),
                             "--to", f"pty:{link}", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(link.exists, 20, "replay's pty")
        with serial.Serial(str(link), 9600, timeout=0.2) as port:
            got = b""
            end = time.monotonic() + 20
            while b"$GPGGA" not in got and time.monotonic() < end:
                got += port.read(256)
            proc.send_signal(2)
            out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    result = json.loads(out)
    assert proc.returncode == 0 and result["interrupted"] and 1 <= result["lines"] < result["of"]
    assert not link.exists()


def test_replay_retime_moves_a_2024_capture_to_now_with_valid_checksums(tmp_path: Path) -> None:
    """`replay --retime`: every sentence's time and date moved so the capture's first fix is now, checksums redone; the
    daemon's decoder takes the lines and its plausibility gate accepts the fixes (they were all 'more than a day before
    they were read' without it, issue 13 item 2)."""
    import json as _json
    import subprocess
    import sys
    from datetime import UTC, datetime, timedelta

    from alkomd.daemon.positions import plausibility
    from alkomd.daemon.records import Fix
    from alkomd.drivers.nmea import Decoder

    capture = Path(__file__).parent / "captures" / "ublox-m8-gn-gorontalo-drive.nmea"
    r = subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", "replay", str(capture), "--to", "pty:/tmp/unused",
                        "--dry-run", "--json", "--retime", "--speed", "0"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    data = "".join(_json.loads(line)["line"] + "\r\n" for line in r.stdout.splitlines()).encode()
    now = datetime.now(UTC)
    dec = Decoder("gps")
    fixes = [f for f in dec.feed(data, now, 1.0) + dec.close_epoch() if isinstance(f, Fix)]
    assert fixes and dec.checksum_errors == 0
    assert abs(fixes[0].time - now) < timedelta(minutes=1)
    assert all(plausibility.time_wrong(f) is None for f in fixes)
    old = Decoder("gps")
    before = [f for f in old.feed(capture.read_bytes(), now, 1.0) + old.close_epoch() if isinstance(f, Fix)]
    assert len(before) == len(fixes) and all(plausibility.time_wrong(f) is not None for f in before)
    assert [round((b.time - before[0].time).total_seconds(), 2) for b in before] == \
        [round((f.time - fixes[0].time).total_seconds(), 2) for f in fixes], "the pace is kept"

"""`alkomctl decode` against gpsd on real receivers' captures (issue 13 item 4): tests/captures/gpsd/*.log with the
output gpsd's own regression test expects (`*.log.chk`, written by gpsd's decoder: an independent implementation).

gpsd's fix of an epoch is its last TPV with that time and mode >= 2 (it sends one per sentence, each with what it has
merged so far). Pass, for every capture: each of gpsd's fixes is one of decode's rows (whatever its verdict) with the
same time and the same position to 1e-6 degree. `figures()` is what the report quotes (run this file as a script).

Where gpsd is installed (Debian's gpsd 3.22 here), the captures are also played through a live gpsd on a pty
(gpsfake's way, without gpsfake): its fixes are compared by time of day and position, since a live gpsd moves a
receiver's pre-rollover dates on by 1024-week steps (its week rollover guard; gpsd's own regression runs turn it off).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, wait_until

from alkomd.drivers.nmea_writer import sentence
from alkomd.drivers.simulator import PtyGps

GPSD = Path(__file__).parent / "captures" / "gpsd"
LOGS = sorted(GPSD.glob("*.log"))


def gpsd_fixes(chk: Path) -> dict[str, dict[str, Any]]:
    """time -> gpsd's TPV for that time (the last one, mode >= 2, with a position)."""
    fixes: dict[str, dict[str, Any]] = {}
    for line in chk.read_text(errors="replace").splitlines():
        if line.startswith('{"class":"TPV"'):
            tpv = json.loads(line)
            if tpv.get("mode", 0) >= 2 and "lat" in tpv and tpv.get("time"):
                fixes[tpv["time"]] = tpv
    return fixes


def decode(log: Path, *extra: str) -> tuple[dict[str, dict[str, Any]], str]:
    r = subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", "decode", "--json", *extra, str(log)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    return {row["time"]: row for row in rows}, r.stderr


@dataclass(frozen=True)
class Figures:
    capture: str
    gpsd: int  # gpsd's fixes
    rows: int  # decode's rows (every verdict)
    matched: int  # gpsd's fixes found among the rows, same time and position
    same_mode: int  # of those, with gpsd's 2D/3D
    verdicts: dict[str, int]  # of the matched rows
    extra_ok: int  # rows with verdict ok that gpsd has no fix for


def figures(log: Path) -> Figures:
    want = gpsd_fixes(log.with_name(log.name + ".chk"))
    got, _ = decode(log)
    matched = [t for t, g in want.items() if t in got and abs(got[t]["lat"] - g["lat"]) < 1e-6 and abs(got[t]["lon"] - g["lon"]) < 1e-6]
    return Figures(
        log.name, len(want), len(got), len(matched), sum(got[t]["mode"] == want[t]["mode"] for t in matched),
        dict(Counter(got[t]["verdict"] for t in matched)), sum(r["verdict"] == "ok" and t not in want for t, r in got.items()),
    )


@pytest.mark.parametrize("log", LOGS, ids=[p.stem for p in LOGS])
def test_every_fix_gpsd_reports_is_a_row_of_decode(log: Path) -> None:
    f = figures(log)
    assert f.matched == f.gpsd, f


def test_the_receivers_date_wins_over_the_header() -> None:
    """garmin17n.log's header says 2005-03-12, its RMC sentences 2005-03-16: both fixes were rejected as "fix time in
    the future". Pass: both are ok, dated by the receiver, as gpsd does."""
    got, _ = decode(GPSD / "garmin17n.log")
    assert [(t[:10], r["verdict"]) for t, r in got.items()] == [("2005-03-16", "ok")] * 2


def test_a_fix_above_the_hdop_bound_is_reported_with_its_verdict() -> None:
    """jl-micro-jlt.log: every GGA has HDOP 99.99 (a GPSDO's timing receiver); gpsd reports 8 fixes, decode printed none.
    Pass: 8 rows, each `hdop`; --max-hdop 100 makes them ok; --ok prints only what the daemon would accept."""
    got, err = decode(GPSD / "jl-micro-jlt.log")
    assert len(got) == 8 and {r["verdict"] for r in got.values()} == {"hdop"} and "hdop: 8" in err
    got, _ = decode(GPSD / "jl-micro-jlt.log", "--max-hdop", "100")
    assert {r["verdict"] for r in got.values()} == {"ok"}
    got, _ = decode(GPSD / "jl-micro-jlt.log", "--ok")
    assert got == {}


def test_every_sample_has_its_source_and_licence() -> None:
    readme = (GPSD / "README.md").read_text()
    assert (GPSD / "COPYING").is_file() and "BSD-2-Clause" in readme
    for log in LOGS:
        assert f"`{log.name}`" in readme and log.with_name(log.name + ".chk").is_file(), log


GPSD_BIN = shutil.which("gpsd") or ("/usr/sbin/gpsd" if Path("/usr/sbin/gpsd").is_file() else None)
# Played after a capture: gpsd's fix for it says gpsd has read everything before it (a condition, not a pause).
# Three epochs: a gpsd that learnt the receiver's cycle reports an epoch when the next one starts.
SENTINEL = b"".join(
    sentence(f"GPRMC,2359{s}.00,A,0112.3456,N,00223.4567,E,0.0,0.0,010199,,,A")
    + sentence(f"GPGGA,2359{s}.00,0112.3456,N,00223.4567,E,1,08,1.0,10.0,M,0.0,M,,")
    for s in ("57", "58", "59")
)


def live_gpsd_fixes(log: Path, workdir: Path) -> dict[str, dict[str, Any]]:
    """time of day -> the last TPV (mode >= 2) a live gpsd reports for `log` played into a pty."""
    assert GPSD_BIN is not None
    port = free_port()
    data = b"".join(ln for ln in log.read_bytes().splitlines(keepends=True) if not ln.startswith(b"#")) + SENTINEL
    fixes: dict[str, dict[str, Any]] = {}
    with PtyGps(workdir / f"tty-{log.stem}") as pty:
        cmd = [GPSD_BIN, "-N", "-n", "-b", "-S", str(port), "-F", str(workdir / f"gpsd-{port}.sock"), str(pty.link)]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            conns: list[socket.socket] = []
            wait_until(lambda: _connect(port, conns), 10, "gpsd listening")
            conn = conns[0]
            conn.settimeout(30)  # a bound: gpsd answers within it or the test fails
            conn.sendall(b'?WATCH={"enable":true,"json":true}\n')
            stream = conn.makefile("rb")
            while b'"class":"DEVICES"' not in stream.readline():
                pass
            sent = 0
            while sent < len(data):  # the pty takes what fits; gpsd reading makes room
                n = pty.write(data[sent : sent + 256])
                sent += n
                if n == 0:
                    wait_until(lambda: pty.write(b"") == 0, 10, "room in the pty")
            while True:
                tpv = json.loads(stream.readline())
                if tpv.get("class") != "TPV" or tpv.get("mode", 0) < 2 or "lat" not in tpv or not tpv.get("time"):
                    continue
                if abs(tpv["lat"] - 1.20576) < 1e-6 and abs(tpv["lon"] - 2.390945) < 1e-6:
                    break  # the sentinel: everything before it is in
                fixes[tpv["time"][11:]] = tpv
            conn.close()
        finally:
            proc.kill()
            proc.wait(10)
    return fixes


def _connect(port: int, out: list[socket.socket]) -> bool:
    try:
        out.append(socket.create_connection(("127.0.0.1", port), timeout=1))
    except OSError:
        return False
    return True


@pytest.mark.parametrize("log", LOGS, ids=[p.stem for p in LOGS])
def test_every_fix_a_live_gpsd_reports_is_a_row_of_decode(log: Path, tmp_path: Path) -> None:
    assert GPSD_BIN is not None, "gpsd is not installed (./run-tests installs it: apt-get install gpsd)"
    want = live_gpsd_fixes(log, tmp_path)
    got = {t[11:]: r for t, r in decode(log)[0].items()}
    missing = [t for t, g in want.items()
               if t not in got or abs(got[t]["lat"] - g["lat"]) > 1e-6 or abs(got[t]["lon"] - g["lon"]) > 1e-6]
    assert not missing, (len(want), missing[:5])


if __name__ == "__main__":  # the figures of the report
    for log in LOGS:
        print(figures(log))

"""`alkomctl demo` end to end: a whole simulated station, its console and 110 calls, that stops cleanly and leaves nothing."""

from __future__ import annotations

import http.client
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import wait_until

CONSOLE_LINE = re.compile(r"^console: (http://127\.0\.0\.1:\d+/\S+)", re.M)


def _get(url: str, cookie: str = "") -> http.client.HTTPResponse:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "", u.port, timeout=10)
    conn.request("GET", u.path + (f"?{u.query}" if u.query else ""), headers={"Cookie": cookie} if cookie else {})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def _console_answers(url: str) -> None:
    """The printed link logs the demo account in once and the page is served; the same link a second time does not."""
    first = _get(url)
    assert first.status == 200, first.status
    cookie = (first.getheader("Set-Cookie") or "").split(";")[0]
    assert cookie.startswith("alkomd_console="), first.getheaders()
    base = url.split("/login/")[0]
    page = _get(base + "/", cookie)
    assert page.status == 200
    assert _get(base + "/api/session", cookie).status == 200
    again = _get(url)
    assert again.status == 303 and again.getheader("Location") == "/login?error=failed"
    assert _get(base + "/api/session").status == 401  # nothing without the session


def _running_under(path: Path) -> list[str]:
    """Command lines of live processes that mention `path` (the demo's broker, daemon, ptys)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in cmd:
            found.append(cmd)
    return found


@pytest.mark.parametrize("embedded", [False, True], ids=["mosquitto", "embedded-broker"])
def test_demo_runs_a_station_and_stops_on_ctrl_c(tmp_path: Path, embedded: bool) -> None:
    work = tmp_path / "demo"
    cmd = [sys.executable, "-m", "alkomd.daemon.ctl", "demo", "--units", "3", "--workdir", str(work)]
    if embedded:
        cmd.append("--embedded-broker")
    # Its own process group, so a failing test can stop the demo's broker and daemon too.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if sum(ln.startswith("position R2-03") for ln in lines) >= 2 and all(
                any(ln.startswith(f"position HT-{n}") for ln in lines) for n in ("03", "11", "12", "13")
            ) and any(ln.startswith("call 110-0001 offered at polres") for ln in lines):
                break
        out = "".join(lines)
        assert "position R2-01" in out and "position R2-02" in out and "position R2-03" in out, out
        # the handhelds relayed by the simulated FleetSync base radio, one port for three units
        assert all(f"position HT-0{i}" in out for i in (1, 2, 3)) and "source base-radio:100-1003" in out, out
        # the MOTOTRBO radios behind the simulated control station (lrrp driver: ARS, LRRP over UDP)
        assert all(f"position HT-1{i}" in out for i in (1, 2, 3)) and "source trbo-cs:2101" in out, out
        assert "node polri110/gorontalo/kota-gorontalo online" in out
        # the console's line, printed although the output is a pipe, opens the console (one-time login)
        found = CONSOLE_LINE.search(out)
        assert found, out
        _console_answers(found.group(1))
        # the first scripted 110 call reached the daemon, whose call state says so
        assert "110 call 110-0001 from" in out and "call 110-0001 offered at polres polri110/gorontalo/kota-gorontalo" in out, out
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 0, rest
    assert "offline" in rest
    wait_until(lambda: not _running_under(work), 10, "no demo process left")
    assert not list((work / "dev").glob("sim-*")) or all(not p.exists() for p in (work / "dev").glob("sim-*"))
    db = sqlite3.connect(work / "alkomd.db")
    units = {u for (u,) in db.execute("SELECT DISTINCT unit FROM positions")}
    assert units == {"R2-01", "R2-02", "R2-03", "HT-01", "HT-02", "HT-03", "HT-11", "HT-12", "HT-13"}
    assert db.execute("SELECT count(*) FROM outbox WHERE sent IS NULL AND kind = 'position'").fetchone()[0] == 0

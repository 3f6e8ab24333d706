"""The control socket and `alkomctl status|units|devices`, against a real daemon, broker and pty."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import NODE, Daemon, Feeder, Station, Subscriber, iso, wait_until

from alkomd.daemon import control, ctl
from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.drivers.simulator import PtyGps


@pytest.fixture(autouse=True)
def _no_runtime_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test run under a systemd service must not put every test daemon's socket in one folder."""
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)


def run_ctl(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = ctl.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def ask(capsys: pytest.CaptureFixture[str], sock: Path, cmd: str) -> Any:
    code, out, err = run_ctl(capsys, cmd, "--json", "--socket", str(sock))
    assert code == 0, err
    return json.loads(out)


def raw(sock: Path, data: bytes, shut: bool = True) -> dict[str, Any]:
    """Send bytes as they are; return the daemon's one-line reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(sock))
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.endswith(b"\n") and reply.count(b"\n") == 1, reply
    answer: dict[str, Any] = json.loads(reply)
    return answer


def test_status_units_devices_with_the_broker_up_then_down(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber], capsys: pytest.CaptureFixture[str],
) -> None:
    station.write_config()
    sock = station.dir / "control.sock"
    pty = ptys(station.links[0])
    sub = subscriber_factory(broker.port)
    d = daemons(station.config)
    assert sock.is_socket() and stat.S_IMODE(sock.stat().st_mode) == 0o660
    wait_until(lambda: ask(capsys, sock, "devices")[0]["state"] == "waiting", what="gps0 open")
    feed = Feeder(pty)
    feed.write(5, gap_s=0.1)
    wait_until(lambda: len(sub.on("/unit/R2-00/position")) == 5, what="5 positions published")
    wait_until(lambda: ask(capsys, sock, "status")["outbox"]["depth"] == 0, what="outbox drained")

    s = ask(capsys, sock, "status")
    assert s["ready"] is True and s["node"] == NODE and s["tier"] == "polres" and s["pid"] == d.proc.pid  # type: ignore[union-attr]
    assert s["broker"]["connected"] is True and s["broker"]["port"] == broker.port and s["broker"]["last_error"] == ""
    assert s["outbox"] == {"depth": 0, "oldest_unsent_age_s": None, "held_no_subscriber": 0, "held_refused": 0, "held_reason": ""}
    assert s["database"]["path"] == str(station.db) and s["database"]["size_bytes"] > 0 and s["database"]["schema_version"] >= 2
    assert s["devices"] == {"connected": 1} and s["units"] == {"available": 1}
    assert s["config"] == str(station.config) and s["uptime_s"] > 0 and s["last_reload"] is None

    (u,) = ask(capsys, sock, "units")
    assert [u[k] for k in ("id", "callsign", "type", "device", "status", "source")] == [
        "R2-00",
        "Macan 00",
        "car",
        "gps0",
        "available",
        "gps0",
    ]
    assert u["last_fix"] == iso(feed.times[-1])
    assert abs(u["lat"] - feed.lat) < 1e-6 and abs(u["lon"] - feed.lon) < 1e-6
    assert 590 < u["age_s"] < 900, u["age_s"]  # the feeder's fixes are ten minutes old
    assert u["last_heard"] is not None and 0 <= u["heard_age_s"] < u["age_s"]  # ... and were received just now

    (dev,) = ask(capsys, sock, "devices")
    assert (dev["id"], dev["driver"], dev["state"], dev["enabled"]) == ("gps0", "nmea", "connected", True)
    assert dev["counters"]["fixes"] >= 5 and dev["counters"]["sentences"] >= 10 and dev["counters"]["checksum_errors"] == 0
    assert 0 <= dev["last_data_age_s"] < 30 and dev["since"] and dev["modem"] is None

    # The views people read.
    code, out, _ = run_ctl(capsys, "status", "--socket", str(sock))
    assert code == 0 and f"connected to 127.0.0.1:{broker.port}" in out and "1 connected" in out and "1 available" in out
    code, out, _ = run_ctl(capsys, "units", "--socket", str(sock))
    assert code == 0 and "R2-00" in out and "Macan 00" in out and iso(feed.times[-1]) in out and "9m" in out
    code, out, _ = run_ctl(capsys, "devices", "--config", str(station.config))  # found from the config's [store] path
    assert code == 0 and "gps0" in out and "nmea" in out and "connected" in out

    # Broker down: the socket still answers, and says so.
    broker.stop()
    wait_until(lambda: ask(capsys, sock, "status")["broker"]["connected"] is False, what="link down in status")
    feed.write(3, gap_s=0.1)
    wait_until(lambda: ask(capsys, sock, "status")["outbox"]["depth"] >= 3, what="outbox growing")
    s = ask(capsys, sock, "status")
    assert s["outbox"]["oldest_unsent_age_s"] >= 0 and s["broker"]["since"] > s["started"]
    assert ask(capsys, sock, "units")[0]["last_fix"] == iso(feed.times[-1])
    code, out, _ = run_ctl(capsys, "status", "--socket", str(sock))
    assert code == 0 and "unreachable" in out and "recording locally" in out
    assert d.proc is not None and d.proc.poll() is None


def test_units_after_a_restart_show_the_stored_fix_and_the_socket_is_removed_on_exit(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under systemd the socket is $RUNTIME_DIRECTORY/control.sock; a stale one left by a kill is replaced."""
    station.write_config()
    runtime = tmp_path / "run"
    runtime.mkdir()
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(runtime))
    sock = runtime / "control.sock"
    pty = ptys(station.links[0])
    d = daemons(station.config)
    feed = Feeder(pty)
    wait_until(lambda: ask(capsys, sock, "devices")[0]["state"] == "waiting", what="gps0 open")
    feed.write(3, gap_s=0.1)
    wait_until(lambda: ask(capsys, sock, "units")[0]["last_fix"] == iso(feed.times[-1]), what="fix in units")
    assert not (station.dir / "control.sock").exists()
    d.kill()  # SIGKILL: the socket file stays behind
    assert sock.is_socket()
    code, _, err = run_ctl(capsys, "status", "--socket", str(sock))
    assert code == 69 and "is alkomd running? systemctl status alkomd" in err

    d2 = daemons(station.config)
    (u,) = ask(capsys, sock, "units")
    assert u["last_fix"] == iso(feed.times[-1]) and u["source"] == "gps0" and abs(u["lat"] - feed.lat) < 1e-6
    assert d2.stop() == 0
    assert not sock.exists()


def test_no_daemon_is_exit_69_and_permission_denied_is_exit_77(
    broker: Broker, daemons: Callable[[Path], Daemon], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_ctl(capsys, "status", "--socket", str(tmp_path / "nothing.sock"))
    assert code == 69 and "is alkomd running? systemctl status alkomd" in err and "nothing.sock" in err
    assert "--config FILE" in err and "--socket PATH" in err  # issue 13 item 8: a daemon with another config
    code, _, err = run_ctl(capsys, "units", "--config", str(tmp_path / "missing.toml"))
    assert code == 78 and "missing.toml" in err

    # A folder others may enter (pytest's tmp_path is 0700), so only the socket's own mode decides.
    home = Path(tempfile.mkdtemp(prefix="alkomd-ctl-", dir="/tmp"))
    d: Daemon | None = None
    try:
        os.chmod(home, 0o755)
        station = Station(home / "station", broker.port)
        station.write_config(devices=0)
        os.chmod(station.dir, 0o755)
        d = daemons(station.config)
        sock = station.dir / "control.sock"
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660
        code, _, err = run_ctl(capsys, "status", "--config", str(station.config))
        assert code == 0, err
        if os.geteuid() == 0:  # root passes every permission check: ask as nobody
            other = _as_user(sock, groups=[])
            assert other.returncode == 77, other.stderr
            assert "permission denied" in other.stderr and "add yourself to the alkomd group" in other.stderr
            member = _as_user(sock, groups=[sock.stat().st_gid])  # the socket's group may ask
            assert member.returncode == 0, member.stderr
            assert json.loads(member.stdout)["node"] == NODE
        else:
            os.chmod(sock, 0)
            code, _, err = run_ctl(capsys, "status", "--socket", str(sock))
            assert code == 77 and "add yourself to the alkomd group" in err
            os.chmod(sock, 0o660)
            code, _, err = run_ctl(capsys, "status", "--socket", str(sock))
            assert code == 0, err
    finally:
        if d is not None:
            d.stop()
        shutil.rmtree(home, ignore_errors=True)


# Everything is imported and parsed as root (this interpreter may live in a private folder), then
# the process becomes nobody, with only the given groups, and asks.
_AS_USER = """
import os, sys
from alkomd.daemon import control, ctl
from alkomd.daemon.ctl import status as cmd_status
from alkomd.daemon.ctl.status import ask  # noqa: F401 (run imports it)
args = ctl.parser().parse_args(["status", "--json", "--socket", sys.argv[1]])
os.setgroups([int(g) for g in sys.argv[2].split(",") if g])
os.setgid(65534)
os.setuid(65534)
sys.exit(ctl.dispatch(args))
"""


def _as_user(sock: Path, groups: list[int]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _AS_USER, str(sock), ",".join(map(str, groups))],
                          capture_output=True, text=True, timeout=60)


def test_garbage_and_slow_clients_do_not_hurt_the_daemon(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber], capsys: pytest.CaptureFixture[str],
) -> None:
    station.write_config()
    sock = station.dir / "control.sock"
    pty = ptys(station.links[0])
    sub = subscriber_factory(broker.port)
    d = daemons(station.config)
    feed = Feeder(pty)
    wait_until(lambda: ask(capsys, sock, "devices")[0]["state"] == "waiting", what="gps0 open")

    for junk in (b"\x00\xff\xfe garbage \x1b[2J\n", b"status\n", b"[]\n", b'{"cmd": 1}\n', b"\n"):
        reply = raw(sock, junk)
        assert reply["ok"] is False and "not a request" in reply["error"], (junk, reply)
    assert "unknown command 'reboot'" in raw(sock, b'{"cmd": "reboot"}\n')["error"]
    assert "longer than 4096 bytes" in raw(sock, b"x" * 100_000, shut=False)["error"]
    assert raw(sock, b'{"cmd": "status"}')["ok"] is True  # no newline, then end of stream: still one request
    assert raw(sock, b'{"cmd": "units"}\n{"cmd": "devices"}\n')["cmd"] == "units"  # one request per connection

    # Slow clients: connected, sending nothing. The loop goes on; beyond the limit, "busy" at once.
    idle = []
    try:
        for _ in range(control.MAX_CLIENTS):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(sock))
            idle.append(s)
        wait_until(lambda: "busy" in raw(sock, b'{"cmd": "status"}\n').get("error", ""), what="busy reply")
        feed.write(3, gap_s=0.1)
        wait_until(lambda: len(sub.on("/unit/R2-00/position")) == 3, what="positions while clients hang")
        # Each idle client is let go after REQUEST_TIMEOUT_S with a reason.
        idle[0].settimeout(control.REQUEST_TIMEOUT_S + 10)
        assert "no request line" in json.loads(idle[0].recv(4096))["error"]
    finally:
        for s in idle:
            s.close()
    wait_until(lambda: raw(sock, b'{"cmd": "status"}\n')["ok"] is True, what="served again")

    # Many clients at once, from threads: every one gets a whole, valid reply.
    replies: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: replies.append(raw(sock, b'{"cmd": "devices"}\n'))) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(replies) == 10 and all(r["ok"] and r["data"][0]["id"] == "gps0" for r in replies), replies
    assert d.proc is not None and d.proc.poll() is None
    assert "Traceback" not in d.log
    feed.write(1)
    wait_until(lambda: len(sub.on("/unit/R2-00/position")) == 4, what="still publishing")


def test_reply_records_survive_encode_and_decode() -> None:
    """The client rebuilds exactly the dataclasses the daemon serialised (and ignores fields it does not know)."""
    from alkomd.daemon.records import Counters, ModemHealth

    row = control.DeviceRow("m1", "teltonika", True, "connected", "2024-01-01T00:00:00.000Z", "", Counters(fixes=3),
                            1.5, ModemHealth(signal_dbm=-71, network="LTE"))
    data = json.loads(json.dumps(control.encode([row])))
    data[0]["added_later"] = 1
    assert control.decode(list[control.DeviceRow], data) == [row]
    with pytest.raises(control.ReplyError, match="counters"):
        control.decode(control.DeviceRow, {**data[0], "counters": "x"})


def test_a_callsign_with_square_brackets_is_printed_as_written(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], capsys: pytest.CaptureFixture[str]
) -> None:
    """Names and details are data: `[/]` or `[red]` in them is shown, never read as rich markup (which crashed on `[/]`)."""
    station.write_config()
    station.config.write_text(station.config.read_text().replace('callsign = "Macan 00"', 'callsign = "[/] Macan [red]00"'))
    daemons(station.config)
    code, out, err = run_ctl(capsys, "units", "--socket", str(station.dir / "control.sock"))
    assert code == 0, err
    assert "[/] Macan [red]00" in out

"""`alkomctl support-bundle` against a real daemon, broker and database: the bundle opens, has what helps, and no secret."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from conftest import NODE, Daemon, Feeder, Station, Subscriber, wait_until

from alkomd.daemon.ctl.support.bundle import redact, scrub
from alkomd.drivers.simulator import PtyGps

PASSWORD = "Sup3r-S3cret-Pa55word"
KEY_TEXT = "-----BEGIN PRIVATE KEY-----\nTESTKEYMATERIALdoNotLeak\n-----END PRIVATE KEY-----\n"
CALLER = "+6281234567890"
CALLER_FORMS = ("6281234567890", "081234567890", "812-3456-7890", "0812 3456 7890")


def bundle(out: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, bytes]]:
    r = subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", "support-bundle", str(out), *args],
                       capture_output=True, text=True, timeout=120)
    members: dict[str, bytes] = {}
    if r.returncode == 0:
        with tarfile.open(out, "r:gz") as tar:
            for m in tar.getmembers():
                f = tar.extractfile(m)
                assert f is not None
                members[m.name.split("/", 1)[1]] = f.read()
            assert len({m.name.split("/", 1)[0] for m in tar.getmembers()}) == 1  # one folder
    return r, members


def assert_nothing_secret(members: dict[str, bytes]) -> None:
    for name, data in members.items():
        assert PASSWORD.encode() not in data, name
        assert b"TESTKEYMATERIAL" not in data, name
        for form in CALLER_FORMS:
            assert form.encode() not in data, (name, form)


def _station(station: Station, tmp_path: Path) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "mqtt-password").write_text(PASSWORD + "\n")
    (secrets / "client.key").write_text(KEY_TEXT)
    station.write_config(devices=1, extra_mqtt=f'username = "polres-test"\npassword_file = "{secrets / "mqtt-password"}"\n')
    return secrets


def test_the_bundle_has_versions_ports_config_status_and_errors_but_no_secret(
    tmp_path: Path,
    station: Station,
    ptys: Callable[[Path], PtyGps],
    daemons: Callable[[Path], Daemon],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    secrets = _station(station, tmp_path)
    sub = subscriber_factory(station.port)
    pty = ptys(station.links[0])
    daemon = daemons(station.config)
    wait_until(lambda: any(m.payload.get("state") == "online" for m in sub.on(f"{NODE}/state")), 20, "node online")
    feeder = Feeder(pty)
    wait_until(lambda: pty.write(b"\n") > 0, 20, "the daemon opening its port")
    feeder.write(5, gap_s=0.1)
    wait_until(lambda: len(sub.on("/unit/R2-00/position")) >= 4, 20, "positions")
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    call = {"call_id": "C-77", "caller": CALLER, "lat": 0.545, "lon": 123.062, "accuracy_m": 15, "received_at": now,
            "category": "pencurian", "note": f"caller {CALLER} says: blue car"}
    sub.client.publish(f"{NODE}/call/new", json.dumps(call), qos=1)
    wait_until(lambda: station.query("SELECT count(*) FROM calls")[0][0] == 1, 20, "the call on record")
    log = tmp_path / "alkomd.log"
    log.write_text(daemon.log + f"\n2026-11-22 09:00:00,000 WARNING alkomd.daemon.calls.desk: call C-77 from {CALLER}: refused\n"
                   "2026-11-22 09:00:01,000 ERROR alkomd.daemon.runtime: driver gps9 crashed\nTraceback (most recent call last):\n"
                   '  File "x.py", line 1, in <module>\nOSError: [Errno 5] Input/output error\n'
                   "2026-11-22 09:00:02,000 INFO alkomd.daemon.runtime: all good\n")

    r, members = bundle(tmp_path / "support.tar.gz", "--config", str(station.config), "--log", str(log))
    assert r.returncode == 0, r.stderr
    for name in ("README.txt", "versions.json", "ports.txt", "ports.json", "config.json", "status.json", "log.txt", "udev.txt"):
        assert name in members, sorted(members)
    assert "database.json" not in members  # the daemon answered on its control socket
    assert_nothing_secret(members)
    assert (tmp_path / "support.tar.gz").stat().st_mode & 0o077 == 0  # only its owner reads it

    versions = json.loads(members["versions.json"])
    assert versions["alkomd"] and versions["python"] == sys.version.split()[0] and versions["libraries"]["pyserial"]
    config = json.loads(members["config.json"])
    assert config["mqtt"]["password_file"] == str(secrets / "mqtt-password")  # the path, never the content
    assert config["mqtt"]["username"] == "polres-test" and config["devices"][0]["options"]["url"] == str(pty.link)
    status = json.loads(members["status.json"])
    assert status["source"].startswith("control socket")
    [device] = status["devices"]
    assert device["id"] == "gps0" and device["counters"]["fixes"] >= 4
    assert all("lat" not in u and "lon" not in u for u in status["units"])  # no unit positions
    ports = json.loads(members["ports.json"])
    [port] = [p for p in ports["ports"] if p["path"] == str(pty.link)]
    assert port["holders"][0]["alkomd"] and port["holders"][0]["device"] == "gps0"
    text = members["log.txt"].decode()
    assert "call C-77 from <number>: refused" in text and "driver gps9 crashed" in text and "OSError: [Errno 5]" in text
    assert "all good" not in text  # warnings and errors only
    assert "config.json" in members["README.txt"].decode()

    daemon.stop()
    r, members = bundle(tmp_path / "after.tar.gz", "--config", str(station.config), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["members"] == sorted(members)
    assert "status.json" not in members and "database.json" in members
    assert_nothing_secret(members)
    db = json.loads(members["database.json"])
    assert db["open_calls"] >= 1 and "calls" not in db  # a count, never the calls themselves
    [dev] = db["devices"]
    published = [m.payload["state"] for m in sub.on("/device/gps0/status")]  # silent by now on a slow machine: the last one
    assert dev["device"] == "gps0" and dev["state"] == published[-1] and dev["counters"]["fixes"] >= 0
    assert "last state change" in db["devices_note"]
    assert [u["id"] for u in db["units"]] == ["R2-00"] and isinstance(db["outbox_depth"], int)


def test_a_config_that_does_not_validate_is_included_redacted(tmp_path: Path) -> None:
    bad = tmp_path / "alkomd.toml"
    bad.write_text(f'[node]\npath = "gorontalo/bone-bolango"\n[mqtt]\npassword = "{PASSWORD}"\napi_token = "tok-123456"\n')
    r, members = bundle(tmp_path / "b.tar.gz", "--config", str(bad))
    assert r.returncode == 0, r.stderr
    assert "config-error.txt" in members and "mqtt.password" in members["config-error.txt"].decode()
    raw = json.loads(members["config-raw.json"])
    assert raw["mqtt"] == {"password": "<redacted>", "api_token": "<redacted>"}
    assert_nothing_secret(members)
    assert b"tok-123456" not in b"".join(members.values())


def test_cannot_create_the_bundle_is_73(tmp_path: Path) -> None:
    r, _ = bundle(tmp_path / "missing" / "b.tar.gz", "--config", str(tmp_path / "none.toml"))
    assert r.returncode == 73 and "cannot create" in r.stderr


def test_scrub_takes_phone_numbers_and_leaves_times_ids_and_counts() -> None:
    text = (
        "2026-11-22 09:44:09,396 WARNING call C-9 from +62 812-3456-7890 and 081234567890 or 6281234567890\n"
        "msg_id 0a81234567890bcd pid 1234567 time 2024-05-14T03:15:00.000Z sentences 1234 lat 0.5412345\n"
    )
    out = scrub(text)
    assert out.count("<number>") == 3 and "812-3456" not in out and "081234567890" not in out
    for kept in ("2026-11-22 09:44:09,396", "0a81234567890bcd", "1234567", "2024-05-14T03:15:00.000Z", "0.5412345"):
        assert kept in out
    assert redact({"password_file": "/run/x", "secret": "s", "nested": [{"psk": "k", "port": 1}]}) == {
        "password_file": "/run/x", "secret": "<redacted>", "nested": [{"psk": "<redacted>", "port": 1}],
    }



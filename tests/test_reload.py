"""SIGHUP reloads the configuration of a running daemon: devices and units come and go, a bad file changes nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Daemon, Feeder, Station, Subscriber, wait_until
from helpers_faults import NotifySocket

from alkomd.daemon import config, control, reload
from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.drivers.simulator import PtyGps

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_runtime_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    n = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", n.address)
    yield n
    n.close()


def status(station: Station) -> dict[str, Any]:
    data: dict[str, Any] = control.request(station.dir / "control.sock", "status")
    return data


def hup(d: Daemon, notify: NotifySocket) -> None:
    """SIGHUP, then wait for the READY=1 that ends the reload."""
    before = notify.firsts().count("READY=1")
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: notify.firsts().count("READY=1") > before, 20, "READY=1 after the reload")


def lines(d: Daemon, text: str) -> list[str]:
    return [ln for ln in d.lines if text in ln]


def test_sighup_adds_a_device_and_a_unit_and_restarts_only_a_changed_driver(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber], notify: NotifySocket,
) -> None:
    """Pass: the new unit's fixes are published within 20 s of the SIGHUP, the old device never stops publishing,
    systemd hears RELOADING=1 (with MONOTONIC_USEC) then READY=1."""
    station.write_config(devices=1)
    sub = subscriber_factory(station.port)
    pty0 = ptys(station.links[0])
    d = daemons(station.config)
    feed0 = Feeder(pty0)
    wait_until(lambda: bool(sub.on("/device/gps0/status")), what="gps0 status")
    feed0.write(2, gap_s=0.1)
    wait_until(lambda: len(sub.on("/unit/R2-00/position")) == 2, what="R2-00 positions")

    station.write_config(devices=2)  # adds gps1 and unit R2-01
    pty1 = ptys(station.links[1])
    hup(d, notify)
    assert lines(d, "reload: devices started gps1; units added R2-01"), d.log
    reloading = [lines for lines in (text.split("\n") for _, text in notify.messages) if lines[0] == "RELOADING=1"]
    assert len(reloading) == 1 and reloading[0][1].startswith("MONOTONIC_USEC=") and int(reloading[0][1].split("=")[1]) > 0
    firsts = notify.firsts()
    assert firsts.index("RELOADING=1") < len(firsts) - 1 - firsts[::-1].index("READY=1")

    feed1 = Feeder(pty1, lat=0.60, lon=123.10)
    wait_until(lambda: any(m.payload["state"] == "waiting" for m in sub.on("/device/gps1/status")), what="gps1 open")
    feed1.write(3, gap_s=0.1)
    feed0.write(1)
    wait_until(lambda: len(sub.on("/unit/R2-01/position")) == 3, what="R2-01 positions after the reload")
    wait_until(lambda: len(sub.on("/unit/R2-00/position")) == 3, what="R2-00 still publishing")
    wait_until(lambda: any(m.payload["status"] == "available" for m in sub.on("/unit/R2-01/status")), what="R2-01 available")
    assert station.query("SELECT callsign, type, device FROM units WHERE id = 'R2-01'") == [("Macan 01", "car", "gps1")]
    st = status(station)
    assert st["last_reload"]["ok"] is True and "units added R2-01" in st["last_reload"]["summary"]
    assert st["units"] == {"available": 2} and st["devices"] == {"connected": 2}

    # Change only gps0's options: gps0 restarts, gps1 is left alone.
    station.config.write_text(station.config.read_text().replace("no_fix_after_s = 3\n", "no_fix_after_s = 4\n", 1))
    opened = len(lines(d, "gps1: opened"))
    hup(d, notify)
    assert lines(d, "reload: devices restarted gps0"), d.log
    assert len(lines(d, "gps1: opened")) == opened
    wait_until(lambda: len(lines(d, "gps0: opened")) == 2, what="gps0 reopened")
    feed0.write(1)
    wait_until(lambda: len(sub.on("/unit/R2-00/position")) == 4, what="R2-00 after its driver restarted")
    assert d.proc is not None and d.proc.poll() is None


def test_an_invalid_file_keeps_the_running_configuration_and_restart_only_keys_are_reported(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber], notify: NotifySocket,
) -> None:
    """Pass: exactly one log line, naming the file and the key; the daemon keeps publishing (3 of 3 fixes)."""
    station.write_config(devices=1)
    good = station.config.read_text()
    sub = subscriber_factory(station.port)
    pty = ptys(station.links[0])
    d = daemons(station.config)
    feed = Feeder(pty)
    wait_until(lambda: bool(sub.on("/device/gps0/status")), what="gps0 status")

    station.config.write_text(good.replace("reconnect_max_s = 1\n", 'reconnect_max_s = 1\nbaud = "fast"\n', 1)
                              + '[[unit]]\nid = "R2-99"\ndevice = "gps9"\n')
    hup(d, notify)
    refused = lines(d, "keeping the running configuration")
    assert len(refused) == 1, d.log
    assert str(station.config) in refused[0] and "device[0].baud" in refused[0] and " ERROR " in refused[0]
    assert not lines(d, "reload: devices") and not lines(d, "units added")
    st = status(station)
    assert st["last_reload"]["ok"] is False and "device[0].baud" in st["last_reload"]["summary"]
    assert st["devices"] == {"waiting": 1}  # open, no fix fed yet
    feed.write(3, gap_s=0.1)
    wait_until(lambda: len(sub.on("/unit/R2-00/position")) == 3, what="still publishing after the refused reload")

    # A valid file whose [mqtt] and [store] path changed: reported, not applied; the live part is applied.
    moved = good.replace("keepalive_s = 5\n", "keepalive_s = 7\n").replace(str(station.db), str(station.dir / "other.db"))
    station.config.write_text(moved + "[availability]\nmissed_reports = 5\n[dispatch]\naccept_timeout_s = 30\n")
    hup(d, notify)
    (restart,) = lines(d, "needs a restart")
    assert "mqtt.keepalive_s" in restart and "store.path" in restart and "WARNING" in restart
    assert lines(d, "reload: options availability.missed_reports, dispatch.accept_timeout_s"), d.log
    st = status(station)
    assert st["database"]["path"] == str(station.db) and st["broker"]["connected"] is True
    assert st["last_reload"]["ok"] is True and "needs a restart: store.path, mqtt.keepalive_s" in st["last_reload"]["summary"]
    assert not (station.dir / "other.db").exists()
    feed.write(1)
    wait_until(lambda: len(sub.on("/unit/R2-00/position")) == 4, what="publishing after the reload")


def test_removing_a_device_stops_it_and_frees_its_port(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber], notify: NotifySocket,
) -> None:
    """Pass: before the reload another process cannot lock gps1's port; after it, it can; gps1's retained status
    says why it stopped, and gps0 keeps publishing."""
    station.write_config(devices=2)
    sub = subscriber_factory(station.port)
    pty0 = ptys(station.links[0])
    ptys(station.links[1])
    d = daemons(station.config)
    wait_until(lambda: status(station)["devices"] == {"waiting": 2}, what="both devices open")
    assert _open_exclusive(station.links[1]) != 0, "the daemon holds gps1's port"

    one = Station(station.dir, station.port)
    one.write_config(devices=1)
    hup(d, notify)
    assert lines(d, "reload: devices stopped gps1; units removed R2-01"), d.log
    assert _open_exclusive(station.links[1]) == 0, "gps1's port is free after the reload"
    wait_until(lambda: sub.on("/device/gps1/status")[-1].payload["state"] == "disconnected", what="gps1 disconnected")
    last = sub.on("/device/gps1/status")[-1].payload
    assert (last["state"], last["detail"]) == ("disconnected", "removed from the configuration")
    devices = control.request(station.dir / "control.sock", "devices")
    units = control.request(station.dir / "control.sock", "units")
    assert [x["id"] for x in devices] == ["gps0"] and [x["id"] for x in units] == ["R2-00"]
    assert status(station)["devices"] == {"waiting": 1}

    feed = Feeder(pty0)
    feed.write(2, gap_s=0.1)
    wait_until(lambda: len(sub.on("/unit/R2-00/position")) == 2, what="gps0 still publishing")
    assert not sub.on("/unit/R2-01/position")

    # Back in the file, then kept there but disabled: its status says so (not "removed").
    station.write_config(devices=2)
    hup(d, notify)
    wait_until(lambda: sum(n for s, n in status(station)["devices"].items() if s in ("waiting", "connected")) == 2,
               what="gps1 open again")
    station.config.write_text(station.config.read_text().replace('id = "gps1"\n', 'id = "gps1"\nenabled = false\n', 1))
    hup(d, notify)
    assert lines(d, "reload: devices stopped gps1")[-1].endswith("reload: devices stopped gps1"), d.log  # units stay
    wait_until(lambda: sub.on("/device/gps1/status")[-1].payload["detail"] == "disabled in the configuration",
               what="gps1 disabled")
    assert [x["state"] for x in control.request(station.dir / "control.sock", "devices")][1:] == ["disabled"]


def _open_exclusive(link: Path) -> int:
    """Exit code of another process locking the port as the daemon does (pyserial exclusive=True)."""
    code = f"import serial; serial.Serial({str(link)!r}, 9600, exclusive=True, timeout=0.1).close()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).returncode


def test_log_level_follows_the_file_unless_given_on_the_command_line(station: Station, broker: Broker, notify: NotifySocket) -> None:
    """Pass: with [log] level = "warning" no INFO line is written; after the file says "info" and a SIGHUP, the
    reload's own INFO line is."""
    station.write_config(devices=0)
    station.config.write_text(station.config.read_text() + '[log]\nlevel = "warning"\n')
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "alkomd.daemon.main", "--config", str(station.config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    out: list[str] = []
    threading.Thread(target=lambda: out.extend(proc.stderr or []), daemon=True).start()
    try:
        wait_until(lambda: "READY=1" in notify.firsts(), 20, "READY=1")
        wait_until(lambda: status(station)["broker"]["connected"], what="broker link")
        station.config.write_text(station.config.read_text().replace('level = "warning"', 'level = "info"'))
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: notify.firsts().count("READY=1") == 2, 20, "READY=1 after the reload")
        wait_until(lambda: any("reload: log level info" in ln for ln in out), what="the reload's INFO line")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    text = "".join(out)
    before = text[: text.rfind("\n", 0, text.index("reload: log level info")) + 1]  # the lines before it
    assert " INFO " not in before and "ready:" not in before, before
    assert "INFO alkomd.daemon.runtime: stopping" in text


def _cfg(path: Path, **sections: Any) -> config.Config:
    raw: dict[str, Any] = {"node": {"path": "gorontalo/kota-gorontalo"}, "store": {"path": str(path.parent / "a.db")}}
    raw.update(sections)
    return config.parse(raw, path)


def test_plan_sorts_changes_into_live_and_needs_a_restart(tmp_path: Path) -> None:
    """The plan, without a daemon: every changed key lands on exactly one side."""
    link = tmp_path / "tty"
    dev = {"id": "gps0", "driver": "nmea", "url": str(link)}
    old = _cfg(tmp_path / "a.toml", device=[dev], unit=[{"id": "R1", "device": "gps0"}])
    assert reload.plan(old, old).summary() == "no changes"

    new = _cfg(
        tmp_path / "a.toml",
        node={"path": "gorontalo/kota-gorontalo", "name": "Polres Gorontalo Kota", "tier": "polda"},
        store={"path": str(tmp_path / "b.db"), "position_retention_days": 30},
        mqtt={"port": 8884},
        log={"level": "debug"},
        device=[{**dev, "enabled": False}, {"id": "gps1", "driver": "nmea", "url": str(link) + "1"}],
        unit=[{"id": "R1", "device": "gps0", "type": "foot"}, {"id": "R2", "device": "gps1"}],
    )
    p = reload.plan(old, new)
    assert p.needs_restart == ("node.tier", "store.path", "mqtt.port")
    assert p.options == ("node.name", "store.position_retention_days")
    assert [d.id for d in p.start] == ["gps1"] and p.stop == ("gps0",) and p.restart == ()
    assert (p.units_added, p.units_removed, p.units_changed, p.log_level) == (("R2",), (), ("R1",), "debug")
    eff = p.config
    assert eff.node.tier == "polres" and eff.node.name == "Polres Gorontalo Kota" and eff.mqtt == old.mqtt
    assert eff.store.path == old.store.path and eff.store.position_retention_days == 30
    assert json.dumps(p.summary()) and "devices started gps1; devices stopped gps0" in p.summary()


def test_the_shipped_unit_reloads_with_sighup() -> None:
    """`systemctl reload alkomd` sends SIGHUP to the main process (systemd-analyze verify: tests/test_systemd.py)."""
    text = (ROOT / "systemd" / "alkomd.service").read_text()
    assert "\nExecReload=/bin/kill -HUP $MAINPID\n" in text and "\nType=notify\n" in text


def _square(code: str) -> str:
    ring = [[123.0, 0.5], [123.1, 0.5], [123.1, 0.6], [123.0, 0.6], [123.0, 0.5]]
    feature = {
        "type": "Feature",
        "properties": {"code": code, "name": f"Wilayah {code}"},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }
    return json.dumps({"type": "FeatureCollection", "features": [feature]})


def test_reloaded_jurisdictions_take_the_next_call_and_a_broken_file_is_refused(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber], notify: NotifySocket,
) -> None:
    """Pass: the call after the reload lies in the new polygon id with the unit as its candidate; a file that is not
    GeoJSON is refused with one line naming jurisdictions.file, and the next call still uses the reloaded polygons."""
    areas = station.dir / "areas.geojson"
    station.write_config()
    areas.write_text(_square("A"))
    station.config.write_text(station.config.read_text() + f'[jurisdictions]\nfile = "{areas}"\n[recommend]\nmax_fix_age_s = 3600\n')
    sub = subscriber_factory(station.port)
    pty = ptys(station.links[0])
    d = daemons(station.config)
    wait_until(lambda: any(m.payload.get("state") == "online" for m in sub.on("/state")), what="node online")
    Feeder(pty).write(3, gap_s=0.1)
    wait_until(lambda: any(m.payload.get("status") == "available" for m in sub.on("/unit/R2-00/status")), what="unit available")

    def call(call_id: str) -> dict[str, Any]:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        body = {"call_id": call_id, "caller": "+6281234567890", "lat": 0.545, "lon": 123.062, "accuracy_m": 15,
                "received_at": now, "category": "pencurian"}
        sub.client.publish(f"{sub.topic[:-2]}/call/new", json.dumps(body), qos=1)
        wait_until(lambda: bool(sub.on(f"/call/{call_id}")), what=f"call {call_id} state")
        state: dict[str, Any] = sub.on(f"/call/{call_id}")[-1].payload
        return state

    first = call("C-1")
    assert first["jurisdiction"] == "A" and first["candidates"][0]["unit"] == "R2-00"
    areas.write_text(_square("B") + "\n")
    hup(d, notify)
    assert lines(d, "reload: jurisdictions reloaded"), d.log
    second = call("C-2")
    assert second["jurisdiction"] == "B" and second["candidates"][0]["unit"] == "R2-00"
    assert second["candidates"][0]["in_jurisdiction"] is True  # the unit was put into the new polygon too

    areas.write_text("{not geojson")
    hup(d, notify)
    (refused,) = lines(d, "keeping the running configuration")
    assert "jurisdictions.file" in refused and str(station.config) in refused
    assert call("C-3")["jurisdiction"] == "B"
    assert "Traceback" not in d.log

"""C2: a Polda in a flood of positions from the units below: none is lost, and every call sent meanwhile is taken up once.

The bench (`bench/bench_calls.py --load 10000`, `bench/bench_ingest.py`) measures the rates and the latency; this test
proves the behaviour at a rate the test machine sustains, with the central broker's flow control."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from conftest import Daemon, Subscriber, wait_until
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from alkomd.daemon.control import request
from alkomd.daemon.ctl.demo.broker import Broker

ROOT = Path(__file__).resolve().parents[1]
JUR = ROOT / "config" / "jurisdictions" / "gorontalo-adm2.geojson"
POLDA = "polri110/gorontalo"
UNITS = 300
POSITIONS = 12_000
RATE = 2_000  # positions a second
CALLS = 20
KOTA = (0.5412, 123.0595)


def _client(port: int, cid: str) -> paho.Client:
    c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=cid, protocol=MQTTProtocolVersion.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def _position(i: int) -> tuple[str, str]:
    unit = f"U{i % UNITS:03d}"
    t = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    body = {"unit": unit, "lat": KOTA[0] + (i % 97) * 0.0005, "lon": KOTA[1] + (i % 89) * 0.0005, "time": t, "received": t,
            "speed_kmh": 20.0, "course": 0.0, "hdop": 1.0, "sats": 9, "fix": "3d", "source": "test", "msg_id": f"f-{i}",
            "alt": None, "type": "car"}
    return f"{POLDA}/p{i % 3}/unit/{unit}/position", json.dumps(body, separators=(",", ":"))


def _flood(port: int, done: threading.Event) -> None:
    c = _client(port, "c2-stations")
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    for u in range(UNITS):
        c.publish(f"{POLDA}/p{u % 3}/unit/U{u:03d}/status", json.dumps({"unit": f"U{u:03d}", "status": "available", "since": now}),
                  qos=1, retain=True)
    start = time.monotonic()
    info = None
    for i in range(POSITIONS):
        topic, body = _position(i)
        info = c.publish(topic, body, qos=1, retain=True)
        ahead = start + (i + 1) / RATE - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    assert info is not None
    info.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()
    done.set()


def _below(cfg: Path) -> dict[str, Any]:
    below = request(cfg.parent / "control.sock", "status")["below"]
    assert isinstance(below, dict)
    return below


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        out |= {int(c) for c in (task / "children").read_text().split()}
    return out


def _spawned(children: set[int]) -> list[int]:
    """Those of `children` that multiprocessing spawned (the below link's child; not its resource tracker)."""
    return [p for p in children if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]


def _polda(tmp_path: Path, port: int, below: str) -> Path:
    """A Polda's config (the Gorontalo polygons), its database beside it; `below`: `[mqtt] below_connection`."""
    d = tmp_path / "polda"
    d.mkdir()
    cfg = d / "alkomd.toml"
    cfg.write_text(
        f'[node]\npath = "gorontalo"\ntier = "polda"\n[store]\npath = "{d}/alkomd.db"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ntls = false\nbelow_connection = "{below}"\n'
        f'[jurisdictions]\nfile = "{JUR}"\ninclude_property = "level"\ninclude_values = ["regency", "city"]\n'
        "[dispatch]\nanswer_timeout_polda_s = 3600\n[recommend]\nmax_fix_age_s = 3600\n"
    )
    return cfg


@pytest.mark.parametrize("below", ["same", "separate"])
def test_c2_a_flood_of_positions_loses_none_and_every_call_meanwhile_is_taken_up_once(
    tmp_path: Path, central_broker: Broker, daemons: Callable[[Path], Daemon], subscriber_factory: Callable[..., Subscriber],
    below: str,
) -> None:
    """12,000 positions of 300 units below at 2,000 a second, 20 calls at Kota Gorontalo during the flood. Pass: the
    daemon took in every position (its count of positions below), each call has its state with candidates from the
    flooded units, and its record holds each call received once; no error in the log. `below`: the units below on the
    daemon's own connection, or on a second one read by a child process, which ends with the daemon."""
    port = central_broker.port
    cfg = _polda(tmp_path, port, below)
    daemon = daemons(cfg)
    sub = subscriber_factory(port, topic=f"{POLDA}/call/+", client_id="c2-watch")
    wait_until(lambda: "the probe came back" in daemon.log, 20, "the polda subscribed")
    done = threading.Event()
    threading.Thread(target=_flood, args=(port, done), daemon=True).start()
    wait_until(lambda: _below(cfg)["located"] == UNITS, 60, "every unit below located")
    caller = _client(port, "c2-gateway")
    try:
        for k in range(CALLS):
            body = {"call_id": f"C2-{k}", "caller": f"+62812000{k:04d}", "lat": KOTA[0], "lon": KOTA[1], "accuracy_m": 10,
                    "received_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "category": "pencurian"}
            caller.publish(f"{POLDA}/call/new", json.dumps(body), qos=1).wait_for_publish(10)
            time.sleep(0.1)
        assert not done.is_set(), "the calls went out during the flood"
    finally:
        caller.disconnect()
        caller.loop_stop()
    wait_until(done.is_set, 120, "the flood published")
    wait_until(lambda: _below(cfg)["positions"] == POSITIONS, 120, f"all {POSITIONS} positions taken in")
    for k in range(CALLS):
        wait_until(lambda k=k: bool(sub.on(f"/call/C2-{k}")), 30, f"call C2-{k}'s state")  # type: ignore[misc]
        assert len(sub.on(f"/call/C2-{k}")[0].payload["candidates"]) == 5
    children = _children(daemon.proc.pid)  # with multiprocessing's resource tracker
    assert len(_spawned(children)) == (1 if below == "separate" else 0)
    assert daemon.stop() == 0
    for pid in children:
        wait_until(lambda pid=pid: not Path(f"/proc/{pid}").exists(), 10, "the below link's child ended")  # type: ignore[misc]
    conn = sqlite3.connect(cfg.parent / "alkomd.db")
    received = dict(conn.execute("SELECT call_id, count(*) FROM audit WHERE kind = 'call.received' GROUP BY call_id"))
    conn.close()
    assert received == {f"C2-{k}": 1 for k in range(CALLS)}
    assert " ERROR " not in daemon.log and "Traceback" not in daemon.log


def test_the_below_links_child_killed_is_started_again_and_the_units_below_keep_coming(
    tmp_path: Path, central_broker: Broker, daemons: Callable[[Path], Daemon],
) -> None:
    port = central_broker.port
    cfg = _polda(tmp_path, port, "separate")
    daemon = daemons(cfg)
    wait_until(lambda: "the probe came back" in daemon.log, 30, "both probes back")
    stations = _client(port, "stations")
    try:
        for i in range(10):
            stations.publish(*_position(i), qos=1, retain=True).wait_for_publish(10)
        wait_until(lambda: _below(cfg)["located"] == 10, 30, "10 units below located")
        assert daemon.proc is not None
        child = _spawned(_children(daemon.proc.pid))
        assert len(child) == 1 and _below(cfg)["child_pid"] == child[0] and _below(cfg)["child_restarts"] == 0
        os.kill(child[0], signal.SIGKILL)
        wait_until(lambda: "below link: the child ended" in daemon.log, 30, "the daemon noticing")
        wait_until(lambda: daemon.log.count("below link: child") >= 2, 30, "the child started again")
        for i in range(10, 20):
            stations.publish(*_position(i), qos=1, retain=True).wait_for_publish(10)
        wait_until(lambda: _below(cfg)["located"] == 20, 30, "the units published after the restart located")
        assert _below(cfg)["child_restarts"] == 1 and _below(cfg)["child_pid"] not in (None, child[0])
        out = subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", "status", "--socket", str(cfg.parent / "control.sock")],
                             capture_output=True,
                             text=True, timeout=60)
        assert "second connection: child" in out.stdout and "started again 1 times" in out.stdout, out.stdout + out.stderr
    finally:
        stations.disconnect()
        stations.loop_stop()
    assert daemon.stop() == 0

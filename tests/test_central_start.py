"""C3: a Polda restarted with thousands of units below is ready at once from its snapshot, before any retained message."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from conftest import Daemon, Subscriber, wait_until
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from alkomd.daemon.control import request
from alkomd.daemon.ctl.demo.broker import Broker

ROOT = Path(__file__).resolve().parents[1]
JUR = ROOT / "config" / "jurisdictions" / "gorontalo-adm2.geojson"
POLDA = "polri110/gorontalo"
# Under the test broker's default max_queued_messages (1000, plus 20 in flight): every unit's retained status comes at
# QoS 1 in one burst at each subscribe, and mosquitto drops what exceeds that queue (config/mosquitto/central.conf sizes
# it for Mabes's 50,000 units; bench/bench_ingest.py shows 50,000 through an unlimited queue).
UNITS = 900
NEAR = (0.5412, 123.0595)  # Kota Gorontalo: the call comes from here; unit "NEAR" stands on it


def _config(path: Path, port: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    cfg = path / "alkomd.toml"
    cfg.write_text(
        f'[node]\npath = "gorontalo"\ntier = "polda"\n[store]\npath = "{path}/alkomd.db"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ntls = false\nreconnect_min_s = 0.5\nreconnect_max_s = 2\n'
        f'[jurisdictions]\nfile = "{JUR}"\ninclude_property = "level"\ninclude_values = ["regency", "city"]\n'
        "[dispatch]\nanswer_timeout_polda_s = 3600\n[recommend]\nmax_fix_age_s = 3600\n"
    )
    return cfg


def _publish_units(port: int) -> None:
    """UNITS retained units under three Polres: statuses (available) and positions around Kota Gorontalo."""
    c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="c3-units", protocol=MQTTProtocolVersion.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    info = None
    for i in range(UNITS):
        unit = "NEAR" if i == 0 else f"U{i:04d}"
        lat, lon = (NEAR[0], NEAR[1]) if i == 0 else (NEAR[0] + 0.002 + (i % 40) * 0.004, NEAR[1] + 0.002 + (i // 40) * 0.004)
        base = f"{POLDA}/p{i % 3}/unit/{unit}"
        c.publish(f"{base}/status", json.dumps({"unit": unit, "status": "available", "since": now, "type": "car"}), qos=1, retain=True)
        info = c.publish(f"{base}/position", json.dumps({"unit": unit, "lat": lat, "lon": lon, "time": now, "type": "car"},
                                                        separators=(",", ":")), qos=1, retain=True)
        if i % 500 == 499:
            info.wait_for_publish(30)
    assert info is not None
    info.wait_for_publish(30)
    c.disconnect()
    c.loop_stop()


def _below(cfg: Path) -> dict[str, Any]:
    status = request(cfg.parent / "control.sock", "status")
    below = status["below"]
    assert isinstance(below, dict)
    return below


def _call(port: int, sub: Subscriber, call_id: str) -> list[str]:
    """Publish a call at NEAR, return its first call state's candidate units."""
    c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"c3-{call_id}", protocol=MQTTProtocolVersion.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    body = {"call_id": call_id, "caller": "+6281200000001", "lat": NEAR[0], "lon": NEAR[1], "accuracy_m": 10,
            "received_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "category": "pencurian"}
    c.publish(f"{POLDA}/call/new", json.dumps(body), qos=1).wait_for_publish(10)
    c.disconnect()
    c.loop_stop()
    wait_until(lambda: bool(sub.on(f"/call/{call_id}")), 20, f"the state of call {call_id}")
    state = sub.on(f"/call/{call_id}")[0].payload
    return [c["unit"] for c in state["candidates"]]


def test_c3_a_restarted_polda_recommends_the_units_it_knew_from_its_snapshot_before_any_retained_message(
    tmp_path: Path, broker: Broker, daemons: Callable[[Path], Daemon], subscriber_factory: Callable[..., Subscriber],
) -> None:
    """900 units below, taken in over MQTT, then the Polda stopped (it writes its snapshot) and started again against
    an EMPTY broker (a new one: no retained message will ever come): at once it says it follows all 900 units, 0
    positions and statuses taken in since the start, and a call at unit NEAR's place gets NEAR first. Then NEAR's status
    arrives over MQTT (unavailable): the next call no longer gets it (the flood refreshes what the snapshot said)."""
    cfg = _config(tmp_path / "polda", broker.port)
    _publish_units(broker.port)
    first = daemons(cfg)
    wait_until(lambda: _below(cfg)["located"] == UNITS and _below(cfg)["statuses"] == UNITS, 60, "all units taken in")
    assert first.stop() == 0

    empty = Broker(kind="mosquitto", workdir=tmp_path / "empty-broker")
    empty.start()
    try:
        cfg = _config(tmp_path / "polda", empty.port)
        sub = subscriber_factory(empty.port, topic=f"{POLDA}/#", client_id="c3-watch")
        again = daemons(cfg)
        below = _below(cfg)
        assert below["from_snapshot"] == below["units"] == below["located"] == UNITS
        assert below["positions"] == below["statuses"] == 0 and below["snapshot_time"]
        assert any("loaded from the snapshot" in line for line in again.lines)
        wait_until(lambda: any(m.payload.get("state") == "online" for m in sub.on(f"{POLDA}/state")), 20, "the polda online")
        candidates = _call(empty.port, sub, "C3-1")
        assert candidates[:1] == ["NEAR"] and len(candidates) == 5
        c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="c3-status", protocol=MQTTProtocolVersion.MQTTv5)
        c.connect("127.0.0.1", empty.port)
        c.loop_start()
        c.publish(f"{POLDA}/p0/unit/NEAR/status", json.dumps({"unit": "NEAR", "status": "unavailable"}), qos=1,
                  retain=True).wait_for_publish(10)
        c.disconnect()
        c.loop_stop()
        wait_until(lambda: _below(cfg)["statuses"] == 1, 20, "NEAR's status taken in")
        candidates = _call(empty.port, sub, "C3-2")
        assert "NEAR" not in candidates and len(candidates) == 5
    finally:
        empty.close()

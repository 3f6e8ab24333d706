"""Three daemons on one broker: Polres -> Polda -> Mabes escalation, with the Polres's unit seen at every tier."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from conftest import Daemon, Feeder, Station, Subscriber, wait_until

from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.drivers.simulator import PtyGps

ROOT = Path(__file__).resolve().parents[1]
JUR = ROOT / "config" / "jurisdictions"
POLRES, POLDA, MABES = "polri110/gorontalo/kota-gorontalo", "polri110/gorontalo", "polri110"


def _node_config(path: Path, node_path: str, tier: str, port: int, jurisdictions: str, timeouts: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    cfg = path / "alkomd.toml"
    cfg.write_text(
        f'[node]\npath = "{node_path}"\ntier = "{tier}"\n[store]\npath = "{path}/alkomd.db"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ntls = false\nreconnect_min_s = 0.5\nreconnect_max_s = 2\n'
        f"[jurisdictions]\n{jurisdictions}\n[dispatch]\n{timeouts}\n[recommend]\nmax_fix_age_s = 3600\n"
    )
    return cfg


def _state(sub: Subscriber, node: str, call_id: str) -> dict[str, object] | None:
    got = [m.payload for m in sub.on("") if m.topic == f"{node}/call/{call_id}"]
    return got[-1] if got else None


def test_a_call_nobody_answers_reaches_mabes_which_alerts_the_polres_unit(
    tmp_path: Path, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    sub = subscriber_factory(broker.port, topic="polri110/#")
    polres = Station(tmp_path / "polres", broker.port)
    polres.write_config()
    polres.config.write_text(
        polres.config.read_text()
        + f'\n[jurisdictions]\nfile = "{JUR}/gorontalo-adm2.geojson"\ninclude_property = "code"\ninclude_values = ["75.71"]\n'
        "\n[dispatch]\nanswer_timeout_polres_s = 5\n\n[recommend]\nmax_fix_age_s = 3600\n"
    )
    polda = _node_config(tmp_path / "polda", "gorontalo", "polda", broker.port,
                         f'file = "{JUR}/gorontalo-adm2.geojson"\ninclude_property = "level"\n'
                         'include_values = ["regency", "city"]\nchildren = ["75.71=gorontalo/kota-gorontalo"]',
                         "answer_timeout_polda_s = 5")
    mabes = _node_config(tmp_path / "mabes", "", "mabes", broker.port,
                         f'file = "{JUR}/indonesia-adm1.geojson"\noutside_max_m = 3000\nchildren = ["75=gorontalo"]',
                         "answer_timeout_mabes_s = 5\nrealert_s = 5")
    pty = ptys(polres.links[0])
    d_polres = daemons(polres.config)
    daemons(polda)
    daemons(mabes)
    for node in (POLRES, POLDA, MABES):
        wait_until(lambda n=node: any(m.topic == f"{n}/state" and m.payload["state"] == "online" for m in sub.on("/state")),  # type: ignore[misc]
                   what=f"{node} online")
    wait_until(lambda: "gps0: starting -> waiting" in d_polres.log, what="port open")
    Feeder(pty).write(3, gap_s=0.1)
    wait_until(lambda: any(m.payload.get("status") == "available" for m in sub.on(f"{POLRES}/unit/R2-00/status")), what="unit available")

    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    call = {"call_id": "C-9", "caller": "+6285200000000", "lat": 0.5450, "lon": 123.0620, "accuracy_m": 10,
            "received_at": now, "category": "kecelakaan"}
    sub.client.publish(f"{POLRES}/call/new", json.dumps(call), qos=1)

    # Polres: offered, nobody answers for 5 s -> escalated to the Polda.
    wait_until(lambda: (_state(sub, POLRES, "C-9") or {}).get("state") == "escalated", 20, "escalated at the Polres")
    # Polda: it sees the Polres's unit over MQTT and recommends it; nobody answers -> Mabes.
    wait_until(lambda: _state(sub, POLDA, "C-9") is not None, 20, "offered at the Polda")
    polda_offer = next(m.payload for m in sub.on("") if m.topic == f"{POLDA}/call/C-9")
    assert polda_offer["state"] == "offered" and polda_offer["jurisdiction"] == "75.71"
    assert [c["unit"] for c in polda_offer["candidates"]] == ["R2-00"]  # type: ignore[union-attr]
    wait_until(lambda: (_state(sub, POLDA, "C-9") or {}).get("state") == "escalated", 20, "escalated at the Polda")
    # Mabes: never escalates further; it re-alerts until answered.
    wait_until(lambda: _state(sub, MABES, "C-9") is not None, 20, "offered at Mabes")
    mabes_offer = _state(sub, MABES, "C-9")
    assert mabes_offer is not None and mabes_offer["tier"] == "mabes" and mabes_offer["jurisdiction"] == "75"
    wait_until(lambda: "realerted" in (_state(sub, MABES, "C-9") or {}).get("flags", []), 20, "re-alert at Mabes")  # type: ignore[operator]

    # The duty officer at Mabes answers: the nearest unit, at the Polres, is alerted through its own node.
    sub.client.publish(f"{MABES}/call/C-9/event", json.dumps({"action": "answer", "by": "piket-mabes"}), qos=1)
    wait_until(lambda: (_state(sub, MABES, "C-9") or {}).get("assigned_unit") == "R2-00", what="assigned at Mabes")
    wait_until(lambda: bool(sub.on(f"{POLRES}/unit/R2-00/alert")), what="alert at the unit's own node")
    assert sub.on(f"{POLRES}/unit/R2-00/alert")[-1].payload["call_id"] == "C-9"
    wait_until(lambda: sub.on(f"{POLRES}/unit/R2-00/status")[-1].payload["status"] == "assigned", what="unit busy at its node")
    escalations = {m.payload["msg_id"] for m in sub.on("") if m.topic in (f"{POLDA}/call/new", f"{MABES}/call/new")}
    assert len(escalations) == 2  # Polres -> Polda, Polda -> Mabes: once each

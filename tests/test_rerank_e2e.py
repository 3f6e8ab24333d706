"""E7, E8: candidates follow the units: a unit freed after the call arrived is offered; when everybody declined the
dispatchers are alerted again and a unit that frees up later is sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from conftest import Daemon, Feeder, Station, Subscriber, wait_until

from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.drivers.simulator import PtyGps

NODE = "polri110/gorontalo/kota-gorontalo"
ROOT = Path(__file__).resolve().parents[1]


def _configure(station: Station, units: int) -> None:
    station.write_config(devices=units)
    station.config.write_text(
        station.config.read_text()
        + f'\n[jurisdictions]\nfile = "{ROOT}/config/jurisdictions/gorontalo-adm2.geojson"\n'
        'include_property = "level"\ninclude_values = ["regency", "city"]\n'
        "\n[dispatch]\nanswer_timeout_polres_s = 600\naccept_timeout_s = 600\nrealert_s = 5\n"
        "\n[recommend]\nmax_fix_age_s = 3600\n"  # the test feeder stamps fixes 10 min in the past
        "\n[availability]\ninterval_car_s = 600\n"  # a unit between two test feeds stays online
    )


def _call(call_id: str) -> bytes:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return json.dumps({"call_id": call_id, "caller": "+6281234567890", "lat": 0.5450, "lon": 123.0620, "accuracy_m": 15,
                       "received_at": now, "category": "pelaporan/kecelakaan"}).encode()


def _state(sub: Subscriber, call_id: str) -> dict[str, object]:
    states = [m.payload for m in sub.on(f"/call/{call_id}") if m.topic.endswith(f"/call/{call_id}")]
    return max(states, key=lambda p: int(p["version"])) if states else {}  # type: ignore[call-overload]


def _unit_status(sub: Subscriber, unit: str) -> str:
    got = sub.on(f"/unit/{unit}/status")
    return str(got[-1].payload["status"]) if got else ""


def _event(sub: Subscriber, call_id: str, **body: str) -> None:
    sub.client.publish(f"{NODE}/call/{call_id}/event", json.dumps(body), qos=1)


def test_e7_a_unit_freed_after_the_call_arrived_is_offered(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    """E7: the only unit on the air is unavailable when the call arrives (no candidate); once the dispatcher sets it
    available, the call's next state lists it, without anybody asking; answering sends it."""
    _configure(station, units=1)
    sub = subscriber_factory(broker.port)
    pty = ptys(station.links[0])
    d = daemons(station.config)
    wait_until(lambda: "gps0: starting -> waiting" in d.log, what="port open")
    Feeder(pty).write(3, gap_s=0.1)
    wait_until(lambda: _unit_status(sub, "R2-00") == "available", what="unit available")
    sub.client.publish(f"{NODE}/unit/R2-00/status/set", json.dumps({"status": "unavailable", "by": "piket-1"}), qos=1)
    wait_until(lambda: _unit_status(sub, "R2-00") == "unavailable", what="unit unavailable")

    sub.client.publish(f"{NODE}/call/new", _call("E7"), qos=1)
    wait_until(lambda: bool(_state(sub, "E7")), what="call offered")
    first = _state(sub, "E7")
    assert first["candidates"] == [] and "no_candidate" in first["flags"]  # type: ignore[operator]

    sub.client.publish(f"{NODE}/unit/R2-00/status/set", json.dumps({"status": "available", "by": "piket-1"}), qos=1)
    wait_until(lambda: [c["unit"] for c in _state(sub, "E7")["candidates"]] == ["R2-00"], what="the freed unit offered")  # type: ignore[attr-defined]
    offered = _state(sub, "E7")
    assert offered["state"] == "offered" and "no_candidate" not in offered["flags"]  # type: ignore[operator]
    _event(sub, "E7", action="answer", by="piket-1")
    wait_until(lambda: _state(sub, "E7")["assigned_unit"] == "R2-00", what="the freed unit sent")


def test_e8_everybody_declines_the_dispatchers_are_realerted_and_a_unit_freed_later_is_sent(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    """E8: both units on the air decline in turn: the call stays answered with no_candidate and neither is offered
    again; every realert_s (5 s) the dispatchers are alerted again (flag realerted, a new version); a third unit
    that comes on the air later is sent at once (assigned, alerted)."""
    _configure(station, units=3)
    sub = subscriber_factory(broker.port)
    feeds = [Feeder(ptys(link)) for link in station.links]
    d = daemons(station.config)
    wait_until(lambda: all(f"gps{i}: starting -> waiting" in d.log for i in range(3)), what="ports open")
    for f in feeds[:2]:
        f.write(3, gap_s=0.05)
    wait_until(lambda: _unit_status(sub, "R2-00") == _unit_status(sub, "R2-01") == "available", what="two units available")

    sub.client.publish(f"{NODE}/call/new", _call("E8"), qos=1)
    wait_until(lambda: len(_state(sub, "E8").get("candidates", [])) == 2, what="two candidates")  # type: ignore[arg-type]
    _event(sub, "E8", action="answer", by="piket-1")
    wait_until(lambda: _state(sub, "E8")["state"] == "assigned", what="first unit alerted")
    first = str(_state(sub, "E8")["assigned_unit"])
    _event(sub, "E8", action="decline", by=first)
    wait_until(lambda: _state(sub, "E8")["assigned_unit"] not in (None, first), what="second unit alerted")
    second = str(_state(sub, "E8")["assigned_unit"])
    _event(sub, "E8", action="decline", by=second)
    wait_until(lambda: _state(sub, "E8")["state"] == "answered", what="nobody left")
    left = _state(sub, "E8")
    assert "no_candidate" in left["flags"] and sorted(left["declined"]) == sorted([first, second])  # type: ignore[operator, arg-type]
    wait_until(lambda: "realerted" in _state(sub, "E8")["flags"], 15, "dispatchers alerted again")  # type: ignore[operator]
    assert _state(sub, "E8")["assigned_unit"] is None, "a unit that declined is not offered the call again"

    feeds[2].write(3, gap_s=0.05)
    wait_until(lambda: _state(sub, "E8")["assigned_unit"] == "R2-02", 15, "the unit freed later is sent")
    assert _state(sub, "E8")["state"] == "assigned"
    wait_until(lambda: any(m.payload.get("call_id") == "E8" for m in sub.on("/unit/R2-02/alert")), what="alert to R2-02")

"""110 calls through a real daemon: intake, jurisdiction, nearest unit, lifecycle, escalation, restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from conftest import Daemon, Feeder, Station, Subscriber, wait_until

from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.drivers.simulator import PtyGps

NODE = "polri110/gorontalo/kota-gorontalo"
ROOT = Path(__file__).resolve().parents[1]


def _configure(station: Station) -> None:
    station.write_config()
    station.config.write_text(
        station.config.read_text()
        + f'\n[jurisdictions]\nfile = "{ROOT}/config/jurisdictions/gorontalo-adm2.geojson"\n'
        'include_property = "level"\ninclude_values = ["regency", "city"]\n'
        "\n[dispatch]\nanswer_timeout_polres_s = 5\naccept_timeout_s = 30\n"
        "\n[recommend]\nmax_fix_age_s = 3600\n"  # the test feeder stamps fixes 10 min in the past
    )


def _call(call_id: str, lat: float = 0.5450, lon: float = 123.0620) -> bytes:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return json.dumps({"call_id": call_id, "caller": "+6281234567890", "lat": lat, "lon": lon, "accuracy_m": 15,
                       "received_at": now, "category": "pencurian"}).encode()


def _states(sub: Subscriber, call_id: str) -> list[dict[str, object]]:
    return [m.payload for m in sub.on(f"/call/{call_id}")]


def _online(sub: Subscriber) -> None:
    """The daemon publishes "online" after subscribing: from then on calls reach it."""
    wait_until(lambda: any(m.payload.get("state") == "online" for m in sub.on(f"{NODE}/state")), what="node online")


def _event(sub: Subscriber, call_id: str, **body: str) -> None:
    sub.client.publish(f"{NODE}/call/{call_id}/event", json.dumps(body), qos=1)


def test_a_call_answered_at_the_polres_goes_to_the_nearest_unit_and_is_on_record(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    _configure(station)
    sub = subscriber_factory(broker.port)
    pty = ptys(station.links[0])
    d = daemons(station.config)
    wait_until(lambda: "gps0: starting -> waiting" in d.log, what="port open")
    Feeder(pty).write(3, gap_s=0.1)
    wait_until(lambda: any(m.payload.get("status") == "available" for m in sub.on("/unit/R2-00/status")), what="unit available")

    sub.client.publish(f"{NODE}/call/new", _call("C-1"), qos=1)
    wait_until(lambda: bool(_states(sub, "C-1")), what="call state")
    offered = _states(sub, "C-1")[-1]
    assert offered["state"] == "offered" and offered["location_status"] == "ok" and offered["jurisdiction"] == "75.71"
    cands = offered["candidates"]
    assert isinstance(cands, list) and cands[0]["unit"] == "R2-00" and 0 < cands[0]["distance_m"] < 2000
    late = subscriber_factory(broker.port, client_id="late-console", topic=f"{NODE}/call/+")
    wait_until(lambda: bool(late.on("/call/C-1")) and late.on("/call/C-1")[-1].retain, what="retained call state")

    _event(sub, "C-1", action="answer", by="piket-polres")
    wait_until(lambda: _states(sub, "C-1")[-1]["state"] == "assigned", what="assigned")
    assert _states(sub, "C-1")[-1]["assigned_unit"] == "R2-00"
    wait_until(lambda: bool(sub.on("/unit/R2-00/alert")), what="alert to the unit")
    alert = sub.on("/unit/R2-00/alert")[-1].payload
    assert alert["call_id"] == "C-1" and alert["category"] == "pencurian" and abs(alert["lat"] - 0.545) < 1e-6
    wait_until(lambda: sub.on("/unit/R2-00/status")[-1].payload["status"] == "assigned", what="unit assigned")

    for action, state in (("accept", "enroute"), ("arrive", "onscene"), ("close", "closed")):
        _event(sub, "C-1", action=action, by="R2-00" if action != "close" else "piket-polres")
        wait_until(lambda s=state: _states(sub, "C-1")[-1]["state"] == s, what=state)  # type: ignore[misc]
    wait_until(lambda: sub.on("/unit/R2-00/status")[-1].payload["status"] == "available", what="unit free again")

    # The same call again is the same call; a bad event is refused, not lost.
    sub.client.publish(f"{NODE}/call/new", _call("C-1"), qos=1)
    _event(sub, "C-1", action="teleport", by="x")
    wait_until(lambda: "event refused" in d.log, what="refusal")
    time.sleep(0.5)
    assert _states(sub, "C-1")[-1]["state"] == "closed"

    ctl = [sys.executable, "-m", "alkomd.daemon.ctl"]
    r = subprocess.run([*ctl, "audit", "verify", "--db", str(station.db)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout
    r = subprocess.run([*ctl, "call", "show", "C-1", "--db", str(station.db), "--json"], capture_output=True, text=True, timeout=60)
    kinds = [e["kind"] for e in json.loads(r.stdout)["timeline"]]
    for k in ("call.received", "call.new", "call.offered", "call.answered", "call.assigned", "call.enroute", "call.onscene",
              "call.closed", "call.duplicate", "call.event_refused", "unit.status"):
        assert k in kinds, (k, kinds)


def test_an_unanswered_call_escalates_to_the_polda_even_across_a_restart(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    _configure(station)
    sub = subscriber_factory(broker.port, topic="polri110/gorontalo/#")
    ptys(station.links[0])
    d = daemons(station.config)
    _online(sub)
    sub.client.publish(f"{NODE}/call/new", _call("C-2"), qos=1)
    wait_until(lambda: bool(_states(sub, "C-2")), what="offered")
    started = time.monotonic()
    d.kill()  # SIGKILL while the answer timer runs
    daemons(station.config)
    wait_until(lambda: bool(sub.on("polri110/gorontalo/call/new")), 20, "escalation to the Polda")
    waited = time.monotonic() - started
    esc = sub.on("polri110/gorontalo/call/new")[-1].payload
    assert esc["call_id"] == "C-2" and esc["escalated_from"] == NODE and abs(esc["lat"] - 0.545) < 1e-6
    wait_until(lambda: _states(sub, "C-2")[-1]["state"] == "escalated", what="escalated state")
    assert _states(sub, "C-2")[-1]["escalated_to"] == "polri110/gorontalo"
    assert waited < 15, "the reloaded deadline fired (5 s timeout), not a new one after a long delay"
    time.sleep(1.0)
    ids = {m.payload["msg_id"] for m in sub.on("polri110/gorontalo/call/new")}
    assert len(ids) == 1, "one escalation, whatever the restart"


def test_a_call_with_an_unusable_location_is_still_a_call(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    _configure(station)
    sub = subscriber_factory(broker.port)
    ptys(station.links[0])
    daemons(station.config)
    _online(sub)
    sub.client.publish(f"{NODE}/call/new", b'{"call_id": "C-3", "lat": NaN, "lon": 123.06, "caller": "+62811"}', qos=1)
    sub.client.publish(f"{NODE}/call/new", b"\xff\xfe not even json", qos=1)
    wait_until(lambda: bool(_states(sub, "C-3")), what="the call with a bad location")
    st = _states(sub, "C-3")[-1]
    assert st["state"] == "offered" and st["location_status"] == "invalid" and st["candidates"] == []
    # The undecodable payload is a call too, under an id derived from its bytes, for a human.
    wait_until(lambda: any(m.topic.startswith(f"{NODE}/call/x") for m in sub.on("")), what="the garbage payload as a call")
    garbage = next(m.payload for m in sub.on("") if m.topic.startswith(f"{NODE}/call/x"))
    assert garbage["state"] == "offered" and garbage["location_status"] == "invalid"


def test_aml_sms_becomes_a_call_and_a_repeat_caller_is_flagged_but_served(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    _configure(station)
    station.config.write_text(station.config.read_text() + "\n[calls]\nrepeat_caller_count = 2\n")
    sub = subscriber_factory(broker.port)
    ptys(station.links[0])
    daemons(station.config)
    _online(sub)
    sms = 'A"ML=1;lt=+0.54500;lg=+123.06200;rd=35;top=20261122080000;lc=68;pm=G;si=510100000000000;ei=356938035643809;mcc=510;mnc=10;ml=124'
    sub.client.publish(f"{NODE}/call/aml", sms.encode(), qos=1)
    wait_until(lambda: any(m.topic.startswith(f"{NODE}/call/aml-") for m in sub.on("")), what="the AML call")
    aml = next(m.payload for m in sub.on("") if m.topic.startswith(f"{NODE}/call/aml-"))
    assert aml["location_status"] in ("ok", "approximate") and aml["accuracy_m"] == 35.0 and aml["jurisdiction"] == "75.71"
    for i in range(3):
        sub.client.publish(f"{NODE}/call/new", _call(f"R-{i}"), qos=1)
    wait_until(lambda: bool(_states(sub, "R-2")), what="third call from the same number")
    assert "repeat_caller" not in _states(sub, "R-1")[-1]["flags"]  # type: ignore[operator]
    assert "repeat_caller" in _states(sub, "R-2")[-1]["flags"]  # type: ignore[operator]
    assert _states(sub, "R-2")[-1]["state"] == "offered"  # a possible prank is still served

"""E4, E5, E6: no call waits on a node that is not there. The parent takes a call from a dead or silent child, once,
and the child, when it is back, does not handle it a second time (daemons as processes, one broker)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import Daemon, Station, Subscriber, wait_until

from alkomd.daemon.calls.supervision import CHILD_OFFLINE, CHILD_SILENT, Supervision
from alkomd.daemon.calls.types import CallRequest
from alkomd.daemon.ctl.demo.broker import Broker

ROOT = Path(__file__).resolve().parents[1]
JUR = ROOT / "config" / "jurisdictions"
POLRES, POLDA, MABES = "polri110/gorontalo/kota-gorontalo", "polri110/gorontalo", "polri110"
T_POLRES, T_POLDA, GRACE = 20, 20, 5  # answer timeouts and the supervision grace of these tests (s)
WILL_S = 5 * 1.5  # keepalive_s = 5: the broker publishes a dead node's will within 1.5 keepalives


def _node(path: Path, node_path: str, tier: str, port: int, jurisdictions: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    cfg = path / "alkomd.toml"
    cfg.write_text(
        f'[node]\npath = "{node_path}"\ntier = "{tier}"\n[store]\npath = "{path}/alkomd.db"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ntls = false\nkeepalive_s = 5\nreconnect_min_s = 0.5\nreconnect_max_s = 2\n'
        f"[jurisdictions]\n{jurisdictions}\n"
        f"[dispatch]\nanswer_timeout_polres_s = {T_POLRES}\nanswer_timeout_polda_s = {T_POLDA}\nsupervision_grace_s = {GRACE}\n"
    )
    return cfg


def _tiers(tmp_path: Path, port: int) -> tuple[Path, Path, Path]:
    polres = Station(tmp_path / "polres", port)
    polres.write_config()
    polres.config.write_text(
        polres.config.read_text()
        + f'\n[jurisdictions]\nfile = "{JUR}/gorontalo-adm2.geojson"\ninclude_property = "code"\ninclude_values = ["75.71"]\n'
        f"\n[dispatch]\nanswer_timeout_polres_s = {T_POLRES}\nsupervision_grace_s = {GRACE}\n"
    )
    polda = _node(tmp_path / "polda", "gorontalo", "polda", port,
                  f'file = "{JUR}/gorontalo-adm2.geojson"\ninclude_property = "level"\n'
                  'include_values = ["regency", "city"]\nchildren = ["75.71=gorontalo/kota-gorontalo"]')
    mabes = _node(tmp_path / "mabes", "", "mabes", port,
                  f'file = "{JUR}/indonesia-adm1.geojson"\noutside_max_m = 3000\nchildren = ["75=gorontalo"]')
    return polres.config, polda, mabes


def _call(call_id: str) -> bytes:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return json.dumps({"call_id": call_id, "caller": "+6285200000000", "lat": 0.5450, "lon": 123.0620, "accuracy_m": 10,
                       "received_at": now, "category": "pelaporan/kecelakaan"}).encode()


def _states(sub: Subscriber, node: str, call_id: str) -> list[dict[str, object]]:
    return [m.payload for m in sub.on("") if m.topic == f"{node}/call/{call_id}" and m.payload]


def _node_state(sub: Subscriber, node: str) -> str:
    got = [m.payload for m in sub.on("") if m.topic == f"{node}/state"]
    return str(got[-1]["state"]) if got else ""


def _taken_over(sub: Subscriber, node: str, call_id: str) -> list[dict[str, object]]:
    return [m.payload for m in sub.on("") if m.topic == f"{node}/call/new" and m.payload.get("call_id") == call_id
            and "escalation_reason" in m.payload]


def test_e4_e6_the_polda_takes_a_dead_polres_calls_once_and_the_polres_back_does_not_handle_them_again(
    tmp_path: Path, broker: Broker, daemons: Callable[[Path], Daemon], subscriber_factory: Callable[..., Subscriber],
) -> None:
    """E4 before: the Polres is dead (SIGKILL, its will says offline) when a call is sent to it: the Polda offers it
    at once (reason child_offline), well within the Polres answer timeout (20 s) plus the grace (5 s), exactly once.
    E4 during: the Polres offered a call, then is killed: the Polda takes it when the will arrives. E6: the Polres,
    started again, gets the call queued for it while it was dead and its own open call back from its database: it
    offers neither (taken_by_parent on record; its open call ends escalated to the Polda)."""
    sub = subscriber_factory(broker.port, topic="polri110/#")
    polres_cfg, polda_cfg, _ = _tiers(tmp_path, broker.port)
    polres = daemons(polres_cfg)
    daemons(polda_cfg)
    for node in (POLRES, POLDA):
        wait_until(lambda n=node: _node_state(sub, n) == "online", what=f"{node} online")  # type: ignore[misc]

    # E4 during: the Polres takes the call up (offered), then dies.
    sub.client.publish(f"{POLRES}/call/new", _call("E4-DURING"), qos=1)
    wait_until(lambda: any(s["state"] == "offered" for s in _states(sub, POLRES, "E4-DURING")), what="offered at the Polres")
    polres.kill()
    wait_until(lambda: _node_state(sub, POLRES) == "offline", WILL_S + 10, "the Polres's will")
    wait_until(lambda: bool(_states(sub, POLDA, "E4-DURING")), 10, "the Polda offers the call the dead Polres held")
    assert _taken_over(sub, POLDA, "E4-DURING")[0]["escalation_reason"] == CHILD_OFFLINE

    # E4 before: a call sent to the dead Polres.
    sent = time.monotonic()
    sub.client.publish(f"{POLRES}/call/new", _call("E4-BEFORE"), qos=1)
    wait_until(lambda: bool(_states(sub, POLDA, "E4-BEFORE")), T_POLRES + GRACE, "the Polda offers it")
    took = time.monotonic() - sent
    offer = _states(sub, POLDA, "E4-BEFORE")[0]
    assert offer["state"] == "offered" and offer["escalated_from"] == POLRES and offer["version"] == 1
    print(f"E4: the Polda offered a call sent to the dead Polres {took:.2f} s after it was sent")

    # E6: the Polres is back.
    polres = daemons(polres_cfg)
    wait_until(lambda: _node_state(sub, POLRES) == "online", what="the Polres back online")
    wait_until(lambda: _states(sub, POLRES, "E4-DURING")[-1]["state"] == "escalated", 15, "its own copy handed over")
    assert _states(sub, POLRES, "E4-DURING")[-1]["escalated_to"] == POLDA
    wait_until(lambda: "call E4-BEFORE: already taken by" in polres.log, 15, "the queued call recognised as taken")
    time.sleep(1.0)  # nothing may follow: the Polres never offers it, the Polda never takes a call twice
    assert not _states(sub, POLRES, "E4-BEFORE"), "the Polres offered a call its parent had taken"
    for call_id in ("E4-DURING", "E4-BEFORE"):
        assert len(_taken_over(sub, POLDA, call_id)) == 1, f"{call_id} taken more than once"
        assert [s["version"] for s in _states(sub, POLDA, call_id)].count(1) == 1


def test_e5_polres_and_polda_dead_mabes_takes_the_call(
    tmp_path: Path, broker: Broker, daemons: Callable[[Path], Daemon], subscriber_factory: Callable[..., Subscriber],
) -> None:
    """E5: the Polres and its Polda are both dead (their wills say offline): a call sent to the Polres is taken by
    Mabes (reason child_offline), once."""
    sub = subscriber_factory(broker.port, topic="polri110/#")
    polres_cfg, polda_cfg, mabes_cfg = _tiers(tmp_path, broker.port)
    polres, polda = daemons(polres_cfg), daemons(polda_cfg)
    daemons(mabes_cfg)
    for node in (POLRES, POLDA, MABES):
        wait_until(lambda n=node: _node_state(sub, n) == "online", what=f"{node} online")  # type: ignore[misc]
    polda.kill()
    polres.kill()
    for node in (POLRES, POLDA):
        wait_until(lambda n=node: _node_state(sub, n) == "offline", WILL_S + 10, f"{node}'s will")  # type: ignore[misc]
    sub.client.publish(f"{POLRES}/call/new", _call("E5"), qos=1)
    wait_until(lambda: bool(_states(sub, MABES, "E5")), T_POLRES + GRACE, "Mabes offers it")
    assert _states(sub, MABES, "E5")[0]["state"] == "offered"
    taken = _taken_over(sub, MABES, "E5")
    assert len(taken) == 1 and taken[0]["escalation_reason"] == CHILD_OFFLINE and taken[0]["escalated_from"] == POLRES
    assert not _states(sub, POLDA, "E5")


def _req(call_id: str) -> CallRequest:
    return CallRequest(call_id, "+62852", None, datetime(2026, 11, 22, tzinfo=UTC), "pelaporan/kecelakaan", "mqtt")


def test_the_watch_rules_without_a_broker() -> None:
    """The pure rules: silent past the timeout plus the grace; offered past the deadline plus the grace; an online
    node in between means it is not this node's call to take; each call is taken once."""
    t0 = datetime(2026, 11, 22, tzinfo=UTC)
    sup = Supervision(MABES, lambda node: timedelta(seconds=T_POLRES), timedelta(seconds=GRACE))
    assert sup.call_sent(POLRES, _req("A"), t0) == []
    assert sup.due(t0 + timedelta(seconds=T_POLRES + GRACE - 1)) == []
    assert sup.next_deadline() == t0 + timedelta(seconds=T_POLRES + GRACE)
    assert sup.due(t0 + timedelta(seconds=T_POLRES + GRACE)) == [], "the Polda is online (unknown counts as online): its call"
    sup.state(POLDA, False, t0)
    taken = sup.due(t0 + timedelta(seconds=T_POLRES + GRACE))
    assert [(t.node, t.request.call_id, t.reason) for t in taken] == [(POLRES, "A", CHILD_SILENT)]
    assert sup.due(t0 + timedelta(hours=1)) == [] and sup.call_sent(POLRES, _req("A"), t0) == []
    sup.call_sent(POLRES, _req("B"), t0)
    sup.call_state(POLRES, "B", "offered", t0 + timedelta(seconds=60), None, t0)
    assert sup.due(t0 + timedelta(seconds=64)) == []
    assert [t.reason for t in sup.due(t0 + timedelta(seconds=65))] == [CHILD_SILENT]
    sup.call_sent(POLRES, _req("C"), t0)
    sup.call_state(POLRES, "C", "assigned", None, None, t0)
    assert sup.state(POLRES, False, t0) == [] and not sup.calls, "an answered call is the child's business"
    sup.state(POLRES, True, t0)
    sup.call_state(POLRES, "D", "offered", t0 + timedelta(seconds=60), _req("D"), t0)  # made there: an emergency, AML
    assert [(t.request.call_id, t.reason) for t in sup.state(POLRES, False, t0 + timedelta(seconds=1))] == [("D", CHILD_OFFLINE)]

"""Every event on call/<id>/event gets a reply a console can match; categories set priority and whether a unit goes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import Daemon, Feeder, Station, Subscriber, wait_until
from test_contract import assert_valid

from alkomd.daemon.calls.categories import CATEGORIES, EMERGENCY, UNKNOWN_PRIORITY, classify
from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.drivers.simulator import PtyGps

NODE = "polri110/gorontalo/kota-gorontalo"
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("pelaporan/kecelakaan", "pelaporan/kecelakaan"), ("Pelaporan.Kecelakaan", "pelaporan/kecelakaan"),
        ("kecelakaan", "pelaporan/kecelakaan"), ("PENGADUAN kekerasan", "pengaduan/kekerasan"), ("informasi", "informasi/umum"),
        ("orang hilang", "pelaporan/orang-hilang"), ("pelaporan", "pelaporan/lainnya"), ("darurat", EMERGENCY),
        ("pencurian", "pelaporan/pencurian"), ("ufo", None), ("pelaporan/ufo", None), ("", None), ("  /// ", None),
    ],
)
def test_categories_are_read_in_any_spelling(text: str, code: str | None) -> None:
    assert classify(text).code == code


def test_the_taxonomy_orders_what_needs_a_unit_first() -> None:
    assert classify("").priority == UNKNOWN_PRIORITY and classify("ufo").dispatch
    assert not classify("informasi").dispatch and not classify("pengaduan/penghinaan").dispatch
    assert classify("pengaduan/kekerasan").priority < classify("pelaporan/kecelakaan").priority < classify("informasi").priority
    assert min(c.priority for c in CATEGORIES) == classify(EMERGENCY).priority == 0
    assert len({c.code for c in CATEGORIES}) == len(CATEGORIES)


def _configure(station: Station) -> None:
    station.write_config()
    station.config.write_text(
        station.config.read_text()
        + f'\n[jurisdictions]\nfile = "{ROOT}/config/jurisdictions/gorontalo-adm2.geojson"\n'
        'include_property = "level"\ninclude_values = ["regency", "city"]\n'
        "\n[dispatch]\nanswer_timeout_polres_s = 600\naccept_timeout_s = 600\n"
        "\n[recommend]\nmax_fix_age_s = 3600\n"  # the test feeder stamps fixes 10 min in the past
    )


def _call(call_id: str, category: str) -> bytes:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return json.dumps({"call_id": call_id, "caller": "+6281234567890", "lat": 0.5450, "lon": 123.0620, "accuracy_m": 15,
                       "received_at": now, "category": category, "note": "depan masjid"}).encode()


def _states(sub: Subscriber, call_id: str) -> list[dict[str, object]]:
    return [m.payload for m in sub.on(f"/call/{call_id}") if m.topic.endswith(f"/call/{call_id}") and "state" in m.payload]


def _result(sub: Subscriber, event_id: str) -> dict[str, object]:
    wait_until(lambda: any(m.payload.get("event_id") == event_id for m in sub.on("/event/result")), what=f"reply to {event_id}")
    return next(m.payload for m in sub.on("/event/result") if m.payload.get("event_id") == event_id)


def test_i7_events_are_answered_and_an_unknown_unit_is_refused(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    """I7: assign to a unit that does not exist is refused with a reply naming it, and changes nothing; an unknown
    action and an unknown call are refused too; an accepted event's reply carries the new state and version. Every
    reply validates against the contract schema. An information call is answered without sending a unit."""
    _configure(station)
    sub = subscriber_factory(broker.port)
    pty = ptys(station.links[0])
    d = daemons(station.config)
    wait_until(lambda: "gps0: starting -> waiting" in d.log, what="port open")
    Feeder(pty).write(3, gap_s=0.1)
    wait_until(lambda: any(m.payload.get("status") == "available" for m in sub.on("/unit/R2-00/status")), what="unit available")

    sub.client.publish(f"{NODE}/call/new", _call("EV-1", "pelaporan/kecelakaan"), qos=1)
    wait_until(lambda: bool(_states(sub, "EV-1")), what="call state")
    first = _states(sub, "EV-1")[-1]
    assert first["priority"] == 2 and first["dispatch"] is True and first["category_code"] == "pelaporan/kecelakaan"
    assert first["note"] == "depan masjid"

    def event(call_id: str, event_id: str, **body: str) -> dict[str, object]:
        sub.client.publish(f"{NODE}/call/{call_id}/event", json.dumps({**body, "msg_id": event_id}), qos=1)
        result = _result(sub, event_id)
        assert_valid("call-event-result", result)
        return result

    ghost = event("EV-1", "e-1", action="assign", by="piket-1", unit="R9-99")
    assert ghost["result"] == "refused" and "R9-99" in str(ghost["reason"]) and ghost["state"] == "offered"
    assert ghost["action"] == "assign" and ghost["by"] == "piket-1" and ghost["call_id"] == "EV-1"
    assert event("EV-1", "e-2", action="teleport", by="piket-1")["result"] == "refused"
    nowhere = event("NO-SUCH-CALL", "e-3", action="answer", by="piket-1")
    assert nowhere["result"] == "refused" and nowhere["state"] is None and "no such" in str(nowhere["reason"])
    assert _states(sub, "EV-1")[-1]["state"] == "offered" and _states(sub, "EV-1")[-1]["assigned_unit"] is None

    ok = event("EV-1", "e-4", action="answer", by="piket-1")
    assert ok["result"] == "accepted" and ok["state"] == "assigned" and ok["version"] == 2 and ok["reason"] == ""
    wait_until(lambda: _states(sub, "EV-1")[-1]["state"] == "assigned", what="assigned")
    again = event("EV-1", "e-5", action="assign", by="piket-1", unit="R2-00")
    assert again["result"] == "refused" and "already assigned" in str(again["reason"])

    sub.client.publish(f"{NODE}/call/new", _call("EV-2", "informasi"), qos=1)
    wait_until(lambda: bool(_states(sub, "EV-2")), what="information call")
    info = _states(sub, "EV-2")[-1]
    assert info["dispatch"] is False and info["priority"] == 5 and info["candidates"] == [] and "no_candidate" not in info["flags"]
    answered = event("EV-2", "e-6", action="answer", by="piket-1")
    assert answered["result"] == "accepted" and answered["state"] == "answered"
    wait_until(lambda: _states(sub, "EV-2")[-1]["state"] == "answered", what="answered without a unit")
    assert _states(sub, "EV-2")[-1]["assigned_unit"] is None

    sub.client.publish(f"{NODE}/call/new", _call("EV-3", "ufo sighting"), qos=1)
    wait_until(lambda: bool(_states(sub, "EV-3")), what="unknown category call")
    odd = _states(sub, "EV-3")[-1]
    assert "unknown_category" in odd["flags"] and odd["priority"] == 3 and odd["category"] == "ufo sighting"  # type: ignore[operator]


def test_the_repeat_caller_count_survives_a_restart_and_travels_with_an_escalation(tmp_path: Path) -> None:
    """Three calls from one number, the daemon restarted (a new desk on the same database), a fourth: flagged, as
    without the restart. The escalation carries the count (caller_calls), and the parent flags with it."""
    import asyncio
    from datetime import timedelta

    from alkomd.daemon.calls import dispatch, intake
    from alkomd.daemon.calls.desk import CallDesk
    from alkomd.daemon.config import parse
    from alkomd.daemon.mqtt import contract
    from alkomd.daemon.mqtt.publisher import Publisher
    from alkomd.daemon.positions.station import Station as Core
    from alkomd.daemon.store.database import Store

    t0 = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)
    now = [t0]

    def desk_on(store: Store, loop: asyncio.AbstractEventLoop, node: str, tier: str) -> CallDesk:
        cfg = parse({"node": {"path": node, "tier": tier}, "calls": {"repeat_caller_count": 3}}, tmp_path / "alkomd.toml")
        core = Core(cfg, store, Publisher(store, loop), loop, now=lambda: now[0])
        return CallDesk(cfg, store, core, core.publisher, loop, lambda: now[0], None)

    def call(call_id: str, **extra: object) -> bytes:
        return json.dumps({"call_id": call_id, "caller": "+6281111111111", "lat": 0.545, "lon": 123.06,
                           "received_at": now[0].strftime("%Y-%m-%dT%H:%M:%S.000Z"), "category": "informasi", **extra}).encode()

    loop = asyncio.new_event_loop()
    store = Store(tmp_path / "polres.db", "normal")
    try:
        desk = desk_on(store, loop, "gorontalo/kota-gorontalo", "polres")
        for i in range(3):
            now[0] = t0 + timedelta(minutes=i)
            desk.receive(intake.parse_call(call(f"P-{i}"), now[0]))
        assert "repeat_caller" not in desk.calls["P-2"].flags
        restarted = desk_on(store, loop, "gorontalo/kota-gorontalo", "polres")
        now[0] = t0 + timedelta(minutes=3)
        restarted.receive(intake.parse_call(call("P-3"), now[0]))
        fourth = restarted.calls["P-3"]
        assert "repeat_caller" in fourth.flags and fourth.request.caller_calls == 4
        esc = contract.escalation_payload(dispatch.Escalate("polri110/gorontalo", fourth.request, "m"))
        assert esc["caller_calls"] == 4
        parent_store = Store(tmp_path / "polda.db", "normal")
        parent = desk_on(parent_store, loop, "gorontalo", "polda")
        parent.receive(intake.parse_call(json.dumps(esc).encode(), now[0]))
        assert "repeat_caller" in parent.calls["P-3"].flags, "the parent saw this caller once, the Polres four times"
        for d in (desk, restarted, parent):
            for timer in d._timers.values():
                timer.cancel()
        parent_store.close()
    finally:
        loop.close()
        store.close()


def test_a_closed_call_is_cleared_from_the_broker_after_its_retention(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    """A closed call's retained state is cleared (an empty retained message) closed_retention_s (5 s here) after it
    closed: a console subscribing later no longer gets it; the database keeps the call."""
    _configure(station)
    station.config.write_text(station.config.read_text() + "\n[calls]\nclosed_retention_s = 5\n")
    sub = subscriber_factory(broker.port)
    ptys(station.links[0])
    daemons(station.config)
    wait_until(lambda: any(m.payload.get("state") == "online" for m in sub.on(f"{NODE}/state")), what="node online")
    sub.client.publish(f"{NODE}/call/new", _call("CL-1", "informasi"), qos=1)
    wait_until(lambda: bool(_states(sub, "CL-1")), what="call offered")
    sub.client.publish(f"{NODE}/call/CL-1/event", json.dumps({"action": "close", "by": "piket-1", "msg_id": "c-1"}), qos=1)
    wait_until(lambda: _states(sub, "CL-1")[-1]["state"] == "closed", what="closed")
    cleared = {"_raw": ""}  # the subscriber's form of an empty payload
    wait_until(lambda: any(m.topic == f"{NODE}/call/CL-1" and m.payload == cleared for m in sub.on("/call/CL-1")), 30, "the clear")
    late = subscriber_factory(broker.port, client_id="late-console", topic=f"{NODE}/call/+")
    time.sleep(1.0)  # a retained message would arrive right after the subscription: none may
    assert not [m for m in late.on("/call/CL-1") if m.payload != cleared], "the broker still holds the closed call"
    assert station.query("SELECT state FROM calls WHERE call_id = 'CL-1'") == [("closed",)]


def test_an_aml_report_is_attached_to_its_voice_call_either_way_round(tmp_path: Path) -> None:
    """A voice call without a location, then the phone's AML SMS within the window: one call, located by the SMS
    (flag aml_merged, a new version), and a resend of the SMS changes nothing. The other way round: the SMS first (a
    call of its own, aml_unmatched), then the voice call: the voice call takes the SMS's place and the SMS call is
    closed as merged. An SMS far from the only open voice call stays a call of its own."""
    import asyncio
    from datetime import timedelta

    from alkomd.daemon.calls import aml, intake
    from alkomd.daemon.calls.desk import CallDesk
    from alkomd.daemon.config import parse
    from alkomd.daemon.mqtt.publisher import Publisher
    from alkomd.daemon.positions.station import Station as Core
    from alkomd.daemon.store.database import Store

    t0 = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)
    now = [t0]
    sms = 'A"ML=1;lt=+0.54500;lg=+123.06200;rd=35;top=20261122070000;lc=68;pm=G;si=510100000000000;ei=356938035643809;mcc=510;mnc=10;ml=124'
    far = sms.replace("lt=+0.54500", "lt=+0.94500")
    loop = asyncio.new_event_loop()
    store = Store(tmp_path / "a.db", "normal")
    try:
        cfg = parse({"node": {"path": "gorontalo/kota-gorontalo"}}, tmp_path / "alkomd.toml")
        core = Core(cfg, store, Publisher(store, loop), loop, now=lambda: now[0])
        desk = CallDesk(cfg, store, core, core.publisher, loop, lambda: now[0], None)

        def voice(call_id: str, **where: float) -> None:
            desk.receive(intake.parse_call(json.dumps({"call_id": call_id, "caller": "+6281234567890", **where,
                                                       "received_at": now[0].isoformat(), "category": "kecelakaan"}).encode(), now[0]))

        voice("V-1")
        assert desk.calls["V-1"].request.location is None
        now[0] = t0 + timedelta(seconds=20)
        desk.receive(aml.parse_aml(sms.encode(), now[0]))
        v1 = desk.calls["V-1"]
        assert v1.request.location is not None and abs(v1.request.location.lat - 0.545) < 1e-9 and v1.request.location.accuracy_m == 35
        assert "aml_merged" in v1.flags and "invalid_location" not in v1.flags and v1.version == 2
        assert len(desk.calls) == 1
        desk.receive(aml.parse_aml(sms.encode(), now[0]))
        assert desk.calls["V-1"].version == 2 and len(desk.calls) == 1, "a resent SMS is a duplicate"

        now[0] = t0 + timedelta(hours=1)  # out of V-1's window: the other way round
        sms2 = sms.replace("ei=356938035643809", "ei=356938035643810")
        desk.receive(aml.parse_aml(sms2.encode(), now[0]))
        [first] = [c for c in desk.calls.values() if c.request.source == "aml-sms"]
        assert "aml_unmatched" in first.flags
        now[0] += timedelta(seconds=15)
        voice("V-2")
        v2 = desk.calls["V-2"]
        assert v2.request.location is not None and "aml_merged" in v2.flags
        assert first.call_id not in desk.calls, "the SMS call is closed, merged into the voice call"

        now[0] += timedelta(seconds=15)
        voice("V-3", lat=0.545, lon=123.062)
        desk.receive(aml.parse_aml(far.replace("ei=356938035643809", "ei=356938035643811").encode(), now[0]))
        lone = [c for c in desk.calls.values() if c.request.source == "aml-sms"]
        assert len(lone) == 1 and "aml_unmatched" in lone[0].flags, "44 km from the voice call: not its phone"
        for timer in desk._timers.values():
            timer.cancel()
    finally:
        loop.close()
        store.close()


def test_a_radio_emergency_is_a_priority_call_answered_by_another_unit(tmp_path: Path) -> None:
    """A unit's radio sends its emergency code: besides unit/<unit>/emergency, a call EMG-<unit>-<time> at the unit's
    last fix, priority 0, flagged emergency; the unit in trouble is never its own candidate; answering it (the
    acknowledgement) sends the nearest other unit. A repeat of the same signal makes no second call."""
    import asyncio
    from datetime import timedelta

    from alkomd.daemon.calls.desk import CallDesk
    from alkomd.daemon.config import parse
    from alkomd.daemon.mqtt import contract
    from alkomd.daemon.mqtt.publisher import Publisher
    from alkomd.daemon.positions.station import Station as Core
    from alkomd.daemon.records import Fix, RadioStatus
    from alkomd.daemon.store.database import Store

    t0 = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)
    now = [t0]
    loop = asyncio.new_event_loop()
    store = Store(tmp_path / "a.db", "normal")
    try:
        cfg = parse({"node": {"path": "gorontalo/kota-gorontalo"},
                     "device": [{"id": "base", "driver": "fleetsync", "url": "/dev/null"}],
                     "unit": [{"id": "HT-01", "type": "foot", "radio": "100-1001"}, {"id": "HT-02", "type": "foot", "radio": "100-1002"},
                              {"id": "R2-01", "radio": "100-1003"}]}, tmp_path / "alkomd.toml")
        core = Core(cfg, store, Publisher(store, loop), loop, now=lambda: now[0])
        desk = CallDesk(cfg, store, core, core.publisher, loop, lambda: now[0], None)
        core.on_committed = desk.units_changed
        core.on_emergency = desk.emergency
        for i, (radio, lat) in enumerate((("100-1001", 0.5450), ("100-1002", 0.5455), ("100-1003", 0.5600))):
            t = t0 + timedelta(seconds=i)
            core.submit(Fix("base", t, lat, 123.062, 2, t, float(i), radio=radio))
        core.flush()
        now[0] = t0 + timedelta(seconds=5)
        for _ in range(2):  # the radio repeats its code in every report: one signal
            core.submit(RadioStatus("base", "100-1001", 99, now[0], 5.0))
            core.flush()
        calls = [c for c in desk.calls.values() if "emergency" in c.flags]
        assert len(calls) == 1
        emg = calls[0]
        assert emg.call_id == "EMG-HT-01-20261122T070005" and emg.request.caller == "HT-01"
        assert emg.request.location is not None and abs(emg.request.location.lat - 0.5450) < 1e-9
        state = contract.call_state_payload(emg)
        assert state["priority"] == 0 and state["dispatch"] is True and state["category_code"] == "darurat/tombol"
        assert_valid("call-state", state)
        assert [c.unit for c in emg.candidates] == ["HT-02", "R2-01"], "never the unit in trouble; nearest first"
        desk.event(emg.call_id, json.dumps({"action": "answer", "by": "piket-1", "msg_id": "ack-1"}).encode())
        assert desk.calls[emg.call_id].assigned_unit == "HT-02"
        for timer in desk._timers.values():
            timer.cancel()
    finally:
        loop.close()
        store.close()


def test_every_upper_tier_follows_the_units_of_every_node_below() -> None:
    """Mabes subscribes to the units, states, calls and anchors of the Poldas (their own units too) and of the Polres."""
    from alkomd.daemon.mqtt import contract

    mabes = set(contract.subscriptions("polri110", "mabes"))
    for depth in ("/+", "/+/+"):
        for leaf in ("/unit/+/position", "/unit/+/status", "/state", "/call/+", "/audit/head"):
            assert f"polri110{depth}{leaf}" in mabes
    polda = set(contract.subscriptions("polri110/gorontalo", "polda"))
    assert "polri110/gorontalo/+/unit/+/position" in polda and "polri110/gorontalo/+/+/unit/+/position" not in polda
    node = "polri110/gorontalo/kota-gorontalo"
    assert set(contract.subscriptions(node, "polres")) == {
        f"{node}/unit/+/status/set", f"{node}/call/new", f"{node}/call/aml", f"{node}/call/+/event", f"{node}/call/+/taken",
        f"{node}/probe/link"}

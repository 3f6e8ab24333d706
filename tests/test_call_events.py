"""Every event on call/<id>/event gets a reply a console can match; categories set priority and whether a unit goes."""

from __future__ import annotations

import json
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
    return [m.payload for m in sub.on(f"/call/{call_id}") if m.topic.endswith(f"/call/{call_id}")]


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

"""The MQTT contract v1 (docs/contract/): schemas, examples and what the real code publishes agree.

- every example (docs/contract/examples/*.json, and the JSON block of every topic page) validates
  against its schema, with format checking on;
- payloads built by `alkomd.daemon.mqtt.contract` from real records validate;
- broken payloads (lat 91, no msg_id, fix "4d", ...) do not;
- topic builders refuse levels with `+`, `#`, `/` or NUL, and built topics never hold `+` or `#`.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from alkomd.daemon import __version__
from alkomd.daemon.config import ID_PATTERN, NODE_PATTERN, NodeConfig
from alkomd.daemon.mqtt import contract
from alkomd.daemon.mqtt.contract import topics
from alkomd.daemon.records import Counters, DeviceState, DeviceStatus, Fix, RadioStatus, UnitPosition, UnitStatus

DOCS = Path(__file__).resolve().parent.parent / "docs" / "contract"
SCHEMAS = DOCS / "schemas"
EXAMPLES = DOCS / "examples"

IMPLEMENTED = ("state", "health", "device-status", "device-radio", "unit-position", "unit-status", "unit-status-set",
               "unit-alert", "unit-emergency", "call-new", "call-state", "call-event", "call-event-result", "call-taken", "audit-head",
               "probe")
PLANNED: tuple[str, ...] = ()
NAMES = IMPLEMENTED + PLANNED
PAGES = (*NAMES, "call-aml")  # call/aml carries text, not JSON: a page and an example, no schema

NODE = "polri110/gorontalo/bone-bolango"
UTC = timezone.utc
T0 = datetime(2025, 3, 14, 2, 15, 7, 250_000, tzinfo=UTC)
OUT_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"
IN_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z$"


def _date_time(value: object) -> bool:
    """RFC 3339 date-time, checked with the stdlib (jsonschema skips it without rfc3339-validator)."""
    if not isinstance(value, str):
        return True
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", value):
        return False
    datetime.fromisoformat(value.upper())  # raises ValueError on 2025-13-40
    return True


FORMATS = FormatChecker()
FORMATS.checks("date-time", raises=ValueError)(_date_time)


@cache
def schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))
    return data


@cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema(name), format_checker=FORMATS)


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    return data


def assert_valid(name: str, payload: object) -> None:
    errors = sorted(validator(name).iter_errors(payload), key=lambda e: list(e.path))
    assert not errors, f"{name}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors)


def assert_invalid(name: str, payload: object) -> None:
    with pytest.raises(ValidationError):
        validator(name).validate(payload)


def fix(**kw: Any) -> Fix:
    base: dict[str, Any] = {
        "device": "car12-gps", "time": T0, "lat": 0.5435121, "lon": 123.0595387, "mode": 3,
        "received": T0 + timedelta(milliseconds=184), "received_mono": 100.0,
        "alt": 14.26, "speed_kmh": 42.35, "course": 87.44, "hdop": 0.9, "sats": 9,
    }
    base.update(kw)
    return Fix(**base)


def status(state: DeviceState = DeviceState.CONNECTED, detail: str = "") -> DeviceStatus:
    return DeviceStatus("car12-gps", "nmea", state, T0, Counters(73411, 1198, 2, 0, 17, 298, 1, 0), detail)


# -- the schema files themselves ----------------------------------------------------------------


def test_the_documented_file_set_is_complete() -> None:
    assert sorted(p.name for p in SCHEMAS.glob("*.schema.json")) == sorted(f"{n}.schema.json" for n in NAMES)
    assert sorted(p.stem for p in EXAMPLES.glob("*.json")) == sorted(NAMES)
    assert (EXAMPLES / "call-aml.txt").is_file()
    for name in PAGES:
        assert (DOCS / f"{name}.md").is_file(), name
    assert (DOCS / "README.md").is_file()


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    s = schema(name)
    Draft202012Validator.check_schema(s)
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert s["$id"] == f"urn:alkomd:contract:v1:{name}"
    assert s["title"] and s["description"]
    assert s["additionalProperties"] is True, "consumers must tolerate added fields"
    assert set(s["required"]) <= set(s["properties"])
    assert ("PLANNED" in s["description"]) == (name in PLANNED)


def _walk(node: object) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(node, dict):
        out.append(node)
        for v in node.values():
            out += _walk(v)
    elif isinstance(node, list):
        for v in node:
            out += _walk(v)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_every_time_is_utc_with_z(name: str) -> None:
    inbound = name in ("call-new",)
    times = [d for d in _walk(schema(name)) if d.get("format") == "date-time"]
    for d in times:
        assert d["pattern"] == (IN_TIME if inbound else OUT_TIME)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("unit-status-set", "call-new", "call-event", "probe")])
def test_every_outbound_payload_requires_msg_id(name: str) -> None:
    assert "msg_id" in schema(name)["required"]


# -- (a) examples --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_example_file_validates(name: str) -> None:
    assert_valid(name, example(name))


def _page_json(name: str) -> dict[str, Any]:
    text = (DOCS / f"{name}.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", text, re.DOTALL)
    assert blocks, f"{name}.md has no ```json example"
    data: dict[str, Any] = json.loads(blocks[0])
    return data


@pytest.mark.parametrize("name", NAMES)
def test_page_documents_its_schema_and_its_example(name: str) -> None:
    text = (DOCS / f"{name}.md").read_text(encoding="utf-8")
    assert f"schemas/{name}.schema.json" in text
    assert _page_json(name) == example(name), f"{name}.md's example differs from examples/{name}.json"
    assert ("planned: not yet published by this version" in text) == (name in PLANNED)


@pytest.mark.parametrize("name", NAMES)
def test_page_field_table_lists_every_schema_property(name: str) -> None:
    text = (DOCS / f"{name}.md").read_text(encoding="utf-8")
    for prop in schema(name)["properties"]:
        assert re.search(rf"^\| `{re.escape(prop)}`", text, re.MULTILINE), f"{name}.md: no table row for {prop}"


def test_readme_lists_every_v1_topic() -> None:
    text = (DOCS / "README.md").read_text(encoding="utf-8")
    for topic in (
        "<node>/state", "<node>/health", "<node>/device/<device>/status", "<node>/device/<device>/radio/<radio>",
        "<node>/unit/<unit>/emergency",
        "<node>/unit/<unit>/position", "<node>/unit/<unit>/status", "<node>/unit/<unit>/status/set",
        "<node>/unit/<unit>/alert", "<node>/call/new", "<node>/call/aml", "<node>/call/<call_id>",
        "<node>/call/<call_id>/event",
    ):
        assert f"`{topic}`" in text, topic
    for name in PAGES:
        assert f"({name}.md)" in text, name


def test_aml_example_is_an_sms_v1_text() -> None:
    text = (EXAMPLES / "call-aml.txt").read_text(encoding="utf-8")
    assert text.startswith('A"ML=1;') and "\n" not in text
    fields = dict(part.split("=", 1) for part in text.split(";"))
    assert int(fields["ml"]) == len(text)  # ml is the whole message's length, itself included


# -- (b) what the real code publishes ------------------------------------------------------------


def test_position_message_validates() -> None:
    m = contract.position_message(NODE, UnitPosition("R2-12", fix()))
    assert (m.kind, m.topic, m.qos, m.retain) == ("position", f"{NODE}/unit/R2-12/position", 1, True)
    payload = json.loads(m.payload)
    assert_valid("unit-position", payload)
    assert payload["msg_id"] == m.msg_id
    assert payload["fix"] == "3d" and payload["source"] == "car12-gps"


def test_position_with_nothing_optional_and_a_relayed_radio_validates() -> None:
    f = fix(mode=2, alt=None, speed_kmh=None, course=None, hdop=None, sats=None, radio="100-0417")
    payload = json.loads(contract.position_message(NODE, UnitPosition("HT-0417", f)).payload)
    assert_valid("unit-position", payload)
    assert payload["source"] == "car12-gps:100-0417" and payload["fix"] == "2d"
    assert [payload[k] for k in ("alt", "speed_kmh", "course", "hdop", "sats")] == [None] * 5


def test_position_extremes_validate() -> None:
    """Poles, antimeridian, course 359.96 (rounds to 360.0), a local-time fix (sent as UTC)."""
    wita = timezone(timedelta(hours=8))
    for f in (
        fix(lat=90.0, lon=180.0, course=359.96),
        fix(lat=-90.0, lon=-180.0, course=0.0, speed_kmh=0.0, sats=0, hdop=0.0, alt=-12.0),
        fix(time=T0.astimezone(wita), received=T0.astimezone(wita)),
    ):
        payload = json.loads(contract.position_message(NODE, UnitPosition("R2-12", f)).payload)
        assert_valid("unit-position", payload)
    assert payload["time"] == "2025-03-14T02:15:07.250Z"


@settings(max_examples=200, deadline=None)
@given(
    lat=st.floats(-90, 90),
    lon=st.floats(-180, 180),
    mode=st.sampled_from([2, 3]),
    speed=st.none() | st.floats(0, 2000),
    course=st.none() | st.floats(0, 360, exclude_max=True),
    hdop=st.none() | st.floats(0, 99.99),
    sats=st.none() | st.integers(0, 64),
    alt=st.none() | st.floats(-500, 20_000),
    radio=st.none() | st.from_regex(ID_PATTERN, fullmatch=True),
    t=st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31), timezones=st.just(UTC)),
)
def test_any_valid_fix_publishes_a_valid_position(
    lat: float, lon: float, mode: int, speed: float | None, course: float | None, hdop: float | None,
    sats: int | None, alt: float | None, radio: str | None, t: datetime,
) -> None:
    f = fix(lat=lat, lon=lon, mode=mode, speed_kmh=speed, course=course, hdop=hdop, sats=sats, alt=alt, radio=radio, time=t)
    assert_valid("unit-position", json.loads(contract.position_message(NODE, UnitPosition("R2-12", f)).payload))


def test_out_of_range_nmea_fields_never_reach_a_position() -> None:
    """A checksum-valid GGA+RMC with sats -3, HDOP -1.0, speed -10 kn and course 725.5.

    The decoder drops such fields (null in the payload), so the documented ranges hold.
    """
    from alkomd.drivers.nmea import Decoder
    from alkomd.drivers.nmea_writer import sentence

    dec = Decoder("car12-gps")
    data = sentence("GPGGA,021507.00,0032.6100,N,12303.5700,E,1,-3,-1.0,25.0,M,18.5,M,,")
    data += sentence("GPRMC,021507.00,A,0032.6100,N,12303.5700,E,-10.0,725.5,140325,,,A")
    fixes = dec.feed(data, T0, 1.0) + dec.flush()
    assert len(fixes) == 1
    for f in fixes:
        assert (f.sats, f.hdop, f.speed_kmh, f.course) == (None, None, None, None)
        assert_valid("unit-position", json.loads(contract.position_message(NODE, UnitPosition("R2-12", f)).payload))


@pytest.mark.parametrize("state", list(DeviceState))
def test_device_status_message_validates(state: DeviceState) -> None:
    m = contract.device_status_message(NODE, status(state, "" if state is DeviceState.CONNECTED else "some detail"))
    assert (m.kind, m.topic, m.qos, m.retain) == ("device_status", f"{NODE}/device/car12-gps/status", 1, True)
    payload = json.loads(m.payload)
    assert_valid("device-status", payload)
    assert payload["msg_id"] == m.msg_id and payload["state"] == state.value


def test_device_state_enum_matches_the_schema() -> None:
    assert schema("device-status")["properties"]["state"]["enum"] == [s.value for s in DeviceState]
    health_states = schema("health")["properties"]["devices"]["additionalProperties"]["properties"]["state"]["enum"]
    assert health_states == [s.value for s in DeviceState] + ["starting"]


def test_counters_match_the_schema() -> None:
    names = list(contract.counters_dict(Counters()))
    assert schema("device-status")["properties"]["counters"]["required"] == names
    dev = schema("health")["properties"]["devices"]["additionalProperties"]
    assert dev["required"] == ["driver", "state", *names, "last_data_age_s", "implausible_fixes"]


@pytest.mark.parametrize("state", ["online", "offline"])
def test_state_payload_validates(state: str) -> None:
    payload = json.loads(contract.state_payload(state, __version__, T0))
    assert_valid("state", payload)
    msg_id = payload.pop("msg_id")
    assert isinstance(msg_id, str) and len(msg_id) == 32
    assert payload == {"state": state, "version": __version__, "since": "2025-03-14T02:15:07.250Z"}
    assert contract.state_topic(NODE) == f"{NODE}/state"


def test_health_payload_validates() -> None:
    devices = [
        contract.DeviceHealth("car12-gps", "nmea", "connected", Counters(73411, 1198, 2, 0, 17, 298, 1, 0), 0.43, 3),
        contract.DeviceHealth("base-radio", "nmea", "disconnected", Counters(reconnects=4), None),
        contract.DeviceHealth("sim-1", "simulator", "starting", Counters(), None),  # before its first status
    ]
    payload = json.loads(contract.health_payload(T0, 300.44, 12, devices, implausible_fixes=3))
    assert_valid("health", payload)
    assert payload["implausible_fixes"] == 3 and payload["devices"]["car12-gps"]["implausible_fixes"] == 3
    assert_invalid("health", payload | {"implausible_fixes": -1})
    assert set(payload["devices"]) == {"car12-gps", "base-radio", "sim-1"}
    assert payload["uptime_s"] == 300.4 and payload["devices"]["car12-gps"]["last_data_age_s"] == 0.4
    assert_valid("health", json.loads(contract.health_payload(T0, 0.0, 0, [])))
    assert contract.health_topic(NODE) == f"{NODE}/health"


def test_msg_ids_are_unique() -> None:
    up = UnitPosition("R2-12", fix())
    ids = {contract.position_message(NODE, up).msg_id for _ in range(1000)}
    ids |= {json.loads(contract.health_payload(T0, 1.0, 0, []))["msg_id"] for _ in range(1000)}
    assert len(ids) == 2000


def test_payloads_are_compact_utf8_json() -> None:
    m = contract.device_status_message(NODE, status(DeviceState.DEGRADED, "kabel longgar – cek baud"))
    assert ", " not in m.payload and ": " not in m.payload.replace("kabel longgar – cek baud", "")
    assert "–" in m.payload  # not \u2013: UTF-8, not ASCII escapes
    m.payload.encode("utf-8")


# -- (c) what must not validate ------------------------------------------------------------------


def _position() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(contract.position_message(NODE, UnitPosition("R2-12", fix())).payload)
    return data


@pytest.mark.parametrize(
    "change",
    [
        {"lat": 91},
        {"lat": -90.0001},
        {"lon": 180.5},
        {"lat": "0.54"},
        {"fix": "4d"},
        {"fix": 3},
        {"time": "2025-03-14T02:15:07.250+00:00"},  # not Z
        {"time": "2025-03-14T02:15:07Z"},  # no milliseconds
        {"time": "2025-13-40T02:15:07.250Z"},  # matches the pattern, fails the date-time format
        {"received": None},
        {"speed_kmh": -1.0},
        {"course": 361.0},
        {"sats": 9.5},
        {"hdop": "0.9"},
        {"unit": "R2/12"},
        {"unit": ""},
        {"msg_id": ""},
        {"msg_id": 42},
    ],
    ids=repr,
)
def test_broken_position_is_rejected(change: dict[str, Any]) -> None:
    assert_invalid("unit-position", _position() | change)


@pytest.mark.parametrize("field", ["msg_id", "unit", "lat", "time", "fix", "alt", "speed_kmh"])
def test_position_without_a_required_field_is_rejected(field: str) -> None:
    p = _position()
    del p[field]
    assert_invalid("unit-position", p)


def test_position_with_an_added_field_is_accepted() -> None:
    assert_valid("unit-position", _position() | {"battery_pct": 71, "is_historical": True})


def test_other_broken_payloads_are_rejected() -> None:
    assert_invalid("state", {"state": "up", "version": "0.1.0", "since": "2025-03-14T02:15:07.250Z"})
    assert_invalid("state", {"state": "online", "version": "0.1.0"})
    ds = json.loads(contract.device_status_message(NODE, status()).payload)
    assert_invalid("device-status", ds | {"state": "broken"})
    assert_invalid("device-status", {k: v for k, v in ds.items() if k != "msg_id"})
    assert_invalid("device-status", ds | {"counters": ds["counters"] | {"fixes": -1}})
    h = json.loads(contract.health_payload(T0, 1.0, 0, [contract.DeviceHealth("a", "nmea", "connected", Counters(), 1.0)]))
    assert_invalid("health", h | {"outbox_depth": -1})
    assert_invalid("health", h | {"devices": {"a/b": h["devices"]["a"]}})
    assert_invalid("health", h | {"devices": {"a": {**h["devices"]["a"], "sentences": None}}})
    assert_invalid("call-event", {"action": "assign", "by": "op-1"})  # assign needs a unit
    assert_invalid("call-event", {"action": "dance", "by": "op-1"})
    assert_invalid("call-new", example("call-new") | {"call_id": "new"})
    assert_invalid("call-new", example("call-new") | {"received_at": "2025-03-14 02:20:58"})
    assert_invalid("call-state", example("call-state") | {"state": "lost"})
    assert_invalid("call-state", example("call-state") | {"location_status": "unknown"})
    assert_invalid("unit-status", example("unit-status") | {"status": "busy"})
    assert_invalid("unit-emergency", {k: v for k, v in example("unit-emergency").items() if k != "msg_id"})


# -- (d) topics ----------------------------------------------------------------------------------

BAD_LEVELS = ["", "+", "#", "R2+12", "R2#12", "R2/12", "/", "a\0b"]


@pytest.mark.parametrize("bad", BAD_LEVELS, ids=repr)
def test_topic_builders_reject_bad_levels(bad: str) -> None:
    with pytest.raises(ValueError):
        topics._level(bad)
    with pytest.raises(ValueError):
        contract.position_topic(NODE, bad)
    with pytest.raises(ValueError):
        contract.device_status_topic(NODE, bad)
    with pytest.raises(ValueError):
        contract.position_message(NODE, UnitPosition(bad, fix()))
    with pytest.raises(ValueError):
        contract.device_status_message(NODE, DeviceStatus(bad, "nmea", DeviceState.CONNECTED, T0, Counters()))


@pytest.mark.parametrize("bad", ["+", "#", "polri+110", "gorontalo/#", "gorontalo/+/x", "a\0b"], ids=repr)
def test_config_patterns_refuse_wildcards_in_node_and_ids(bad: str) -> None:
    """state_topic/health_topic take the node as given: the config is what keeps + and # out."""
    assert not re.fullmatch(ID_PATTERN, bad)  # root, unit and device ids
    assert not re.fullmatch(f"({NODE_PATTERN})?", bad)  # node path
    assert not re.fullmatch(ID_PATTERN, "a/b")  # the root is one level


@pytest.mark.parametrize("root,path", [("polri110", "gorontalo/bone-bolango"), ("polri110", "gorontalo"), ("polri110", "")])
def test_tier_topics(root: str, path: str) -> None:
    node = NodeConfig(path=path, root=root).topic
    assert node == "/".join(p for p in (root, path) if p)
    topics = [
        contract.state_topic(node),
        contract.health_topic(node),
        contract.device_status_topic(node, "car12-gps"),
        contract.position_topic(node, "R2-12"),
    ]
    assert topics == [f"{node}/state", f"{node}/health", f"{node}/device/car12-gps/status", f"{node}/unit/R2-12/position"]
    for t in topics:
        assert "+" not in t and "#" not in t and "//" not in t and not t.startswith("/") and not t.endswith("/")


@settings(max_examples=300, deadline=None)
@given(node=st.from_regex(NODE_PATTERN, fullmatch=True), name=st.text(min_size=0, max_size=20))
def test_built_topics_never_hold_wildcards(node: str, name: str) -> None:
    node = f"polri110/{node}"
    for build in (contract.position_topic, contract.device_status_topic):
        try:
            topic = build(node, name)
        except ValueError:
            assert name == "" or any(c in name for c in "+#/\0")
            continue
        assert "+" not in topic and "#" not in topic and topic.count("/") == node.count("/") + 3
    for topic in (contract.state_topic(node), contract.health_topic(node)):
        assert "+" not in topic and "#" not in topic


@pytest.mark.parametrize("status", list(UnitStatus))
def test_unit_status_message_validates(status: UnitStatus) -> None:
    from alkomd.daemon.records import UnitState

    m = contract.unit_status_message(NODE, UnitState("R2-12", status, T0, "c-1" if status is UnitStatus.ENROUTE else None))
    assert (m.kind, m.topic, m.qos, m.retain) == ("unit_status", f"{NODE}/unit/R2-12/status", 1, True)
    payload = json.loads(m.payload)
    assert_valid("unit-status", payload)
    assert payload["status"] == status.value and payload["msg_id"] == m.msg_id


# -- relayed radios (FleetSync/NXDN): emergencies and radios no unit is mapped to ----------------


def _emergency() -> dict[str, Any]:
    rs = RadioStatus("base-radio", "100-0417", 99, T0 + timedelta(seconds=2), 1.0)
    data: dict[str, Any] = json.loads(contract.emergency_message(NODE, "HT-0417", rs, fix(radio="100-0417")).payload)
    return data


def _radio_report() -> dict[str, Any]:
    f = fix(device="base-radio", radio="100-1099", mode=2)
    data: dict[str, Any] = json.loads(contract.radio_message(NODE, "base-radio", "100-1099", f, 10, T0).payload)
    return data


def test_emergency_message_validates() -> None:
    rs = RadioStatus("base-radio", "100-0417", 99, T0 + timedelta(seconds=2), 1.0)
    m = contract.emergency_message(NODE, "HT-0417", rs, fix(device="base-radio", radio="100-0417", mode=2))
    assert (m.kind, m.topic, m.qos, m.retain) == ("emergency", f"{NODE}/unit/HT-0417/emergency", 1, False)
    p = json.loads(m.payload)
    assert_valid("unit-emergency", p)
    assert p == {
        "unit": "HT-0417", "lat": 0.5435121, "lon": 123.0595387, "time": "2025-03-14T02:15:09.250Z",
        "source": "base-radio:100-0417", "msg_id": m.msg_id, "code": 99, "fix_time": "2025-03-14T02:15:07.250Z",
    }


def test_emergency_of_a_unit_without_a_fix_validates() -> None:
    m = contract.emergency_message(NODE, "CAR-17", RadioStatus("base-radio", "U00017", 99, T0, 1.0), None)
    p = json.loads(m.payload)
    assert_valid("unit-emergency", p)
    assert (p["lat"], p["lon"], p["fix_time"], p["source"]) == (None, None, None, "base-radio:U00017")


def test_radio_message_validates() -> None:
    f = fix(device="base-radio", radio="100-1099", mode=2)
    m = contract.radio_message(NODE, "base-radio", "100-1099", f, 10, T0 + timedelta(seconds=1))
    assert (m.kind, m.topic, m.qos, m.retain) == ("radio", f"{NODE}/device/base-radio/radio/100-1099", 1, True)
    p = json.loads(m.payload)
    assert_valid("device-radio", p)
    assert p == {
        "device": "base-radio", "radio": "100-1099", "heard": "2025-03-14T02:15:08.250Z", "lat": 0.5435121,
        "lon": 123.0595387, "time": "2025-03-14T02:15:07.250Z", "status": 10, "msg_id": m.msg_id,
    }
    for last, code in ((None, 207), (f, None), (None, None)):  # a status without a position, and the reverse
        p = json.loads(contract.radio_message(NODE, "base-radio", "U00000042", last, code, T0).payload)
        assert_valid("device-radio", p)
        assert (p["lat"] is None) == (last is None) and p["status"] == code


@pytest.mark.parametrize(
    "change",
    [
        {"code": None}, {"code": "99"}, {"code": 1000}, {"code": 9.5}, {"fix_time": "2025-03-14T02:15:07Z"},
        {"time": None}, {"lat": 90.5}, {"lon": "123.06"}, {"source": ""}, {"unit": "HT/0417"}, {"msg_id": ""},
    ],
    ids=repr,
)
def test_broken_emergency_is_rejected(change: dict[str, Any]) -> None:
    assert_invalid("unit-emergency", _emergency() | change)


@pytest.mark.parametrize("field", ["unit", "lat", "lon", "time", "source", "msg_id", "code", "fix_time"])
def test_emergency_without_a_required_field_is_rejected(field: str) -> None:
    p = _emergency()
    del p[field]
    assert_invalid("unit-emergency", p)


@pytest.mark.parametrize(
    "change",
    [
        {"status": -1}, {"status": 1000}, {"status": 10.5}, {"status": "10"}, {"radio": ""},
        {"device": "base+radio"}, {"heard": None}, {"time": "2025-03-14 02:15:07.250"}, {"lat": -90.5}, {"lon": 181},
    ],
    ids=repr,
)
def test_broken_radio_report_is_rejected(change: dict[str, Any]) -> None:
    assert_invalid("device-radio", _radio_report() | change)


@pytest.mark.parametrize("field", ["device", "radio", "heard", "lat", "lon", "time", "status", "msg_id"])
def test_radio_report_without_a_required_field_is_rejected(field: str) -> None:
    p = _radio_report()
    del p[field]
    assert_invalid("device-radio", p)


@pytest.mark.parametrize("bad", BAD_LEVELS, ids=repr)
def test_radio_topic_builders_reject_bad_levels(bad: str) -> None:
    with pytest.raises(ValueError):
        contract.emergency_topic(NODE, bad)
    if "/" not in bad:  # a radio id may hold a / (a phone's user/device): its level encodes it
        with pytest.raises(ValueError):
            contract.radio_topic(NODE, "base-radio", bad)
    with pytest.raises(ValueError):
        contract.radio_topic(NODE, bad, "100-1099")
    assert contract.radio_topic(NODE, "base-radio", "U00017") == f"{NODE}/device/base-radio/radio/U00017"


def test_audit_head_message_validates_and_reads_back() -> None:
    from alkomd.daemon.store.audit import GENESIS, AuditHead

    for head in (AuditHead(0, GENESIS, T0), AuditHead(18342, "ab" * 32, T0)):
        msg = contract.audit_head_message(NODE, head)
        assert msg.topic == f"{NODE}/audit/head" and msg.retain and msg.qos == 1
        assert_valid("audit-head", json.loads(msg.payload))
        back = contract.parse_audit_head(msg.payload.encode())
        assert back is not None and (back.count, back.hash) == (head.count, head.hash)
    assert contract.parse_audit_head(b'{"count": -1, "hash": "x", "time": "2025-03-14T02:15:07.250Z"}') is None


def test_a_radio_id_with_a_slash_is_one_topic_level_and_kept_whole_in_the_payload() -> None:
    """A phone's radio id is `user/device`: its radio topic encodes the slash, the payload keeps the id."""
    msg = contract.radio_message(NODE, "phones", "budi/hp-01", None, None, T0)
    assert msg.topic == f"{NODE}/device/phones/radio/budi%2Fhp-01"
    assert json.loads(msg.payload)["radio"] == "budi/hp-01"
    assert contract.radio_level("a%b/c") == "a%25b%2Fc"
    assert_valid("device-radio", json.loads(msg.payload))


def test_the_examples_are_what_the_example_station_publishes() -> None:
    """docs/contract/examples/ (and each page's example block) equal a fresh run of the example station
    (tests/contract_examples.py: config/alkomd.toml on its real jurisdictions, fixed clock), msg_id aside: an example
    cannot drift from the daemon. `python tests/contract_examples.py` rewrites them after a deliberate change."""
    from contract_examples import EXAMPLES as FILES
    from contract_examples import build, comparable

    built = build()
    assert sorted(built) == sorted(n for n in NAMES)
    for name, payload in built.items():
        on_file = json.loads((FILES / f"{name}.json").read_text(encoding="utf-8"))
        assert comparable(on_file) == comparable(payload), f"{name}: the example differs from what the station publishes"

"""Kenwood as real radios send it: numeric ids, a base radio's repeated standard sentences, caller-ID frames.

(a) numeric radio ids (dPMR through a base radio) read as sent and map to units; the config
    pattern takes them and still refuses MQTT wildcards and `/`.
(b) one transmission is one fix: `$PKNDS` and `$PKNSH` of the same radio and time; the base
    radio's `$GPRMC`/`$GPGGA`/`$GPGLL` that repeat the relayed report never become the base
    radio's fix (nor move the unit on the base device), its own sentences still do.
(c) caller-ID frames are `RadioHeard` records, not garbage; the station keeps "last heard".
(d) hypothesis: random bytes around these frames never raise and never give a fix at 0,0.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_contract import assert_valid
from test_fleetsync import Clock, outbox, send

from alkomd.daemon.config import ConfigError, parse
from alkomd.daemon.mqtt.publisher import Publisher
from alkomd.daemon.positions.station import Station as CoreStation
from alkomd.daemon.records import Fix, RadioHeard, RadioStatus
from alkomd.daemon.store.database import Store
from alkomd.drivers import kenwood
from alkomd.drivers.nmea import Decoded, Decoder
from alkomd.drivers.nmea_writer import sentence

NOW = datetime(2020, 1, 1, 17, 0, tzinfo=UTC)
# tests/captures/kenwood-nx5000-relay-echo.nmea: one transmission of U00001205 as a base radio prints it.
RELAY = [
    b"$PKNID,,U00001205,,,*27\r\n",
    b"$PKNDS,160902,A,2301.2967,N,07228.2519,E,000.0,000.0,,,,U00001205,,,*41\r\n",
    b"$PKNSH,2301.2967,N,07228.2519,E,160902,A,U00001205,*61\r\n",
    b"$GPRMC,160902,A,2301.2967,N,07228.2519,E,000.0,000.0,,,*1B\r\n",
    b"$GPGGA,160902,2301.2967,N,07228.2519,E,1,,,,,,,,*5A\r\n",
    b"$GPGLL,2301.2967,N,07228.2519,E,160902,A*2C\r\n",
]
DPMR = b"\x02$PKNDS,074505,A,4809.3040,N,01409.5561,E,000.0,,020618,,00,004332199,0028,00,*00\n42\x03"
CID_FS = [b"\x02I110040021004002\x03", b"\x02I010040021004002\x03"]
CID_NX = [b"\x02gI1U03001U03001\x03", b"\x02gI0U03001U03001\x03"]


def base_rmc(tod: str, lat: str = "2302.5000", lon: str = "07229.0000") -> bytes:
    """The base radio's own GPS: somewhere else than the field radio."""
    return sentence(f"GPRMC,{tod},A,{lat},N,{lon},E,000.0,000.0,010120,,,A")


def decode(chunks: list[bytes], now: datetime = NOW) -> tuple[Decoder, list[Decoded]]:
    dec = Decoder("base")
    out: list[Decoded] = []
    for i, c in enumerate(chunks):
        out += dec.feed(c, now, 1.0 + i / 1000)  # a base radio prints a transmission within a second
    return dec, out + dec.flush()


# -- (a) numeric ids -------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "radio"), [("004332199", "004332199"), ("000000101", "000000101"), ("7", "7"),
                                              ("U00017", "U00017"), ("U00001205", "U00001205"), ("0123456789", "0123456789"),
                                              ("01234567890", None), ("U0017", None), ("U0001x", None), ("", None), ("-1", None),
                                              ("٣٣", None)])
def test_radio_ids_with_and_without_the_u(value: str, radio: str | None) -> None:
    assert kenwood.nxdn_id(value) == radio


def test_numeric_ids_give_fixes_and_status_codes_as_sent() -> None:
    dec, out = decode([DPMR, sentence("PKNSH,6010.3193,N,02443.7783,E,094600,A,000000101,"),
                       sentence("PKNID,00,004332199,15,00,")], now=datetime(2018, 6, 2, 12, tzinfo=UTC))
    fixes = [r for r in out if isinstance(r, Fix)]
    assert [(f.radio, round(f.lat, 6), round(f.lon, 6)) for f in fixes] == [
        ("004332199", 48.155067, 14.159268), ("000000101", 60.171988, 24.729638)]
    assert [(r.radio, r.code) for r in out if isinstance(r, RadioStatus)] == [("004332199", 28), ("004332199", 15)]
    assert (dec.parse_errors, dec.checksum_errors, dec.garbage_bytes) == (0, 0, 2)  # the "42" inside the frame


def config_dict(units: list[dict[str, str]]) -> dict[str, object]:
    return {"node": {"path": "gorontalo/bone-bolango"},
            "device": [{"id": "base", "driver": "fleetsync", "url": "/dev/null"}], "unit": units}


@pytest.mark.parametrize("radio", ["004332199", "7", "100-1001", "U00017"])
def test_the_radio_key_takes_numeric_ids(tmp_path: Path, radio: str) -> None:
    cfg = parse(config_dict([{"id": "DPMR-1", "radio": radio}]), tmp_path / "alkomd.toml")
    assert cfg.units[0].radio == radio


@pytest.mark.parametrize("radio", ["0043/32199/1", "/0043", "+", "#", "00+1", "a b"])
def test_the_radio_key_refuses_wildcards_and_slashes(tmp_path: Path, radio: str) -> None:
    """Wildcards and spaces never; one slash only as a phone's user/device (two names around it)."""
    with pytest.raises(ConfigError, match="radio"):
        parse(config_dict([{"id": "DPMR-1", "radio": radio}]), tmp_path / "alkomd.toml")


# -- the station -----------------------------------------------------------------------------------


@pytest.fixture
def station(tmp_path: Path) -> Iterator[tuple[CoreStation, Clock, Store]]:
    store = Store(tmp_path / "alkomd.db")
    loop = asyncio.new_event_loop()
    cfg = parse(config_dict([{"id": "BASE", "type": "car", "device": "base"},  # the base radio's own GPS
                             {"id": "CAR-1205", "radio": "U00001205"}, {"id": "DPMR-1", "radio": "004332199"},
                             {"id": "HT-4002", "type": "foot", "radio": "100-4002"}]), tmp_path / "alkomd.toml")
    clock = Clock()
    clock.now = NOW
    yield CoreStation(cfg, store, Publisher(store, loop), loop, now=clock), clock, store
    store.close()
    loop.close()


def test_a_numeric_id_maps_to_its_unit(station: tuple[CoreStation, Clock, Store]) -> None:
    st_, clock, store = station
    t = NOW - timedelta(seconds=30)
    send(st_, clock, Fix("base", t, 0.55, 123.1, 2, NOW, 1.0, radio="004332199"))
    assert [(p["unit"], p["source"]) for _, p, *_ in outbox(store, "position")] == [("DPMR-1", "base:004332199")]


# -- (b) one transmission, one fix; the base radio's repeats are not its own fix -------------------


def test_one_transmission_gives_one_fix_of_the_relayed_radio_and_none_of_the_base() -> None:
    dec, out = decode([base_rmc("160900"), *RELAY, base_rmc("160910")])
    fixes = sorted((f.time.strftime("%H%M%S"), str(f.radio)) for f in out if isinstance(f, Fix))
    assert fixes == [("160900", "None"), ("160902", "U00001205"), ("160910", "None")]
    own = [f for f in out if isinstance(f, Fix) and f.radio is None]
    assert all(abs(f.lat - 23.041667) < 1e-5 for f in own)  # never the field radio's 23.0216
    assert (dec.relay_duplicates, dec.relay_echoes, dec.rejected_fixes, dec.sentences) == (1, 3, 0, 8)


@pytest.mark.parametrize("split", [1, 7, 40, 1000])
def test_the_repeats_are_recognised_however_the_bytes_arrive(split: int) -> None:
    data = b"".join(RELAY)
    _, out = decode([data[i : i + split] for i in range(0, len(data), split)])
    assert [f.radio for f in out if isinstance(f, Fix)] == ["U00001205"]


def test_a_base_fix_of_the_same_second_elsewhere_is_still_the_base_radios() -> None:
    _, out = decode([*RELAY[:3], base_rmc("160902"), *RELAY[3:]])
    assert sorted(str(f.radio) for f in out if isinstance(f, Fix)) == ["None", "U00001205"]


def test_two_transmissions_of_one_radio_are_two_fixes() -> None:
    later = [sentence("PKNDS,160932,A,2301.3000,N,07228.2600,E,000.0,000.0,,,,U00001205,,,"),
             sentence("PKNSH,2301.3000,N,07228.2600,E,160932,A,U00001205,")]
    dec, out = decode([*RELAY, *later])
    assert [f.time.strftime("%H%M%S") for f in out if isinstance(f, Fix)] == ["160902", "160932"]
    assert dec.relay_duplicates == 2


def test_the_unit_on_the_base_device_never_jumps_to_the_field_radio(station: tuple[CoreStation, Clock, Store]) -> None:
    st_, clock, _ = station
    _, out = decode([base_rmc("160900"), *RELAY, base_rmc("160910")], now=datetime(2020, 1, 1, 16, 9, 20, tzinfo=UTC))
    clock.now = datetime(2020, 1, 1, 16, 9, 20, tzinfo=UTC)
    send(st_, clock, *out)
    assert abs(st_.latest["BASE"].fix.lat - 23.041667) < 1e-5
    assert st_.latest["CAR-1205"].fix.radio == "U00001205"


# -- (c) caller-ID frames --------------------------------------------------------------------------


def heard(out: list[Decoded]) -> list[str]:
    return [r.radio for r in out if isinstance(r, RadioHeard)]


def test_caller_id_frames_are_radios_heard_not_garbage() -> None:
    dec, out = decode([*CID_FS, b"\r\n", *CID_NX, b"\r\n"])
    assert heard(out) == ["100-4002", "U03001"]  # a key-up, then its unkey: one transmission, one record
    assert (dec.caller_ids, dec.garbage_bytes, dec.parse_errors, dec.checksum_errors) == (4, 0, 0, 0)


def test_an_unkey_without_its_key_up_is_still_heard_and_frames_split_anywhere() -> None:
    data = CID_FS[1] + CID_NX[0] + sentence("PKNSH,2301.2967,N,07228.2519,E,160902,A,U03001,") + CID_NX[1]
    for split in (1, 3, 5, len(data)):
        dec, out = decode([data[i : i + split] for i in range(0, len(data), split)])
        assert heard(out) == ["100-4002", "U03001"] and dec.garbage_bytes == 0
        assert [f.radio for f in out if isinstance(f, Fix)] == ["U03001"]


@pytest.mark.parametrize("frame", [b"\x02I1100400\x03", b"\x02I2100400210040\x03", b"\x02gI1X03001\x03", b"\x02I1abcdefghi\x03"])
def test_malformed_caller_id_frames_are_garbage(frame: bytes) -> None:
    dec, out = decode([frame])
    assert out == [] and dec.garbage_bytes == len(frame) - 2 and dec.caller_ids == 0


def test_the_station_keeps_when_a_unit_was_last_heard(station: tuple[CoreStation, Clock, Store]) -> None:
    st_, clock, store = station
    send(st_, clock, RadioHeard("base", "100-4002", NOW, 1.0), RadioHeard("base", "100-4099", NOW, 1.0))
    assert st_.last_heard == {"HT-4002": NOW} and st_.radios_heard == 1
    assert "HT-4002" not in st_.latest and outbox(store, "position") == []
    reports = outbox(store, "radio")  # a radio no [[unit]] names is reported, as when it sends a fix
    assert [(p["radio"], p["lat"], p["status"]) for _, p, *_ in reports] == [("100-4099", None, None)]
    assert_valid("device-radio", reports[0][1])
    # "Last heard" is any report: a status code or a fix counts too (not as a key-up).
    later = NOW + timedelta(seconds=40)
    send(st_, clock, RadioStatus("base", "U00001205", 10, later, 41.0), Fix("base", later, 0.55, 123.1, 2, later, 41.0, radio="004332199"))
    assert st_.last_heard == {"HT-4002": NOW, "CAR-1205": later, "DPMR-1": later} and st_.radios_heard == 1


# -- (d) random bytes around the frames ------------------------------------------------------------

FRAMES = [*CID_FS, *CID_NX, DPMR, *RELAY]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=40), st.sampled_from(FRAMES)), max_size=8), st.binary(max_size=40),
       st.integers(min_value=1, max_value=64))
def test_random_bytes_around_the_frames_never_raise_or_give_a_fix_at_zero(
    parts: list[tuple[bytes, bytes]], tail: bytes, split: int
) -> None:
    data = b"".join(junk + frame for junk, frame in parts) + tail
    _, out = decode([data[i : i + split] for i in range(0, len(data), split)])
    for r in out:
        if isinstance(r, Fix):
            assert (r.lat, r.lon) != (0.0, 0.0) and -90 <= r.lat <= 90 and -180 <= r.lon <= 180


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=30), st.sampled_from([*CID_FS[:1], *CID_NX[:1]])), min_size=1, max_size=6))
def test_a_caller_id_after_a_line_end_is_heard_whatever_came_before(parts: list[tuple[bytes, bytes]]) -> None:
    data = b"".join(junk + b"\n" + frame for junk, frame in parts)
    _, out = decode([data])
    assert set(heard(out)) == {"100-4002" if frame[1:2] == b"I" else "U03001" for _, frame in parts}


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.from_regex(r"[0-9]{3}-[0-9]{4}", fullmatch=True), st.from_regex(r"U[0-9]{5}|U[0-9]{8}", fullmatch=True)),
       st.booleans())
def test_any_caller_id_frame_the_simulator_writes_reads_back(radio: str, keyed: bool) -> None:
    frame = kenwood.caller_id_frame(radio, keyed)
    assert frame is not None and kenwood.caller_id(frame[1:-1]) == (radio, keyed)
    dec, out = decode([frame])
    assert heard(out) == [radio] and dec.garbage_bytes == 0
    assert kenwood.caller_id_frame("004332199", keyed) is None  # no caller-ID format is known for numeric ids

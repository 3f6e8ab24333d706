"""FleetSync/NXDN base radios: the Kenwood sentences, the decoder, the station's rules, a whole station.

(a) pynmea2 parses every Kenwood sentence type (the reference examples of mission-anchors 4.1,
    whose checksums are right), fields by attribute, unreadable radio ids and short sentences;
    any sentence `kenwood_*` writes reads back to the same values (hypothesis).
(b) the decoder: STX/ETX framing with and without line ends, mixed with the base radio's own
    RMC, split anywhere; the validity gates of relayed fixes; the technician's path agrees.
(c) the station on a real SQLite file: one emergency message per signal, audited in the hash
    chain; status codes set the unit's status; unknown radios kept in the history and reported
    at most once a minute.
(d) a real daemon reading a base radio on a pty and publishing to a private mosquitto.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pynmea2
import pytest
from conftest import NODE as E2E_NODE
from conftest import Daemon, Station, Subscriber, wait_until
from hypothesis import given, settings
from hypothesis import strategies as st
from test_contract import assert_valid

from alkomd.daemon.config import Config, ConfigError, parse
from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.daemon.mqtt.publisher import Publisher
from alkomd.daemon.positions.batch import StatusRequest
from alkomd.daemon.positions.station import Station as CoreStation
from alkomd.daemon.records import Fix, RadioHeard, RadioStatus, utc_iso
from alkomd.daemon.store.audit import verify
from alkomd.daemon.store.database import Store
from alkomd.drivers import kenwood
from alkomd.drivers.fleetsync import FleetSyncOptions
from alkomd.drivers.nmea import Decoder, Reject, Sentence, Verdict
from alkomd.drivers.nmea_writer import kenwood_ds, kenwood_id, kenwood_sh, sentence
from alkomd.drivers.simulator import PtyGps

KNOTS = 1.852

# mission-anchors.md section 4.1; the reference leaves the two status-only checksums as *hh,
# so those two are computed here (and checked against pynmea2's own checksum below).
REFERENCE = {
    "KLDS": "$PKLDS,122434,A,4954.1474,N,11923.6044,W,001.1,194.9,130223,19.20,W00,100,1001,80,00,*60",
    "KNDS": "$PKNDS,124640,A,4954.1458,N,11923.5992,W,000.0,000.0,120223,19.20,W00,U00002,207,00,*29",
    "KLSH": "$PKLSH,4954.1474,N,11923.6044,W,122434,A,100,1001,*3F",
    "KNSH": "$PKNSH,4954.1450,N,11923.6043,W,114400,A,U00002,*44",
    "KLID": sentence("PKLID,00,100,2000,15,00,").decode().strip(),
    "KNID": sentence("PKNID,00,U00065519,207,00,").decode().strip(),
}


def dm(degrees: int, minutes: float) -> float:
    return degrees + minutes / 60


def framed(s: bytes, eol: bytes = b"\r\n") -> bytes:
    """How a Kenwood base radio frames a sentence: STX, the sentence, ETX (then a line end, or none)."""
    return b"\x02" + s.rstrip(b"\r\n") + b"\x03" + eol


# -- (a) the sentences in pynmea2 ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(REFERENCE))
def test_reference_sentences_parse_to_their_classes_and_render_back(name: str) -> None:
    line = REFERENCE[name]
    msg = pynmea2.parse(line, check=True)
    assert type(msg).__name__ == name and isinstance(msg, kenwood.KenwoodSentence)
    assert msg.sentence_type == name and msg.manufacturer == name[:3] and msg.subtype == name[3]
    assert str(msg) == line  # pynmea2 renders it back, checksum included
    assert pynmea2.ProprietarySentence.sentence_types[name[:3]] is getattr(kenwood, name[:3])


def test_the_registry_holds_the_six_manufacturers_and_not_the_base_class() -> None:
    registry = pynmea2.ProprietarySentence.sentence_types
    assert "KenwoodSentence" not in registry
    assert {m: registry[m].__name__ for m in ("KLD", "KND", "KLS", "KNS", "KLI", "KNI")} == {
        "KLD": "KLD", "KND": "KND", "KLS": "KLS", "KNS": "KNS", "KLI": "KLI", "KNI": "KNI",
    }
    assert registry["KWD"].__module__.startswith("pynmea2")  # pynmea2's own Kenwood APRS waypoints still work


def test_pklds_fields_by_attribute_and_relayed() -> None:
    msg = pynmea2.parse(REFERENCE["KLDS"], check=True)
    got = {n: getattr(msg, n) for n in ("time", "valid", "lat", "lat_dir", "lon", "lon_dir", "sog", "cog", "date", "var",
                                        "var_dir_version", "fleet", "unit_id", "status", "reserved")}
    assert got == {
        "time": "122434", "valid": "A", "lat": "4954.1474", "lat_dir": "N", "lon": "11923.6044", "lon_dir": "W",
        "sog": "001.1", "cog": "194.9", "date": "130223", "var": "19.20", "var_dir_version": "W00", "fleet": "100",
        "unit_id": "1001", "status": "80", "reserved": "00",
    }
    rel = msg.relayed()
    assert rel is not None
    assert (rel.radio, rel.status, rel.has_position, rel.valid) == ("100-1001", 80, True, True)
    assert rel.lat == pytest.approx(dm(49, 54.1474), abs=1e-9) and rel.lon == pytest.approx(-dm(119, 23.6044), abs=1e-9)
    assert (rel.tod, rel.day) == (time(12, 24, 34, tzinfo=UTC), date(2023, 2, 13))
    assert rel.speed_kmh == pytest.approx(1.1 * KNOTS) and rel.course == pytest.approx(194.9)


def test_pknds_fields_by_attribute_and_relayed() -> None:
    msg = pynmea2.parse(REFERENCE["KNDS"], check=True)
    assert (msg.unit_id, msg.status, msg.reserved, msg.sog, msg.date) == ("U00002", "207", "00", "000.0", "120223")
    rel = msg.relayed()
    assert rel is not None
    assert (rel.radio, rel.status, rel.valid, rel.day, rel.speed_kmh, rel.course) == ("U00002", 207, True, date(2023, 2, 12), 0.0, 0.0)
    assert rel.lat == pytest.approx(dm(49, 54.1458)) and rel.lon == pytest.approx(-dm(119, 23.5992))
    assert rel.tod == time(12, 46, 40, tzinfo=UTC)


def test_short_position_sentences_have_no_date_speed_or_status() -> None:
    lsh = pynmea2.parse(REFERENCE["KLSH"], check=True)
    assert (lsh.lat, lsh.lat_dir, lsh.time, lsh.valid, lsh.fleet, lsh.unit_id) == ("4954.1474", "N", "122434", "A", "100", "1001")
    nsh = pynmea2.parse(REFERENCE["KNSH"], check=True)
    assert (nsh.lon, nsh.lon_dir, nsh.time, nsh.unit_id) == ("11923.6043", "W", "114400", "U00002")
    a, b = lsh.relayed(), nsh.relayed()
    assert a is not None and b is not None
    assert (a.radio, a.status, a.day, a.speed_kmh, a.course, a.tod) == ("100-1001", None, None, None, None, time(12, 24, 34, tzinfo=UTC))
    assert (b.radio, b.status, b.tod, b.valid) == ("U00002", None, time(11, 44, tzinfo=UTC), True)
    assert b.lat == pytest.approx(dm(49, 54.1450)) and b.lon == pytest.approx(-dm(119, 23.6043))


def test_status_only_sentences() -> None:
    lid = pynmea2.parse(REFERENCE["KLID"], check=True)
    assert (lid.version, lid.fleet, lid.unit_id, lid.status, lid.reserved) == ("00", "100", "2000", "15", "00")
    assert lid.relayed() == kenwood.Relayed("100-2000", 15, has_position=False)
    nid = pynmea2.parse(REFERENCE["KNID"], check=True)
    assert (nid.version, nid.unit_id, nid.status) == ("00", "U00065519", "207")  # a DMR id: U + 8 digits
    assert nid.relayed() == kenwood.Relayed("U00065519", 207, has_position=False)


POS = "122434,A,0033.0060,N,12309.0120,E,002.4,040.0,151024,00.00,E00"
SH = "0033.0060,N,12309.0120,E,122434,A"
BAD_IDS = [
    f"PKLDS,{POS},10,1001,10,00,",  # a two-digit fleet
    f"PKLDS,{POS},100,ABCD,10,00,",
    f"PKLDS,{POS},100,10011,10,00,",
    f"PKLDS,{POS},,,10,00,",
    f"PKNDS,{POS},X00002,207,00,",
    f"PKNDS,{POS},U0002,207,00,",  # 4 digits: neither NXDN (5) nor DMR (8)
    f"PKNDS,{POS},U000002,207,00,",
    f"PKNDS,{POS},UABCDE,207,00,",
    f"PKLSH,{SH},10,1001,",
    f"PKLSH,{SH},100,ABCD,",
    f"PKNSH,{SH},X00002,",
    "PKLID,00,10,1001,10,00,",
    "PKLID,00,100,ABCD,10,00,",
    "PKNID,00,X00002,207,00,",
    "PKNID,00,u00002,207,00,",
]


@pytest.mark.parametrize("body", BAD_IDS)
def test_unreadable_radio_ids_are_parse_errors_and_emit_nothing(body: str) -> None:
    line = sentence(body)
    msg = pynmea2.parse(line.decode().strip(), check=True)
    assert isinstance(msg, kenwood.KenwoodSentence) and msg.relayed() is None
    dec = Decoder("base")
    assert dec.feed(line + framed(line), datetime(2024, 10, 15, 12, tzinfo=UTC), 1.0) + dec.flush() == []
    assert (dec.parse_errors, dec.sentences, dec.checksum_errors, dec.fixes, dec.rejected_fixes) == (2, 0, 0, 0, 0)
    seen: list[Sentence] = []
    Decoder("base", on_sentence=seen.append).feed(line, datetime(2024, 10, 15, 12, tzinfo=UTC), 1.0)
    assert [s.verdict for s in seen] == [Verdict.UNPARSABLE]  # what `alkomctl sniff` shows


SHORT = ["PKLDS,122434,A", "PKLDS", "PKNDS,124640,A,4954.1458,N", "PKLSH,0033.8700,N", "PKNSH", "PKLID,00", "PKNID,00",
         "PKLD", "PKLDX,1,2,3"]


@pytest.mark.parametrize("body", SHORT)
def test_short_sentences_are_padded_parse_errors_never_exceptions(body: str) -> None:
    msg = pynmea2.parse(sentence(body).decode().strip(), check=True)
    assert isinstance(msg, kenwood.KenwoodSentence)
    assert len(msg.data) >= len(msg.fields)  # every named field is readable, "" when absent
    for _, name in msg.fields:
        assert isinstance(getattr(msg, name), str)
    assert msg.relayed() is None
    dec = Decoder("base")
    assert dec.feed(sentence(body), datetime(2024, 10, 15, 12, tzinfo=UTC), 1.0) + dec.flush() == []
    assert (dec.parse_errors, dec.sentences) == (1, 0)


@pytest.mark.parametrize(("body", "radio"), [("PKLID,00,100,1001", "100-1001"), ("PKNID,00,U00002", "U00002"),
                                             ("PKLID,00,100,1001,ZZ,00,", "100-1001")])
def test_a_status_only_sentence_without_a_status_says_only_that_the_radio_was_heard(body: str, radio: str) -> None:
    msg = pynmea2.parse(sentence(body).decode().strip(), check=True)
    assert msg.relayed() == kenwood.Relayed(radio, None, has_position=False)
    dec = Decoder("base")
    now = datetime(2024, 10, 15, 12, tzinfo=UTC)
    assert dec.feed(sentence(body), now, 1.0) == [RadioHeard("base", radio, now, 1.0)]
    assert (dec.sentences, dec.parse_errors) == (1, 0)


FLEETSYNC_ID = st.from_regex(r"[0-9]{3}-[0-9]{4}", fullmatch=True)
NXDN_ID = st.from_regex(r"U([0-9]{5}|[0-9]{8})", fullmatch=True)
FIX_TIME = st.datetimes(datetime(2000, 1, 1), datetime(2079, 12, 31), timezones=st.just(UTC))
RADIO_AND_CODE = st.one_of(st.tuples(FLEETSYNC_ID, st.integers(0, 99)), st.tuples(NXDN_ID, st.integers(0, 255)))
LATS, LONS = st.floats(-90, 90), st.floats(-180, 180)


@settings(max_examples=300, deadline=None)
@given(lat=LATS, lon=LONS, radio_code=RADIO_AND_CODE, t=FIX_TIME, kmh=st.floats(0, 1800), course=st.floats(0, 359.9))
def test_property_any_kenwood_ds_reads_back(lat: float, lon: float, radio_code: tuple[str, int], t: datetime, kmh: float,
                                            course: float) -> None:
    radio, code = radio_code
    line = kenwood_ds(t, lat, lon, radio, code, kmh=kmh, course=course)
    msg = pynmea2.parse(line.decode().strip(), check=True)
    assert type(msg).__name__ == ("KNDS" if radio.startswith("U") else "KLDS")
    rel = msg.relayed()
    assert rel is not None and (rel.radio, rel.status, rel.valid, rel.has_position) == (radio, code, True, True)
    assert rel.lat == pytest.approx(lat, abs=1e-6) and rel.lon == pytest.approx(lon, abs=1e-6)
    assert rel.day == t.date() and rel.tod == t.timetz().replace(microsecond=0)
    assert rel.speed_kmh == pytest.approx(kmh, abs=0.05 * KNOTS + 1e-9) and rel.course == pytest.approx(course, abs=0.05 + 1e-9)
    # Through the decoder: a relayed fix (unless at 0,0, which radios without a fix send) and the status.
    dec = Decoder("base")
    out = dec.feed(framed(line, b""), t + timedelta(minutes=1), 7.0) + dec.flush()
    status = RadioStatus("base", radio, code, t + timedelta(minutes=1), 7.0)
    if rel.lat == 0.0 and rel.lon == 0.0:
        assert out == [status] and dec.rejected == {Reject.NO_POSITION: 1}
        return
    assert len(out) == 2 and out[1] == status
    f = out[0]
    assert isinstance(f, Fix) and (f.device, f.radio, f.mode, f.time) == ("base", radio, 2, t.replace(microsecond=0))
    assert (f.lat, f.lon, f.speed_kmh, f.course) == (rel.lat, rel.lon, rel.speed_kmh, rel.course)


@settings(max_examples=200, deadline=None)
@given(lat=LATS, lon=LONS, radio_code=RADIO_AND_CODE, t=FIX_TIME, valid=st.booleans())
def test_property_any_kenwood_sh_and_id_read_back(lat: float, lon: float, radio_code: tuple[str, int], t: datetime,
                                                  valid: bool) -> None:
    radio, code = radio_code
    sh = pynmea2.parse(kenwood_sh(t, lat, lon, radio, valid=valid).decode().strip(), check=True).relayed()
    assert sh is not None and (sh.radio, sh.status, sh.valid, sh.day) == (radio, None, valid, None)
    assert sh.lat == pytest.approx(lat, abs=1e-6) and sh.lon == pytest.approx(lon, abs=1e-6)
    assert sh.tod == t.timetz().replace(microsecond=0)
    ident = pynmea2.parse(kenwood_id(radio, code).decode().strip(), check=True)
    assert type(ident).__name__ == ("KNID" if radio.startswith("U") else "KLID")
    assert ident.relayed() == kenwood.Relayed(radio, code, has_position=False)


# -- (b) the decoder ----------------------------------------------------------------------------

T0 = datetime(2024, 10, 15, 1, 0, tzinfo=UTC)
RECEIVED = T0 + timedelta(minutes=2)
BASE_LAT, BASE_LON = 0.546, 123.163


def base_rmc(t: datetime) -> bytes:
    """The base radio's own GPS, a plain RMC (no Kenwood framing)."""
    la = f"{int(BASE_LAT):02d}{(BASE_LAT % 1) * 60:07.4f}"
    lo = f"{int(BASE_LON):03d}{(BASE_LON % 1) * 60:07.4f}"
    return sentence(f"GPRMC,{t:%H%M%S}.00,A,{la},N,{lo},E,0.000,0.00,{t:%d%m%y},,,A")


def base_stream(eol: bytes) -> bytes:
    """Two rounds of three radios (FleetSync DS and SH, NXDN DS), a status, the base's own RMC."""
    out = [base_rmc(T0)]
    for k in range(2):
        t = T0 + timedelta(seconds=15 * k)
        out += [
            framed(kenwood_ds(t + timedelta(seconds=1), 0.55 + k * 1e-3, 123.15, "100-1001", 10, kmh=4.4, course=40), eol),
            framed(kenwood_sh(t + timedelta(seconds=3), 0.565, 123.18, "100-1003"), eol),
            framed(kenwood_ds(t + timedelta(seconds=5), 0.531, 123.12, "U00017", 207, kmh=38.0, course=75), eol),
        ]
    out += [framed(kenwood_id("100-1003", 15), eol), base_rmc(T0 + timedelta(seconds=30))]
    return b"".join(out)


def records(dec: Decoder, chunks: list[bytes]) -> list[Fix | RadioStatus]:
    out: list[Fix | RadioStatus] = []
    for c in chunks:
        out += dec.feed(c, RECEIVED, 5.0)
    return out + dec.flush()


def summary(recs: list[Fix | RadioStatus]) -> list[tuple[object, ...]]:
    return [("fix", r.radio, r.time, round(r.lat, 6)) if isinstance(r, Fix) else ("status", r.radio, r.code) for r in recs]


EXPECTED_STREAM = [
    ("fix", "100-1001", T0 + timedelta(seconds=1), 0.55), ("status", "100-1001", 10),
    ("fix", "100-1003", T0 + timedelta(seconds=3), 0.565),
    ("fix", "U00017", T0 + timedelta(seconds=5), 0.531), ("status", "U00017", 207),
    ("fix", "100-1001", T0 + timedelta(seconds=16), 0.551), ("status", "100-1001", 10),
    ("fix", "100-1003", T0 + timedelta(seconds=18), 0.565),
    ("fix", "U00017", T0 + timedelta(seconds=20), 0.531), ("status", "U00017", 207),
    ("status", "100-1003", 15),
    ("fix", None, T0, BASE_LAT),  # the base's first RMC epoch closes when its next one arrives
    ("fix", None, T0 + timedelta(seconds=30), BASE_LAT),  # and the last one at the end of input
]


@pytest.mark.parametrize("eol", [b"\r\n", b"\n", b""], ids=["crlf", "lf", "no line end"])
@pytest.mark.parametrize("split", ["whole", "bytewise", "17-byte chunks"])
def test_stx_etx_framing_with_and_without_line_ends_mixed_with_the_base_rmc(eol: bytes, split: str) -> None:
    data = base_stream(eol)
    chunks = {"whole": [data], "bytewise": [data[i : i + 1] for i in range(len(data))],
              "17-byte chunks": [data[i : i + 17] for i in range(0, len(data), 17)]}[split]
    dec = Decoder("base")
    recs = records(dec, chunks)
    assert summary(recs) == EXPECTED_STREAM
    assert (dec.sentences, dec.fixes, dec.garbage_bytes, dec.checksum_errors, dec.parse_errors, dec.rejected_fixes) == (9, 8, 0, 0, 0, 0)
    relayed = [r for r in recs if isinstance(r, Fix) and r.radio]
    assert all(f.mode == 2 and f.alt is None and f.hdop is None and f.sats is None and f.device == "base" for f in relayed)
    assert relayed[0].speed_kmh == pytest.approx(4.4, abs=0.1) and relayed[0].course == 40.0
    assert relayed[1].speed_kmh is None and relayed[1].course is None  # $PKLSH carries neither
    own = [r for r in recs if isinstance(r, Fix) and r.radio is None]
    assert own[0].mode == 2 and own[0].speed_kmh == 0.0  # the base's RMC: an ordinary fix with no radio


def test_the_technicians_path_gives_the_same_records() -> None:
    data = base_stream(b"")
    seen: list[Sentence] = []
    slow = Decoder("base", on_sentence=seen.append)
    assert summary(records(slow, [data])) == EXPECTED_STREAM
    assert [s.verdict for s in seen] == [Verdict.OK] * 9
    assert [type(s.msg).__name__ for s in seen[1:4]] == ["KLDS", "KLSH", "KNDS"]


def ds_body(*, time_: str = "010001", valid: str = "A", lat: str = "0033.0060", lon: str = "12309.0120", day: str = "151024",
            radio: str = "100,1001", code: str = "10") -> bytes:
    return sentence(f"PKLDS,{time_},{valid},{lat},N,{lon},E,002.4,040.0,{day},00.00,E00,{radio},{code},00,")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (ds_body(valid="V"), Reject.RELAY_VOID),
        (ds_body(lat="0000.0000", lon="00000.0000"), Reject.NO_POSITION),  # a radio without a fix sends zeros with A
        (ds_body(lat="", lon=""), Reject.NO_POSITION),
        (ds_body(lat="9100.0000"), Reject.OUT_OF_RANGE),
        (ds_body(lon="18100.0000"), Reject.OUT_OF_RANGE),
        (ds_body(time_=""), Reject.NO_TIME),
        (ds_body(time_="256199"), Reject.NO_TIME),
        (ds_body(day="171024"), Reject.FUTURE),  # two days after it was received
    ],
    ids=["void", "zeroed", "empty", "lat 91", "lon 181", "no time", "bad time", "future"],
)
def test_relayed_fix_gates_reject_the_fix_but_keep_the_status(line: bytes, reason: Reject) -> None:
    dec = Decoder("base")
    out = dec.feed(framed(line), RECEIVED, 3.0)
    assert out == [RadioStatus("base", "100-1001", 10, RECEIVED, 3.0)]  # the status code still counts
    assert (dec.rejected, dec.last_reject, dec.fixes, dec.sentences) == ({reason: 1}, reason, 0, 1)


def test_a_void_short_report_emits_nothing_and_is_counted() -> None:
    dec = Decoder("base")
    assert dec.feed(framed(kenwood_sh(T0, 0.55, 123.1, "U00017", valid=False)), RECEIVED, 1.0) == []
    assert dec.rejected == {Reject.RELAY_VOID: 1} and dec.sentences == 1


def test_a_short_report_without_a_date_takes_the_day_it_was_received() -> None:
    """$PKLSH has only a time of day: just before midnight, read just after it, is yesterday."""
    received = datetime(2024, 10, 16, 0, 0, 30, tzinfo=UTC)
    dec = Decoder("base")
    (f,) = dec.feed(framed(kenwood_sh(datetime(2024, 10, 15, 23, 59, 50, tzinfo=UTC), 0.55, 123.1, "100-1003")), received, 1.0)
    assert isinstance(f, Fix) and f.time == datetime(2024, 10, 15, 23, 59, 50, tzinfo=UTC)


def test_a_corrupt_kenwood_sentence_is_a_checksum_error() -> None:
    good = kenwood_ds(T0, 0.55, 123.1, "100-1001", 99).rstrip(b"\r\n")
    bad = good[:20] + (b"9" if good[20:21] != b"9" else b"8") + good[21:]
    dec = Decoder("base")
    assert dec.feed(framed(bad) + framed(good), RECEIVED, 1.0)[-1] == RadioStatus("base", "100-1001", 99, RECEIVED, 1.0)
    assert (dec.checksum_errors, dec.sentences, dec.fixes) == (1, 1, 1)


# -- (c) the station's rules, on a real SQLite file ----------------------------------------------

NODE = "polri110/gorontalo/bone-bolango"
ST0 = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)


def config(tmp_path: Path, radio_status: dict[str, Any] | None = None) -> Config:
    return parse(
        {
            "node": {"path": "gorontalo/bone-bolango"},
            "device": [{"id": "base", "driver": "fleetsync", "url": "/dev/null"},
                       {"id": "base2", "driver": "fleetsync", "url": "/dev/null"}],
            "unit": [
                {"id": "HT-01", "type": "foot", "device": "base", "radio": "100-1001"},  # only through `base`
                {"id": "HT-02", "type": "foot", "radio": "100-1002"},  # through any device
                {"id": "CAR-17", "radio": "U00017"},
            ],
            "radio_status": radio_status if radio_status is not None else
            {"emergency": [99], "available": [10], "enroute": [20], "onscene": [30], "unavailable": [40]},
        },
        tmp_path / "alkomd.toml",
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "alkomd.db")
    yield s
    s.close()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


class Clock:
    def __init__(self) -> None:
        self.now = ST0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def core(tmp_path: Path, store: Store, loop: asyncio.AbstractEventLoop) -> tuple[CoreStation, Clock]:
    clock = Clock()
    return CoreStation(config(tmp_path), store, Publisher(store, loop), loop, now=clock), clock


def rfix(radio: str, s: float, device: str = "base", lat: float = 0.55, lon: float = 123.1) -> Fix:
    t = ST0 + timedelta(seconds=s)
    return Fix(device, t, lat, lon, 2, t, s, speed_kmh=4.4, course=40.0, radio=radio)


def rcode(radio: str, code: int, s: float, device: str = "base") -> RadioStatus:
    return RadioStatus(device, radio, code, ST0 + timedelta(seconds=s), s)


def send(st_: CoreStation, clock: Clock, *records: Fix | RadioStatus | StatusRequest, at: float | None = None) -> None:
    """One batch (one SQLite transaction), as the event loop would gather it."""
    if at is not None:
        clock.now = ST0 + timedelta(seconds=at)
    for r in records:
        st_.submit(r)
    st_.flush()


def outbox(store: Store, kind: str) -> list[tuple[str, dict[str, Any], int, int, str]]:
    rows = store.conn.execute("SELECT topic, payload, retain, qos, msg_id FROM outbox WHERE kind = ? ORDER BY id", (kind,))
    return [(topic, json.loads(payload), retain, qos, msg_id) for topic, payload, retain, qos, msg_id in rows]


def audits(store: Store, kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [(unit, json.loads(detail)) for _, _, k, _, unit, detail, _, _ in store.audit_rows() if k == kind]


def test_an_emergency_is_published_once_per_signal_and_audited(core: tuple[CoreStation, Clock], store: Store) -> None:
    st_, clock = core
    send(st_, clock, rfix("100-1002", 1, lat=0.5601), rcode("100-1002", 10, 1), at=1)
    send(st_, clock, rfix("100-1002", 2, lat=0.5602), rcode("100-1002", 99, 2), at=2)  # the button
    send(st_, clock, rfix("100-1002", 3, lat=0.5603), rcode("100-1002", 99, 3), at=3)  # repeated in every report
    send(st_, clock, rcode("100-1002", 99, 4), rcode("100-1002", 99, 4.5), at=5)
    assert len(outbox(store, "emergency")) == 1
    send(st_, clock, rcode("100-1002", 10, 6), at=6)  # cleared
    send(st_, clock, rcode("100-1002", 99, 7), rcode("100-1002", 99, 8), at=8)  # pressed again: a new signal
    sent = outbox(store, "emergency")
    assert len(sent) == 2 and st_.emergencies == 2
    for topic, p, retain, qos, msg_id in sent:
        assert (topic, retain, qos, p["msg_id"]) == (f"{NODE}/unit/HT-02/emergency", 0, 1, msg_id)
        assert (p["unit"], p["source"], p["code"]) == ("HT-02", "base:100-1002", 99)
        assert_valid("unit-emergency", p)
    first, second = sent[0][1], sent[1][1]
    # The position of the report that carried the signal, and the newest one for the second.
    assert (first["lat"], first["lon"], first["fix_time"], first["time"]) == (0.5602, 123.1, utc_iso(ST0 + timedelta(seconds=2)),
                                                                             utc_iso(ST0 + timedelta(seconds=2)))
    assert (second["lat"], second["fix_time"], second["time"]) == (0.5603, utc_iso(ST0 + timedelta(seconds=3)),
                                                                   utc_iso(ST0 + timedelta(seconds=7)))
    entries = audits(store, "unit.emergency")
    assert [(unit, d["radio"], d["device"], d["code"], d["msg_id"]) for unit, d in entries] == [
        ("HT-02", "100-1002", "base", 99, msg_id) for *_, msg_id in sent
    ]
    assert verify(store.audit_rows()).ok


def test_an_emergency_without_any_fix_still_goes_out(core: tuple[CoreStation, Clock], store: Store) -> None:
    st_, clock = core
    send(st_, clock, rcode("U00017", 99, 1))  # a $PKNID: status without a position
    ((topic, p, *_),) = outbox(store, "emergency")
    assert topic == f"{NODE}/unit/CAR-17/emergency" and (p["lat"], p["lon"], p["fix_time"]) == (None, None, None)
    assert_valid("unit-emergency", p)
    assert [u for u, _ in audits(store, "unit.emergency")] == ["CAR-17"] and verify(store.audit_rows()).ok


def test_one_signal_relayed_by_two_base_radios_is_one_emergency(core: tuple[CoreStation, Clock], store: Store) -> None:
    st_, clock = core
    send(st_, clock, rcode("100-1002", 10, 1), rcode("100-1002", 10, 1, device="base2"))
    send(st_, clock, rcode("100-1002", 99, 2), rcode("100-1002", 99, 2, device="base2"))
    send(st_, clock, rcode("100-1002", 99, 3, device="base2"))
    assert len(outbox(store, "emergency")) == 1


def test_more_than_one_emergency_code(tmp_path: Path, store: Store, loop: asyncio.AbstractEventLoop) -> None:
    clock = Clock()
    st_ = CoreStation(config(tmp_path, {"emergency": [99, 98], "available": [10]}), store, Publisher(store, loop), loop, clock)
    send(st_, clock, rcode("U00017", 98, 1))
    send(st_, clock, rcode("U00017", 99, 2))  # still the same emergency (e.g. "man down" after the button)
    send(st_, clock, rcode("U00017", 10, 3), rcode("U00017", 99, 4))
    assert [p["code"] for _, p, *_ in outbox(store, "emergency")] == [98, 99]


def test_a_code_in_no_list_between_two_emergencies_ends_the_first(core: tuple[CoreStation, Clock], store: Store) -> None:
    """What the LRRP, Hytera and TETRA drivers pass on with a radio's first ordinary report after its emergency
    (`after_emergency_code`, 0 by default: in no [radio_status] list) changes nothing but ends the emergency."""
    st_, clock = core
    send(st_, clock, rcode("U00017", 99, 1), rcode("U00017", 99, 2))
    send(st_, clock, rcode("U00017", 0, 3))
    send(st_, clock, rcode("U00017", 99, 4))
    assert len(outbox(store, "emergency")) == 2 and not outbox(store, "unit_status")


def unit_statuses(store: Store, unit: str) -> list[str]:
    return [p["status"] for topic, p, *_ in outbox(store, "unit_status") if topic.endswith(f"/unit/{unit}/status")]


def test_status_codes_set_the_unit_status_only_when_the_code_changes(core: tuple[CoreStation, Clock], store: Store) -> None:
    st_, clock = core
    send(st_, clock, rfix("100-1001", 1), rcode("100-1001", 10, 1), at=1)  # the first fix: offline -> available
    send(st_, clock, rfix("100-1001", 2), rcode("100-1001", 20, 2), at=2)  # en route
    send(st_, clock, rfix("100-1001", 3), rcode("100-1001", 20, 3), at=3)  # the same code again: nothing new
    assert unit_statuses(store, "HT-01") == ["available", "enroute"]
    # A dispatcher overrides it; the radio keeps repeating 20, which must not undo the override.
    send(st_, clock, StatusRequest("HT-01", b'{"status": "available", "by": "op-1"}'), at=4)
    send(st_, clock, rfix("100-1001", 5), rcode("100-1001", 20, 5), at=5)
    assert unit_statuses(store, "HT-01") == ["available", "enroute", "available"]
    send(st_, clock, rcode("100-1001", 30, 6), at=6)
    send(st_, clock, rcode("100-1001", 55, 7), at=7)  # a code [radio_status] does not list: nothing
    send(st_, clock, rcode("100-1001", 40, 8), at=8)
    assert unit_statuses(store, "HT-01") == ["available", "enroute", "available", "onscene", "unavailable"]
    assert st_.availability.states["HT-01"].status.value == "unavailable"
    changes = [(d["previous"], d["status"]) for u, d in audits(store, "unit.status") if u == "HT-01"]
    assert changes == [("offline", "available"), ("available", "enroute"), ("enroute", "available"), ("available", "onscene"),
                       ("onscene", "unavailable")]
    assert verify(store.audit_rows()).ok


def test_positions_of_mapped_radios_go_to_their_units(core: tuple[CoreStation, Clock], store: Store) -> None:
    st_, clock = core
    send(st_, clock, rfix("100-1001", 1), rfix("100-1002", 1, device="base2"), rfix("U00017", 1, device="base2"))
    sources = {p["unit"]: p["source"] for _, p, *_ in outbox(store, "position")}
    assert sources == {"HT-01": "base:100-1001", "HT-02": "base2:100-1002", "CAR-17": "base2:U00017"}
    for _, p, *_ in outbox(store, "position"):
        assert_valid("unit-position", p)
        assert p["fix"] == "2d"
    rows = store.conn.execute("SELECT unit, device, radio FROM positions ORDER BY unit").fetchall()
    assert rows == [("CAR-17", "base2", "U00017"), ("HT-01", "base", "100-1001"), ("HT-02", "base2", "100-1002")]


def test_unknown_radios_are_stored_and_reported_at_most_once_a_minute(
    core: tuple[CoreStation, Clock], store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    st_, clock = core
    caplog.set_level(logging.WARNING, logger="alkomd.daemon.positions.station")
    send(st_, clock, rfix("100-1099", 1, lat=0.5771), at=1)  # reported: first heard
    send(st_, clock, rfix("100-1099", 2, lat=0.5772), rcode("100-1099", 10, 2), at=2)  # reported: a code now
    send(st_, clock, rfix("100-1099", 30, lat=0.5773), rcode("100-1099", 10, 30), at=30)  # same code, within the minute
    send(st_, clock, rfix("100-1099", 61, lat=0.5774), at=61)  # 59 s after the last report: not yet
    send(st_, clock, rfix("100-1099", 62, lat=0.5775), at=62)  # a minute after it: reported
    send(st_, clock, rcode("100-1099", 11, 63), at=63)  # its code changed: reported at once, with its last fix
    send(st_, clock, rcode("100-1099", 11, 64), at=64)
    # HT-01's radio is mapped only through `base`: heard through `base2` it is an unknown radio there.
    send(st_, clock, rfix("100-1001", 65, device="base2"), at=65)
    reports = outbox(store, "radio")
    assert [(topic.removeprefix(NODE), retain, p["lat"], p["status"]) for topic, p, retain, *_ in reports] == [
        ("/device/base/radio/100-1099", 1, 0.5771, None),
        ("/device/base/radio/100-1099", 1, 0.5772, 10),
        ("/device/base/radio/100-1099", 1, 0.5775, 10),
        ("/device/base/radio/100-1099", 1, 0.5775, 11),
        ("/device/base2/radio/100-1001", 1, 0.55, None),
    ]
    for topic, p, _, _, msg_id in reports:
        assert_valid("device-radio", p)
        assert p["msg_id"] == msg_id and topic.endswith(f"/device/{p['device']}/radio/{p['radio']}")
    assert reports[3][1]["time"] == utc_iso(ST0 + timedelta(seconds=62)) and reports[3][1]["heard"] == utc_iso(ST0 + timedelta(seconds=63))
    # Every fix is in the history, with unit "" and its radio; none is a unit's position.
    rows = store.conn.execute("SELECT unit, device, radio, lat, msg_id FROM positions ORDER BY id").fetchall()
    assert rows == [("", "base", "100-1099", lat, "") for lat in (0.5771, 0.5772, 0.5773, 0.5774, 0.5775)] + [
        ("", "base2", "100-1001", 0.55, "")
    ]
    assert outbox(store, "position") == [] and outbox(store, "emergency") == []
    assert st_.unmapped_fixes == 6 and "" not in st_.latest
    warnings = [r.getMessage() for r in caplog.records if "is not in any [[unit]]" in r.getMessage()]
    assert len(warnings) == 2 and "radio 100-1099" in warnings[0] and "radio = '100-1099'" in warnings[0]


def test_an_unknown_radio_raises_no_emergency_but_its_code_is_reported(core: tuple[CoreStation, Clock], store: Store) -> None:
    st_, clock = core
    send(st_, clock, rcode("U00099", 10, 1), at=1)
    send(st_, clock, rcode("U00099", 99, 2), at=2)
    assert outbox(store, "emergency") == [] and audits(store, "unit.emergency") == []
    assert [p["status"] for _, p, *_ in outbox(store, "radio")] == [10, 99]


def test_radio_status_config() -> None:
    from alkomd.daemon.config import RadioStatusConfig

    assert RadioStatusConfig().emergency == (99,) and RadioStatusConfig().statuses() == {}
    rs = RadioStatusConfig(available=(10, 11), onscene=(30,))
    assert rs.statuses() == {10: "available", 11: "available", 30: "onscene"}
    assert FleetSyncOptions(url="/dev/null").silent_after_s == 900.0  # a base radio is quiet between reports


@pytest.mark.parametrize(
    ("table", "key", "message"),
    [
        ({"emergency": [99], "available": [99]}, "radio_status.available", "also in radio_status.emergency"),
        ({"enroute": [20], "onscene": [21, 20]}, "radio_status.onscene", "code 20"),
        ({"emergency": [1000]}, "radio_status.emergency", ""),
        ({"available": ["10"]}, "radio_status.available", ""),
        ({"panic": [99]}, "radio_status.panic", ""),
    ],
)
def test_bad_radio_status_tables_are_config_errors(tmp_path: Path, table: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config(tmp_path, table)
    assert key in str(err.value) and message in str(err.value) and "alkomd.toml" in str(err.value)


# -- (d) a whole station: a base radio on a pty -> alkomd -> private mosquitto -------------------


def fleetsync_config(station: Station, link: Path) -> Path:
    station.dir.mkdir(parents=True, exist_ok=True)
    station.config.write_text(
        '[node]\npath = "gorontalo/kota-gorontalo"\n\n'
        f'[store]\npath = "{station.db}"\n\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {station.port}\ntls = false\nkeepalive_s = 5\nreconnect_min_s = 0.5\n'
        "reconnect_max_s = 2\nhealth_interval_s = 1\n\n"
        "[radio_status]\nemergency = [99]\navailable = [10]\nenroute = [20]\n\n"
        f'[[device]]\nid = "base"\ndriver = "fleetsync"\nurl = "{link}"\nreconnect_max_s = 1\n\n'
        '[[unit]]\nid = "HT-01"\ntype = "foot"\ndevice = "base"\nradio = "100-1001"\n\n'
        '[[unit]]\nid = "HT-02"\ntype = "foot"\nradio = "100-1002"\n\n'
        '[[unit]]\nid = "CAR-17"\ntype = "car"\nradio = "U00017"\n'
    )
    return station.config


def test_a_base_radio_end_to_end(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    link = station.dir / "ttyBASE"
    sub = subscriber_factory(broker.port)
    pty = ptys(link)
    d = daemons(fleetsync_config(station, link))
    wait_until(lambda: any(m.payload["state"] == "waiting" for m in sub.on("/device/base/status")), what="base radio open")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    lines: list[bytes] = []
    for k in range(3):  # three rounds of reports, 15 s apart in radio time
        t = t0 + timedelta(seconds=15 * k)
        lines += [
            kenwood_ds(t + timedelta(seconds=1), 0.5501 + k * 1e-4, 123.1502, "100-1001", 10, kmh=4.4, course=40),
            kenwood_ds(t + timedelta(seconds=2), 0.5223, 123.1748 + k * 1e-4, "100-1002", 10),
            kenwood_sh(t + timedelta(seconds=3), 0.5312 + k * 1e-3, 123.1205, "U00017"),
            kenwood_ds(t + timedelta(seconds=4), 0.5770, 123.2050, "100-1099", 10),  # no [[unit]] has it
            base_rmc(t),  # the base radio's own GPS (no unit: counted, not stored)
        ]
    t = t0 + timedelta(seconds=45)
    lines += [
        kenwood_id("U00017", 20),  # CAR-17 en route
        kenwood_ds(t + timedelta(seconds=2), 0.5224, 123.1760, "100-1002", 99),  # HT-02's emergency button...
        kenwood_ds(t + timedelta(seconds=17), 0.5225, 123.1761, "100-1002", 99),  # ...repeated in its reports
        kenwood_id("100-1002", 99),
        kenwood_ds(t + timedelta(seconds=20), 0.5510, 123.1502, "100-1001", 10),  # the last report: a marker
    ]
    assert pty.write(b"".join(framed(s, b"") for s in lines)) > 0  # STX ... ETX, no line ends

    wait_until(lambda: len(sub.on("/unit/HT-01/position")) == 4, what="HT-01's last position")
    wait_until(lambda: bool(sub.on("/unit/CAR-17/status")) and sub.on("/unit/CAR-17/status")[-1].payload["status"] == "enroute",
               what="CAR-17 en route")
    pos = {u: [m.payload for m in sub.on(f"/unit/{u}/position")] for u in ("HT-01", "HT-02", "CAR-17")}
    assert [len(pos[u]) for u in pos] == [4, 5, 3]
    for unit, radio in (("HT-01", "100-1001"), ("HT-02", "100-1002"), ("CAR-17", "U00017")):
        for p in pos[unit]:
            assert_valid("unit-position", p)
            assert (p["unit"], p["source"], p["fix"]) == (unit, f"base:{radio}", "2d")
    assert pos["HT-01"][0]["time"] == utc_iso(t0 + timedelta(seconds=1)) and pos["HT-01"][0]["lat"] == 0.5501
    assert pos["HT-01"][0]["speed_kmh"] == pytest.approx(4.4, abs=0.1)

    (emergency,) = [m for m in sub.on("/emergency")]  # exactly one, for three reports of code 99
    assert emergency.topic == f"{E2E_NODE}/unit/HT-02/emergency" and not emergency.retain
    e = emergency.payload
    assert_valid("unit-emergency", e)
    assert (e["unit"], e["source"], e["code"], e["lat"], e["fix_time"]) == ("HT-02", "base:100-1002", 99, 0.5224,
                                                                             utc_iso(t + timedelta(seconds=2)))

    # Three reports within a minute, always code 10: one message, or two when the first report's fix
    # and its code reached the station in two batches (first heard, then its code "changed" from none).
    # A batch's radio reports follow its positions in the outbox: HT-01's last position may come first.
    wait_until(lambda: bool(sub.on("/device/base/radio/100-1099")), what="the unknown radio's report")
    radio = sub.on("/device/base/radio/100-1099")
    assert 1 <= len(radio) <= 2, [m.payload for m in radio]
    for m in radio:
        assert_valid("device-radio", m.payload)
    last = radio[-1].payload
    assert (last["device"], last["radio"], last["status"], last["lat"], last["lon"]) == ("base", "100-1099", 10, 0.577, 123.205)
    # Retained: a console arriving later sees which radios still need a [[unit]].
    late = subscriber_factory(broker.port, client_id="late-console", topic=f"{E2E_NODE}/device/+/radio/+")
    wait_until(lambda: bool(late.on("/radio/100-1099")), what="the retained radio report")
    assert late.on("/radio/100-1099")[0].retain and late.on("/radio/100-1099")[0].payload["msg_id"] == last["msg_id"]

    assert station.query("SELECT count(*), min(device), min(radio) FROM positions WHERE unit = ''") == [(3, "base", "100-1099")]
    assert station.query("SELECT count(*) FROM positions WHERE unit = 'HT-02' AND radio = '100-1002'") == [(5,)]
    audit = station.query("SELECT id, time, kind, call_id, unit, detail, prev_hash, hash FROM audit ORDER BY id")
    assert [(r[2], r[4]) for r in audit if r[2] == "unit.emergency"] == [("unit.emergency", "HT-02")]
    assert verify(audit).ok
    assert sum("EMERGENCY from radio 100-1002" in ln for ln in d.lines) == 1
    assert sum("radio 100-1099 is not in any [[unit]]" in ln for ln in d.lines) == 1
    wait_until(lambda: bool(sub.on("/health")) and sub.on("/health")[-1].payload["devices"]["base"]["sentences"] >= 20,
               what="health counting the base radio's sentences")
    health = sub.on("/health")[-1].payload["devices"]["base"]
    assert (health["driver"], health["checksum_errors"], health["parse_errors"], health["garbage_bytes"]) == ("fleetsync", 0, 0, 0)
    assert d.stop() == 0 and "Traceback" not in d.log

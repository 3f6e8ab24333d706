"""TETRA PEI: +CTSDSR exchanges from elsewhere (tests/captures/pei/), registration, LIP end to end, fuzzing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alkomd.drivers import tetra_lip as lip
from alkomd.drivers import tetra_pei as pei
from alkomd.drivers.tetra_pei import PeiError, PeiReader, Result, Sds

CAPTURES = Path(__file__).parent / "captures" / "pei"
RECEIVED = datetime(2026, 3, 10, 8, 0, 0, tzinfo=UTC)


def _read(path: Path) -> tuple[list[dict[str, str]], list[str], list[Sds | Result], PeiReader]:
    expects: list[dict[str, str]] = []
    commands: list[str] = []
    out: list[Sds | Result] = []
    reader = PeiReader()
    for line in path.read_text().splitlines():
        if line.startswith("# expect:"):
            expects.append(dict(kv.split("=", 1) for kv in line[len("# expect:") :].split()))
        elif line.startswith("# expect-command:"):
            commands.append(line[len("# expect-command:") :].strip())
        elif not line.startswith("#"):
            got = reader.feed(line + "\r\n")
            if got is not None:
                out.append(got)
    return expects, commands, out, reader


FILES = sorted(CAPTURES.glob("*.pei"))


def test_capture_files_name_their_sources() -> None:
    assert len(FILES) >= 2
    for f in FILES:
        text = f.read_text()
        assert "Source:" in text and "Licence:" in text, f.name


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_published_exchanges(path: Path) -> None:
    expects, commands, out, _ = _read(path)
    for cmd in commands:
        assert cmd in pei.REGISTER_LIP
    messages = [m for m in out if isinstance(m, Sds)]
    assert len(messages) == len(expects), (path.name, messages)
    for m, e in zip(messages, expects, strict=True):
        assert m.radio == e["sender"]
        assert m.header.called == e["called"]
        assert m.bits == m.header.length_bits == int(e["bits"])
        assert m.header.ai_service == int(e["ai"])
        assert (m.protocol is None) if e["protocol"] == "none" else m.protocol == int(e["protocol"], 16)
        if "data" in e:
            assert m.data.hex() == e["data"]
        if "lip" in e:
            report = lip.decode_sds(m.data, m.bits)
            assert report.long == (e["lip"] == "long")
            la0, la1, lo0, lo1 = (float(v) for v in e["region"].split(","))
            assert report.lat is not None and report.lon is not None
            assert la0 <= report.lat <= la1 and lo0 <= report.lon <= lo1


def test_lip_from_the_pei_becomes_a_fix_of_the_sending_issi() -> None:
    reader = PeiReader()
    assert reader.feed("+CTSDSR: 12,2269001,0,9999,0,84\r\n") is None
    sds = reader.feed("0A112853A9FF4D4FFFE810\r\n")
    assert isinstance(sds, Sds) and sds.protocol == lip.PROTOCOL_LIP
    mapped = lip.to_records(lip.decode_sds(sds.data, sds.bits), device="tetra-pei", radio=sds.radio, received=RECEIVED, received_mono=2.0)
    assert mapped.fix is not None and mapped.fix.radio == "2269001" and mapped.fix.device == "tetra-pei"
    assert mapped.fix.lat == pytest.approx(44.93864178657532)
    assert mapped.fix.time == RECEIVED - timedelta(seconds=300)  # time elapsed code 1: "< 5 min"


def test_odd_digit_count_and_padding_follow_the_stated_length() -> None:
    # N5UWU's payload (svxlink, see captures/lip): 21 digits for 84 bits. The header is built here.
    reader = PeiReader()
    reader.feed("+CTSDSR: 12,1001,0,2002,0,84")
    sds = reader.feed("0A0BA7D5B95BC50AFFE16")
    assert isinstance(sds, Sds) and sds.data.hex() == "0a0ba7d5b95bc50affe160" and sds.radio == "1001"
    assert lip.decode_sds(sds.data, sds.bits).reason == 22
    reader.feed("+CTSDSR: 12,1001,0,2002,0,84")
    assert reader.feed("0A0BA7D5B95BC50AFF") is None and reader.dropped == 1  # fewer bits than stated


def test_a_header_without_its_data_is_dropped_and_the_next_line_read() -> None:
    reader = PeiReader()
    reader.feed("+CTSDSR: 12,1001,0,2002,0,84")
    reader.feed("")
    assert reader.feed("+CTSDSR: 12,1003,0,2002,0,84") is None and reader.dropped == 1
    sds = reader.feed("0A112853A9FF4D4FFFE810")
    assert isinstance(sds, Sds) and sds.radio == "1003"
    reader.feed("+CTSDSR: 12,1001,0,2002,0,84")
    assert reader.feed("OK") == Result(True, None, "OK") and reader.dropped == 2


def test_final_result_codes() -> None:
    reader = PeiReader()
    assert reader.feed("OK\r\n") == Result(True, None, "OK")
    assert reader.feed("ERROR") == Result(False, None, "ERROR")
    assert reader.feed("+CME ERROR: 38") == Result(False, 38, "+CME ERROR: 38")
    assert reader.feed("+CME ERROR: x") == Result(False, None, "+CME ERROR: x")
    assert reader.feed("+CTSP: 1,3,10") is None and reader.feed("AT+CTSP=1,3,10") is None


def test_register_lip_routes_protocol_10_to_the_pei() -> None:
    assert pei.REGISTER_LIP[-1] == "AT+CTSP=1,3,10" and int(pei.REGISTER_LIP[-1].rsplit(",", 1)[1]) == lip.PROTOCOL_LIP


@pytest.mark.parametrize(
    ("identity", "issi"),
    [("2269001", "2269001"), ("0000090", "90"), ("262100101234567", "1234567"), ("90110000012345", "12345"), ("16777215", "16777215")],
)
def test_issi_of_ssi_and_tsi(identity: str, issi: str) -> None:
    assert pei.issi_of(identity) == issi


@pytest.mark.parametrize("line", ["+CTSDSR:", "+CTSDSR: 12,1,0", "+CTSDSR: x,1,16", "+CTSDSR: 12,1,0,2,0,0", "+CTSDSR: 12,1,0,2,0,2048",
                                  "+CTSDSR: 12,-1,0,2,0,16", "+CTSDSR: 12,1,0,2,0,16,1,9", "CTSDSR: 12,1,16", "+CTSDSR: 12,٣,16"])
def test_bad_headers_are_typed_errors(line: str) -> None:
    with pytest.raises(PeiError):
        pei.parse_header(line)


def test_bad_identities_and_data() -> None:
    with pytest.raises(PeiError):
        pei.issi_of("99999999")
    with pytest.raises(PeiError):
        pei.issi_of("12a")
    with pytest.raises(PeiError):
        pei.user_data("0A 11", 16)
    assert pei.user_data("FFFF", 12) == b"\xff\xf0"
    reader = PeiReader()
    reader.feed("+CTSDSR: 12,99999999,0,1,0,16")
    sds = reader.feed("0A00")
    assert isinstance(sds, Sds) and sds.radio == ""  # an identity that is no ISSI names no radio


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=80), st.from_regex(r"\+CTSDSR: ?[0-9]{1,3}(,[0-9]{0,16}){2,6}", fullmatch=True),
                          st.from_regex(r"[0-9A-Fa-f]{0,70}", fullmatch=True)), max_size=12))
def test_fuzz_reader_never_raises(lines: list[str]) -> None:
    reader = PeiReader()
    for line in lines:
        got = reader.feed(line)
        if isinstance(got, Sds):
            assert 0 < got.bits <= pei.MAX_SDS_BITS and len(got.data) == (got.bits + 7) // 8
            assert got.radio == "" or 0 <= int(got.radio) <= pei.MAX_ISSI
            try:
                report = lip.decode_sds(got.data, got.bits)
            except lip.LipError:
                continue
            m = lip.to_records(report, device="d", radio=got.radio, received=RECEIVED, received_mono=0.0)
            assert m.fix is None or not (m.fix.lat == 0.0 and m.fix.lon == 0.0)

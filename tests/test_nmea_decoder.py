"""The sans-IO NMEA decoder: sentence types, epochs, validity gates, noise, counters, properties."""

from __future__ import annotations

import functools
import math
import operator
import random
from datetime import timedelta

import pynmea2
import pytest
from helpers_nmea import (
    LAT,
    LON,
    RECEIVED,
    T0,
    TALKERS,
    decode,
    gga,
    gll,
    gsa,
    gsv,
    rmc,
    utc,
    vtg,
    without_eol,
    zda,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from alkomd.daemon.records import Fix
from alkomd.drivers import nmea
from alkomd.drivers.nmea import Decoder, Framer, Reject, Verdict, check, coord
from alkomd.drivers.nmea_writer import EpochSpec, epoch, sentence

ALL_TYPES = ("RMC", "VTG", "GGA", "GSA", "GSV", "GLL", "ZDA")
UBLOX = ("RMC", "VTG", "GGA", "GSA", "GSV", "GLL")
FRAMING = b"\r\x02\x03 \t"


def spec(k: int = 0, **kw: object) -> EpochSpec:
    """Epoch k of a car driving east at 36 km/h from (LAT, LON), one epoch per second."""
    args: dict[str, object] = dict(
        time=T0 + timedelta(seconds=k), lat=LAT, lon=LON + k * 0.0001, alt=25.0,
        speed_kmh=36.0, course=87.5, hdop=0.9, sats=9,
    )
    args.update(kw)
    return EpochSpec(**args)  # type: ignore[arg-type]


def stream(n: int, types: tuple[str, ...] = UBLOX, **kw: object) -> bytes:
    return b"".join(epoch(spec(k, **kw), types) for k in range(n))


def body(s: bytes) -> bytes:
    """What the framer hands to check(): the sentence without `$` and line end."""
    return without_eol(s)[1:]


def key(f: Fix) -> tuple[object, ...]:
    return (f.time, f.lat, f.lon, f.mode, f.alt, f.speed_kmh, f.course, f.hdop, f.sats)


def assert_fix_invariants(fixes: list[Fix]) -> None:
    for f in fixes:
        assert -90.0 <= f.lat <= 90.0
        assert -180.0 <= f.lon <= 180.0
        assert f.mode in (2, 3)
        assert not (f.lat == 0.0 and f.lon == 0.0)
        for v in (f.alt, f.speed_kmh, f.course, f.hdop):
            assert v is None or math.isfinite(v)


# --- sentence types and talkers -------------------------------------------------------------


@pytest.mark.parametrize("talker", TALKERS)
@pytest.mark.parametrize("stype", ALL_TYPES)
def test_check_parses_every_type_from_every_talker(talker: str, stype: str) -> None:
    data = epoch(spec(talker=talker), (stype,))
    first = data.split(b"\r\n")[0]
    s = check(first[1:])
    assert s.verdict is Verdict.OK
    assert s.msg.talker == talker
    assert s.msg.sentence_type == stype
    assert s.raw == first


@pytest.mark.parametrize("talker", TALKERS)
def test_full_epoch_from_each_talker_gives_one_complete_fix(talker: str) -> None:
    dec, fixes = decode(epoch(spec(talker=talker), ALL_TYPES))
    assert len(fixes) == 1
    f = fixes[0]
    assert f.device == "test-gps"
    assert f.time == T0
    assert f.lat == pytest.approx(LAT, abs=2e-6)
    assert f.lon == pytest.approx(LON, abs=2e-6)
    assert f.mode == 3
    assert f.alt == pytest.approx(25.0)
    assert f.speed_kmh == pytest.approx(36.0, abs=0.01)
    assert f.course == pytest.approx(87.5)
    assert f.hdop == pytest.approx(0.9)
    assert f.sats == 9
    assert f.received == RECEIVED
    # RMC VTG GGA GSA GSVx3 GLL ZDA
    assert (dec.sentences, dec.fixes, dec.rejected_fixes) == (9, 1, 0)
    assert (dec.checksum_errors, dec.parse_errors, dec.garbage_bytes) == (0, 0, 0)


def test_southern_and_western_hemispheres_are_negative() -> None:
    _, fixes = decode(gga(T0, -6.2, -106.8) + rmc(T0, -6.2, -106.8))
    assert [(round(f.lat, 5), round(f.lon, 5)) for f in fixes] == [(-6.2, -106.8)]


@pytest.mark.parametrize(
    ("value", "hemi", "expected"),
    [
        ("0032.6100", "N", 0.5435),
        ("0032.6100", "S", -0.5435),
        ("12303.5700", "E", 123.0595),
        ("12303.5700", "W", -123.0595),
        ("", "N", None),
        ("0032.6100", "", None),
        ("0032.6100", "X", None),
        ("0060.0000", "N", None),  # 60 minutes is not a minute value
        ("abc", "N", None),
        ("-0032.61", "N", None),
        ("nan", "N", None),
    ],
)
def test_coord(value: str, hemi: str, expected: float | None) -> None:
    got = coord(value, hemi)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("value", ["inf", "-inf", "1e400", "infinity"])
def test_coord_rejects_non_finite_numbers(value: str) -> None:
    # BUG (nmea.py coord): float("inf") passes the `v < 0 or v != v` test, then int(inf // 100)
    # raises ValueError instead of returning None.
    assert coord(value, "N") is None


def test_infinite_latitude_with_valid_checksum_does_not_crash_the_decoder() -> None:
    data = sentence("GPGGA,031500.00,inf,N,12303.5700,E,1,09,0.90,25.0,M,18.5,M,,") + gga(T0 + timedelta(seconds=1))
    dec, fixes = decode(data)
    assert [f.time for f in fixes] == [T0 + timedelta(seconds=1)]
    assert dec.rejected == {Reject.OUT_OF_RANGE: 1}


@pytest.mark.parametrize("manufacturer", ["PUBX", "PTNL", "PASH", "PVTX"])
def test_bare_proprietary_sentence_does_not_crash_the_decoder(manufacturer: str) -> None:
    # BUG (nmea.py parse): pynmea2's UBX/TNL/ASH/VTX classes index data[1] in __new__ and raise
    # IndexError for a sentence with no fields; only pynmea2.ParseError is caught.
    dec, fixes = decode(sentence(manufacturer) + gga(T0))
    assert len(fixes) == 1
    assert dec.sentences + dec.parse_errors == 2


@pytest.mark.parametrize(
    "body",
    [
        "PGRME,15.0,M,45.0,M,25.0,M",  # Garmin estimated error
        "PMTK010,001",  # MediaTek start-up message
        "PMTK001,604,3",  # MediaTek command acknowledgement
        "PUBX,00,031500.00,0032.6100,N,12303.5700,E,25.0,G3,2.1,2.0,0.1,77.5,0.0,,0.9,1.2,0.8,9,0,0",
        "PUBX,41,1,0007,0003,9600,0",  # u-blox port configuration echo
        "PXYZ,1,2",  # a manufacturer pynmea2 does not know
    ],
)
def test_proprietary_sentences_are_counted_and_do_not_disturb_the_epoch(body: str) -> None:
    # BUG (uncommitted nmea.py Decoder._message): `msg.sentence_type` raises AttributeError for
    # pynmea2 proprietary classes that set no sentence_type (ProprietarySentence, UBX, MTK, ...);
    # the committed version used getattr(msg, "sentence_type", "").
    dec, fixes = decode(rmc(T0) + sentence(body) + gga(T0) + sentence(body))
    assert len(fixes) == 1
    assert fixes[0].alt == 25.0
    assert dec.sentences == 4
    assert (dec.checksum_errors, dec.parse_errors) == (0, 0)


def test_speed_overflowing_to_infinity_is_not_published() -> None:
    # 1e308 knots is finite, but * 1.852 overflows to inf: a Fix must never carry inf (JSON).
    _, fixes = decode(rmc(T0, knots="1e308") + gga(T0))
    assert all(f.speed_kmh is None or math.isfinite(f.speed_kmh) for f in fixes)


# --- epochs ----------------------------------------------------------------------------------


def test_one_fix_per_epoch_for_a_ublox_stream() -> None:
    dec, fixes = decode(stream(5))
    assert [f.time for f in fixes] == [T0 + timedelta(seconds=k) for k in range(5)]
    assert [round(f.lon, 4) for f in fixes] == [round(LON + k * 0.0001, 4) for k in range(5)]
    assert dec.fixes == 5
    assert dec.sentences == 5 * 8


def test_fields_are_merged_from_rmc_gga_and_gsa() -> None:
    data = rmc(T0, knots="10.000", course="45.50") + gga(T0, sats="07", hdop="1.40", alt="61.3") + gsa("3", hdop="9.9")
    _, [f] = decode(data)
    assert f.speed_kmh == pytest.approx(18.52)
    assert f.course == pytest.approx(45.5)
    assert (f.alt, f.sats, f.hdop, f.mode) == (61.3, 7, 1.4, 3)  # GGA's HDOP wins over GSA's


def test_gsa_mode_2_drops_the_altitude() -> None:
    _, [f] = decode(rmc(T0) + gga(T0, alt="61.3") + gsa("2"))
    assert f.mode == 2
    assert f.alt is None


def test_gsa_supplies_hdop_when_gga_has_none() -> None:
    _, [f] = decode(rmc(T0) + gsa("3", hdop="1.70"))
    assert f.hdop == pytest.approx(1.7)
    assert f.mode == 3
    assert f.alt is None  # no GGA, nothing to report


def test_vtg_supplies_speed_and_course_without_rmc() -> None:
    _, [f] = decode(gga(T0) + vtg("123.40", "42.500"))
    assert f.speed_kmh == pytest.approx(42.5)
    assert f.course == pytest.approx(123.4)


def test_rmc_speed_wins_over_vtg() -> None:
    _, [f] = decode(rmc(T0, knots="10.000", course="45.00") + vtg("90.00", "99.000") + gga(T0))
    assert f.speed_kmh == pytest.approx(18.52)
    assert f.course == pytest.approx(45.0)


def test_gga_only_stream() -> None:
    dec, fixes = decode(stream(4, ("GGA",)))
    assert len(fixes) == 4
    for k, f in enumerate(fixes):
        assert f.time == T0 + timedelta(seconds=k)  # date taken from the wall clock
        assert (f.mode, f.alt, f.sats, f.hdop) == (3, 25.0, 9, 0.9)
        assert f.speed_kmh is None and f.course is None
    assert dec.rejected_fixes == 0


def test_gll_only_stream() -> None:
    _, fixes = decode(stream(4, ("GLL",)))
    assert [f.time for f in fixes] == [T0 + timedelta(seconds=k) for k in range(4)]
    assert all(f.mode == 2 and f.alt is None and f.hdop is None for f in fixes)
    assert fixes[3].lon == pytest.approx(LON + 0.0003, abs=2e-6)


def test_rmc_only_stream_uses_the_rmc_date() -> None:
    received = utc(2024, 5, 20, 12, 0, 0)  # six days later: the date must come from RMC
    _, fixes = decode(stream(3, ("RMC",)), received)
    assert [f.time for f in fixes] == [T0 + timedelta(seconds=k) for k in range(3)]
    assert all(f.mode == 2 and f.alt is None for f in fixes)
    assert all(f.speed_kmh == pytest.approx(36.0, abs=0.01) for f in fixes)


def test_zda_date_is_used() -> None:
    t = utc(2024, 5, 10, 3, 15, 0)
    _, [f] = decode(gga(t) + zda(t), utc(2024, 5, 14, 3, 16, 0))
    assert f.time == t


def test_midnight_rollover_in_a_gga_only_stream() -> None:
    dec = Decoder("radio")
    start = utc(2024, 5, 14, 23, 59, 58)
    times = []
    for k in range(4):
        t = start + timedelta(seconds=k)
        times += [f.time for f in dec.feed(gga(t), t + timedelta(milliseconds=300), float(k))]
    times += [f.time for f in dec.flush()]
    assert times == [start + timedelta(seconds=k) for k in range(4)]
    assert times[2] == utc(2024, 5, 15, 0, 0, 0)


@pytest.mark.parametrize("skew", [timedelta(seconds=-5), timedelta(seconds=5)])
def test_gga_only_date_guess_tolerates_a_skewed_wall_clock(skew: timedelta) -> None:
    for t in (utc(2024, 5, 14, 23, 59, 59), utc(2024, 5, 15, 0, 0, 1)):
        _, [f] = decode(gga(t), t + skew)
        assert f.time == t


def test_date_carried_from_an_earlier_epoch_rolls_over_at_midnight() -> None:
    # BUG (nmea.py Decoder._when): a date seen once (RMC or a slow ZDA) is reused verbatim for
    # later epochs without one, so the first GGA after midnight is dated 24 h in the past.
    dec = Decoder("radio")
    start = utc(2024, 5, 14, 23, 59, 58)
    fixes = dec.feed(gga(start) + zda(start), start, 0.0)
    for k in range(1, 4):
        t = start + timedelta(seconds=k)
        fixes += dec.feed(gga(t), t + timedelta(milliseconds=300), float(k))
    fixes += dec.flush()
    assert [f.time for f in fixes] == [start + timedelta(seconds=k) for k in range(4)]


def test_after_the_first_epoch_the_fix_comes_with_the_cycle_ending_sentence() -> None:
    dec = Decoder("car")
    assert dec.feed(epoch(spec(0)), RECEIVED, 0.0) == []  # cycle not learnt yet
    # Epoch 1's first sentence closes epoch 0, its GLL (the learnt end of cycle) closes epoch 1.
    assert [f.time for f in dec.feed(epoch(spec(1)), RECEIVED, 1.0)] == [T0, T0 + timedelta(seconds=1)]
    assert [f.time for f in dec.feed(epoch(spec(2)), RECEIVED, 2.0)] == [T0 + timedelta(seconds=2)]
    assert dec.flush() == []  # nothing left open: no duplicate


def test_cycle_ending_gsv_closes_only_on_its_last_part() -> None:
    dec = Decoder("car")
    types = ("RMC", "GGA", "GSA", "GSV")  # 9 satellites: three GSV parts
    dec.feed(epoch(spec(0), types), RECEIVED, 0.0)
    lines = epoch(spec(1), types).splitlines(keepends=True)
    assert len(dec.feed(b"".join(lines[:-1]), RECEIVED, 1.0)) == 1  # epoch 0 only
    assert [f.time for f in dec.feed(lines[-1], RECEIVED, 1.0)] == [T0 + timedelta(seconds=1)]


def test_gga_only_stream_emits_each_fix_on_arrival_after_the_first() -> None:
    dec = Decoder("radio")
    got = [len(dec.feed(gga(T0 + timedelta(seconds=k)), RECEIVED, float(k))) for k in range(4)]
    assert got == [0, 2, 1, 1]


def test_one_lost_sentence_does_not_shorten_the_learnt_cycle_for_good() -> None:
    # A radio line sends RMC then GGA; one GGA arrives with a bad checksum (or the port was
    # opened in the middle of it). That epoch is RMC-only, and the next may be emitted early
    # while the cycle is relearnt, but after that every fix must have GGA's altitude again.
    # BUG (nmea.py Decoder._message): the RMC-only epoch teaches ender = RMC; from then on every
    # epoch is emitted at its RMC, its GGA is dropped as "late" without updating last_type, so
    # the cycle is never relearnt: all later fixes are 2D without alt/sats/hdop until restart.
    # Fix: in the `elif ep.emitted:` branch set `ep.last_type = stype` before returning.
    data = b""
    for k in range(8):
        t = T0 + timedelta(seconds=k)
        g = gga(t)
        if k == 2:
            g = without_eol(g)[:-2] + f"{int(without_eol(g)[-2:], 16) ^ 0x01:02X}".encode() + b"\r\n"
        data += rmc(t) + g
    dec, fixes = decode(data)
    assert dec.checksum_errors == 1
    assert [f.time for f in fixes] == [T0 + timedelta(seconds=k) for k in range(8)]
    assert fixes[2].mode == 2 and fixes[2].alt is None  # the epoch whose GGA was lost
    assert [(f.mode, f.alt, f.sats) for f in fixes[4:]] == [(3, 25.0, 9)] * 4


def test_repeated_sentence_of_an_emitted_epoch_gives_no_second_fix() -> None:
    dec, fixes = decode(stream(2, ("RMC", "GGA")) + gga(T0 + timedelta(seconds=1)))
    assert len(fixes) == 2
    assert dec.fixes == 2


def test_close_epoch_emits_the_open_epoch_once() -> None:
    dec = Decoder("car")
    assert dec.feed(epoch(spec(0)), RECEIVED, 0.0) == []
    assert [f.time for f in dec.close_epoch()] == [T0]
    assert dec.close_epoch() == []
    assert dec.flush() == []


# --- validity gates: no phantom fixes --------------------------------------------------------


def assert_rejected(data: bytes, reason: Reject, **kw: object) -> None:
    dec, fixes = decode(data, **kw)  # type: ignore[arg-type]
    assert fixes == []
    assert dec.fixes == 0
    assert dec.rejected == {reason: 1}
    assert dec.last_reject is reason


def test_rmc_status_v_is_rejected_even_with_coordinates() -> None:
    assert_rejected(rmc(T0, status="V", mode="N"), Reject.RMC_VOID)
    assert_rejected(rmc(T0, status="V"), Reject.RMC_VOID)


@pytest.mark.parametrize("quality", ["0", "6", "7", "8", ""])
def test_gga_quality_that_is_not_a_real_fix_is_rejected(quality: str) -> None:
    assert_rejected(gga(T0, quality=quality), Reject.GGA_NO_FIX)
    assert_rejected(rmc(T0) + gga(T0, quality=quality), Reject.GGA_NO_FIX)


@pytest.mark.parametrize("quality", ["1", "2", "3", "4", "5"])
def test_gga_quality_1_to_5_is_accepted(quality: str) -> None:
    _, fixes = decode(gga(T0, quality=quality))
    assert len(fixes) == 1


def test_empty_coordinates_never_give_a_fix_at_null_island() -> None:
    assert_rejected(rmc(T0, None, None), Reject.NO_POSITION)
    assert_rejected(gga(T0, None, None), Reject.NO_POSITION)
    assert_rejected(gll(T0, None, None), Reject.NO_POSITION)
    dec, fixes = decode(rmc(T0, LAT, None) + gga(T0, None, LON))  # half a position
    assert fixes == []
    assert dec.rejected_fixes == 1


def test_receiver_without_fix_gives_no_fix_for_a_whole_stream() -> None:
    dec, fixes = decode(stream(10, valid=False))
    assert fixes == []
    assert dec.rejected == {Reject.RMC_VOID: 10}
    assert dec.sentences == 10 * 8


@pytest.mark.parametrize("mode", ["N", "E", "S", "M"])
def test_rmc_mode_indicator_other_than_a_real_fix_is_rejected(mode: str) -> None:
    assert_rejected(rmc(T0, mode=mode) + gga(T0), Reject.BAD_MODE)


@pytest.mark.parametrize("mode", ["A", "D", "F", "R", "P", ""])
def test_rmc_good_mode_indicators_are_accepted(mode: str) -> None:
    _, fixes = decode(rmc(T0, mode=mode))
    assert len(fixes) == 1


def test_gll_status_v_and_gll_and_vtg_mode_n_are_rejected() -> None:
    assert_rejected(gll(T0, status="V"), Reject.GLL_VOID)
    assert_rejected(gll(T0, mode="N"), Reject.BAD_MODE)
    assert_rejected(gga(T0) + vtg(mode="E"), Reject.BAD_MODE)


def test_gsa_fix_type_1_is_rejected() -> None:
    assert_rejected(rmc(T0) + gga(T0) + gsa("1"), Reject.GSA_NO_FIX)


def test_hdop_above_max_hdop_is_rejected() -> None:
    assert_rejected(gga(T0, hdop="25.0"), Reject.HDOP)
    assert_rejected(rmc(T0) + gsa("3", hdop="25.0"), Reject.HDOP)
    _, fixes = decode(gga(T0, hdop="25.0"), max_hdop=30.0)
    assert [f.hdop for f in fixes] == [25.0]
    _, fixes = decode(gga(T0, hdop="20.0"))  # the bound itself is allowed
    assert len(fixes) == 1


@pytest.mark.parametrize(("lat", "lon"), [(91.0, LON), (-91.0, LON), (LAT, 181.0), (LAT, -180.5)])
def test_coordinates_out_of_range_are_rejected(lat: float, lon: float) -> None:
    assert_rejected(gga(T0, lat, lon), Reject.OUT_OF_RANGE)
    assert_rejected(rmc(T0, lat, lon), Reject.OUT_OF_RANGE)


def test_fix_dated_more_than_a_day_in_the_future_is_rejected() -> None:
    future = T0 + timedelta(days=2)
    assert_rejected(rmc(future) + gga(future), Reject.FUTURE)
    soon = RECEIVED + timedelta(hours=1)  # a receiver clock an hour ahead is not "the future"
    _, fixes = decode(rmc(soon) + gga(soon))
    assert [f.time for f in fixes] == [soon.replace(microsecond=0)]


def test_rejected_epoch_does_not_leak_into_the_next() -> None:
    data = rmc(T0, status="V") + gga(T0, quality="0")
    data += rmc(T0 + timedelta(seconds=1)) + gga(T0 + timedelta(seconds=1))
    dec, fixes = decode(data)
    assert [f.time for f in fixes] == [T0 + timedelta(seconds=1)]
    assert dec.rejected == {Reject.RMC_VOID: 1}


def test_untimed_sentences_of_a_receiver_without_time_do_not_pile_up() -> None:
    # A cold receiver sends empty time fields for minutes. The serial driver closes the epoch
    # when the line goes quiet (close_epoch); the decoder must not keep every GSA/VTG since.
    # BUG (nmea.py Decoder._message): after the "" epoch is closed, every GSA/VTG is appended to
    # _pending, which is only cleared when an epoch with a *different* time starts; without
    # close_epoch the "" epoch itself collects a Reject per sentence in ep.rejects instead.
    nofix = (
        sentence("GPRMC,,V,,,,,,,,,,N") + sentence("GPVTG,,T,,M,,N,,K,N")
        + sentence("GPGGA,,,,,,0,00,99.99,,,,,,") + sentence("GPGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99")
    )
    dec = Decoder("cold")
    for k in range(500):
        assert dec.feed(nofix, RECEIVED, float(k)) == []
        assert dec.close_epoch() == []
    assert len(dec._pending) <= 10
    dec = Decoder("cold")
    for k in range(500):
        assert dec.feed(nofix, RECEIVED, float(k)) == []
    assert dec._epoch is not None and len(dec._epoch.rejects) <= 10


# --- noise -----------------------------------------------------------------------------------


def test_nul_bytes_are_garbage_but_sentences_still_decode() -> None:
    dec, fixes = decode(b"\x00" * 5 + gga(T0) + b"\x00\x00\n" + gga(T0 + timedelta(seconds=1)))
    assert len(fixes) == 2
    assert dec.garbage_bytes == 7
    assert (dec.checksum_errors, dec.parse_errors) == (0, 0)


def test_stx_etx_framing_still_decodes_and_is_not_garbage() -> None:
    data = b"".join(b"\x02" + without_eol(s) + b"\x03\r\n" for s in (rmc(T0), gga(T0)))
    data += b"\x02" + without_eol(gga(T0 + timedelta(seconds=1))) + b"\x03\x02\r\n\x03"
    dec, fixes = decode(data)
    assert [f.time for f in fixes] == [T0, T0 + timedelta(seconds=1)]
    assert fixes[0].speed_kmh == 0.0 and fixes[0].alt == 25.0
    assert (dec.sentences, dec.garbage_bytes, dec.checksum_errors, dec.parse_errors) == (3, 0, 0, 0)


def test_binary_garbage_line_is_counted_and_the_next_sentence_parsed() -> None:
    junk = bytes(range(0x80, 0x100))
    dec, fixes = decode(junk + b"\r\n" + gga(T0))
    assert len(fixes) == 1
    assert dec.garbage_bytes == 128
    assert dec.sentences == 1


def test_double_dollar_resyncs() -> None:
    dec, fixes = decode(b"$" + gga(T0) + b"$$" + gga(T0 + timedelta(seconds=1)))
    assert len(fixes) == 2
    assert (dec.sentences, dec.checksum_errors, dec.parse_errors, dec.garbage_bytes) == (2, 0, 0, 0)


def test_truncated_sentence_then_valid_one_on_the_same_line() -> None:
    dec, fixes = decode(b"$GPGGA,031459.00,0032.61" + gga(T0))
    assert [f.time for f in fixes] == [T0]
    assert (dec.sentences, dec.checksum_errors) == (1, 1)


def test_two_sentences_on_one_line() -> None:
    dec, fixes = decode(without_eol(rmc(T0, knots="5.000")) + gga(T0))
    assert len(fixes) == 1
    assert fixes[0].speed_kmh == pytest.approx(9.26)
    assert fixes[0].alt == 25.0
    assert dec.sentences == 2


def test_lines_with_only_carriage_returns_are_ignored() -> None:
    dec, fixes = decode(b"\r\n\r\r\n" + gga(T0) + b"\r\n\n\r\n" + gga(T0 + timedelta(seconds=1)) + b"\r")
    assert len(fixes) == 2
    assert (dec.garbage_bytes, dec.checksum_errors, dec.parse_errors) == (0, 0, 0)


def test_sentences_terminated_by_carriage_return_only() -> None:
    data = stream(10, ("RMC", "GGA")).replace(b"\r\n", b"\r")
    _, fixes = decode(data[i : i + 64] for i in range(0, len(data), 64))
    assert len(fixes) == 10


def test_missing_checksum_is_a_checksum_error() -> None:
    s = without_eol(gga(T0))[:-3] + b"\r\n"
    assert check(s[1:-2]).verdict is Verdict.NO_CHECKSUM
    dec, fixes = decode(s)
    assert fixes == []
    assert (dec.checksum_errors, dec.sentences, dec.rejected_fixes) == (1, 0, 0)


def test_wrong_checksum_is_a_checksum_error() -> None:
    s = without_eol(gga(T0))
    cs = int(s[-2:], 16)
    bad = s[:-2] + f"{cs ^ 0x01:02X}".encode() + b"\r\n"
    assert check(body(bad)).verdict is Verdict.BAD_CHECKSUM
    dec, fixes = decode(bad + rmc(T0 + timedelta(seconds=1)))
    assert [f.time for f in fixes] == [T0 + timedelta(seconds=1)]
    assert (dec.checksum_errors, dec.sentences) == (1, 1)


def test_lowercase_hex_checksum_is_accepted() -> None:
    for k in range(60):
        s = without_eol(gga(T0 + timedelta(seconds=k)))
        if any(c in b"ABCDEF" for c in s[-2:]):
            break
    lower = s[:-2] + s[-2:].lower() + b"\r\n"
    assert lower != s + b"\r\n"
    dec, fixes = decode(lower)
    assert len(fixes) == 1
    assert dec.checksum_errors == 0


def test_bytes_after_the_checksum_are_a_parse_error() -> None:
    s = without_eol(gga(T0)) + b"XY\r\n"
    assert check(body(s)).verdict is Verdict.UNPARSABLE
    dec, _ = decode(s)
    assert dec.parse_errors == 1


def test_unknown_sentence_type_counts_as_sentence_and_unknown() -> None:
    dec, fixes = decode(sentence("GPXYZ,1,2,3") + gga(T0))
    assert len(fixes) == 1
    assert (dec.sentences, dec.unknown, dec.parse_errors) == (2, 1, 0)


def _blob(n: int) -> bytes:
    rng = random.Random(64)
    out = bytearray()
    while len(out) < n:
        b = rng.randrange(256)
        if b not in b"$\n" and b not in FRAMING:
            out.append(b)
    return bytes(out)


@pytest.mark.parametrize("chunk", [65536, 4096, 100, 1])
def test_64k_blob_without_newline_keeps_memory_bounded(chunk: int) -> None:
    blob = _blob(65536)
    dec = Decoder("noisy")
    for i in range(0, len(blob), chunk):
        assert dec.feed(blob[i : i + chunk], RECEIVED, 0.0) == []
        assert len(dec.framer._pending) <= nmea.MAX_PENDING
    fixes = dec.feed(b"\n" + stream(2, ("RMC", "GGA")), RECEIVED, 0.0) + dec.flush()
    assert dec.garbage_bytes == 65536
    assert len(fixes) == 2
    assert (dec.checksum_errors, dec.parse_errors) == (0, 0)


def test_sentence_right_after_a_blob_on_the_same_line_is_parsed() -> None:
    dec, fixes = decode(_blob(65536) + stream(2, ("RMC", "GGA")))
    assert len(fixes) == 2
    assert dec.garbage_bytes == 65536


def test_long_line_keeps_its_last_sentence_start() -> None:
    framer = Framer()
    s = without_eol(gga(T0))
    assert framer.feed(_blob(1000) + s[:30]) == []
    assert framer._pending == s[:30]
    assert framer.garbage_bytes == 1000
    assert framer.feed(s[30:] + b"\r\n") == [s[1:]]


def test_framer_flush_returns_a_last_sentence_without_newline() -> None:
    framer = Framer()
    s = without_eol(gga(T0))
    assert framer.feed(s) == []
    assert framer.flush() == [s[1:]]
    assert framer.flush() == []


def test_valid_sentences_after_every_kind_of_noise_are_parsed() -> None:
    noise = [
        b"\x00\x00\x00\r\n",
        b"\x02\x03\r\n",
        bytes(range(0x80, 0xA0)) + b"\r\n",
        b"$$$\r\n",
        b"$GPGGA,0315\r\n",
        b"$GPRMC,031500.00,A,0032.61*FF\r\n",
        b"\r\r\r\n",
    ]
    data = b"".join(n + epoch(spec(k), ("RMC", "GGA")) for k, n in enumerate(noise))
    dec, fixes = decode(data)
    assert [f.time for f in fixes] == [T0 + timedelta(seconds=k) for k in range(len(noise))]
    assert dec.sentences == 2 * len(noise)


# --- counters --------------------------------------------------------------------------------


def test_counters_have_exact_values() -> None:
    t = [T0 + timedelta(seconds=k) for k in range(4)]
    good_gga = without_eol(gga(t[1]))
    bad_checksum = good_gga[:-2] + (b"00" if good_gga[-2:] != b"00" else b"11") + b"\r\n"
    no_checksum = good_gga[:-3] + b"\r\n"
    non_ascii = b"GPGGA,\xff"
    data = b"".join([
        rmc(t[0]), gga(t[0]),
        bad_checksum,                                   # checksum error 1
        rmc(t[1]), gga(t[1]),
        no_checksum,                                    # checksum error 2
        b"hello world\r\n",                             # 11 garbage bytes
        without_eol(gga(t[2])) + b"ZZ\r\n",             # parse error 1 (bytes after *hh)
        sentence("GP-GA,1,2"),                          # parse error 2 (bad header)
        b"$" + non_ascii + b"*" + f"{_xor(non_ascii):02X}".encode() + b"\r\n",  # parse error 3
        sentence("GPXYZ,1"),                            # unknown, still a sentence
        sentence("PGRME,15.0,M,45.0,M,25.0,M"),         # proprietary, a sentence
        rmc(t[2]), gga(t[2]),
        rmc(t[3], status="V"), gga(t[3], quality="0"),  # rejected epoch
    ])
    dec, fixes = decode(data)
    assert len(fixes) == 3
    assert dec.sentences == 10
    assert dec.checksum_errors == 2
    assert dec.parse_errors == 3
    assert dec.unknown == 1
    assert dec.garbage_bytes == 11
    assert dec.fixes == 3
    assert dec.rejected_fixes == 1
    assert dec.rejected == {Reject.RMC_VOID: 1}


def _xor(data: bytes) -> int:
    out = 0
    for b in data:
        out ^= b
    return out


def test_on_sentence_sees_every_candidate_with_its_verdict() -> None:
    seen: list[Verdict] = []
    dec = Decoder("x", on_sentence=lambda s: seen.append(s.verdict))
    good = without_eol(gga(T0))
    bad = good[:-2] + f"{int(good[-2:], 16) ^ 0x10:02X}".encode() + b"\r\n"
    dec.feed(gga(T0) + bad + b"$GPGGA\r\n" + without_eol(gga(T0)) + b"XY\r\n" + sentence("GPXYZ,1"), RECEIVED, 0.0)
    assert seen == [Verdict.OK, Verdict.BAD_CHECKSUM, Verdict.NO_CHECKSUM, Verdict.UNPARSABLE, Verdict.UNKNOWN]


def test_byte_by_byte_gives_the_same_fixes_and_counters_as_whole() -> None:
    data = b"\x00junk\r\n" + stream(4) + b"$GPGGA,03\r\n" + stream(2, ("GGA", "ZDA"))
    data += b"\x02" + without_eol(gga(T0 + timedelta(seconds=9))) + b"\x03\r\n"
    whole_dec, whole = decode(data)
    byte_dec, bytewise = decode(data[i : i + 1] for i in range(len(data)))
    assert len(whole) == 7  # 4 + 2 (GGA+ZDA repeat seconds 0-1: new epochs all the same) + 1
    assert [key(f) for f in bytewise] == [key(f) for f in whole]
    for name in ("sentences", "checksum_errors", "parse_errors", "garbage_bytes", "fixes", "rejected_fixes"):
        assert getattr(byte_dec, name) == getattr(whole_dec, name), name


# --- properties ------------------------------------------------------------------------------

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PIECES = [
    b"$", b"\n", b"\r\n", b"*", b",", b"\x02", b"\x03", b"\x00", b"$GPGGA,", b"$GNRMC,", b"*4F",
    gga(T0), rmc(T0), gll(T0), gsa("3"), vtg(), zda(T0), gsv(3, 1),
]
noisy_chunks = st.lists(st.one_of(st.binary(max_size=80), st.sampled_from(PIECES)), max_size=40)


@SETTINGS
@given(st.binary(max_size=4096))
def test_property_any_bytes_never_raise_and_fixes_are_sane(data: bytes) -> None:
    _, fixes = decode(data)
    assert_fix_invariants(fixes)


@SETTINGS
@given(noisy_chunks)
def test_property_noisy_chunks_never_raise_and_fixes_are_sane(chunks: list[bytes]) -> None:
    dec, fixes = decode(chunks)
    assert_fix_invariants(fixes)
    assert dec.fixes == len(fixes)


HEADERS = ["GPGGA", "GNRMC", "GPGLL", "GPGSA", "GPVTG", "GPZDA", "GPGSV", "GPTXT", "PUBX", "PTNL", "PASH", "PGRME"]
FIELD = st.one_of(
    st.text(alphabet="0123456789.-+NSEWAVDMT", max_size=12),
    st.sampled_from(["", "inf", "-inf", "nan", "1e308", "-1", "99999.9999", "9100.0000", "18100.0000", "A", "V", "1", "3"]),
)
checksummed = st.builds(
    lambda head, fields: sentence(",".join([head, *fields]) if fields else head),
    st.sampled_from(HEADERS),
    st.lists(FIELD, max_size=20),
)


@SETTINGS
@given(st.lists(checksummed, max_size=30))
@example([sentence("GPGGA,031500.00,inf,N,12303.5700,E,1,09,0.90,25.0,M,,M,,")])
@example([sentence("PUBX")])
@example([sentence("GPRMC,031500.00,A,0032.6100,N,12303.5700,E,1e308,0,140524,,,A")])
def test_property_checksummed_nonsense_never_raises_and_fixes_are_sane(sentences: list[bytes]) -> None:
    # Random bytes almost never carry a valid checksum; these do, so the field parsers are reached.
    _, fixes = decode(b"".join(sentences))
    assert_fix_invariants(fixes)


garbage_line = st.binary(max_size=100).filter(lambda b: b"$" not in b and b"\n" not in b)
epoch_spec = st.builds(
    lambda lat, lon, spd, crs, alt: (lat, lon, spd, crs, alt),
    st.floats(-89.9, 89.9),
    st.floats(-179.9, 179.9),
    st.floats(0, 200),
    st.floats(0, 359.9),
    st.floats(-100, 4000),
)


@SETTINGS
@given(st.lists(epoch_spec, min_size=1, max_size=6), st.data())
def test_property_garbage_between_sentences_does_not_change_the_fixes(specs: list[tuple[float, ...]], data: st.DataObject) -> None:
    parts: list[bytes] = []
    garbage = 0
    for k, (lat, lon, spd, crs, alt) in enumerate(specs):
        e = EpochSpec(T0 + timedelta(seconds=k), lat, lon, alt=alt, speed_kmh=spd, course=crs)
        for line in epoch(e).splitlines(keepends=True):
            junk = data.draw(garbage_line)
            garbage += sum(len(piece.strip(FRAMING)) for piece in junk.replace(b"\r", b"\n").replace(b"\x03", b"\n").split(b"\n"))
            parts.append(junk + line)
    dec, fixes = decode(b"".join(parts))
    assert len(fixes) == len(specs)
    for f, (k, (lat, lon, spd, crs, alt)) in zip(fixes, enumerate(specs), strict=True):
        assert f.time == T0 + timedelta(seconds=k)
        assert f.lat == pytest.approx(lat, abs=2e-6)
        assert f.lon == pytest.approx(lon, abs=2e-6)
        assert f.alt == pytest.approx(alt, abs=0.051)
        assert f.speed_kmh == pytest.approx(spd, abs=0.002)
        assert f.course == pytest.approx(crs, abs=0.006)
        assert f.mode == 3
    assert dec.garbage_bytes == garbage
    assert (dec.checksum_errors, dec.parse_errors) == (0, 0)


@SETTINGS
@given(st.lists(st.one_of(st.binary(max_size=1500), st.sampled_from([b"$", b"\n", b"$" * 600, b"x" * 600])), max_size=30))
def test_property_framer_pending_never_exceeds_max_pending(chunks: list[bytes]) -> None:
    framer = Framer()
    for chunk in chunks:
        framer.feed(chunk)
        assert len(framer._pending) <= nmea.MAX_PENDING


@SETTINGS
@given(st.lists(st.integers(1, 200), min_size=1, max_size=50))
def test_property_any_chunking_gives_the_same_fixes(sizes: list[int]) -> None:
    data = b"\x00\x02noise\x03\r\n" + stream(3) + b"$GPRMC,trunc" + stream(1, ("GGA",))
    _, whole = decode(data)
    chunks, i = [], 0
    for n in sizes * (len(data) // sum(sizes) + 1):
        chunks.append(data[i : i + n])
        i += n
    _, split = decode(chunks)
    assert [key(f) for f in split] == [key(f) for f in whole]
    assert len(whole) == 4


# -- the hot path agrees with pynmea2 -----------------------------------------------------------


@SETTINGS
@given(st.binary(max_size=300))
def test_checksum_fold_equals_the_per_byte_xor(payload: bytes) -> None:
    assert nmea.checksum(payload) == functools.reduce(operator.xor, payload, 0)


@SETTINGS
@given(st.lists(epoch_spec, min_size=1, max_size=3), st.sampled_from(["GP", "GN", "GL", "GA", "GB", "BD", "GQ", "QZ"]))
def test_scan_gives_the_fields_pynmea2_parse_gives(specs: list[tuple[float, ...]], talker: str) -> None:
    """The decoder's hot path (`scan`) and pynmea2.parse(check=True) agree on every sentence."""
    for k, (lat, lon, spd, crs, alt) in enumerate(specs):
        e = EpochSpec(T0 + timedelta(seconds=k), lat, lon, alt=alt, speed_kmh=spd, course=crs, talker=talker)
        for line in epoch(e, ("RMC", "VTG", "GGA", "GSA", "GSV", "GLL", "ZDA")).splitlines():
            ref = pynmea2.parse(line.decode(), check=True)
            got = nmea.scan(line[1:])
            assert got == (ref.sentence_type, ref.data)
            assert nmea.check(line[1:]).msg.data == ref.data

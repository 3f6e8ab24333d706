"""`alkomctl decode` as a technician runs it: every recorded capture gives its expected fixes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CAPTURES = sorted((Path(__file__).parent / "captures").glob("*.nmea"))


def alkomctl(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", *args], input=stdin, capture_output=True, timeout=60)


def _same(got: dict[str, object], want: dict[str, object]) -> bool:
    if got.keys() != want.keys():
        return False
    for k, v in want.items():
        g = got[k]
        if isinstance(v, float) and isinstance(g, float | int):
            if abs(g - v) > 1e-6:
                return False
        elif g != v:
            return False
    return True


@pytest.mark.parametrize("capture", CAPTURES, ids=[c.stem for c in CAPTURES])
def test_decode_json_matches_the_expected_output(capture: Path) -> None:
    """The fixes with the verdict ok (what the daemon accepts; --ok prints only those) are the expected ones."""
    r = alkomctl("decode", "--json", str(capture))
    assert r.returncode == 0, r.stderr
    every = [json.loads(line) for line in r.stdout.splitlines()]
    assert all(o.get("verdict", "ok") in {"ok", "void", "no-fix", "mode", "range", "hdop", "future"} for o in every)
    got = [{k: v for k, v in o.items() if k != "verdict"} for o in every if o.get("verdict", "ok") == "ok"]
    only = alkomctl("decode", "--json", "--ok", str(capture))
    assert [json.loads(line) for line in only.stdout.splitlines()] == [o for o in every if o.get("verdict", "ok") == "ok"]
    want = [json.loads(line) for line in capture.with_suffix(".expected.jsonl").read_text().splitlines()]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert _same(g, w), (g, w)
    assert b"sentences" in r.stderr and b"fixes" in r.stderr  # the summary goes to stderr


def test_decode_reads_standard_input_and_prints_one_line_per_fix() -> None:
    capture = next(c for c in CAPTURES if "ublox" in c.name)
    r = alkomctl("decode", "--ok", "-", stdin=capture.read_bytes())
    want = capture.with_suffix(".expected.jsonl").read_text().splitlines()
    lines = r.stdout.decode().splitlines()
    assert r.returncode == 0 and len(lines) == len(want)
    first = json.loads(want[0])
    assert lines[0].startswith(f"ok      {first['time']}") and f"{first['lat']:.7f}" in lines[0] and "3D" in lines[0]


def test_date_option_dates_a_capture_without_dates() -> None:
    capture = next(c for c in CAPTURES if "gga-only" in c.name)
    r = alkomctl("decode", "--json", "--date", "2030-01-02", str(capture))
    times = [json.loads(line)["time"] for line in r.stdout.splitlines()]
    assert times and all(t.startswith("2030-01-02") for t in times)


def test_missing_file_is_one_line_and_exit_66(tmp_path: Path) -> None:
    r = alkomctl("decode", str(tmp_path / "nope.nmea"))
    assert r.returncode == 66
    assert r.stderr.decode().count("\n") == 1 and "nope.nmea" in r.stderr.decode()


def test_garbage_only_hints_at_the_baud_rate() -> None:
    r = alkomctl("decode", "-", stdin=bytes(range(128, 256)) * 50 + b"\r\n")
    assert r.returncode == 0 and r.stdout == b""
    assert b"baud rate" in r.stderr


def test_fix_json_is_exactly_json_dumps_of_fix_dict() -> None:
    """The hand-written JSON line is byte for byte what json.dumps makes of fix_dict."""
    from datetime import UTC, datetime, timedelta

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from alkomd.daemon.ctl.decoding import fix_dict, fix_json
    from alkomd.daemon.records import Fix

    maybe = st.one_of(st.none(), st.floats(0, 1e4, allow_nan=False))

    @settings(max_examples=300, deadline=None)
    @given(st.floats(-90, 90), st.floats(-180, 180), st.sampled_from([2, 3]), maybe, maybe, maybe, maybe,
           st.one_of(st.none(), st.integers(0, 99)), st.integers(0, 10**9))
    def check(lat: float, lon: float, mode: int, alt: float | None, spd: float | None, crs: float | None,
              hdop: float | None, sats: int | None, ms: int) -> None:
        t = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
        f = Fix("d", t, lat, lon, mode, t, 0.0, alt=alt, speed_kmh=spd, course=crs, hdop=hdop, sats=sats)
        assert fix_json(f) == json.dumps(fix_dict(f), separators=(",", ":"))

    check()

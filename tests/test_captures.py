"""Regression corpus: each tests/captures/*.nmea decodes to exactly its *.expected.jsonl.

The expected format is the one `alkomctl decode --json` prints: one object per fix with time
(ISO 8601 UTC, Z), lat/lon (7 decimals), mode, alt, speed_kmh, course, hdop (2 decimals), sats,
plus `radio` for a fix a base radio relayed; `{"radio", "status"}` for a relayed status code, and
`{"radio", "heard": true}` for a radio heard keying up (a caller-ID frame, an id-only report).
Captures of real radios from elsewhere say where with a `# Region: lat_min lat_max lon_min lon_max`
line; the rest are in Provinsi Gorontalo.
Regenerate with tests/captures/make_captures.py and review the diff.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from helpers_nmea import decode_capture, read_capture, read_expected

CAPTURES = Path(__file__).parent / "captures"
FILES = sorted(CAPTURES.glob("*.nmea"))
KEYS = ["time", "lat", "lon", "mode", "alt", "speed_kmh", "course", "hdop", "sats"]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=0, abs_tol=1e-6)
    return bool(a == b)


def test_corpus_is_there() -> None:
    assert len(FILES) >= 4
    for f in FILES:
        assert f.with_name(f.name.removesuffix(".nmea") + ".expected.jsonl").is_file(), f


@pytest.mark.parametrize("capture", FILES, ids=lambda p: p.stem)
def test_capture_has_a_gpsd_style_header(capture: Path) -> None:
    meta, data = read_capture(capture)
    assert {"Name", "Device", "Place", "Date", "Notes"} <= set(meta)
    assert capture.read_bytes().startswith(b"# Name:")
    assert b"$" in data


@pytest.mark.parametrize("capture", FILES, ids=lambda p: p.stem)
def test_capture_decodes_to_its_expected_fixes(capture: Path) -> None:
    expected = read_expected(capture.with_name(capture.stem + ".expected.jsonl"))
    got = decode_capture(capture)
    assert expected, "an expected file with no fix checks nothing"
    assert len(got) == len(expected), f"{len(got)} fixes, expected {len(expected)}"
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        if "status" in e or "heard" in e:
            assert list(e) in (["radio", "status"], ["radio", "heard"]) and g == e, f"record {i + 1}: got {g}, expected {e}"
            continue
        keys = KEYS + (["radio"] if "radio" in e else [])
        assert list(e) == keys, f"line {i + 1} of the expected file has keys {list(e)}"
        assert list(g) == keys, f"record {i + 1}: got keys {list(g)}"
        diff = {k: (g[k], e[k]) for k in keys if not same(g[k], e[k])}
        assert not diff, f"fix {i + 1} ({e['time']}): got vs expected {diff}"


@pytest.mark.parametrize("capture", FILES, ids=lambda p: p.stem)
def test_capture_fixes_are_plausible(capture: Path) -> None:
    """Independent of the expected file: in Gorontalo, in time order, on the capture's date."""
    meta, _ = read_capture(capture)
    fixes = [f for f in decode_capture(capture) if "lat" in f]
    for radio in {f.get("radio") for f in fixes}:  # each radio's fixes in order (a base radio relays many)
        times = [f["time"] for f in fixes if f.get("radio") == radio]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert times[0].startswith(meta["Date"])
    lat0, lat1, lon0, lon1 = (float(v) for v in meta.get("Region", "0.3 0.8 122.7 123.4").split())  # Provinsi Gorontalo
    for f in fixes:
        assert f["time"].endswith("Z")
        assert lat0 < f["lat"] < lat1 and lon0 < f["lon"] < lon1
        assert (f["lat"], f["lon"]) != (0.0, 0.0)
        assert f["mode"] in (2, 3)
        assert (f["alt"] is None) == (f["mode"] == 2)
        assert f["hdop"] is None or 0 < f["hdop"] <= 20

"""`alkomctl decode --format lrrp|hytera|lip|owntracks` (issue 14): the sample packets of tests/captures/<format>/,
read with the daemon's decoders and gates, give the values their sources state (`# expect:` lines)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alkomd.daemon.ctl.decode_packets import Row, rows

CAPTURES = Path(__file__).parent / "captures"
SAMPLES = [(fmt, p) for fmt, ext in (("lrrp", "hex"), ("hytera", "hex"), ("lip", "hex"), ("owntracks", "jsonl"))
           for p in sorted((CAPTURES / fmt).glob(f"*.{ext}"))]


def expectations(path: Path) -> list[dict[str, str]]:
    """The `# expect:` values of each packet line, in order ({} for a packet without one)."""
    out: list[dict[str, str]] = []
    expect: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("# expect:"):
            expect = dict(kv.split("=", 1) for kv in line[len("# expect:") :].split() if "=" in kv)
        elif line.strip() and not line.startswith("#"):
            out.append(expect)
            expect = {}
    return out


@pytest.mark.parametrize(("fmt", "path"), SAMPLES, ids=[f"{f}-{p.stem}" for f, p in SAMPLES])
def test_every_sample_packet_gives_what_its_source_states(fmt: str, path: Path) -> None:
    err = io.StringIO()
    got: list[Row] = list(rows(fmt, iter(path.read_bytes().splitlines()), datetime.now(UTC), err))
    want = expectations(path)
    assert len(got) == len(want), err.getvalue()
    checked = 0
    for row, e in zip(got, want, strict=True):
        fix = e.get("fix", "")
        if "error" in e:  # the daemon refuses it; decode shows a position that names no sender, with that verdict
            assert row.verdict in ("bad", "no-radio"), (e, row)
        if fix == "yes":
            assert row.verdict == "ok", (e, row)
        elif fix.startswith(("no", "none")):
            assert row.verdict != "ok", (e, row)
        if "lat" in e and "lon" in e and fix != "none":
            tol = float(e.get("tol", "1e-6"))
            assert abs(float(row.fields["lat"]) - float(e["lat"])) <= tol + 5e-8, (e, row)  # type: ignore[arg-type]
            assert abs(float(row.fields["lon"]) - float(e["lon"])) <= tol + 5e-8, (e, row)  # type: ignore[arg-type]
            checked += 1
        if "time" in e:
            assert str(row.fields.get("time", "")).startswith(e["time"]), (e, row)
        if "tst" in e and fix == "yes":
            assert row.fields["time"] == datetime.fromtimestamp(int(e["tst"]), UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        if fmt in ("owntracks", "hytera") and "radio" in e and row.fields:
            assert row.fields.get("radio") == e["radio"], (e, row)
    assert checked or not any("lat" in e for e in want)


def test_json_has_one_object_per_position_and_the_summary_on_stderr() -> None:
    """Pass: --json prints one object per packet with a position (lat, lon, verdict; time and radio where the packet
    has them); requests and answers only count in the summary; --ok keeps the accepted ones."""
    hexfile = CAPTURES / "hytera" / "ok-dmr.hex"
    r = subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", "decode", "--format", "hytera", "--json", str(hexfile)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert objs and all({"lat", "lon", "verdict", "radio"} <= o.keys() for o in objs)
    assert objs[0] == {"lat": 47.3134183, "lon": 18.9073117, "time": "2015-10-26T18:36:48.000Z", "radio": "2167005",
                       "speed_kmh": 0.19, "course": 121.0, "result": 0, "kind": "standard-report", "verdict": "ok"}
    assert "packets:" in r.stderr and "not hytera" in r.stderr
    r = subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", "decode", "--format", "hytera", "--json", "--ok", "-"],
                       input=hexfile.read_text(), capture_output=True, text=True, timeout=60)
    assert [json.loads(line) for line in r.stdout.splitlines()] == [o for o in objs if o["verdict"] == "ok"]


def test_owntracks_topic_comment_names_the_sender_and_bad_lines_are_numbered(tmp_path: Path) -> None:
    f = tmp_path / "phone.jsonl"
    f.write_text('# topic: owntracks/budi/hp\n{"_type":"location","lat":0.5412,"lon":123.0595,"tst":1700000000}\n'
                 '{"_type":"location","lat":0.5,"lon":123.0,"tst":1700000001}\nnot json\n')
    r = subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", "decode", "--format", "owntracks", "--json", str(f)],
                       capture_output=True, text=True, timeout=60)
    a, b = (json.loads(line) for line in r.stdout.splitlines())
    assert a["radio"] == "budi/hp" and "radio" not in b and a["time"] == "2023-11-14T22:13:20.000Z"
    assert "line 4:" in r.stderr and r.returncode == 0

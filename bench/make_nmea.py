"""Deterministic generator of a large, mixed NMEA 0183 file for the decode benchmark.

What it makes: the output of a 1 Hz u-blox-like receiver in a patrol car driving around Kota
Gorontalo (about 0.45-0.65 N, 122.95-123.15 E), one epoch per second:
RMC, VTG, GGA, GSA, GSV x2-4, GLL (8.1 sentences and ~500 bytes per epoch on average, the shape
of the anchors in shared/reference/perf-anchors.md). The stream is cut into "receiver sessions"
of 200-2000 epochs, each with its own talker profile:

- GP-only receiver (GP everywhere, GPS satellites only in GSV);
- multi-GNSS receiver (GN for RMC/VTG/GGA/GSA/GLL, GSV split into GPGSV and GLGSV);
- GLONASS-only receiver (GL everywhere).

About 1% of the epochs have no fix (tunnels, urban canyons: empty position fields, RMC status V,
GGA quality 0), and about 0.5% of the lines are corrupt, in three kinds: a valid sentence with one
byte changed (bad checksum), a sentence truncated at a random point, and a line of random bytes
(binary noise as from a wrong baud rate). Every other sentence is built with
`alkomd.drivers.nmea_writer` and has a correct checksum.

How: seeded `random.Random`, so the same (sentences, seed) always gives byte-identical output.
The file is written once to a cache path (default `$ALKOMD_BENCH_CACHE` or
`/tmp/alkomd-bench/`) with a JSON sidecar holding its statistics, and reused while present.

Goal: none (this is a fixture). Run it alone to (re)create the file and print its statistics:

    /work/venv/bin/python bench/make_nmea.py [--sentences 800000] [--seed 110] [--force] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alkomd.drivers.nmea_writer import EpochSpec, epoch, sentence

GENERATOR_VERSION = 1  # bump when the output changes: cache file names carry it
DEFAULT_SENTENCES = 800_000
DEFAULT_SEED = 110
# 2024-05-14 03:15:00 UTC = 11:15 WITA, the same start as tests/helpers_nmea.py (in the past, so
# no fix is rejected as "in the future")
T0 = datetime(2024, 5, 14, 3, 15, 0, tzinfo=UTC)
HOME = (0.5435, 123.0595)  # Jl. Nani Wartabone, Kota Gorontalo
BOX = (0.45, 0.65, 122.95, 123.15)  # lat min, lat max, lon min, lon max
CORRUPT_SHARE = 0.005
NO_FIX_SHARE = 0.01
PROFILES = ("GP", "GN", "GL")
PROFILE_WEIGHTS = (0.35, 0.5, 0.15)


def cache_dir() -> Path:
    return Path(os.environ.get("ALKOMD_BENCH_CACHE", "/tmp/alkomd-bench"))


def default_path(sentences: int = DEFAULT_SENTENCES, seed: int = DEFAULT_SEED) -> Path:
    return cache_dir() / f"mixed-{sentences}-s{seed}-v{GENERATOR_VERSION}.nmea"


def _gsv(rng: random.Random, talker: str, prn0: int, n: int) -> list[bytes]:
    """The GSV group of one constellation: ceil(n/4) sentences, 4 satellites each."""
    parts = max(1, (n + 3) // 4)
    out = []
    for i in range(parts):
        sats = []
        for k in range(i * 4, min(n, i * 4 + 4)):
            snr = rng.randint(18, 48) if rng.random() > 0.1 else ""
            sats.append(f"{prn0 + k:02d},{rng.randint(5, 89):02d},{rng.randint(0, 359):03d},{snr}")
        out.append(sentence(f"{talker}GSV,{parts},{i + 1},{n:02d},{','.join(sats)}"))
    return out


def _corrupt(rng: random.Random, good: bytes) -> tuple[bytes, str]:
    """One corrupt line, derived from a valid sentence or made of noise."""
    kind = rng.choices(("checksum", "truncated", "garbage"), (0.45, 0.35, 0.2))[0]
    if kind == "checksum":
        b = bytearray(good)
        i = rng.randrange(1, max(2, b.find(b"*")))
        orig = b[i]
        while b[i] == orig or b[i] in b"$*,\r\n":
            b[i] = rng.randrange(0x30, 0x7B)
        return bytes(b), kind
    if kind == "truncated":
        return good[: rng.randrange(3, len(good) - 3)] + b"\r\n", kind
    n = rng.randrange(8, 80)
    noise = bytes(rng.randrange(256) for _ in range(n)).replace(b"\n", b"\x00")
    return noise + b"\r\n", kind


def generate(path: Path, sentences: int = DEFAULT_SENTENCES, seed: int = DEFAULT_SEED) -> dict[str, object]:
    """Write the file (atomically) and its `.json` sidecar; return the statistics."""
    rng = random.Random(seed)
    lat, lon = HOME
    course = rng.uniform(0, 360)
    speed = 30.0
    t = T0
    lines = 0
    epochs = 0
    no_fix = 0
    corrupt = {"checksum": 0, "truncated": 0, "garbage": 0}
    session_left = 0
    profile = "GP"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    nbytes = 0
    with open(tmp, "wb") as fh:
        while lines < sentences:
            if session_left <= 0:
                profile = rng.choices(PROFILES, PROFILE_WEIGHTS)[0]
                session_left = rng.randint(200, 2000)
            session_left -= 1
            # drive: speed 0-70 km/h with stops, gentle turns, bounce off the box edges
            if rng.random() < 0.01:
                speed = 0.0
            speed = min(70.0, max(0.0, speed + rng.gauss(1.0 if speed < 25 else 0.0, 3.0)))
            course = (course + rng.gauss(0, 6)) % 360
            d = speed / 3.6 / 111_320.0  # degrees per second
            lat += d * math.cos(math.radians(course))
            lon += d * math.sin(math.radians(course))
            if not BOX[0] <= lat <= BOX[1]:
                course = (180 - course) % 360
                lat = min(max(lat, BOX[0]), BOX[1])
            if not BOX[2] <= lon <= BOX[3]:
                course = (360 - course) % 360
                lon = min(max(lon, BOX[2]), BOX[3])
            valid = rng.random() >= NO_FIX_SHARE
            no_fix += not valid
            n_gps = rng.randint(5, 12)
            n_glo = rng.randint(0, 4)
            spec = EpochSpec(
                time=t, lat=lat, lon=lon, alt=rng.uniform(5, 40), speed_kmh=speed, course=course,
                hdop=round(rng.uniform(0.6, 2.5), 2), sats=n_gps + (n_glo if profile == "GN" else 0),
                valid=valid, talker="GP" if profile == "GP" else profile,
            )
            head = epoch(spec, ("RMC", "VTG", "GGA", "GSA")).split(b"\r\n")[:-1]
            ep = [s + b"\r\n" for s in head]
            if profile == "GP":
                ep += _gsv(rng, "GP", 1, n_gps)
            elif profile == "GL":
                ep += _gsv(rng, "GL", 65, n_gps)
            else:
                ep += _gsv(rng, "GP", 1, n_gps)
                if n_glo:
                    ep += _gsv(rng, "GL", 65, n_glo)
            ep.append(epoch(spec, ("GLL",)))
            for i, s in enumerate(ep):
                if rng.random() < CORRUPT_SHARE:
                    s, kind = _corrupt(rng, s)
                    corrupt[kind] += 1
                ep[i] = s
            data = b"".join(ep)
            fh.write(data)
            nbytes += len(data)
            lines += len(ep)
            epochs += 1
            t += timedelta(seconds=1)
    os.replace(tmp, path)
    stats: dict[str, object] = {
        "path": str(path),
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "lines": lines,
        "bytes": nbytes,
        "epochs": epochs,
        "no_fix_epochs": no_fix,
        "corrupt_lines": corrupt,
        "corrupt_share": round(sum(corrupt.values()) / lines, 5),
        "sentences_per_epoch": round(lines / epochs, 3),
        "bytes_per_line": round(nbytes / lines, 2),
        "first_time": T0.isoformat(),
        "last_time": (t - timedelta(seconds=1)).isoformat(),
    }
    path.with_suffix(".json").write_text(json.dumps(stats, indent=1) + "\n")
    return stats


def ensure(sentences: int = DEFAULT_SENTENCES, seed: int = DEFAULT_SEED, path: Path | None = None,
           force: bool = False, quiet: bool = False) -> tuple[Path, dict[str, object]]:
    """The file for (sentences, seed), generated only when missing; returns (path, statistics)."""
    path = path or default_path(sentences, seed)
    meta = path.with_suffix(".json")
    if not force and path.exists() and meta.exists():
        stats = json.loads(meta.read_text())
        if stats.get("bytes") == path.stat().st_size and stats.get("generator_version") == GENERATOR_VERSION:
            return path, stats
    if not quiet:
        print(f"generating {sentences} sentences into {path} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    stats = generate(path, sentences, seed)
    if not quiet:
        print(f"  done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return path, stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sentences", type=int, default=DEFAULT_SENTENCES, help="lines to write (default %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--out", type=Path, default=None, help="output path (default: the cache path)")
    p.add_argument("--force", action="store_true", help="regenerate even if the file exists")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON")
    a = p.parse_args(argv)
    _, stats = ensure(a.sentences, a.seed, a.out, a.force)
    if a.json:
        print(json.dumps(stats))
    else:
        for k, v in stats.items():
            print(f"{k:20s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

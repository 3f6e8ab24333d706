"""Can `alkomctl sniff` keep up with a saturated 115200-baud port, and what does it cost?

Goal (issue 5): sniff's decoding and its live view together cost under 10% of one core on a port
at 115200 baud sending flat out (185 sentences/s, perf-anchors: the wire is the limit).

The stream (seeded): 1 Hz epochs of a u-blox-like receiver from `nmea_writer` (RMC VTG GGA GSA
GSV x3 GLL, 8 sentences), with 1 sentence in 100 given a bad checksum and a garbage line of
high-bit noise every 50 epochs, read in 64-byte chunks (what `read(in_waiting or 1)` returns
on a busy port).

  (a) sniff: `Sniffer.feed` (line split, the decoder's slow path that builds the pynmea2 object
      of every sentence for its verdict, `Heard` records, satellites and HDOP);
  (j) sniff --json: (a) plus one JSON object per sentence, fix and garbage line, serialised;
  (b) baseline: the daemon's own `Decoder.feed` fast path on the same chunks (what the
      driver runs on the same port);
  (r) one frame of the live view: `render` of a sniffer holding 500 lines, printed by rich
      into a 120x40 console (sniff draws 4 frames a second).

(a), (j) and (b) run interleaved in each of `--repeats` repeats; the ratios are medians of
per-repeat ratios. CPU share at 115200 baud = 185 x seconds per sentence of (a) + 4 x (r).

    /work/venv/bin/python bench/bench_sniff.py [--epochs 3000] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl
from rich.console import Console

from alkomd.daemon.ctl.sniff.sniffer import Sniffer
from alkomd.daemon.ctl.sniff.view import SniffSetup, json_objects, render
from alkomd.drivers.nmea import Decoder
from alkomd.drivers.nmea_writer import EpochSpec, epoch

SENTENCES_PER_S_115200 = 185.0  # perf-anchors: 115200 baud, 8N1, ~62-byte sentences
FRAMES_PER_S = 4.0
GOAL_SHARE = 0.10
CHUNK = 64
T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def make_stream(epochs: int, seed: int = 5) -> bytes:
    rng = random.Random(seed)
    out = []
    for i in range(epochs):
        lines = epoch(EpochSpec(T0 + timedelta(seconds=i), 0.54 + i * 1e-5, 123.06 + i * 1e-5, speed_kmh=40, course=80)).split(b"\n")
        for j, line in enumerate(lines):
            if line and rng.random() < 0.01:  # a flipped checksum digit
                star = line.rindex(b"*")
                lines[j] = line[: star + 1] + (b"0" if line[star + 1 : star + 2] != b"0" else b"1") + line[star + 2 :]
        out.append(b"\n".join(lines))
        if i % 50 == 49:
            out.append(bytes(rng.randrange(128, 256) for _ in range(40)) + b"\r\n")
    return b"".join(out)


def chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def run_sniff(parts: list[bytes]) -> tuple[float, int]:
    sn = Sniffer()
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    for i, c in enumerate(parts):
        sn.feed(c, now, float(i))
    return time.perf_counter() - t0, sn.decoder.sentences + sn.decoder.checksum_errors


def run_json(parts: list[bytes]) -> tuple[float, int]:
    sn = Sniffer()
    now = datetime.now(UTC)
    sink = io.StringIO()
    t0 = time.perf_counter()
    for i, c in enumerate(parts):
        for item in sn.feed(c, now, float(i)):
            for o in json_objects(item, False):
                sink.write(json.dumps(o, separators=(",", ":")) + "\n")
    return time.perf_counter() - t0, sn.decoder.sentences + sn.decoder.checksum_errors


def run_decoder(parts: list[bytes]) -> tuple[float, int]:
    d = Decoder("bench")
    now = datetime.now(UTC)
    t0 = time.perf_counter()
    for i, c in enumerate(parts):
        d.feed(c, now, float(i))
    return time.perf_counter() - t0, d.sentences + d.checksum_errors


def frame_ms(parts: list[bytes], frames: int) -> list[float]:
    sn = Sniffer()
    now = datetime.now(UTC)
    for i, c in enumerate(parts[:2000]):
        sn.feed(c, now, float(i))
    setup = SniffSetup("/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K4Z9B-if00-port0", 115200, "8N1", False, None)
    out = []
    for _ in range(frames):
        t0 = time.perf_counter()
        Console(file=io.StringIO(), width=120, height=40, force_terminal=True).print(render(sn, setup, 10.0, 2000.0, 40))
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--epochs", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    parts = chunks(make_stream(args.epochs))
    per: dict[str, list[float]] = {"sniff": [], "json": [], "decoder": []}
    ratios: list[float] = []
    ratios_json: list[float] = []
    n = 0
    for _ in range(args.repeats):
        ts, n = run_sniff(parts)
        tj, nj = run_json(parts)
        tb, nb = run_decoder(parts)
        assert n == nj == nb, (n, nj, nb)
        per["sniff"].append(n / ts)
        per["json"].append(n / tj)
        per["decoder"].append(n / tb)
        ratios.append(tb / ts)
        ratios_json.append(tb / tj)
    frames = frame_ms(parts, args.frames)
    sniff_rate, json_rate, base_rate = (bl.median(per[k]) for k in ("sniff", "json", "decoder"))
    frame = bl.median(frames)
    share = SENTENCES_PER_S_115200 / sniff_rate + FRAMES_PER_S * frame / 1000
    share_json = SENTENCES_PER_S_115200 / json_rate
    result = {
        "machine": bl.machine(),
        "sentences": n,
        "sentences_per_s": {"sniff": round(sniff_rate), "sniff_json": round(json_rate), "daemon_decoder": round(base_rate)},
        "sniff_vs_decoder": round(bl.median(ratios), 3),
        "sniff_json_vs_decoder": round(bl.median(ratios_json), 3),
        "frame_ms": {"median": round(frame, 2), "p90": round(bl.pct(frames, 90), 2)},
        "cpu_share_at_115200": {"live_view": round(share, 4), "json": round(share_json, 4)},
        "goal_share": GOAL_SHARE,
    }
    if args.json:
        print(bl.dump_json(result))
    else:
        print(f"stream: {n} sentences ({args.epochs} epochs, 1% bad checksums, garbage lines), {CHUNK}-byte chunks")
        print(bl.table(
            ["path", "sentences/s (median)", "vs daemon decoder"],
            [["(a) sniff", bl.fmt_int(sniff_rate), f"{bl.median(ratios):.2f}x"],
             ["(j) sniff --json", bl.fmt_int(json_rate), f"{bl.median(ratios_json):.2f}x"],
             ["(b) daemon Decoder.feed", bl.fmt_int(base_rate), "1.00x"]],
        ))
        print(f"(r) live view frame: median {frame:.2f} ms, p90 {bl.pct(frames, 90):.2f} ms ({FRAMES_PER_S:g} frames/s)")
        print(f"CPU share at 115200 baud ({SENTENCES_PER_S_115200:g} sentences/s): live view {100 * share:.2f}% of a core, "
              f"--json {100 * share_json:.2f}%")
    ok = share < GOAL_SHARE and share_json < GOAL_SHARE
    print(f"GOAL {'met' if ok else 'NOT met'}: sniff at 115200 baud under {100 * GOAL_SHARE:g}% of one core "
          f"(live view {100 * share:.2f}%, --json {100 * share_json:.2f}%)", file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""CPU cost of a Kenwood FleetSync/NXDN base radio's port: the daemon's decoder, and the fleetsync driver on a pty.

Goal (issue 4): reading a base radio that relays 15 sentences/s costs under 5% of one core.

The stream (`make_stream`, seeded): a fleet of 60 radios (40 FleetSync `100-1001`..., 20 NXDN
`U00017`...) reporting in turn around Kota Gorontalo; per report 70% `$PKLDS`/`$PKNDS`
(position and status), 15% `$PKLSH`/`$PKNSH` (short position), 15% `$PKLID`/`$PKNID` (status
only); status codes mostly 10, some 20/30/40, a rare 99; every sentence framed STX ... ETX plus
CR LF (`--no-eol`: no line end); the base radio's own `$GPRMC` every 30 s of radio time (one
sentence in 450 at 15/s).

  (a)  `Decoder.feed` of `alkomd.drivers.nmea` (what the daemon runs), one chunk per sentence
       (a serial read per sentence, as at 15/s with gaps between sentences);
  (a8) the same decoder fed in 8-byte chunks (a slow port trickling: several reads per sentence);
  (b)  baseline: `pynmea2.parse(line, check=True).relayed()` per line, the lines already split
       and stripped of STX/ETX (what a reader built directly on pynmea2 would do, without the
       decoder's framing, gates and records);
  (c)  the whole `fleetsync` driver (`FleetSyncBase.run` in a thread, reading a pty with pyserial,
       with its state tracking) as in the daemon: flat out (the stream written as fast as the
       driver reads it), and paced at 15 sentences/s for `--paced-s` seconds. CPU is the
       driver thread's own (`time.thread_time`, read in the emit callback, which runs in that
       thread), so the writer's and the interpreter's other threads do not count.

(a), (a8) and (b) run interleaved in each of `--repeats` repeats; medians are reported, and the
ratio (a)/(b) is the median of per-repeat ratios. CPU share at 15/s = 15 x CPU seconds per
sentence: the fraction of one core the port costs (for (c) paced: CPU seconds per wall second,
which includes the driver's idle wake-ups between sentences).

    /work/venv/bin/python bench/bench_fleetsync.py [--sentences 60000] [--repeats 5] [--paced-s 20] [--json]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl
import pynmea2

from alkomd.daemon.records import Fix, RadioStatus, Record
from alkomd.drivers.fleetsync import FleetSyncBase, FleetSyncOptions
from alkomd.drivers.kenwood import KenwoodSentence
from alkomd.drivers.nmea import Decoder
from alkomd.drivers.nmea_writer import kenwood_ds, kenwood_id, kenwood_sh, lat_field, lon_field, sentence

RATE = 15.0  # sentences per second of a busy base radio (the figure)
GOAL_SHARE = 0.05  # of one core
T0 = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
BASE = (0.546, 123.163)  # Polres radio room


def make_stream(n: int, seed: int = 110, eol: bytes = b"\r\n") -> tuple[list[bytes], Counter[str]]:
    """`n` framed sentences of a base radio at 15/s; also how many of each type."""
    rng = random.Random(seed)
    radios = [f"100-{1001 + i}" for i in range(40)] + [f"U{17 + i:05d}" for i in range(20)]
    pos = {r: [0.45 + rng.random() * 0.2, 123.0 + rng.random() * 0.25] for r in radios}
    codes = [10] * 80 + [20] * 8 + [30] * 6 + [40] * 5 + [99]
    out: list[bytes] = []
    kinds: Counter[str] = Counter()
    for i in range(n):
        t = T0 + timedelta(seconds=i / RATE)
        if i % 450 == 0:
            la, ns = lat_field(BASE[0])
            lo, ew = lon_field(BASE[1])
            out.append(sentence(f"GPRMC,{t:%H%M%S}.00,A,{la},{ns},{lo},{ew},0.000,0.00,{t:%d%m%y},,,A"))  # unframed
            kinds["GPRMC"] += 1
            continue
        radio = radios[i % len(radios)]
        p = pos[radio]
        p[0] += rng.uniform(-2e-4, 2e-4)
        p[1] += rng.uniform(-2e-4, 2e-4)
        r = rng.random()
        if r < 0.70:
            s = kenwood_ds(t, p[0], p[1], radio, rng.choice(codes), kmh=rng.uniform(0, 60), course=rng.uniform(0, 359))
        elif r < 0.85:
            s = kenwood_sh(t, p[0], p[1], radio)
        else:
            s = kenwood_id(radio, rng.choice(codes))
        kinds[s[1:6].decode()] += 1
        out.append(b"\x02" + s.rstrip(b"\r\n") + b"\x03" + eol)
    return out, kinds


# -- (a), (a8), (b) ------------------------------------------------------------------------------


def decode(chunks: list[bytes], received: datetime) -> tuple[float, float, Decoder, Counter[str]]:
    """(wall s, CPU s) of feeding `chunks` to a fresh decoder, the decoder, and what it emitted."""
    dec = Decoder("base-radio")
    got: Counter[str] = Counter()
    feed = dec.feed
    c0, t0 = time.process_time(), time.perf_counter()
    for i, chunk in enumerate(chunks):
        for r in feed(chunk, received, float(i)):
            got[type(r).__name__] += 1
    for r in dec.flush():
        got[type(r).__name__] += 1
    return time.perf_counter() - t0, time.process_time() - c0, dec, got


def pynmea2_relayed(lines: list[str]) -> tuple[float, float, int]:
    parse = pynmea2.parse
    n = 0
    c0, t0 = time.process_time(), time.perf_counter()
    for line in lines:
        msg = parse(line, check=True)
        if isinstance(msg, KenwoodSentence) and msg.relayed() is not None:
            n += 1
    return time.perf_counter() - t0, time.process_time() - c0, n


# -- (c) the driver on a pty ---------------------------------------------------------------------


class DriverRun:
    """The fleetsync driver in a thread on a fresh pty; CPU of its thread sampled in `emit`."""

    def __init__(self, tmp: Path) -> None:
        self.pty = bl.Pty.create(tmp / "ttyBASE")
        self.driver = FleetSyncBase("base-radio", FleetSyncOptions(url=str(self.pty.link), baud=115200))
        self.stop = threading.Event()
        self.opened = threading.Event()
        self.marks: list[tuple[float, float, int]] = []  # (thread CPU s, wall s, sentences decoded)
        self.records: Counter[str] = Counter()
        self.thread = threading.Thread(target=self.driver.run, args=(self.stop, self._emit), daemon=True)

    def _emit(self, record: Record) -> None:  # runs in the driver's thread
        self.records[type(record).__name__] += 1
        if isinstance(record, Fix | RadioStatus):
            self.marks.append((time.thread_time(), time.perf_counter(), self.driver.decoder.sentences))
        else:
            self.opened.set()  # its first DeviceStatus: the port is open

    def __enter__(self) -> DriverRun:
        self.thread.start()
        if not self.opened.wait(10):
            raise RuntimeError("the fleetsync driver did not open the pty")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.pty.close()

    def wait_for(self, sentences: int, timeout: float) -> None:
        end = time.monotonic() + timeout
        while self.driver.decoder.sentences < sentences and time.monotonic() < end:
            time.sleep(0.01)
        if self.driver.decoder.sentences < sentences:
            raise RuntimeError(f"the driver decoded {self.driver.decoder.sentences} of {sentences} sentences")

    def window(self) -> tuple[float, float, int]:
        """(thread CPU s, wall s, sentences) between the first and the last record."""
        (c0, w0, s0), (c1, w1, s1) = self.marks[0], self.marks[-1]
        return c1 - c0, w1 - w0, s1 - s0


def driver_flat_out(framed: list[bytes]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="alkomd-bench-fleetsync-") as tmp, DriverRun(Path(tmp)) as run:
        data = b"".join(framed)
        for i in range(0, len(data), 4096):  # blocking writes: the pty holds ~4 KB, the driver drains it
            os.write(run.pty.master, data[i : i + 4096])
        run.wait_for(len(framed), 120)
        cpu, wall, n = run.window()
        return {"sentences": n, "cpu_s": cpu, "wall_s": wall, "cpu_us_per_sentence": cpu / n * 1e6,
                "share_at_15": RATE * cpu / n, "errors": run.driver.decoder.parse_errors + run.driver.decoder.checksum_errors}


def driver_paced(framed: list[bytes], seconds: float) -> dict[str, float]:
    n = int(seconds * RATE)
    with tempfile.TemporaryDirectory(prefix="alkomd-bench-fleetsync-") as tmp, DriverRun(Path(tmp)) as run:
        start = time.perf_counter()
        for i in range(n):
            os.write(run.pty.master, framed[i % len(framed)])
            ahead = start + (i + 1) / RATE - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        run.wait_for(n, 10)
        cpu, wall, got = run.window()
        return {"sentences": got, "cpu_s": cpu, "wall_s": wall, "rate": got / wall if wall else 0.0, "share": cpu / wall,
                "errors": run.driver.decoder.parse_errors + run.driver.decoder.checksum_errors}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sentences", type=int, default=60_000, help="length of the synthetic stream (default %(default)s)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--paced-s", type=float, default=20.0, help="seconds of the paced driver run (default %(default)s)")
    p.add_argument("--driver-sentences", type=int, default=20_000, help="sentences of the flat-out driver run")
    p.add_argument("--no-eol", action="store_true", help="frame sentences STX ... ETX without CR LF")
    p.add_argument("--seed", type=int, default=110)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)

    framed, kinds = make_stream(a.sentences, a.seed, b"" if a.no_eol else b"\r\n")
    n = len(framed)
    received = T0 + timedelta(seconds=n / RATE + 60)
    small = [c for s in framed for c in (s[i : i + 8] for i in range(0, len(s), 8))]
    lines = [s.strip(b"\x02\x03\r\n").decode() for s in framed]
    nbytes = sum(map(len, framed))

    # Sanity (untimed): everything decodes; the decoder and the pynmea2 baseline agree.
    _, _, dec, got = decode(framed, received)
    _, _, relayed = pynmea2_relayed(lines)
    bad = dec.parse_errors + dec.checksum_errors + dec.garbage_bytes + dec.rejected_fixes
    if dec.sentences != n or bad or relayed != n - kinds["GPRMC"]:
        raise SystemExit(f"sanity failed: {dec.sentences} of {n} sentences, {bad} errors/rejects, {relayed} relayed by pynmea2")

    contenders = {
        "a": ("Decoder.feed, one chunk per sentence", lambda: decode(framed, received)[:2]),
        "a8": ("Decoder.feed, 8-byte chunks", lambda: decode(small, received)[:2]),
        "b": ("pynmea2.parse(check=True) + relayed(), pre-split lines", lambda: pynmea2_relayed(lines)[:2]),
    }
    cpu: dict[str, list[float]] = {k: [] for k in contenders}
    wall: dict[str, list[float]] = {k: [] for k in contenders}
    keys = list(contenders)
    t_start = time.perf_counter()
    for r in range(a.repeats):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
            w, c = contenders[k][1]()
            wall[k].append(w)
            cpu[k].append(c)
        if not a.json:
            print(f"  repeat {r + 1}/{a.repeats}: " + "  ".join(f"{k} {n / cpu[k][-1]:,.0f}/s" for k in keys), file=sys.stderr, flush=True)
    flat = driver_flat_out(framed[: a.driver_sentences])
    paced = driver_paced(framed, a.paced_s)
    elapsed = time.perf_counter() - t_start

    results = {
        k: {
            "label": label,
            "sentences_per_cpu_s": bl.median([n / c for c in cpu[k]]),
            "sentences_per_s": bl.median([n / w for w in wall[k]]),
            "us_per_sentence": bl.median(cpu[k]) / n * 1e6,
            "share_at_15": RATE * bl.median(cpu[k]) / n,
        }
        for k, (label, _) in contenders.items()
    }
    per = [ca / cb for ca, cb in zip(cpu["a"], cpu["b"], strict=True)]  # CPU of the decoder / CPU of bare pynmea2
    ratio = {"median": bl.median(per), "min": min(per), "max": max(per)}
    share_driver = paced["share"]
    met = share_driver < GOAL_SHARE and results["a"]["share_at_15"] < GOAL_SHARE
    report: dict[str, object] = {
        "bench": "fleetsync",
        "machine": bl.machine(),
        "stream": {"sentences": n, "bytes": nbytes, "kinds": dict(kinds), "eol": not a.no_eol, "decoded": dict(got)},
        "repeats": a.repeats,
        "elapsed_s": round(elapsed, 1),
        "results": results,
        "cpu_ratio_decoder_over_pynmea2": ratio,
        "driver_flat_out": flat,
        "driver_paced": paced,
        "goal": {
            "text": f"under {GOAL_SHARE:.0%} of one core at {RATE:g} sentences/s",
            "decoder_share": results["a"]["share_at_15"],
            "driver_share": share_driver,
            "met": met,
        },
    }
    if a.json:
        print(bl.dump_json(report))
        return 0

    print(f"\nFleetSync/NXDN base radio: {n:,} sentences ({nbytes:,} bytes), "
          + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    print(f"decoded: {dict(got)}; {a.repeats} interleaved repeats; {elapsed:.0f} s; load {os.getloadavg()[0]:.2f}\n")
    rows = [
        (f"({k}) {r['label']}", bl.fmt_int(r["sentences_per_cpu_s"]), bl.fmt_int(r["sentences_per_s"]), f"{r['us_per_sentence']:.1f}",
         f"{r['share_at_15']:.3%}")
        for k, r in results.items()
    ]
    rows.append((
        "(c) fleetsync driver on a pty, flat out", bl.fmt_int(flat["sentences"] / flat["cpu_s"]),
        bl.fmt_int(flat["sentences"] / flat["wall_s"]), f"{flat['cpu_us_per_sentence']:.1f}", f"{flat['share_at_15']:.3%}",
    ))
    print(bl.table(("contender", "sentences/CPU-s", "sentences/s", "CPU us/sentence", "share at 15/s"), rows))
    print(f"\n(a) / (b): the decoder takes {ratio['median']:.2f}x the CPU of bare pynmea2 parsing "
          f"(median of per-repeat ratios; {ratio['min']:.2f}-{ratio['max']:.2f})")
    print(f"(c) paced at {RATE:g}/s for {paced['wall_s']:.1f} s: {paced['sentences']:.0f} sentences, driver thread "
          f"{paced['cpu_s'] * 1000:.0f} ms CPU = {share_driver:.3%} of one core (idle wake-ups included); "
          f"errors {paced['errors']:.0f}")
    verdict = "MET" if met else "MISSED"
    print(f"\nGOAL {GOAL_SHARE:.0%} of one core at {RATE:g} sentences/s: decoder {results['a']['share_at_15']:.3%}, "
          f"whole driver {share_driver:.3%} -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

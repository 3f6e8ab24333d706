"""NMEA decode throughput of alkomd against pynmea2 and gpsd's gpsdecode, in sentences/s.

What: the same mixed file (bench/make_nmea.py: 800k lines of a 1 Hz u-blox-like receiver
around Gorontalo, GP/GN/GL talkers, ~0.5% corrupt lines) decoded by

  (a)  `alkomctl decode --json FILE > /dev/null` as a subprocess: wall time, including the
       interpreter's start-up and imports (what a technician runs);
  (a2) `alkomd.daemon.ctl.decode.run(FILE, as_json=True, ...)` in-process with output to
       /dev/null: the same work without start-up (framing, checksum, parsing, epoch assembly,
       validity gates, JSON per fix);
  (b)  `pynmea2.parse(line, check=True)` over the same lines, in-process, already split into
       `str` lines (parse only: pynmea2's fields are lazy);
  (c)  (b) plus reading lat/lon/speed/course/hdop/sats from each sentence that carries them
       (numbers converted: pynmea2 leaves sats and hdop as strings);
  (d)  `gpsdecode < FILE > /dev/null` (gpsd's C pipeline: it assembles fixes, computes DOPs and
       prints JSON TPV/SKY reports). Debian 12 ships it in the package `gpsd-clients`.

The throughput unit is input lines per second (all lines, corrupt ones included) so every
contender has the same numerator.

How: the contenders run interleaved inside each repeat (the starting contender rotates from
repeat to repeat), default 5 repeats; per contender the median of the repeats is reported, and
each ratio is the median of the per-repeat ratios (both sides measured seconds apart, so the
machine's noise mostly cancels). The child CPU time of (a) and (d) is reported too.
A short untimed sanity check first compares the number of fixes alkomd emits with the number of
distinct times of gpsdecode's TPV reports with a 2D/3D fix, for the first 80k lines.
`--profile` additionally runs (a2) under cProfile and prints the hot spots.

Goal: `alkomctl decode` >= 1.0x gpsdecode (ratio (a)/(d)).

    /work/venv/bin/python bench/bench_decode.py [--repeats 5] [--sentences 800000] [--json] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl
import make_nmea
import pynmea2

from alkomd.daemon.ctl import decoding as cmd_decode

GOAL = 1.0  # alkomctl decode / gpsdecode
GPSDECODE_INSTALL = "apt-get install -y gpsd-clients"  # Debian 12: gpsdecode is in gpsd-clients
SANITY_LINES = 80_000


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_child(argv: list[str], stdin_path: Path | None) -> tuple[float, float]:
    """(wall s, CPU s) of one child writing to /dev/null."""
    with open(stdin_path or os.devnull, "rb") as stdin:
        c0 = children_cpu()
        t0 = time.perf_counter()
        rc = subprocess.run(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False).returncode
        wall = time.perf_counter() - t0
        cpu = children_cpu() - c0
    if rc != 0:
        raise RuntimeError(f"{argv[0]} exited {rc}")
    return wall, cpu


def alkomd_inprocess(path: Path) -> str:
    err = io.StringIO()
    with open(os.devnull, "w") as out:
        rc = cmd_decode.decode_file(str(path), True, 20.0, out=out, err=err)
    if rc != 0:
        raise RuntimeError(f"cmd_decode.run returned {rc}: {err.getvalue()}")
    return err.getvalue().strip()


def pynmea2_parse(lines: list[str]) -> int:
    parse = pynmea2.parse
    ok = 0
    for line in lines:
        try:
            parse(line, check=True)
            ok += 1
        except ValueError:  # ParseError, ChecksumError, SentenceTypeError
            pass
    return ok


def _f(v: object) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _i(v: object) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def pynmea2_fields(lines: list[str]) -> int:
    """Parse and read what a tracker needs: lat/lon/speed/course/hdop/sats, as numbers."""
    parse = pynmea2.parse
    n = 0
    for line in lines:
        try:
            m = parse(line, check=True)
        except ValueError:
            continue
        t = m.sentence_type
        try:
            if t == "GGA":
                got: tuple[object, ...] = (m.latitude, m.longitude, _i(m.num_sats), _f(m.horizontal_dil))
            elif t == "RMC":
                got = (m.latitude, m.longitude, m.spd_over_grnd, m.true_course)
            elif t == "VTG":
                got = (m.spd_over_grnd_kmph, m.true_track)
            elif t == "GSA":
                got = (_f(m.hdop),)
            elif t == "GLL":
                got = (m.latitude, m.longitude)
            elif t == "GSV":
                got = (_i(m.num_sv_in_view),)
            else:
                got = ()
        except ValueError:  # a field pynmea2 cannot convert
            got = ()
        n += len(got)
    return n


def sanity(path: Path, gpsdecode: str | None, workdir: Path) -> dict[str, object]:
    """Fixes alkomd emits vs gpsdecode's TPV reports with mode >= 2, over the first lines."""
    prefix = workdir / "prefix.nmea"
    with open(path, "rb") as src, open(prefix, "wb") as dst:
        for _ in range(SANITY_LINES):
            line = src.readline()
            if not line:
                break
            dst.write(line)
    out = io.StringIO()
    err = io.StringIO()
    cmd_decode.decode_file(str(prefix), True, 20.0, out=out, err=err)
    result: dict[str, object] = {"lines": SANITY_LINES, "alkomd_fixes": out.getvalue().count("\n"),
                                 "alkomd_summary": err.getvalue().strip()}
    if gpsdecode:
        with open(prefix, "rb") as fh:
            text = subprocess.run([gpsdecode], stdin=fh, capture_output=True).stdout.decode("utf-8", "replace")
        tpv = sky = 0
        fixed: set[str] = set()
        for line in text.splitlines():
            if '"class":"TPV"' in line:
                tpv += 1
                obj = json.loads(line)
                if obj.get("mode", 0) >= 2 and "time" in obj:
                    fixed.add(obj["time"])
            elif '"class":"SKY"' in line:
                sky += 1
        result.update(gpsdecode_tpv=tpv, gpsdecode_fix_times=len(fixed), gpsdecode_sky=sky)
    return result


def profile(path: Path, top: int = 25) -> dict[str, object]:
    """cProfile of the in-process decode: the top functions by own time, and nmea.py's share."""
    pr = cProfile.Profile()
    pr.enable()
    alkomd_inprocess(path)
    pr.disable()
    st = pstats.Stats(pr)
    total = st.total_tt
    rows = []
    by_module: dict[str, float] = {}
    for (file, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():
        fp = Path(file)
        where = f"{fp.parent.name}/{fp.name}" if line else "builtins"  # drivers/nmea.py vs pynmea2/nmea.py
        by_module[where] = by_module.get(where, 0.0) + tt
        rows.append((tt, ct, nc, f"{where}:{line}({func})" if line else func))
    rows.sort(reverse=True)
    modules = sorted(by_module.items(), key=lambda kv: -kv[1])
    return {
        "total_s": total,
        "note": "cProfile inflates per-call overhead (the profiled run is ~2.5x slower); read shares, not seconds",
        "own_share_by_file": {k: round(v / total, 3) for k, v in modules[:8]},
        "top": [
            {"own_s": round(tt, 3), "own_share": round(tt / total, 3), "cum_s": round(ct, 3), "calls": nc, "function": name}
            for tt, ct, nc, name in rows[:top]
        ],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sentences", type=int, default=make_nmea.DEFAULT_SENTENCES)
    p.add_argument("--seed", type=int, default=make_nmea.DEFAULT_SEED)
    p.add_argument("--file", type=Path, default=None, help="decode this NMEA file instead of the generated one")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--profile", action="store_true", help="also profile the in-process decode (cProfile)")
    a = p.parse_args(argv)

    if a.file:
        path = a.file
        with open(path, "rb") as fh:
            nlines = sum(1 for _ in fh)
        stats: dict[str, object] = {"path": str(path), "lines": nlines, "bytes": path.stat().st_size}
    else:
        path, stats = make_nmea.ensure(a.sentences, a.seed, quiet=a.json)
        nlines = int(stats["lines"])
    raw = path.read_bytes()
    lines = [ln.decode("ascii", "replace").strip() for ln in raw.split(b"\n") if ln.strip()]
    del raw
    gpsdecode = shutil.which("gpsdecode")
    alkomctl = str(bl.VENV_BIN / "alkomctl")

    with tempfile.TemporaryDirectory(prefix="alkomd-bench-decode-") as tmp:
        check = sanity(path, gpsdecode, Path(tmp))

    contenders: list[tuple[str, str, Callable[[], tuple[float, float | None]]]] = []

    def timed(fn: Callable[[], object]) -> Callable[[], tuple[float, float | None]]:
        def run() -> tuple[float, float | None]:
            c0 = time.process_time()
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0, time.process_time() - c0

        return run

    decode_argv = [alkomctl, "decode", "--json", str(path)]
    contenders.append(("a", "alkomctl decode --json (subprocess, wall)", lambda: run_child(decode_argv, None)))
    contenders.append(("a2", "alkomd cmd_decode.run in-process", timed(lambda: alkomd_inprocess(path))))
    contenders.append(("b", "pynmea2.parse(check=True)", timed(lambda: pynmea2_parse(lines))))
    contenders.append(("c", "pynmea2 parse + lat/lon/speed/course/hdop/sats", timed(lambda: pynmea2_fields(lines))))
    if gpsdecode:
        contenders.append(("d", "gpsdecode < FILE (C, wall)", lambda: run_child([gpsdecode], path)))

    walls: dict[str, list[float]] = {k: [] for k, _, _ in contenders}
    cpus: dict[str, list[float]] = {k: [] for k, _, _ in contenders}
    t_start = time.perf_counter()
    for r in range(a.repeats):
        order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
        for key, _, fn in order:
            wall, cpu = fn()
            walls[key].append(wall)
            if cpu is not None:
                cpus[key].append(cpu)
        if not a.json:
            print(f"  repeat {r + 1}/{a.repeats}: " + "  ".join(f"{k} {nlines / walls[k][-1]:,.0f}/s" for k, _, _ in contenders),
                  file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - t_start

    rate = {k: [nlines / w for w in ws] for k, ws in walls.items()}
    results = {
        k: {
            "label": label,
            "sentences_per_s": rate[k],
            "median_sentences_per_s": bl.median(rate[k]),
            "median_us_per_sentence": bl.median(walls[k]) / nlines * 1e6,
            "median_cpu_s": bl.median(cpus[k]) if cpus[k] else None,
            "median_wall_s": bl.median(walls[k]),
        }
        for k, label, _ in contenders
    }

    def ratio(num: str, den: str) -> dict[str, object] | None:
        if num not in rate or den not in rate:
            return None
        per = [x / y for x, y in zip(rate[num], rate[den], strict=True)]
        return {"per_repeat": per, "median": bl.median(per), "min": min(per), "max": max(per)}

    ratios = {
        "alkomctl/gpsdecode": ratio("a", "d"),
        "alkomd_inprocess/gpsdecode": ratio("a2", "d"),
        "alkomd_inprocess/pynmea2_parse": ratio("a2", "b"),
        "alkomd_inprocess/pynmea2_fields": ratio("a2", "c"),
        "pynmea2_parse/gpsdecode": ratio("b", "d"),
        "pynmea2_fields/gpsdecode": ratio("c", "d"),
    }
    goal_ratio = ratios["alkomctl/gpsdecode"]
    goal = {
        "text": f"alkomctl decode >= {GOAL:.1f}x gpsdecode",
        "ratio": goal_ratio["median"] if goal_ratio else None,
        "met": (goal_ratio["median"] >= GOAL) if goal_ratio else None,
    }
    report: dict[str, object] = {
        "bench": "decode",
        "machine": bl.machine(),
        "file": stats,
        "repeats": a.repeats,
        "elapsed_s": round(elapsed, 1),
        "sanity": check,
        "results": results,
        "ratios": ratios,
        "goal": goal,
        "gpsdecode": gpsdecode or f"n/a (install: {GPSDECODE_INSTALL})",
    }
    if a.profile:
        report["profile"] = profile(path)

    if a.json:
        print(bl.dump_json(report))
        return 0

    print(f"\nNMEA decode throughput: {nlines:,} lines ({stats.get('bytes', 0):,} bytes) from {path}")
    print(f"{a.repeats} interleaved repeats in {elapsed:.0f} s; machine {bl.machine()['cpus']} CPUs, load {os.getloadavg()[0]:.2f}\n")
    rows = []
    for k, label, _ in contenders:
        res = results[k]
        rs = rate[k]
        cpu = res["median_cpu_s"]
        rows.append((
            f"({k}) {label}", bl.fmt_int(res["median_sentences_per_s"]), bl.fmt_int(min(rs)), bl.fmt_int(max(rs)),
            f"{res['median_us_per_sentence']:.2f}", f"{res['median_wall_s']:.2f}", "-" if cpu is None else f"{cpu:.2f}",
        ))
    if not gpsdecode:
        rows.append(("(d) gpsdecode", "n/a", "", "", "", "", ""))
    print(bl.table(("contender", "median lines/s", "min", "max", "us/line", "wall s", "CPU s"), rows))
    print()
    rrows = []
    for name, rr in ratios.items():
        if rr is None:
            rrows.append((name, "n/a", "", ""))
        else:
            rrows.append((name, f"{rr['median']:.3f}", f"{rr['min']:.3f}", f"{rr['max']:.3f}"))
    print(bl.table(("ratio (median of per-repeat ratios)", "median", "min", "max"), rrows))
    if not gpsdecode:
        print(f"\ngpsdecode not found: n/a. To measure it: {GPSDECODE_INSTALL}")
    print(f"\nsanity ({check['lines']:,} first lines): alkomd {check['alkomd_fixes']} fixes; "
          + (f"gpsdecode {check.get('gpsdecode_tpv')} TPV reports ({check.get('gpsdecode_fix_times')} distinct fix times), "
             f"{check.get('gpsdecode_sky')} SKY" if gpsdecode else "gpsdecode n/a"))
    print(f"  alkomd: {check['alkomd_summary']}")
    if goal["ratio"] is None:
        print(f"\nGOAL {goal['text']}: n/a (gpsdecode missing)")
    else:
        verdict = "MET" if goal["met"] else f"MISSED by {(1 - goal['ratio'] / GOAL) * 100:.0f}% (needs {GOAL / goal['ratio']:.2f}x faster)"
        print(f"\nGOAL {goal['text']}: median ratio {goal['ratio']:.3f} -> {verdict}")
    if a.profile:
        prof = report["profile"]
        assert isinstance(prof, dict)
        shares = ", ".join(f"{k} {v:.0%}" for k, v in prof["own_share_by_file"].items())
        print(f"\ncProfile of (a2): {prof['total_s']:.2f} s profiled ({prof['note']})")
        print(f"own time by file: {shares}")
        print(bl.table(("function", "own s", "own %", "cum s", "calls"),
                       [(t["function"], f"{t['own_s']:.3f}", f"{t['own_share']:.1%}", f"{t['cum_s']:.3f}", f"{t['calls']:,}")
                        for t in prof["top"]], "lrrrr"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

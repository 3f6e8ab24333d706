"""Nearest-unit recommendation at 50,000 units and 500 jurisdictions: alkomd's maintained index against brute force.

What (synthetic, seeded, shaped like perf-anchors.md section 4): 50,000 units around 150
Pareto-sized "cities" over Indonesia's extent (95-141 E, 11 S-6 N), 70% available, 95% of them
with a fix under a minute old and 5% stale; 500 jurisdictions are the Voronoi cells of clustered
seeds (60% around the cities, 40% uniform), i.e. each unit's jurisdiction is its nearest seed.
Callers are drawn like units. K = 5, neighbour reach 10 km, default [dispatch] options.

  (a)  `recommend()` over a `UnitIndex`, OK callers (one jurisdiction)
  (a2) `recommend()`, APPROXIMATE callers (their jurisdiction plus the next nearest one)
  (b)  `brute_force()`: the same rules over every unit, no index (Lambert WGS84 per unit)
  (b3) the anchor's brute force: pure-Python haversine over all units, sort, walk until K are
       inside the jurisdiction (perf-anchors b3; no fix-age or neighbour rules)
  (c)  `UnitIndex.update()` for a position report (a unit moves ~50 m, new fix time)
  (c2) `UnitIndex.update()` for a status change (available <-> assigned)

How: every contender runs in each repeat (default 5; the first contender rotates), after a
warm-up pass; per-call times from perf_counter_ns. Per repeat: median, p90, p99 and max per
call; reported: the median over repeats of each. The brute-force ratio is the median of
per-repeat ratios of medians. Every (b) query's answer is compared with (a)'s for the same
caller (must be identical).

Goal (issue): recommendation alone p99 <= 0.2 ms. Also shown: perf-anchors G8 (p50 <= 0.15 ms,
p99 <= 1 ms, >= 5k queries/s) and (c) against the central tier's 100 us per message budget.

    /work/venv/bin/python bench/bench_recommend.py [--repeats 5] [--queries 2000] [--brute 20] [--updates 10000] [--json]
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl

from alkomd.daemon.calls.recommend import RecommendOptions, UnitIndex, brute_force, recommend
from alkomd.daemon.calls.types import Location, LocationStatus, Placement, UnitSnapshot
from alkomd.daemon.geodesy import haversine_m
from alkomd.daemon.records import UnitStatus

GOAL_P99_MS = 0.2
G8_P50_MS, G8_P99_MS, G8_QPS = 0.15, 1.0, 5000
BUDGET_US = 100.0  # central tier: 10,000 position msg/s on one core
LAT0, LAT1, LON0, LON1 = -11.0, 6.0, 95.0, 141.0
NOW = datetime(2026, 11, 22, 8, 0, 0, tzinfo=UTC)
OTHER = (UnitStatus.ASSIGNED, UnitStatus.ENROUTE, UnitStatus.ONSCENE, UnitStatus.UNAVAILABLE, UnitStatus.OFFLINE)
TYPES = ("car", "motorcycle", "foot", "boat")
TYPE_P = (0.55, 0.35, 0.08, 0.02)


class World:
    """The synthetic units, jurisdictions and callers."""

    def __init__(self, units: int, cities: int, jurisdictions: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.centres = np.column_stack((rng.uniform(LAT0, LAT1, cities), rng.uniform(LON0, LON1, cities)))
        size = rng.pareto(1.2, cities) + 1.0
        self.weights = size / size.sum()
        self.spread = 0.03 + 0.25 * np.sqrt(self.weights / self.weights.max())  # degrees: ~3 km to ~30 km
        # seeds: 60% around the cities with a flatter weight (big cities get fewer jurisdictions than
        # their units would suggest), 40% uniform: available units per jurisdiction then spread like
        # the anchor's (median 26, p95 275, max 1,246)
        flat = np.sqrt(self.weights)
        clustered = round(jurisdictions * 0.6)
        seeds = np.vstack((self.draw(clustered, flat / flat.sum()), self.uniform(jurisdictions - clustered)))
        self.seed_tree = shapely.STRtree(shapely.points(seeds[:, 1], seeds[:, 0]))
        self.seeds = seeds
        pos = self.draw(units)
        jur = self.nearest(pos)
        status = np.where(rng.random(units) < 0.7, 0, rng.integers(1, len(OTHER) + 1, units))
        age = np.where(rng.random(units) < 0.95, rng.uniform(0, 60, units), rng.uniform(301, 3600, units))
        kinds = rng.choice(len(TYPES), units, p=TYPE_P)
        self.snaps = [
            UnitSnapshot(
                unit=f"U{i:05d}",
                type=TYPES[kinds[i]],
                status=UnitStatus.AVAILABLE if status[i] == 0 else OTHER[status[i] - 1],
                lat=float(pos[i, 0]),
                lon=float(pos[i, 1]),
                fix_time=NOW - timedelta(seconds=float(age[i])),
                jurisdiction=f"J{jur[i]:03d}",
            )
            for i in range(units)
        ]

    def uniform(self, n: int) -> np.ndarray:
        return np.column_stack((self.rng.uniform(LAT0, LAT1, n), self.rng.uniform(LON0, LON1, n)))

    def draw(self, n: int, weights: np.ndarray | None = None) -> np.ndarray:
        """n points around the cities, by city weight (clipped to the extent)."""
        city = self.rng.choice(len(self.weights), n, p=self.weights if weights is None else weights)
        pts = self.centres[city] + self.rng.normal(0.0, 1.0, (n, 2)) * self.spread[city, None]
        pts[:, 0] = pts[:, 0].clip(LAT0, LAT1)
        pts[:, 1] = pts[:, 1].clip(LON0, LON1)
        return pts

    def nearest(self, pts: np.ndarray) -> np.ndarray:
        idx = self.seed_tree.query_nearest(shapely.points(pts[:, 1], pts[:, 0]), all_matches=False)
        out = np.empty(len(pts), dtype=np.int64)
        out[idx[0]] = idx[1]
        return out

    def callers(self, n: int, approximate: bool) -> list[tuple[Location, Placement]]:
        pts = self.draw(n)
        jur = self.nearest(pts)
        out = []
        for (lat, lon), j in zip(pts.tolist(), jur.tolist(), strict=True):
            if approximate:
                # the next nearest seed stands for the cell across the border the uncertainty circle reaches
                d = (self.seeds[:, 0] - lat) ** 2 + ((self.seeds[:, 1] - lon) * math.cos(math.radians(lat))) ** 2
                d[j] = np.inf
                other = int(np.argmin(d))
                out.append((Location(lat, lon, 800.0), Placement(LocationStatus.APPROXIMATE, f"J{j:03d}", others=(f"J{other:03d}",))))
            else:
                out.append((Location(lat, lon, 20.0), Placement(LocationStatus.OK, f"J{j:03d}")))
        return out


def anchor_brute(snaps: list[UnitSnapshot], loc: Location, placement: Placement, k: int) -> list[str]:
    """perf-anchors b3: pure-Python haversine over all available units, sort, walk until k inside."""
    rows = [(haversine_m(loc.lat, loc.lon, s.lat, s.lon), s.unit, s.jurisdiction)
            for s in snaps if s.status is UnitStatus.AVAILABLE and s.lat is not None and s.lon is not None]
    rows.sort()
    out = []
    for _, unit, jur in rows:
        if jur == placement.jurisdiction:
            out.append(unit)
            if len(out) == k:
                break
    return out


def stats(us: list[float]) -> dict[str, float]:
    return {"median": bl.median(us), "p90": bl.pct(us, 90), "p99": bl.pct(us, 99), "max": max(us), "mean": statistics.fmean(us)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--queries", type=int, default=2000, help="recommend() queries per repeat (default %(default)s)")
    p.add_argument("--brute", type=int, default=20, help="brute-force queries per repeat (default %(default)s)")
    p.add_argument("--updates", type=int, default=10000, help="position updates per repeat (default %(default)s)")
    p.add_argument("--units", type=int, default=50_000)
    p.add_argument("--jurisdictions", type=int, default=500)
    p.add_argument("--seed", type=int, default=20261122)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    a = p.parse_args(argv)
    log = (lambda *x: None) if a.json else (lambda *x: print(*x, file=sys.stderr, flush=True))

    t_all = time.perf_counter()
    world = World(a.units, 150, a.jurisdictions, a.seed)
    opts = RecommendOptions()
    idx = UnitIndex()
    t0 = time.perf_counter()
    for s in world.snaps:
        idx.update(s)
    load_s = time.perf_counter() - t0
    avail = [s for s in world.snaps if s.status is UnitStatus.AVAILABLE]
    per_jur: dict[str | None, int] = {}
    for s in avail:
        per_jur[s.jurisdiction] = per_jur.get(s.jurisdiction, 0) + 1
    counts = sorted(per_jur.values()) + [0] * (a.jurisdictions - len(per_jur))
    counts.sort()
    shape = {
        "units": a.units,
        "available": len(avail),
        "jurisdictions": a.jurisdictions,
        "available_per_jurisdiction": {"median": bl.median(counts), "p95": bl.pct(counts, 95), "max": max(counts)},
        "index_load_s": load_s,
    }
    log(f"world: {a.units:,} units, {len(avail):,} available; available per jurisdiction median "
        f"{bl.median(counts):.0f}, p95 {bl.pct(counts, 95):.0f}, max {max(counts)}; index loaded in {load_s:.2f} s")

    ok_callers = world.callers(a.queries, approximate=False)
    approx_callers = world.callers(a.queries, approximate=True)
    brute_callers = world.callers(a.brute * a.repeats + 2, approximate=False)
    movers = world.rng.integers(0, a.units, a.updates * a.repeats).tolist()
    steps = world.rng.normal(0.0, 0.0005, (a.updates * a.repeats, 2)).tolist()
    flippers = [s.unit for s in avail[: a.updates // 5]]
    mismatches: list[str] = []
    found: list[int] = []

    def run_a(callers: list[tuple[Location, Placement]]) -> Callable[[int], object]:
        def one(i: int) -> object:
            loc, pl = callers[i]
            return recommend(idx, loc, pl, NOW, opts)

        return one

    # warm-up (also fills `found`: how many candidates a query returns)
    for loc, pl in ok_callers[:300]:
        found.append(len(recommend(idx, loc, pl, NOW, opts)))
    for loc, pl in approx_callers[:100]:
        recommend(idx, loc, pl, NOW, opts)
    snaps_now = list(idx.snapshots())
    brute_force(snaps_now, *brute_callers[-1], NOW, opts)
    anchor_brute(snaps_now, *brute_callers[-2], opts.candidates)

    results: dict[str, list[dict[str, float]]] = {k: [] for k in ("a", "a2", "b", "b3", "c", "c2")}
    ratios: list[float] = []
    for r in range(a.repeats):
        snaps_now = list(idx.snapshots())
        bsl = brute_callers[r * a.brute : (r + 1) * a.brute]
        mv = movers[r * a.updates : (r + 1) * a.updates]
        stp = steps[r * a.updates : (r + 1) * a.updates]

        def run_b(i: int, snaps: list[UnitSnapshot] = snaps_now, callers: list[tuple[Location, Placement]] = bsl) -> object:
            return brute_force(snaps, callers[i][0], callers[i][1], NOW, opts)

        def run_b3(i: int, snaps: list[UnitSnapshot] = snaps_now, callers: list[tuple[Location, Placement]] = bsl) -> object:
            return anchor_brute(snaps, callers[i][0], callers[i][1], opts.candidates)

        def run_c(i: int, mv: list[int] = mv, stp: list[list[float]] = stp, r: int = r) -> object:
            s = idx.get(f"U{mv[i]:05d}")
            assert s is not None and s.lat is not None and s.lon is not None
            idx.update(replace(s, lat=s.lat + stp[i][0], lon=s.lon + stp[i][1], fix_time=NOW - timedelta(seconds=r)))
            return None

        def run_c2(i: int) -> object:
            # first pass: every flipper out of the buckets (assigned); second pass: back in
            s = idx.get(flippers[i % len(flippers)])
            assert s is not None
            idx.update(replace(s, status=UnitStatus.AVAILABLE if i >= len(flippers) else UnitStatus.ASSIGNED))
            return None

        contenders: list[tuple[str, Callable[[], list[float]]]] = [
            ("a", lambda: bl.time_each(run_a(ok_callers), a.queries)),
            ("a2", lambda: bl.time_each(run_a(approx_callers), a.queries)),
            ("b", lambda: bl.time_each(run_b, a.brute)),
            ("b3", lambda: bl.time_each(run_b3, a.brute)),
            ("c", lambda: bl.time_each(run_c, a.updates)),
            ("c2", lambda: bl.time_each(run_c2, 2 * len(flippers))),
        ]
        order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
        # answers first, on the state the repeat starts from (the update contenders change it)
        for loc, pl in bsl:
            want = brute_force(snaps_now, loc, pl, NOW, opts)
            if recommend(idx, loc, pl, NOW, opts) != want:
                mismatches.append(f"repeat {r + 1}: caller {loc}")
        for key, fn in order:
            gc.collect()
            us = fn()
            results[key].append(stats(us))
        ratios.append(results["b"][-1]["median"] / results["a"][-1]["median"])
        log(f"  repeat {r + 1}/{a.repeats}: " + "  ".join(f"{k} p50 {v[-1]['median']:.1f} us p99 {v[-1]['p99']:.1f} us"
                                                        for k, v in results.items()))
    elapsed = time.perf_counter() - t_all

    def med(key: str, stat: str) -> float:
        return bl.median([x[stat] for x in results[key]])

    labels = {
        "a": "(a) recommend(), OK callers",
        "a2": "(a2) recommend(), APPROXIMATE callers (2 jurisdictions)",
        "b": "(b) brute_force(): same rules, every unit",
        "b3": "(b3) anchor brute force: haversine all, sort, walk",
        "c": "(c) UnitIndex.update(), position report",
        "c2": "(c2) UnitIndex.update(), status change",
    }
    counts_n = {"a": a.queries, "a2": a.queries, "b": a.brute, "b3": a.brute, "c": a.updates, "c2": 2 * len(flippers)}
    summary = {
        k: {"label": labels[k], "calls_per_repeat": counts_n[k], **{s: med(k, s) for s in ("median", "p90", "p99", "max", "mean")},
            "per_s": 1e6 / med(k, "mean"), "per_repeat": results[k]}
        for k in results
    }
    p50_ms, p99_ms, qps = med("a", "median") / 1000, med("a", "p99") / 1000, 1e6 / med("a", "mean")
    goals = {
        "issue_p99": {"text": f"recommendation p99 <= {GOAL_P99_MS} ms", "value_ms": p99_ms, "met": p99_ms <= GOAL_P99_MS},
        "g8": {
            "text": f"G8: p50 <= {G8_P50_MS} ms, p99 <= {G8_P99_MS} ms, >= {G8_QPS} queries/s",
            "value": {"p50_ms": p50_ms, "p99_ms": p99_ms, "qps": qps},
            "met": p50_ms <= G8_P50_MS and p99_ms <= G8_P99_MS and qps >= G8_QPS,
        },
    }
    report: dict[str, object] = {
        "bench": "recommend",
        "machine": bl.machine(),
        "world": shape,
        "options": {"candidates": opts.candidates, "neighbour_max_m": opts.neighbour_max_m, "max_fix_age_s": opts.max_fix_age_s},
        "repeats": a.repeats,
        "elapsed_s": round(elapsed, 1),
        "results": summary,
        "brute_over_index": {"per_repeat": ratios, "median": bl.median(ratios), "min": min(ratios), "max": max(ratios)},
        "candidates_found": {"median": bl.median(found), "min": min(found)},
        "mismatches": mismatches,
        "goals": goals,
    }
    if a.json:
        print(bl.dump_json(report))
        return 0

    print(f"\nNearest-unit recommendation: {a.units:,} units ({len(avail):,} available), {a.jurisdictions} jurisdictions, K = "
          f"{opts.candidates}, neighbour reach {opts.neighbour_max_m:.0f} m")
    print(f"available units per jurisdiction: median {bl.median(counts):.0f}, p95 {bl.pct(counts, 95):.0f}, max {max(counts)}; "
          f"index load {load_s:.2f} s ({load_s / a.units * 1e6:.1f} us/unit)")
    print(f"{a.repeats} repeats in {elapsed:.0f} s; machine {bl.machine()['cpus']} CPUs, load {os.getloadavg()[0]:.2f}\n")
    rows = []
    for res in summary.values():
        rows.append((res["label"], f"{res['calls_per_repeat']:,}", f"{res['median']:,.1f}", f"{res['p90']:,.1f}",
                     f"{res['p99']:,.1f}", f"{res['max']:,.1f}", bl.fmt_int(res["per_s"])))
    print(bl.table(("contender", "calls/repeat", "median us", "p90 us", "p99 us", "max us", "per s (1/mean)"), rows))
    rr = report["brute_over_index"]
    assert isinstance(rr, dict)
    print(f"\nbrute_force / recommend (median of per-repeat ratios of medians): {rr['median']:,.0f}x "
          f"(min {rr['min']:,.0f}x, max {rr['max']:,.0f}x)")
    print(f"candidates per query (warm-up sample): median {bl.median(found):.0f}, min {min(found)}")
    print(f"answers checked against brute_force: {a.brute * a.repeats}, mismatches: {len(mismatches)}")
    c_med, c_p99 = med("c", "median"), med("c", "p99")
    print(f"position update: {c_med:.1f} us median, {c_p99:.1f} us p99 = {c_med / BUDGET_US:.0%} of the {BUDGET_US:.0f} us "
          f"per-message budget at 10k msg/s")
    print()
    shown = {"issue_p99": f"p99 {p99_ms:.3f} ms", "g8": f"p50 {p50_ms:.3f} ms, p99 {p99_ms:.3f} ms, {qps:,.0f} q/s"}
    for key, g in goals.items():
        print(f"GOAL {g['text']}: {'met' if g['met'] else 'MISSED'} ({shown[key]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

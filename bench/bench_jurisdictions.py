"""Jurisdiction lookup speed of alkomd's JurisdictionIndex against a naive loop over prepared polygons.

What: two polygon sets,

  synthetic: 500 Voronoi cells of clustered seeds over Indonesia's extent (95-141 E, 11 S-6 N),
             clipped to that box, segmentised every 0.01 degree and smoothly warped (the warp is one
             function of position, so shared borders stay shared): a median of ~400 vertices
             per cell, no sea;
  gorontalo: the real 6 regencies/cities of config/jurisdictions/gorontalo-adm2.geojson
             (120 polygon parts, up to ~1,800 vertices), queried over the province's bounding
             box, so about half the points are at sea;

and these contenders:

  (a) `index.jurisdiction_of(lat, lon)`: one point, STRtree bbox candidates + prepared covers
      (what a unit's position report uses);
  (b) `index.locate(Location(lat, lon))`: one caller without an uncertainty radius; points at sea
      take the nearest-polygon path (reported separately as (b-sea));
  (c) `index.locate(Location(lat, lon, accuracy_m))` with accuracy 20-2,000 m (log-uniform):
      the uncertainty circle is intersected with the neighbours;
  (n) baseline: a Python loop over all prepared polygons, `polygon.covers(Point)`, first hit wins;
  (A) `index.assign_bulk(lats, lons)` for 50,000 points: an STRtree over the points queried with
      the prepared polygons (tree build and id list included);
  (N) bulk baseline: for each prepared polygon `shapely.intersects_xy(polygon, all lons, lats)`
      (vectorised over the points, looped over the polygons), first hit wins;
  (a*) bulk by (a) in a Python loop, for scale.

How: callers and units follow the seeds' clustered distribution (synthetic) or are uniform in the
province's box (gorontalo). Each repeat times every single-lookup contender over the same
queries (default 2,000; perf_counter_ns per call) and every bulk contender once, in an order
that rotates from repeat to repeat; default 5 repeats. Per contender the median over repeats of
the per-repeat median and p99 is reported; ratios are medians of per-repeat ratios. Bulk results
are checked to agree with per-point lookups (points on a border excepted: the baseline has no
tie rule). Load/build times are reported too.

Goals (shared/reference/perf-anchors.md G7): one lookup p99 <= 0.1 ms; bulk >= 200k points/s.

    /work/venv/bin/python bench/bench_jurisdictions.py [--repeats 5] [--queries 2000] [--bulk 50000] [--json]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl

from alkomd.daemon.calls.jurisdictions import Jurisdiction, JurisdictionIndex, JurisdictionOptions, load
from alkomd.daemon.calls.types import Location, LocationStatus

ROOT = Path(__file__).resolve().parents[1]
ADM2 = ROOT / "config" / "jurisdictions" / "gorontalo-adm2.geojson"
BBOX = (95.0, -11.0, 141.0, 6.0)  # lon/lat extent of Indonesia
GOAL_P99_US = 100.0
GOAL_BULK_PER_S = 200_000.0


# -- data ------------------------------------------------------------------------------------------


def synthetic(n: int, rng: np.random.Generator, segment_deg: float) -> tuple[list[Jurisdiction], np.ndarray]:
    """n warped Voronoi cells over BBOX, and the seeds (for clustered queries)."""
    x0, y0, x1, y1 = BBOX
    centres = np.column_stack((rng.uniform(x0 + 2, x1 - 2, 40), rng.uniform(y0 + 1, y1 - 1, 40)))
    k = int(n * 0.7)
    clustered = centres[rng.integers(0, len(centres), k)] + rng.normal(0, 0.8, (k, 2))
    scattered = np.column_stack((rng.uniform(x0, x1, n - k), rng.uniform(y0, y1, n - k)))
    seeds = np.vstack((clustered, scattered))
    seeds[:, 0] = np.clip(seeds[:, 0], x0 + 1e-3, x1 - 1e-3)
    seeds[:, 1] = np.clip(seeds[:, 1], y0 + 1e-3, y1 - 1e-3)
    frame = shapely.box(*BBOX)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=frame, ordered=True))
    cells = shapely.intersection(cells, frame)
    cells = shapely.segmentize(cells, segment_deg)

    def warp(c: np.ndarray) -> np.ndarray:  # smooth, same everywhere: shared vertices stay shared
        x, y = c[:, 0], c[:, 1]
        dx = 0.04 * np.sin(3.1 * y + 0.7 * x) + 0.015 * np.sin(11.3 * y - 2.1 * x)
        dy = 0.04 * np.sin(2.7 * x - 0.9 * y) + 0.015 * np.sin(13.7 * x + 1.3 * y)
        taper = np.clip(np.minimum.reduce([x - x0, x1 - x, y - y0, y1 - y]) / 0.5, 0.0, 1.0)  # the frame stays straight
        return np.column_stack((x + dx * taper, y + dy * taper))

    cells = shapely.make_valid(shapely.transform(cells, warp))
    features = [Jurisdiction(f"S{i:03d}", f"synthetic {i}", cell) for i, cell in enumerate(cells.tolist())]
    return features, seeds


def clustered_points(seeds: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x0, y0, x1, y1 = BBOX
    pick = seeds[rng.integers(0, len(seeds), n)] + rng.normal(0, 0.3, (n, 2))
    return np.clip(pick[:, 1], y0, y1), np.clip(pick[:, 0], x0, x1)


def uniform_points(bounds: tuple[float, float, float, float], n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x0, y0, x1, y1 = bounds
    return rng.uniform(y0, y1, n), rng.uniform(x0, x1, n)


# -- contenders ------------------------------------------------------------------------------------


class Naive:
    """Every polygon part, prepared, in file order; a Python loop with covers; first hit wins."""

    def __init__(self, index: JurisdictionIndex) -> None:
        self.polys: list[Any] = []
        self.ids: list[str] = []
        for jid in index.ids:
            for part in shapely.get_parts(index.jurisdiction(jid).geometry).tolist():
                shapely.prepare(part)
                self.polys.append(part)
                self.ids.append(jid)

    def one(self, lat: float, lon: float) -> str | None:
        point = shapely.Point(lon, lat)
        for poly, jid in zip(self.polys, self.ids, strict=True):
            if poly.covers(point):
                return jid
        return None

    def bulk(self, lats: np.ndarray, lons: np.ndarray) -> list[str | None]:
        out = np.full(lats.size, -1, dtype=np.int64)
        for i, poly in enumerate(self.polys):
            free = out < 0
            if not free.any():
                break
            hit = np.zeros(lats.size, dtype=bool)
            hit[free] = shapely.intersects_xy(poly, lons[free], lats[free])
            out[hit] = i
        return [None if i < 0 else self.ids[i] for i in out.tolist()]


def summarise(per_repeat: list[list[float]]) -> dict[str, float]:
    return {
        "median_us": bl.median([bl.median(r) for r in per_repeat]),
        "p99_us": bl.median([bl.pct(r, 99) for r in per_repeat]),
        "n": float(sum(len(r) for r in per_repeat) / max(1, len(per_repeat))),
    }


def run_set(name: str, index: JurisdictionIndex, q: tuple[np.ndarray, np.ndarray], bulk: tuple[np.ndarray, np.ndarray], repeats: int,
            rng: np.random.Generator) -> dict[str, Any]:
    naive = Naive(index)
    qlat, qlon = q[0].tolist(), q[1].tolist()
    acc = np.exp(rng.uniform(math.log(20), math.log(2000), len(qlat))).tolist()
    plain = [Location(la, lo) for la, lo in zip(qlat, qlon, strict=True)]
    with_acc = [Location(la, lo, a) for la, lo, a in zip(qlat, qlon, acc, strict=True)]
    status = [index.locate(loc).status for loc in plain]  # warm-up, and land/sea split
    sea = [i for i, s in enumerate(status) if s is LocationStatus.OUTSIDE]
    land = [i for i, s in enumerate(status) if s is not LocationStatus.OUTSIDE]
    blat, blon = bulk

    single: dict[str, Callable[[], list[float]]] = {
        "a": lambda: bl.time_each(lambda i: index.jurisdiction_of(qlat[i], qlon[i]), len(qlat)),
        "b": lambda: bl.time_each(lambda i: index.locate(plain[land[i]]), len(land)),
        "b-sea": lambda: bl.time_each(lambda i: index.locate(plain[sea[i]]), len(sea)),
        "c": lambda: bl.time_each(lambda i: index.locate(with_acc[i]), len(with_acc)),
        "n": lambda: bl.time_each(lambda i: naive.one(qlat[i], qlon[i]), len(qlat)),
    }
    if not sea:
        del single["b-sea"]
    bulk_fns: dict[str, Callable[[], object]] = {
        "A": lambda: index.assign_bulk(blat, blon),
        "N": lambda: naive.bulk(blat, blon),
        "a*": lambda: [index.jurisdiction_of(la, lo) for la, lo in zip(blat.tolist(), blon.tolist(), strict=True)],
    }
    times: dict[str, list[list[float]]] = {k: [] for k in single}
    bulk_s: dict[str, list[float]] = {k: [] for k in bulk_fns}
    keys = list(single) + list(bulk_fns)
    for r in range(repeats):
        order = keys[r % len(keys) :] + keys[: r % len(keys)]
        for k in order:
            if k in single:
                times[k].append(single[k]())
            else:
                t0 = time.perf_counter()
                bulk_fns[k]()
                bulk_s[k].append(time.perf_counter() - t0)
        print(f"  {name} repeat {r + 1}/{repeats}: a p99 {bl.pct(times['a'][-1], 99):.1f} us, "
              f"A {blat.size / bulk_s['A'][-1]:,.0f} points/s", file=sys.stderr)

    # correctness: bulk == per point; the naive baseline agrees except where a tie rule decides
    ours = index.assign_bulk(blat, blon)
    per_point = [index.jurisdiction_of(la, lo) for la, lo in zip(blat.tolist(), blon.tolist(), strict=True)]
    theirs = naive.bulk(blat, blon)
    parts = shapely.get_parts(np.array([index.jurisdiction(j).geometry for j in index.ids], dtype=object))
    return {
        "polygons": len(index.ids),
        "parts": int(parts.size),
        "vertices_median": float(np.median(shapely.get_num_coordinates(parts))),
        "vertices_max": int(np.max(shapely.get_num_coordinates(parts))),
        "queries": len(qlat),
        "queries_at_sea": len(sea),
        "bulk_points": int(blat.size),
        "single": {k: summarise(v) for k, v in times.items()},
        "single_ratio_vs_naive": {
            k: bl.median([bl.median(times["n"][r]) / bl.median(times[k][r]) for r in range(repeats)]) for k in ("a", "b")
        },
        "bulk": {k: {"median_s": bl.median(v), "points_per_s": blat.size / bl.median(v)} for k, v in bulk_s.items()},
        "bulk_ratio": {f"A/{k}": bl.median([bulk_s[k][r] / bulk_s["A"][r] for r in range(repeats)]) for k in ("N", "a*")},
        "check": {
            "bulk_equals_per_point": ours == per_point,
            "naive_disagreements": sum(x != y for x, y in zip(ours, theirs, strict=True)),
            "assigned": sum(x is not None for x in ours),
        },
    }


LABELS = {
    "a": "jurisdiction_of (one point)",
    "b": "locate, no accuracy (land)",
    "b-sea": "locate, no accuracy (sea: nearest polygon)",
    "c": "locate, accuracy 20-2000 m",
    "n": "naive: loop over prepared polygons, covers",
}
BULK_LABELS = {"A": "assign_bulk (points STRtree)", "N": "naive: intersects_xy per polygon", "a*": "jurisdiction_of in a loop"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--bulk", type=int, default=50_000)
    p.add_argument("--polygons", type=int, default=500)
    p.add_argument("--segment-deg", type=float, default=0.01, help="segmentize step of the synthetic cells")
    p.add_argument("--seed", type=int, default=20261122)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    started = time.perf_counter()

    t0 = time.perf_counter()
    features, seeds = synthetic(a.polygons, rng, a.segment_deg)
    gen_s = time.perf_counter() - t0
    build = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        syn = JurisdictionIndex.from_features(features)
        build.append(time.perf_counter() - t0)
    loads = []
    opts = JurisdictionOptions(file=ADM2, include_property="level", include_values=("regency", "city"))
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        gor = load(opts)
        loads.append(time.perf_counter() - t0)

    province = shapely.union_all([gor.jurisdiction(j).geometry for j in gor.ids])
    sets = {
        "synthetic": (syn, clustered_points(seeds, a.queries, rng), clustered_points(seeds, a.bulk, rng)),
        "gorontalo": (gor, uniform_points(province.bounds, a.queries, rng), uniform_points(province.bounds, a.bulk, rng)),
    }
    results = {name: run_set(name, ix, q, b, a.repeats, rng) for name, (ix, q, b) in sets.items()}
    results["synthetic"]["build_s"] = bl.median(build)
    results["synthetic"]["generate_s"] = gen_s
    results["gorontalo"]["build_s"] = bl.median(loads)
    elapsed = time.perf_counter() - started

    goals = []
    for name, res in results.items():
        p99 = max(res["single"]["a"]["p99_us"], res["single"]["b"]["p99_us"])
        goals.append({"text": f"{name}: one lookup p99 <= {GOAL_P99_US:.0f} us (a and b)", "value": p99, "met": p99 <= GOAL_P99_US})
        rate = res["bulk"]["A"]["points_per_s"]
        goals.append({"text": f"{name}: bulk >= {GOAL_BULK_PER_S:,.0f} points/s", "value": rate, "met": rate >= GOAL_BULK_PER_S})
    report = {"bench": "jurisdictions", "machine": bl.machine(), "repeats": a.repeats, "elapsed_s": round(elapsed, 1),
              "results": results, "goals": goals}
    if a.json:
        print(bl.dump_json(report))
        return 0

    m = bl.machine()
    print(f"\nJurisdiction lookup: {a.repeats} interleaved repeats in {elapsed:.0f} s; {m['cpus']} CPUs, load {m['loadavg'][0]:.2f}")
    for name, res in results.items():
        print(f"\n{name}: {res['polygons']} jurisdictions, {res['parts']} polygon parts, vertices per part median "
              f"{res['vertices_median']:.0f} max {res['vertices_max']}; built/loaded in {res['build_s'] * 1000:.0f} ms; "
              f"{res['queries']} queries ({res['queries_at_sea']} at sea), {res['bulk_points']:,} bulk points")
        rows = [(f"({k}) {LABELS[k]}", f"{s['median_us']:.1f}", f"{s['p99_us']:.1f}", bl.fmt_int(1e6 / s["median_us"]))
                for k, s in res["single"].items()]
        print(bl.table(("single lookup", "median us", "p99 us", "per s (1/median)"), rows))
        ratios = res["single_ratio_vs_naive"]
        print(f"speed-up vs naive (median of per-repeat ratios of medians): a {ratios['a']:.1f}x, b {ratios['b']:.1f}x")
        rows = [(f"({k}) {BULK_LABELS[k]}", f"{b['median_s'] * 1000:.1f}", bl.fmt_int(b["points_per_s"])) for k, b in res["bulk"].items()]
        print(bl.table(("bulk", "median ms", "points/s"), rows))
        br = res["bulk_ratio"]
        print(f"assign_bulk speed-up: {br['A/N']:.1f}x the naive bulk, {br['A/a*']:.1f}x the per-point loop")
        c = res["check"]
        print(f"check: bulk == per point: {c['bulk_equals_per_point']}; assigned {c['assigned']:,}; "
              f"differences from the naive baseline (border ties): {c['naive_disagreements']}")
    print()
    for g in goals:
        unit = "us" if "us" in g["text"] else "points/s"
        print(f"GOAL {g['text']}: {g['value']:,.1f} {unit} -> {'MET' if g['met'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

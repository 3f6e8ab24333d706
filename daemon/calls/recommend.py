"""Nearest available units for a call: a maintained unit index and a WGS84 ranking into the top K candidates.

Distance. Haversine on the mean Earth radius (6371008.8 m) is off by up to 0.56% of the WGS84
geodesic over Indonesia (95-141 E, 11 S-6 N, lines up to 500 km; worst on north-south lines
near the equator, where the meridional radius is 6335 km): more than the 0.5% allowed. So the
ranking and `Candidate.distance_m` use Lambert's formula for the WGS84 ellipsoid
(`geodesic_m`), within 1.5e-6 of geographiclib's geodesic there at any distance (both figures
are checked in tests/test_recommend.py). A numpy great-circle pass on reduced latitudes
shortlists, and the exact formula ranks the shortlist, so the index returns exactly what
`brute_force` returns.

Cost (bench/bench_recommend.py, 50,000 units, 500 jurisdictions, K = 5): about 40 us median and
90 us p99 per query, 10 us per position update; brute force over every unit about 60 ms.

Rules (decisions):
- A candidate is AVAILABLE, has a position within WGS84 ranges, a fix time, a fix age no more
  than `max_fix_age_s`, and is not in `exclude` (units that declined the call).
- A fix time up to 5 s ahead of `now` (clock skew) counts as age 0; further ahead, the unit's
  clock is wrong and the fix is not trusted: the unit is no candidate.
- "In" the call's jurisdiction: the placement's `jurisdiction` plus its `others` (the
  jurisdictions an APPROXIMATE caller's uncertainty circle reaches: the caller may be in any).
  Those units are candidates at any distance; every other unit (another jurisdiction, or in
  none, like a boat at sea) within `neighbour_max_m` of the caller is one too, `in_jurisdiction`
  False: a neighbour's car 2 km away comes before the jurisdiction's own 30 km away.
- Order: ETA (the first unit there is sent), then fix age (fresher first), then unit id.
- ETA = distance / the speed of the unit's type; an unknown type moves at car speed. A unit
  below another node carries its type in its position and status (contract `type`).
- INVALID placements and calls without a location get no candidates; OUTSIDE uses its
  (nearest) jurisdiction; OUTSIDE without one gets only units within `neighbour_max_m`.
- Times are UTC; a naive datetime is read as UTC. Ages are exact integer microseconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from alkomd.daemon.calls.types import Candidate, Location, LocationStatus, Placement, UnitSnapshot
from alkomd.daemon.geodesy import WGS84_A, WGS84_F, lambert_m, reduced_latitude
from alkomd.daemon.records import UnitStatus
from alkomd.daemon.schema import spec

FUTURE_FIX_TOLERANCE_S = 5  # a fix this far ahead of `now` still counts (as age 0)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_FUTURE_US = FUTURE_FIX_TOLERANCE_S * 1_000_000
# Lambert's distance L and the reduced-latitude central angle s satisfy 0.9928*A*s <= L <= A*s
# for s <= 2 rad (its two correction terms are >= 0 and at most 4.3*s): a shortlist on s with
# this slack never loses a unit the exact ranking would keep. Beyond 2 rad: no shortlist.
_SLACK = 1.02
_SHORTLIST_MAX_SIGMA = 2.0


@dataclass(frozen=True)
class RecommendOptions:
    """The `[dispatch]` settings of the recommendation."""

    max_fix_age_s: float = spec(300.0, min=1, max=86400, doc="A unit whose last fix is older than this is not recommended.")
    candidates: int = spec(5, min=1, max=20, doc="How many ranked units go into the call state (K).")
    neighbour_max_m: float = spec(
        10000.0, min=0, max=100000, doc="Units of other jurisdictions within this distance of the caller are candidates too (by ETA)."
    )
    speed_car_kmh: float = spec(40.0, min=1, max=200, doc="Speed for the ETA of a car (also of a unit of unknown type).")
    speed_motorcycle_kmh: float = spec(35.0, min=1, max=200, doc="Speed for the ETA of a motorcycle.")
    speed_foot_kmh: float = spec(5.0, min=1, max=200, doc="Speed for the ETA of a unit on foot.")
    speed_boat_kmh: float = spec(20.0, min=1, max=200, doc="Speed for the ETA of a boat.")

    def speed_mps(self, unit_type: str) -> float:
        """Metres per second of a unit type's speed class (car speed for an unknown type)."""
        kmh = {
            "motorcycle": self.speed_motorcycle_kmh,
            "foot": self.speed_foot_kmh,
            "boat": self.speed_boat_kmh,
        }.get(unit_type, self.speed_car_kmh)
        return kmh / 3.6


def _us(t: datetime) -> int:
    """Exact integer microseconds since the Unix epoch (a naive datetime is UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - _EPOCH) // _US


def _has_fix(s: UnitSnapshot) -> bool:
    """Available with a usable position and fix time: what the index holds."""
    return (
        s.status is UnitStatus.AVAILABLE
        and s.lat is not None
        and s.lon is not None
        and s.fix_time is not None
        and math.isfinite(s.lat)
        and math.isfinite(s.lon)
        and -90.0 <= s.lat <= 90.0
        and -180.0 <= s.lon <= 180.0
    )


@dataclass(frozen=True, slots=True)
class _Query:
    """One call's prepared question."""

    inside: frozenset[str]  # jurisdictions whose units count as "in"
    lat_deg: float
    lon_deg: float
    beta: float
    cos_beta: float
    lon: float  # radians
    lo_us: int  # oldest acceptable fix time
    hi_us: int  # newest acceptable fix time
    now_us: int
    k: int


def _prepare(location: Location | None, placement: Placement, now: datetime, opts: RecommendOptions) -> _Query | None:
    if location is None or placement.status is LocationStatus.INVALID or opts.candidates < 1:
        return None
    lat, lon = location.lat, location.lon
    if not (math.isfinite(lat) and math.isfinite(lon) and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return None
    inside = {j for j in (placement.jurisdiction, *placement.others) if j is not None}
    now_us = _us(now)
    beta, cos_beta = reduced_latitude(lat)
    return _Query(
        inside=frozenset(inside),
        lat_deg=lat,
        lon_deg=lon,
        beta=beta,
        cos_beta=cos_beta,
        lon=math.radians(lon),
        lo_us=now_us - round(opts.max_fix_age_s * 1_000_000),
        hi_us=now_us + _FUTURE_US,
        now_us=now_us,
        k=opts.candidates,
    )


Key = tuple[float, int, str, float, bool]  # (ETA s, fix age us, unit, distance m, not in the jurisdiction): the order


def _key(d: float, kind: str, age_us: int, unit: str, out: bool, opts: RecommendOptions) -> Key:
    return (d / opts.speed_mps(kind), age_us, unit, d, out)


def _candidates(ranked: list[Key], k: int) -> tuple[Candidate, ...]:
    """Top k of the ranking keys, as Candidates."""
    ranked.sort()
    return tuple(
        Candidate(unit=unit, distance_m=d, eta_s=eta, fix_age_s=age / 1_000_000, in_jurisdiction=not out)
        for eta, age, unit, d, out in ranked[:k]
    )


def brute_force(
    snapshots: Iterable[UnitSnapshot],
    location: Location | None,
    placement: Placement,
    now: datetime,
    opts: RecommendOptions,
    exclude: frozenset[str] = frozenset(),
) -> tuple[Candidate, ...]:
    """The reference: the same rules as `recommend`, over every unit, without an index."""
    q = _prepare(location, placement, now, opts)
    if q is None:
        return ()
    ranked: list[Key] = []
    for s in snapshots:
        if not _has_fix(s) or s.unit in exclude:
            continue
        assert s.lat is not None and s.lon is not None and s.fix_time is not None
        ft = _us(s.fix_time)
        if not q.lo_us <= ft <= q.hi_us:
            continue
        beta, cos_beta = reduced_latitude(s.lat)
        d = lambert_m(q.beta, q.cos_beta, q.lon, beta, cos_beta, math.radians(s.lon))
        out = s.jurisdiction not in q.inside
        if out and d > opts.neighbour_max_m:
            continue
        ranked.append(_key(d, s.type, max(0, q.now_us - ft), s.unit, out, opts))
    return _candidates(ranked, q.k)


# -- the maintained index --------------------------------------------------------------------------

_ROWS = 5  # latitude, longitude (degrees), fix time (us), jurisdiction code, type code: a new fix writes three numbers
_TYPE_CODES = {"car": 0, "motorcycle": 1, "foot": 2, "boat": 3}  # anything else moves at car speed (code 0)
_NONE_CODE = -1.0


class _Columns:
    """Indexed units of one jurisdiction or grid cell: numpy columns, swap-remove, O(1) put and drop."""

    __slots__ = ("data", "ids", "n", "pos")

    def __init__(self) -> None:
        self.data: npt.NDArray[np.float64] = np.empty((_ROWS, 8))
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        self.n = 0

    def put(self, unit: str, row: tuple[float, float, float, float, float]) -> None:
        i = self.pos.get(unit)
        if i is None:
            i = self.n
            if i == self.data.shape[1]:
                grown = np.empty((_ROWS, 2 * i))
                grown[:, :i] = self.data
                self.data = grown
            self.ids.append(unit)
            self.pos[unit] = i
            self.n = i + 1
        self.data[:, i] = row

    def drop(self, unit: str) -> None:
        i = self.pos.pop(unit)
        last = self.n - 1
        if i != last:
            self.data[:, i] = self.data[:, last]
            moved = self.ids[last]
            self.ids[i] = moved
            self.pos[moved] = i
        self.ids.pop()
        self.n = last


class _Entry:
    """An indexed unit (internal and mutable: `UnitIndex.move` changes its fix in place)."""

    __slots__ = ("bucket", "cell", "fix_us", "jkey", "lat_deg", "lon_deg", "snap", "square")

    def __init__(self, snap: UnitSnapshot, fix_us: int, jkey: str | None, cell: int, lat_deg: float, lon_deg: float,
                 bucket: _Columns | None, square: _Columns) -> None:
        self.snap = snap  # as of the last `update`: `move` does not rebuild it (see UnitIndex._moved)
        self.fix_us = fix_us
        self.jkey = jkey
        self.cell = cell
        self.lat_deg = lat_deg
        self.lon_deg = lon_deg
        self.bucket = bucket  # its jurisdiction's columns (None: in none)
        self.square = square  # its grid cell's columns


class UnitIndex:
    """Units by jurisdiction and by grid cell, kept current as positions and statuses change.

    Every unit's latest snapshot is kept (`get`); available units with a usable fix also sit in
    their jurisdiction's bucket (the call's own candidates) and in a grid cell of `cell_deg`
    degrees (neighbours within reach). A query reads the caller's bucket(s) and, only when they
    give fewer than K candidates, the cells around the caller. Fix age is checked at query time.
    """

    def __init__(self, cell_deg: float = 0.1) -> None:
        cols = round(360.0 / cell_deg) if 0.001 <= cell_deg <= 10.0 else 0
        if not cols or abs(cols * cell_deg - 360.0) > 1e-6:  # whole columns: the grid wraps at 180 E/W
            raise ValueError(f"cell_deg must divide 360 and lie between 0.001 and 10, got {cell_deg}")
        self._cell = cell_deg
        self._cols = cols
        self._rows = math.ceil(180.0 / cell_deg)
        self._snaps: dict[str, UnitSnapshot] = {}
        self._entries: dict[str, _Entry] = {}
        self._jur: dict[str, _Columns] = {}
        self._grid: dict[int, _Columns] = {}
        self._codes: dict[str, float] = {}
        self._moved: set[str] = set()  # units `move`d since their snapshot was last built

    def __len__(self) -> int:
        return len(self._snaps)

    def get(self, unit: str) -> UnitSnapshot | None:
        """The unit's latest snapshot, whatever its status."""
        if unit in self._moved:
            self._rebuild(unit)
        return self._snaps.get(unit)

    def snapshots(self) -> Iterator[UnitSnapshot]:
        """Every unit's latest snapshot (for `brute_force` and a status dump)."""
        for unit in list(self._moved):
            self._rebuild(unit)
        return iter(self._snaps.values())

    def _rebuild(self, unit: str) -> None:
        self._moved.discard(unit)
        e = self._entries[unit]
        e.snap = self._snaps[unit] = replace(e.snap, lat=e.lat_deg, lon=e.lon_deg, fix_time=_EPOCH + e.fix_us * _US,
                                             jurisdiction=e.jkey)

    def move(self, unit: str, lat: float, lon: float, fix_us: int, jurisdiction: str | None) -> bool:
        """A new fix of an indexed unit (status and type unchanged), in place when it stays in its jurisdiction and grid
        cell: three numbers written in each of its two columns, a tenth of `update`'s cost. False, changing nothing,
        when it cannot: then call `update`."""
        e = self._entries.get(unit)
        if e is None or e.jkey != jurisdiction or not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            return False
        if self._row(lat) * self._cols + self._col(lon) != e.cell:
            return False
        e.fix_us, e.lat_deg, e.lon_deg = fix_us, lat, lon
        fix = float(fix_us)
        for columns in (e.bucket, e.square):
            if columns is not None:
                i, data = columns.pos[unit], columns.data
                data[0, i] = lat
                data[1, i] = lon
                data[2, i] = fix
        self._moved.add(unit)
        return True

    def _row(self, lat: float) -> int:
        return min(self._rows - 1, max(0, math.floor((lat + 90.0) / self._cell)))

    def _col(self, lon: float) -> int:
        return math.floor((lon + 180.0) / self._cell) % self._cols

    def _code(self, jur: str | None) -> float:
        if jur is None:
            return _NONE_CODE
        code = self._codes.get(jur)
        if code is None:
            code = self._codes[jur] = float(len(self._codes))
        return code

    def update(self, s: UnitSnapshot) -> None:
        """Record a unit's new snapshot (position, status, jurisdiction or type changed)."""
        old = self._entries.get(s.unit)
        self._snaps[s.unit] = s
        self._moved.discard(s.unit)
        new: _Entry | None = None
        if _has_fix(s):
            assert s.lat is not None and s.lon is not None and s.fix_time is not None
            cell = self._row(s.lat) * self._cols + self._col(s.lon)
            bucket: _Columns | None = None
            if s.jurisdiction is not None:
                bucket = self._jur.get(s.jurisdiction)
                if bucket is None:
                    bucket = self._jur[s.jurisdiction] = _Columns()
            square = self._grid.get(cell)
            if square is None:
                square = self._grid[cell] = _Columns()
            new = _Entry(s, _us(s.fix_time), s.jurisdiction, cell, s.lat, s.lon, bucket, square)
        if old is not None:
            if old.jkey is not None and (new is None or new.jkey != old.jkey):
                self._jur[old.jkey].drop(s.unit)
            if new is None or new.cell != old.cell:
                self._grid[old.cell].drop(s.unit)
        if new is None:
            self._entries.pop(s.unit, None)
            return
        self._entries[s.unit] = new
        row = (new.lat_deg, new.lon_deg, float(new.fix_us), self._code(new.jkey), float(_TYPE_CODES.get(s.type, 0)))
        if new.bucket is not None:
            new.bucket.put(s.unit, row)
        new.square.put(s.unit, row)

    def remove(self, unit: str) -> None:
        """Forget a unit entirely (no-op for an unknown one)."""
        self._snaps.pop(unit, None)
        self._moved.discard(unit)
        old = self._entries.pop(unit, None)
        if old is not None:
            if old.jkey is not None:
                self._jur[old.jkey].drop(unit)
            self._grid[old.cell].drop(unit)

    def _cells_near(self, q: _Query, sigma: float) -> list[_Columns]:
        """Grid cells that can hold a point within central angle `sigma` (reduced sphere) of the caller."""
        lat_deg, lon_deg = q.lat_deg, q.lon_deg
        reach = math.degrees(sigma * 1.05)  # geodetic vs reduced latitude differ by < 0.34% in rate
        r0, r1 = self._row(lat_deg - reach), self._row(lat_deg + reach)
        ratio = math.sin(sigma * 1.05) / max(q.cos_beta, 1e-12)
        if ratio >= 1.0 or r0 == 0 or r1 == self._rows - 1:
            cols: Iterable[int] = range(self._cols)
        else:
            dlon = math.degrees(math.asin(ratio))
            c0 = math.floor((lon_deg - dlon + 180.0) / self._cell)
            c1 = math.floor((lon_deg + dlon + 180.0) / self._cell)
            cols = range(self._cols) if c1 - c0 + 1 >= self._cols else [c % self._cols for c in range(c0, c1 + 1)]
        found = []
        for r in range(r0, r1 + 1):
            base = r * self._cols
            for c in cols:
                cell = self._grid.get(base + c)
                if cell is not None and cell.n:
                    found.append(cell)
        return found

    def _shortlist(
        self, buckets: list[_Columns], q: _Query, exclude: frozenset[str], k: int, outside: frozenset[str] | None,
        max_sigma: float, speeds: npt.NDArray[np.float64],
    ) -> list[str]:
        """Units of `buckets` that may make the top k by ETA: the exact ranking of these equals the exact ranking of all.

        `outside`: neighbour pass, skip units of these jurisdictions and those beyond `max_sigma`. `speeds`: metres per
        second by type code. On the reduced sphere a unit's ETA is A*sigma/v within the factor 0.9928 of the exact one
        (for sigma <= 2 rad), so keeping every unit within _SLACK of the k-th smallest sigma/v loses none.
        """
        if len(buckets) == 1:
            data = buckets[0].data[:, : buckets[0].n]
        else:
            data = np.concatenate([b.data[:, : b.n] for b in buckets], axis=1)
        ft = data[2]
        ok = (ft >= q.lo_us) & (ft <= q.hi_us)
        if outside:
            codes = [self._codes[j] for j in outside if j in self._codes]
            if len(codes) == 1:
                ok &= data[3] != codes[0]
            elif codes:
                ok &= ~np.isin(data[3], codes)
        if exclude:
            offset = 0
            for b in buckets:
                for u in exclude:
                    i = b.pos.get(u)
                    if i is not None:
                        ok[offset + i] = False
                offset += b.n
        beta = np.arctan((1.0 - WGS84_F) * np.tan(np.radians(data[0])))  # as `reduced_latitude`, for the bucket at once
        s1 = np.sin((beta - q.beta) * 0.5)
        s2 = np.sin((np.radians(data[1]) - q.lon) * 0.5)
        h = s1 * s1 + (q.cos_beta * np.cos(beta)) * (s2 * s2)
        if outside is not None:
            ok &= h <= math.sin(min(max_sigma, math.pi) * 0.5) ** 2
        idx = np.flatnonzero(ok)
        if len(idx) > k:
            sigma = 2.0 * np.arcsin(np.sqrt(np.minimum(1.0, h[idx])))
            time = sigma / speeds[data[4][idx].astype(np.intp)]
            # the k-th fastest among the units the exact ranking surely keeps: in the neighbour pass a unit whose
            # A*sigma exceeds the reach may be dropped by it (Lambert's distance <= A*sigma), so it sets no bar
            sure = time if outside is None else time[sigma <= (max_sigma - 1e-15) / _SLACK * (1.0 - 1e-12)]
            if len(sure) >= k:
                kth = float(np.partition(sure, k - 1)[k - 1])
                idx = idx[(time <= kth * _SLACK + 1e-15) | (sigma >= _SHORTLIST_MAX_SIGMA)]
        if len(buckets) == 1:
            ids = buckets[0].ids
            return [ids[i] for i in idx.tolist()]
        # the few ids kept, found by offset (a list of every id in the cells near the caller cost more than the ranking)
        ends = np.cumsum([b.n for b in buckets])
        found = []
        for i, j in zip(idx.tolist(), np.searchsorted(ends, idx, side="right").tolist(), strict=True):
            b = buckets[j]
            found.append(b.ids[i - int(ends[j]) + b.n])
        return found

    def _rank(self, units: list[str], q: _Query, out: bool, max_m: float, opts: RecommendOptions) -> list[Key]:
        ranked = []
        for u in units:
            e = self._entries[u]
            beta, cos_beta = reduced_latitude(e.lat_deg)
            d = lambert_m(q.beta, q.cos_beta, q.lon, beta, cos_beta, math.radians(e.lon_deg))
            if out and d > max_m:
                continue
            ranked.append(_key(d, e.snap.type, max(0, q.now_us - e.fix_us), u, out, opts))
        return ranked

    def _query(self, q: _Query, opts: RecommendOptions, exclude: frozenset[str]) -> list[Key]:
        """Ranking keys of the units that may make the top K (see `recommend`): the jurisdiction's own top K by ETA
        and its neighbours' top K within reach (the top K of all is among them)."""
        speeds = np.array([opts.speed_mps(t) for t in _TYPE_CODES])
        own = [b for b in (self._jur.get(j) for j in q.inside) if b is not None and b.n]
        ranked = self._rank(self._shortlist(own, q, exclude, q.k, None, 0.0, speeds), q, False, 0.0, opts) if own else []
        sigma = opts.neighbour_max_m * _SLACK / WGS84_A + 1e-15
        near = self._cells_near(q, sigma)
        if near:
            found = self._shortlist(near, q, exclude, q.k, q.inside, sigma, speeds)
            ranked += self._rank(found, q, True, opts.neighbour_max_m, opts)
        return ranked


def recommend(
    index: UnitIndex,
    location: Location | None,
    placement: Placement,
    now: datetime,
    opts: RecommendOptions,
    exclude: frozenset[str] = frozenset(),
) -> tuple[Candidate, ...]:
    """The top K candidates for a caller (rules in the module docstring); () when none or no location."""
    q = _prepare(location, placement, now, opts)
    if q is None:
        return ()
    return _candidates(index._query(q, opts, exclude), q.k)

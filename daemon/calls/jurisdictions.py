"""Jurisdiction polygons: which jurisdiction holds a caller or a unit, and which child node gets a call.

Configuration: the `[jurisdictions]` section (`JurisdictionOptions`), for example at Polda
Gorontalo, whose children are the Polres nodes:

    [jurisdictions]
    file = "jurisdictions/gorontalo-adm2.geojson"   # relative to the config file
    include_property = "level"                      # the file also holds the province outline:
    include_values = ["regency", "city"]            # keep only the regencies and the city
    outside_max_m = 5000
    children = ["75.01=gorontalo/gorontalo", "75.71=gorontalo/kota-gorontalo"]

The file is a GeoJSON FeatureCollection of Polygon and MultiPolygon features in WGS84
longitude/latitude. One property holds the id (`code` by default), one the human name (`name`).
An invalid polygon is repaired (`make_valid`). A missing id or name, a duplicate id, another
geometry type, coordinates outside lon/lat range, and one feature lying inside another (the
province outline kept next to its regencies) stop loading with a `JurisdictionError` naming the
file and the feature.

Placing a caller (`JurisdictionIndex.locate`):
- no location, non-finite or out-of-range degrees, or exactly (0, 0) ("Null Island", what a
  receiver without a fix sends): `invalid`;
- the point is in a polygon: `ok`, or `approximate` when the uncertainty circle (`accuracy_m`)
  also reaches other jurisdictions, listed in `others` by overlap area (largest first), then id;
- the point is in no polygon (at sea, off a simplified coast): `outside`, with the nearest
  jurisdiction and its distance in metres when it is within `outside_max_m`, else with
  jurisdiction None (and still the distance): the edge hands the call to the parent node.
A caller whose uncertainty circle lies in a cache cell (`jurisdiction_at`'s) that one
jurisdiction holds alone is `ok` in it without a polygon test: most callers, whose place is
otherwise a tenth of a call's CPU.

Tie rule. A point on a shared border (or in an overlap) is covered by two or more polygons; it
goes to the LOWEST id, in plain string order (`"75.01" < "75.71"`). Why this rule: the borders
are only accurate to tens or hundreds of metres, so no geometric rule (nudging the point north,
largest area) would be more true on the ground; the lowest id is deterministic, independent of
the file's feature order and of the geometry, cheap in the bulk path, and gives the same answer
at every tier that loads the same ids (a Polda routes a border caller to the same Polres that
the Polres' own index names). With an `accuracy_m`, the neighbour is listed in `others`
(`approximate`), so the human sees the call straddles a border. Without one the status is `ok`.

Distances are geodesic on a sphere (R = 6,371,008.8 m): the nearest boundary point is found in a
local equirectangular frame around the caller (longitude scaled by cos(latitude)) and its
distance is a haversine, accurate well within 1% up to a few hundred km. The uncertainty circle
is a 64-gon circumscribing the true circle in that frame (it never misses a neighbour the true
circle reaches). Longitudes are not wrapped at the antimeridian (Indonesia does not cross it).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely  # type: ignore[import-untyped,unused-ignore]

from alkomd.daemon.calls.types import Location, LocationStatus, Placement
from alkomd.daemon.geodesy import EARTH_MEAN_RADIUS_M, haversine_np_m
from alkomd.daemon.schema import NODE_PATTERN, spec

M_PER_DEG = EARTH_MEAN_RADIUS_M * math.pi / 180.0  # metres per degree of latitude (and of longitude at the equator)
CHILD_PATTERN = rf"[^=\s]([^=]*[^=\s])?=({NODE_PATTERN})"  # ID=node/path
GEOMETRY_TYPES = ("Polygon", "MultiPolygon")
CIRCLE_SEGMENTS = 64
CELL_DEG = 0.02  # the cells of `jurisdiction_at`'s cache (about 2.2 km)
_CELLS_PER_DEG = round(1 / CELL_DEG)
_COLS = 360 * _CELLS_PER_DEG
SUBCELLS = 8  # a cell a border crosses is cached again in SUBCELLS x SUBCELLS parts (about 280 m) ...
SUBCELLS_AFTER = 4  # ... once this many of its points were tested (a cell seen once, at a start, is not worth it)
_SUBS_PER_DEG = _CELLS_PER_DEG * SUBCELLS
_BORDER = -2  # a cached cell (part) that a border crosses: its points are looked up one by one
_UNKNOWN = -3

_NO_RANK = np.iinfo(np.int64).max
_CIRCLE_ANGLES = np.linspace(0.0, 2.0 * math.pi, CIRCLE_SEGMENTS + 1)
# Vertices on a circle of radius 1/cos(pi/n): the polygon's edges touch the unit circle from outside.
_UNIT_CIRCLE = np.column_stack((np.cos(_CIRCLE_ANGLES), np.sin(_CIRCLE_ANGLES))) / math.cos(math.pi / CIRCLE_SEGMENTS)
_UNIT_CIRCLE[-1] = _UNIT_CIRCLE[0]  # closed exactly


def _boxes(rows: Sequence[int] | npt.NDArray[np.int64], cols: Sequence[int] | npt.NDArray[np.int64], per_deg: int) -> Any:
    """The boxes of cells (per_deg cells a degree, by row from 90 S and column from 180 W), each a hair larger: a point
    rounded onto a box's edge is still inside."""
    eps = 1e-9
    lat0 = np.asarray(rows, dtype=np.float64) / per_deg - 90.0 - eps
    lon0 = np.asarray(cols, dtype=np.float64) / per_deg - 180.0 - eps
    return shapely.box(lon0, lat0, lon0 + 1.0 / per_deg + 2 * eps, lat0 + 1.0 / per_deg + 2 * eps)


class JurisdictionError(ValueError):
    """A jurisdiction file or option that cannot be used; str() names the file and the feature or key."""

    def __init__(self, file: Path | str | None, where: str, message: str) -> None:
        self.file = "" if file is None else str(file)
        self.where = where
        self.message = message
        super().__init__(": ".join(part for part in (self.file, where, message) if part))


def _check_options(opts: JurisdictionOptions) -> None:
    if opts.include_property and not opts.include_values:
        raise JurisdictionError(None, "include_values", f"must list the values of {opts.include_property!r} to keep")
    if opts.include_values and not opts.include_property:
        raise JurisdictionError(None, "include_property", "must name the property that include_values are matched against")
    if not 0 <= opts.outside_max_m <= 200_000:
        raise JurisdictionError(None, "outside_max_m", f"must be a number between 0 and 200000, got {opts.outside_max_m!r}")
    if opts.child_property and opts.child_property == opts.id_property:
        raise JurisdictionError(None, "child_property", "must differ from id_property")
    seen: dict[str, int] = {}
    for k, entry in enumerate(opts.children):
        if not re.fullmatch(CHILD_PATTERN, entry):
            raise JurisdictionError(None, f"children[{k}]", f"must be ID=node/path (e.g. 75.01=gorontalo/gorontalo), got {entry!r}")
        jid = entry.split("=", 1)[0]
        if jid in seen:
            raise JurisdictionError(None, f"children[{k}]", f"id {jid!r} is mapped twice (also children[{seen[jid]}])")
        seen[jid] = k


@dataclass(frozen=True)
class JurisdictionOptions:
    """The `[jurisdictions]` config section: which polygon file, which properties, how far off the coast."""

    file: Path = spec(must_exist=True, doc="GeoJSON FeatureCollection of (Multi)Polygons, WGS84 lon/lat; relative to the config file.")
    id_property: str = spec("code", doc="Feature property holding the jurisdiction id (e.g. the Kemendagri code 75.01).")
    name_property: str = spec("name", doc="Feature property holding the human name (e.g. Kabupaten Gorontalo).")
    include_property: str = spec("", doc="Keep only features whose property of this name is one of include_values (e.g. level).")
    include_values: tuple[str, ...] = spec(
        (), doc="Values of include_property to keep, compared as text (e.g. regency, city); others are ignored."
    )
    outside_max_m: float = spec(
        5000.0, min=0, max=200_000, doc="A caller in no polygon goes to the nearest one within this distance, else to the parent node."
    )
    child_property: str = spec("", doc="Feature property naming the child node that owns the polygon (Polda/Mabes routing).")
    children: tuple[str, ...] = spec(
        (), pattern=CHILD_PATTERN, doc="Child node per jurisdiction, as ID=node/path (e.g. 75.01=gorontalo/gorontalo)."
    )

    def __post_init__(self) -> None:
        _check_options(self)


@dataclass(frozen=True)
class Jurisdiction:
    """One jurisdiction: id, human name, (Multi)Polygon in lon/lat degrees, and the child node owning it."""

    id: str
    name: str
    geometry: Any  # a shapely Polygon or MultiPolygon (shapely has no type information)
    child: str | None = None


def _usable(lat: float, lon: float) -> bool:
    return math.isfinite(lat) and math.isfinite(lon) and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0


def _cell(y: float, x: float) -> int:
    """The cache cell of a point given in cell units, ((lat + 90) * _CELLS_PER_DEG, (lon + 180) * _CELLS_PER_DEG)."""
    return math.floor(y) * _COLS + min(math.floor(x), _COLS - 1)  # lon 180 is in the last column, not the next row's first


def _lon_scale(lat: float) -> float:
    """cos(latitude), kept away from 0 so that degree conversions stay finite at the poles."""
    return max(math.cos(math.radians(lat)), 1e-6)


def _polygons(geom: Any) -> list[Any]:
    """The Polygons with an area of a polygonal or mixed geometry (nested collections flattened)."""
    parts = shapely.get_parts(geom)
    kinds = shapely.get_type_id(parts)
    while np.isin(kinds, (4, 5, 6, 7)).any():  # multi-geometries and collections
        parts = shapely.get_parts(parts)
        kinds = shapely.get_type_id(parts)
    keep = (kinds == 3) & (shapely.area(parts) > 0)
    result: list[Any] = parts[keep].tolist()
    return result


class JurisdictionIndex:
    """Point-in-polygon over a set of jurisdictions: STRtree of polygon parts, prepared geometries.

    Build it with `load(options)` or `JurisdictionIndex.from_features(...)`. Read-only after
    construction; use it from one thread (the event loop): GEOS fills a prepared geometry's
    internal index lazily, on first use. `ids` is sorted: the tie-break order.
    """

    def __init__(self, jurisdictions: Sequence[Jurisdiction], where: Sequence[str], outside_max_m: float, source: str) -> None:
        """Use `load` or `from_features`: they check and repair the input this trusts."""
        if not 0 <= outside_max_m <= 200_000:
            raise JurisdictionError(source, "outside_max_m", f"must be a number between 0 and 200000, got {outside_max_m!r}")
        order = sorted(range(len(jurisdictions)), key=lambda i: jurisdictions[i].id)
        self._items = tuple(jurisdictions[i] for i in order)
        self._where = tuple(where[i] for i in order)
        self.ids: tuple[str, ...] = tuple(j.id for j in self._items)
        self.outside_max_m = float(outside_max_m)
        self.source = source
        self._rank = {jid: r for r, jid in enumerate(self.ids)}
        parts: list[Any] = []
        owner: list[int] = []
        for r, j in enumerate(self._items):
            for p in _polygons(j.geometry):
                parts.append(p)
                owner.append(r)
        self._parts = np.array(parts, dtype=object)
        self._owner: npt.NDArray[np.int64] = np.array(owner, dtype=np.int64)
        self._id_or_none = np.array([*self.ids, None], dtype=object)  # rank -> id; len(ids) -> None
        shapely.prepare(self._parts)
        self._tree = shapely.STRtree(self._parts)
        self._check_nesting()
        self._cells: dict[int, int] = {}  # cell -> rank of the one jurisdiction holding all of it, len(ids): none, or _BORDER
        # a border cell -> the polygon parts that cross it, their owners, and the rank (as `_cells`) of each of its
        # SUBCELLS x SUBCELLS parts, row by row (None until SUBCELLS_AFTER of its points were tested: `_tested`)
        self._borders: dict[int, tuple[npt.NDArray[Any], npt.NDArray[np.int64], list[int] | None]] = {}
        self._tested: dict[int, int] = {}

    @classmethod
    def from_features(cls, features: Iterable[Jurisdiction], outside_max_m: float = 5000.0, source: str = "<memory>") -> JurisdictionIndex:
        """An index over in-memory jurisdictions (tests, benchmarks); checks them like `load` does."""
        items = list(features)
        where = [f"features[{i}]" for i in range(len(items))]
        return cls(_checked(items, where, source), where, outside_max_m, source)

    # -- lookups ---------------------------------------------------------------------------------

    def name(self, jid: str) -> str:
        """Human name of a jurisdiction; KeyError for an unknown id."""
        return self._items[self._rank[jid]].name

    def child_of(self, jid: str) -> str | None:
        """Path of the child node that owns the jurisdiction, None when none is configured; KeyError if unknown."""
        return self._items[self._rank[jid]].child

    def jurisdiction(self, jid: str) -> Jurisdiction:
        """The loaded record (geometry repaired, child resolved); KeyError for an unknown id."""
        return self._items[self._rank[jid]]

    def jurisdiction_of(self, lat: float, lon: float) -> str | None:
        """Id of the jurisdiction holding a point (tie rule: lowest id), None when in none: for unit positions."""
        if not _usable(lat, lon):
            return None
        ranks = self._covering(lat, lon)
        return self.ids[int(ranks[0])] if ranks.size else None

    def jurisdiction_at(self, lat: float, lon: float) -> str | None:
        """`jurisdiction_of` (the same answer), for a unit's positions: a point in a CELL_DEG cell that lies wholly in
        one jurisdiction (or in none) is answered from a cache of cells, and in a cell a border crosses, from a cache of
        the cell's SUBCELLS x SUBCELLS parts; only the points of a part a border crosses test polygons."""
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):  # NaN included
            return None
        y, x = (lat + 90.0) * _CELLS_PER_DEG, (lon + 180.0) * _CELLS_PER_DEG
        cell = _cell(y, x)
        rank = self._cells.get(cell, _UNKNOWN)
        if rank == _UNKNOWN:
            rank = self._cell_rank(cell)
        if rank == _BORDER:
            parts, owners, subs = self._borders[cell]
            if subs is None:
                tested = self._tested[cell] = self._tested.get(cell, 0) + 1
                if tested >= SUBCELLS_AFTER:
                    subs = self._subcells(cell)
            if subs is not None:
                sx = min(math.floor(x * SUBCELLS), _COLS * SUBCELLS - 1) % SUBCELLS
                rank = subs[math.floor(y * SUBCELLS) % SUBCELLS * SUBCELLS + sx]
            if rank == _BORDER:
                hits = owners[shapely.intersects_xy(parts, lon, lat)]
                return self.ids[int(hits.min())] if hits.size else None
        return self._id_or_none[rank]  # type: ignore[no-any-return]

    def _alone(self, lat: float, lon: float, dlat: float, dlon: float) -> int | None:
        """The rank of the one jurisdiction that holds, alone, a cache cell holding the whole box lat +- dlat, lon +- dlon
        (None: the box crosses cells, or its cell is a border's or no jurisdiction's)."""
        south, north, west, east = lat - dlat, lat + dlat, lon - dlon, lon + dlon
        if not (south >= -90.0 and north <= 90.0 and west >= -180.0 and east <= 180.0):
            return None
        cell = _cell((south + 90.0) * _CELLS_PER_DEG, (west + 180.0) * _CELLS_PER_DEG)
        if cell != _cell((north + 90.0) * _CELLS_PER_DEG, (east + 180.0) * _CELLS_PER_DEG):
            return None
        rank = self._cells.get(cell, _UNKNOWN)
        if rank == _UNKNOWN:
            rank = self._cell_rank(cell)
        return rank if 0 <= rank < len(self.ids) else None

    def _cell_rank(self, cell: int) -> int:
        """The rank of the one jurisdiction covering all of a cell, len(ids) when it touches none, else _BORDER, kept in
        `_cells` (and the polygon parts the cell's points are tested against, and its parts' ranks, in `_borders`)."""
        row, col = divmod(cell, _COLS)
        box = _boxes([row], [col], _CELLS_PER_DEG)[0]
        hit = self._tree.query(box, predicate="intersects")
        parts, owners = self._parts[hit], self._owner[hit]
        rank = self._box_ranks(owners, np.ones((len(parts), 1), dtype=bool), shapely.covers(parts, box)[:, None])[0]
        if rank == _BORDER:
            self._borders[cell] = (parts, owners, None)
        self._cells[cell] = rank
        return rank

    def _subcells(self, cell: int) -> list[int]:
        """The ranks of a border cell's SUBCELLS x SUBCELLS parts, at once (one matrix of polygon parts x boxes for each
        predicate), kept in `_borders`."""
        parts, owners, _ = self._borders[cell]
        row, col = divmod(cell, _COLS)
        rows, cols = np.divmod(np.arange(SUBCELLS * SUBCELLS), SUBCELLS)
        boxes = _boxes(row * SUBCELLS + rows, col * SUBCELLS + cols, _SUBS_PER_DEG)
        touch = shapely.intersects(parts[:, None], boxes[None, :])
        cover = shapely.covers(parts[:, None], boxes[None, :])
        subs = self._box_ranks(owners, touch, cover)
        self._borders[cell] = (parts, owners, subs)
        self._tested.pop(cell, None)
        return subs

    def _box_ranks(self, owners: npt.NDArray[np.int64], touch: npt.NDArray[np.bool_], cover: npt.NDArray[np.bool_]) -> list[int]:
        """For each of some boxes: the rank of the one jurisdiction covering all of it, len(ids) when no polygon part
        touches it, else _BORDER; `touch` and `cover` (polygon parts x boxes): which parts intersect and cover each box,
        `owners`: each part's jurisdiction."""
        none = len(self.ids)
        if not len(owners):
            return [none] * touch.shape[1]
        column = owners[:, None]
        low = np.where(touch, column, _NO_RANK).min(axis=0)
        high = np.where(touch, column, -1).max(axis=0)
        one = (low == high) & (cover & touch).any(axis=0)
        ranks: list[int] = np.where(low == _NO_RANK, none, np.where(one, low, _BORDER)).tolist()
        return ranks

    def assign_bulk(
        self, lats: Sequence[float] | npt.NDArray[np.float64], lons: Sequence[float] | npt.NDArray[np.float64]
    ) -> list[str | None]:
        """`jurisdiction_of` for many points at once (an STRtree over the points, queried with the polygons)."""
        la = np.asarray(lats, dtype=np.float64)
        lo = np.asarray(lons, dtype=np.float64)
        if la.ndim != 1 or la.shape != lo.shape:
            raise ValueError(f"lats and lons must be 1-D and of equal length, got shapes {la.shape} and {lo.shape}")
        best = np.full(la.size, _NO_RANK, dtype=np.int64)
        ok = np.flatnonzero(np.isfinite(la) & np.isfinite(lo) & (np.abs(la) <= 90.0) & (np.abs(lo) <= 180.0))
        if ok.size:
            points = shapely.points(lo[ok], la[ok])
            part_i, point_i = shapely.STRtree(points).query(self._parts, predicate="intersects")
            np.minimum.at(best, ok[point_i], self._owner[part_i])
        best[best == _NO_RANK] = len(self.ids)
        result: list[str | None] = self._id_or_none[best].tolist()
        return result

    def locate(self, location: Location | None) -> Placement:
        """Where a caller is: ok / approximate / outside / invalid (see the module docstring)."""
        if location is None or not _usable(location.lat, location.lon) or (location.lat == 0.0 and location.lon == 0.0):
            return Placement(LocationStatus.INVALID, None)
        lat, lon = location.lat, location.lon
        acc = location.accuracy_m
        radius = acc if acc is not None and math.isfinite(acc) and acc > 0 else None
        reach = (radius or 0.0) * 1.01 / M_PER_DEG  # degrees of latitude; the 64-gon's corners lie 0.12% beyond the circle
        alone = self._alone(lat, lon, reach, reach / _lon_scale(lat))
        if alone is not None:  # the caller and the whole circle are in a cell no other jurisdiction touches
            return Placement(LocationStatus.OK, self.ids[alone])
        return self._locate_by_polygons(lat, lon, radius)

    def _locate_by_polygons(self, lat: float, lon: float, radius: float | None) -> Placement:
        """`locate` for a usable point, from the polygons themselves (no cache)."""
        ranks = self._covering(lat, lon)
        if ranks.size:
            primary = int(ranks[0])
            others = self._reached(lat, lon, radius, primary) if radius is not None else ()
            return Placement(LocationStatus.APPROXIMATE if others else LocationStatus.OK, self.ids[primary], others)
        rank, distance = self._nearest(lat, lon)
        chosen = rank if distance <= self.outside_max_m else None
        others = self._reached(lat, lon, radius, chosen) if radius is not None else ()
        return Placement(LocationStatus.OUTSIDE, None if chosen is None else self.ids[chosen], others, distance)

    def route(self, location: Location | None) -> str | None:
        """Child node path to hand a call to: the child owning the caller's jurisdiction (as `locate` places
        it, nearest within outside_max_m included); None when there is none (keep it here or send it up)."""
        jid = self.locate(location).jurisdiction
        return None if jid is None else self.child_of(jid)

    # -- internals -------------------------------------------------------------------------------

    def _covering(self, lat: float, lon: float) -> npt.NDArray[np.int64]:
        """Sorted ranks of the jurisdictions whose polygons cover the point (border included)."""
        candidates = self._tree.query(shapely.Point(lon, lat))
        if candidates.size == 0:
            return self._owner[:0]
        # For a point, intersects is covers (the border included); intersects_xy uses the prepared parts.
        hits: npt.NDArray[np.intp] = candidates[shapely.intersects_xy(self._parts[candidates], lon, lat)]
        owners = self._owner[hits]
        return owners if owners.size <= 1 else np.unique(owners)

    def _reached(self, lat: float, lon: float, radius_m: float, exclude: int | None) -> tuple[str, ...]:
        """Ids of the jurisdictions (but `exclude`) the uncertainty circle reaches, by overlap area then id."""
        k = _lon_scale(lat)
        circle = shapely.polygons(_UNIT_CIRCLE * (radius_m / (M_PER_DEG * k), radius_m / M_PER_DEG) + (lon, lat))
        parts = self._tree.query(circle, predicate="intersects")
        owners = self._owner[parts]
        if exclude is not None:
            keep = owners != exclude
            parts, owners = parts[keep], owners[keep]
        if parts.size == 0:
            return ()
        areas = shapely.area(shapely.intersection(self._parts[parts], circle))  # degrees², same scale for all
        per_rank = np.bincount(owners, weights=areas, minlength=len(self.ids))
        reached = np.unique(owners)
        ordered = sorted(reached.tolist(), key=lambda r: (-per_rank[r], r))
        return tuple(self.ids[r] for r in ordered)

    def _distances_m(self, parts: npt.NDArray[np.intp], lat: float, lon: float) -> npt.NDArray[np.float64]:
        """Metres from the point to the nearest boundary point of each part (0 when inside)."""
        k = _lon_scale(lat)
        origin = np.array((lon, lat))
        scale = np.array((k, 1.0))
        local = shapely.transform(self._parts[parts], lambda c: (c - origin) * scale)
        nearest = shapely.get_coordinates(shapely.get_point(shapely.shortest_line(local, shapely.Point(0.0, 0.0)), 0))
        return haversine_np_m(lat, lon, nearest[:, 1] + lat, nearest[:, 0] / k + lon)

    def _nearest(self, lat: float, lon: float) -> tuple[int, float]:
        """Rank of the jurisdiction nearest to the point and the distance in metres (ties: lowest id)."""
        first = self._tree.query_nearest(shapely.Point(lon, lat))  # nearest in degrees: a bound, not the answer
        bound = float(self._distances_m(first, lat, lon).min()) * 1.01 + 1.0
        dlat = bound / M_PER_DEG
        dlon = bound / (M_PER_DEG * _lon_scale(min(90.0, abs(lat) + dlat)))
        candidates = self._tree.query(shapely.box(lon - dlon, lat - dlat, lon + dlon, lat + dlat))  # holds `first`
        distances = self._distances_m(candidates, lat, lon)
        best = int(np.lexsort((self._owner[candidates], distances))[0])
        return int(self._owner[candidates[best]]), float(distances[best])

    def _check_nesting(self) -> None:
        """Refuse a jurisdiction whose interior point lies inside another: a province outline left among its
        regencies would take every caller through the tie rule."""
        inner = shapely.point_on_surface(np.array([j.geometry for j in self._items], dtype=object))
        rank_i, part_i = self._tree.query(inner, predicate="within")
        for r, p in zip(rank_i.tolist(), part_i.tolist(), strict=True):
            o = int(self._owner[p])
            if o != r:
                a, b = self._items[r], self._items[o]
                raise JurisdictionError(
                    self.source,
                    self._where[r],
                    f"jurisdiction {a.id!r} overlaps {b.id!r} ({self._where[o]}): an interior point of {a.id!r} is inside {b.id!r}; "
                    "a file holding several levels (e.g. regencies and their province) needs include_property/include_values",
                )


def _checked(items: Sequence[Jurisdiction], where: Sequence[str], source: str) -> list[Jurisdiction]:
    """Validate and repair jurisdictions: ids, names, geometry type, coordinate range, validity."""
    if not items:
        raise JurisdictionError(source, "", "no jurisdictions (is the include filter right?)")
    seen: dict[str, str] = {}
    out: list[Jurisdiction] = []
    for j, w in zip(items, where, strict=True):
        if not j.id or j.id != j.id.strip():
            raise JurisdictionError(source, w, f"empty id or id with surrounding spaces: {j.id!r}")
        if j.id in seen:
            raise JurisdictionError(source, w, f"duplicate id {j.id!r} (also {seen[j.id]})")
        seen[j.id] = w
        if j.child is not None and not re.fullmatch(NODE_PATTERN, j.child):
            raise JurisdictionError(source, w, f"child node path {j.child!r} is not a node path like gorontalo/bone-bolango")
        geom = j.geometry
        if not isinstance(geom, shapely.Geometry) or shapely.get_type_id(geom) not in (3, 6):
            raise JurisdictionError(source, w, f"geometry must be a Polygon or MultiPolygon, got {type(geom).__name__}")
        if shapely.is_empty(geom):
            raise JurisdictionError(source, w, "empty geometry")
        bounds = shapely.bounds(geom)
        if not (np.isfinite(bounds).all() and bounds[0] >= -180 and bounds[2] <= 180 and bounds[1] >= -90 and bounds[3] <= 90):
            raise JurisdictionError(
                source, w, f"coordinates out of range for longitude/latitude degrees (bounds {bounds.tolist()}; swapped lat/lon?)"
            )
        if not shapely.is_valid(geom):
            geom = shapely.make_valid(geom, method="structure", keep_collapsed=False)
            if not _polygons(geom):
                raise JurisdictionError(source, w, "invalid geometry with no area left after repair (make_valid)")
            geom = shapely.multipolygons(_polygons(geom))
            j = Jurisdiction(j.id, j.name, geom, j.child)
        elif not _polygons(geom):
            raise JurisdictionError(source, w, "geometry has no area")
        out.append(j)
    return out


def _feature(raw: Any, i: int, opts: JurisdictionOptions, parsed: Any) -> Jurisdiction | None:
    """One GeoJSON feature as a Jurisdiction (`parsed`: its geometry if already parsed); None when filtered out."""
    where = f"features[{i}]"
    if not isinstance(raw, dict) or raw.get("type") != "Feature":
        raise JurisdictionError(opts.file, where, "not a GeoJSON Feature")
    props = raw.get("properties")
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise JurisdictionError(opts.file, f"{where}.properties", "must be an object")
    if opts.include_property:
        value = props.get(opts.include_property)
        if value is None or str(value) not in opts.include_values:
            return None
    jid = props.get(opts.id_property)
    if jid is None:
        raise JurisdictionError(opts.file, where, f"no {opts.id_property!r} property (the id property, set by id_property)")
    if isinstance(jid, bool) or not isinstance(jid, str | int):
        raise JurisdictionError(opts.file, f"{where}.properties.{opts.id_property}", f"id must be a string or an integer, got {jid!r}")
    name = props.get(opts.name_property)
    if not isinstance(name, str) or not name.strip():
        raise JurisdictionError(
            opts.file, where, f"no usable {opts.name_property!r} property (the name property, set by name_property): {name!r}"
        )
    child: str | None = None
    if opts.child_property:
        value = props.get(opts.child_property)
        if value not in (None, ""):
            if not isinstance(value, str) or not re.fullmatch(NODE_PATTERN, value):
                raise JurisdictionError(
                    opts.file, f"{where}.properties.{opts.child_property}", f"not a node path like gorontalo/bone-bolango: {value!r}"
                )
            child = value
    geometry = raw.get("geometry")
    kind = geometry.get("type") if isinstance(geometry, dict) else None
    if kind not in GEOMETRY_TYPES:
        got = kind if isinstance(kind, str) else "null" if geometry is None else f"an object without a valid type: {geometry!r:.60}"
        raise JurisdictionError(opts.file, f"{where}.geometry", f"must be a Polygon or MultiPolygon, got {got}")
    if parsed is None:
        try:
            parsed = shapely.from_geojson(json.dumps(geometry))
        except shapely.errors.ShapelyError as exc:
            raise JurisdictionError(opts.file, f"{where}.geometry", f"malformed {kind}: {exc}") from None
    return Jurisdiction(str(jid), name.strip(), parsed, child)


def load(opts: JurisdictionOptions) -> JurisdictionIndex:
    """Read, check and index the configured GeoJSON file; raises JurisdictionError."""
    try:
        raw = opts.file.read_bytes()
        doc = json.loads(raw)
    except OSError as exc:
        raise JurisdictionError(opts.file, "", f"cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JurisdictionError(opts.file, "", f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        kind = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
        raise JurisdictionError(opts.file, "", f"not a GeoJSON FeatureCollection with a features array (type {kind!r})")
    features = doc["features"]
    try:  # all geometries in one pass of GEOS's reader; on any problem, feature by feature to name it
        parsed: list[Any] = shapely.get_parts(shapely.from_geojson(raw)).tolist()
    except shapely.errors.ShapelyError:
        parsed = []
    if len(parsed) != len(features):
        parsed = [None] * len(features)
    items: list[Jurisdiction] = []
    where: list[str] = []
    for i, (feature, geom) in enumerate(zip(features, parsed, strict=True)):
        item = _feature(feature, i, opts, geom)
        if item is not None:
            items.append(item)
            where.append(f"features[{i}]")
    items = _with_children(items, where, opts)
    return JurisdictionIndex(_checked(items, where, str(opts.file)), where, opts.outside_max_m, str(opts.file))


def _with_children(items: list[Jurisdiction], where: list[str], opts: JurisdictionOptions) -> list[Jurisdiction]:
    """Apply the `children` mapping (ID=node/path) on top of child_property values."""
    index = {j.id: n for n, j in enumerate(items)}
    for k, entry in enumerate(opts.children):
        jid, path = entry.split("=", 1)
        n = index.get(jid)
        if n is None:
            raise JurisdictionError(opts.file, f"children[{k}]", f"no jurisdiction with id {jid!r} (after the include filter)")
        old = items[n]
        if old.child is not None and old.child != path:
            raise JurisdictionError(
                opts.file,
                f"children[{k}]",
                f"{jid!r} -> {path!r} contradicts its {opts.child_property!r} property {old.child!r} ({where[n]})",
            )
        items[n] = Jurisdiction(old.id, old.name, old.geometry, path)
    return items

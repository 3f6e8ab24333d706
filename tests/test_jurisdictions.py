"""Jurisdictions on the real Gorontalo and Indonesia polygons: placement, tie rule, sea, routing, bulk, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely

from alkomd.daemon.calls.jurisdictions import (
    M_PER_DEG,
    Jurisdiction,
    JurisdictionError,
    JurisdictionIndex,
    JurisdictionOptions,
    load,
)
from alkomd.daemon.calls.types import Location, LocationStatus, Placement
from alkomd.daemon.geodesy import haversine_m
from alkomd.daemon.schema import ConfigError, build

ROOT = Path(__file__).resolve().parents[1]
ADM2 = ROOT / "config" / "jurisdictions" / "gorontalo-adm2.geojson"
# The 38 provinces (ADM1), shipped next to the Gorontalo regencies.
ADM1_IN_REPO = ROOT / "config" / "jurisdictions" / "indonesia-adm1.geojson"
ADM1 = ADM1_IN_REPO
REGENCIES = ("regency", "city")
TELUK_TOMINI = (0.2, 122.5)  # lat, lon: open water, about 32 km from the nearest polygon (shared/data/README.md)
JAKARTA = (-6.2, 106.85)
POLDA_CHILDREN = (
    "75.01=gorontalo/gorontalo",
    "75.02=gorontalo/boalemo",
    "75.03=gorontalo/bone-bolango",
    "75.04=gorontalo/pohuwato",
    "75.05=gorontalo/gorontalo-utara",
    "75.71=gorontalo/kota-gorontalo",
)


def adm2_options(**kw: Any) -> JurisdictionOptions:
    return JurisdictionOptions(file=ADM2, include_property="level", include_values=REGENCIES, **kw)


@pytest.fixture(scope="module")
def adm2() -> JurisdictionIndex:
    return load(adm2_options())


@pytest.fixture(scope="module")
def adm1() -> JurisdictionIndex:
    return load(JurisdictionOptions(file=ADM1))


@pytest.fixture(scope="module")
def adm2_features() -> list[dict[str, Any]]:
    doc = json.loads(ADM2.read_text())
    return [f for f in doc["features"] if f["properties"]["level"] in REGENCIES]


def place(index: JurisdictionIndex, lat: float, lon: float, accuracy_m: float | None = None) -> Placement:
    return index.locate(Location(lat, lon, accuracy_m))


def with_max(index: JurisdictionIndex, outside_max_m: float) -> JurisdictionIndex:
    """The same polygons with another outside_max_m."""
    return JurisdictionIndex.from_features((index.jurisdiction(j) for j in index.ids), outside_max_m=outside_max_m)


def covering(index: JurisdictionIndex, lat: float, lon: float) -> list[str]:
    """Brute force: every jurisdiction whose geometry covers the point."""
    return [j for j in index.ids if shapely.intersects_xy(index.jurisdiction(j).geometry, lon, lat)]


def shared_vertices(index: JurisdictionIndex, a: str, b: str) -> list[tuple[float, float]]:
    """(lat, lon) of the vertices two jurisdictions have in common, sorted."""
    va = {tuple(c) for c in shapely.get_coordinates(index.jurisdiction(a).geometry).tolist()}
    vb = {tuple(c) for c in shapely.get_coordinates(index.jurisdiction(b).geometry).tolist()}
    return sorted((lat, lon) for lon, lat in va & vb)


def brute_nearest(index: JurisdictionIndex, lat: float, lon: float) -> tuple[str, float, tuple[float, float]]:
    """Nearest jurisdiction by haversine to its boundary densified every ~55 m: (id, metres, (lat, lon))."""
    best: tuple[str, float, tuple[float, float]] = ("", math.inf, (0.0, 0.0))
    for j in index.ids:
        xy = shapely.get_coordinates(shapely.segmentize(index.jurisdiction(j).geometry, 0.0005))
        la1, lo1, la2, lo2 = np.radians(lat), np.radians(lon), np.radians(xy[:, 1]), np.radians(xy[:, 0])
        h = np.sin((la2 - la1) / 2) ** 2 + np.cos(la1) * np.cos(la2) * np.sin((lo2 - lo1) / 2) ** 2
        d = 2 * 6_371_008.8 * np.arcsin(np.sqrt(h))
        k = int(np.argmin(d))
        if d[k] < best[1]:
            best = (j, float(d[k]), (float(xy[k, 1]), float(xy[k, 0])))
    return best


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    return lat + north_m / M_PER_DEG, lon + east_m / (M_PER_DEG * math.cos(math.radians(lat)))


# -- loading and plain lookups --------------------------------------------------------------------


def test_the_six_regencies_load_without_the_province_outline(adm2: JurisdictionIndex) -> None:
    assert adm2.ids == ("75.01", "75.02", "75.03", "75.04", "75.05", "75.71")
    assert adm2.name("75.03") == "Kabupaten Bone Bolango"
    assert adm2.name("75.71") == "Kota Gorontalo"
    assert adm2.outside_max_m == 5000
    assert adm2.child_of("75.01") is None
    with pytest.raises(KeyError):
        adm2.name("75")


def test_every_label_point_lies_in_its_own_feature(adm2: JurisdictionIndex, adm2_features: list[dict[str, Any]]) -> None:
    assert len(adm2_features) == 6
    for f in adm2_features:
        p = f["properties"]
        placement = place(adm2, p["label_lat"], p["label_lon"])
        assert placement == Placement(LocationStatus.OK, p["code"]), p["name"]
        assert adm2.jurisdiction_of(p["label_lat"], p["label_lon"]) == p["code"]


def test_every_province_label_point_lies_in_its_province(adm1: JurisdictionIndex) -> None:
    doc = json.loads(ADM1.read_text())
    assert len(adm1.ids) == 38
    for f in doc["features"]:
        p = f["properties"]
        assert place(adm1, p["label_lat"], p["label_lon"]) == Placement(LocationStatus.OK, p["code"]), p["name"]


def test_mabes_index_places_jakarta_and_gorontalo_city(adm1: JurisdictionIndex, adm2_features: list[dict[str, Any]]) -> None:
    assert place(adm1, *JAKARTA).jurisdiction == "31"
    assert adm1.name("31") == "Daerah Khusus Ibukota Jakarta"
    kota = next(f["properties"] for f in adm2_features if f["properties"]["code"] == "75.71")
    assert place(adm1, kota["label_lat"], kota["label_lon"]) == Placement(LocationStatus.OK, "75")
    assert adm1.name("75") == "Gorontalo"


@pytest.mark.parametrize(
    "location",
    [None, Location(0.0, 0.0), Location(0.0, 0.0, 30.0), Location(math.nan, 123.0), Location(0.5, math.inf), Location(91.0, 123.0)],
    ids=["none", "null-island", "null-island-with-accuracy", "nan", "inf", "lat-91"],
)
def test_no_usable_location_is_invalid(adm2: JurisdictionIndex, location: Location | None) -> None:
    assert adm2.locate(location) == Placement(LocationStatus.INVALID, None)
    assert adm2.route(location) is None


# -- borders ----------------------------------------------------------------------------------------


def test_a_point_on_a_shared_border_goes_to_the_lowest_id(adm2: JurisdictionIndex) -> None:
    vertices = shared_vertices(adm2, "75.01", "75.71")
    assert len(vertices) > 20
    lat, lon = next(v for v in vertices if covering(adm2, *v) == ["75.01", "75.71"])  # not a triple junction
    for _ in range(2):  # deterministic
        assert adm2.jurisdiction_of(lat, lon) == "75.01"
        assert place(adm2, lat, lon) == Placement(LocationStatus.OK, "75.01")
    # With an uncertainty radius the neighbour is listed.
    assert place(adm2, lat, lon, 20.0) == Placement(LocationStatus.APPROXIMATE, "75.01", ("75.71",))
    # The rule does not depend on the order of the features.
    reversed_index = JurisdictionIndex.from_features([adm2.jurisdiction(j) for j in reversed(adm2.ids)])
    assert reversed_index.jurisdiction_of(lat, lon) == "75.01"
    assert adm2.assign_bulk([lat], [lon]) == ["75.01"]


def test_every_shared_vertex_follows_the_tie_rule(adm2: JurisdictionIndex) -> None:
    points = sorted({v for i, a in enumerate(adm2.ids) for b in adm2.ids[i + 1 :] for v in shared_vertices(adm2, a, b)})
    assert len(points) > 1000
    triple = 0
    for lat, lon in points:
        owners = covering(adm2, lat, lon)
        assert len(owners) >= 2
        triple += len(owners) > 2
        assert adm2.jurisdiction_of(lat, lon) == min(owners)
    assert triple >= 1  # the data has junctions of three regencies too
    lats, lons = zip(*points, strict=True)
    assert adm2.assign_bulk(lats, lons) == [min(covering(adm2, la, lo)) for la, lo in points]


def test_an_uncertainty_circle_across_a_border_is_approximate(adm2: JurisdictionIndex) -> None:
    # A point about 500 m inside Kota Gorontalo from a vertex of its border with Kab. Gorontalo.
    lat0, lon0 = shared_vertices(adm2, "75.01", "75.71")[0]
    candidates = [offset(lat0, lon0, 500 * math.cos(a), 500 * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 16, endpoint=False)]
    lat, lon = next(c for c in candidates if place(adm2, *c, 100.0) == Placement(LocationStatus.OK, "75.71"))
    assert place(adm2, lat, lon) == Placement(LocationStatus.OK, "75.71")
    near = place(adm2, lat, lon, 2000.0)
    assert near.status is LocationStatus.APPROXIMATE
    assert near.jurisdiction == "75.71"
    assert "75.01" in near.others and "75.71" not in near.others
    assert near.distance_m is None


def test_others_are_ordered_by_overlap_area(adm2: JurisdictionIndex, adm2_features: list[dict[str, Any]]) -> None:
    kota = next(f["properties"] for f in adm2_features if f["properties"]["code"] == "75.71")
    lat, lon, r = kota["label_lat"], kota["label_lon"], 6000.0
    placement = place(adm2, lat, lon, r)
    assert placement.status is LocationStatus.APPROXIMATE and placement.jurisdiction == "75.71"
    # Independently: a true circle in a local metric frame, intersected with each neighbour.
    k = math.cos(math.radians(lat))
    circle = shapely.Point(0.0, 0.0).buffer(r, quad_segs=64)
    areas = {}
    for j in adm2.ids:
        local = shapely.transform(adm2.jurisdiction(j).geometry, lambda c: (c - (lon, lat)) * (M_PER_DEG * k, M_PER_DEG))
        area = shapely.area(shapely.intersection(local, circle))
        if j != "75.71" and area > 0:
            areas[j] = area
    assert len(areas) >= 2
    assert placement.others == tuple(sorted(areas, key=lambda j: (-areas[j], j)))


# -- outside every polygon ----------------------------------------------------------------------------


def test_teluk_tomini_is_outside_and_handed_up_unless_the_reach_allows(adm2: JurisdictionIndex) -> None:
    lat, lon = TELUK_TOMINI
    nearest_id, nearest_m, _ = brute_nearest(adm2, lat, lon)
    placement = place(adm2, lat, lon)
    assert placement.status is LocationStatus.OUTSIDE
    assert placement.jurisdiction is None  # beyond 5 km: the edge hands the call to the parent
    assert placement.distance_m is not None and 25_000 <= placement.distance_m <= 40_000
    assert abs(placement.distance_m - nearest_m) < 60  # metres, not degrees: agrees with a densified haversine
    far = place(with_max(adm2, 50_000), lat, lon)
    assert far == Placement(LocationStatus.OUTSIDE, nearest_id, (), placement.distance_m)
    assert adm2.jurisdiction_of(lat, lon) is None


def test_a_boat_300_m_off_the_coast_goes_to_the_nearest_regency(adm2: JurisdictionIndex) -> None:
    # From the coast point nearest to Teluk Tomini, 300 m out towards open water: the disc around
    # Teluk Tomini that reaches that coast point holds no land, so the boat is 300 m from the coast.
    nearest_id, d, (clat, clon) = brute_nearest(adm2, *TELUK_TOMINI)
    f = 300.0 / d
    lat, lon = clat + (TELUK_TOMINI[0] - clat) * f, clon + (TELUK_TOMINI[1] - clon) * f
    assert adm2.jurisdiction_of(lat, lon) is None
    placement = place(adm2, lat, lon)
    assert placement.status is LocationStatus.OUTSIDE
    assert placement.jurisdiction == nearest_id
    assert placement.distance_m is not None and 240 <= placement.distance_m <= 310
    with_circle = place(adm2, lat, lon, 1000.0)
    assert with_circle.status is LocationStatus.OUTSIDE and with_circle.jurisdiction == nearest_id
    assert nearest_id not in with_circle.others


def test_a_coast_point_outside_the_coarser_province_outline_is_caught_by_outside_max(
    adm1: JurisdictionIndex, adm2: JurisdictionIndex
) -> None:
    # The ADM1 Gorontalo polygon is coarser than the regencies at the coast (shared/data/README.md):
    # take the largest piece of Gorontalo Utara (the Kwandang coast) that ADM1 does not cover.
    pieces = shapely.get_parts(shapely.difference(adm2.jurisdiction("75.05").geometry, adm1.jurisdiction("75").geometry))
    piece = max(pieces.tolist(), key=lambda p: p.area)
    point = piece.representative_point()
    lat, lon = point.y, point.x
    assert place(adm2, lat, lon) == Placement(LocationStatus.OK, "75.05")
    strict = place(with_max(adm1, 0), lat, lon)
    assert strict.status is LocationStatus.OUTSIDE and strict.jurisdiction is None
    assert strict.distance_m is not None and 0 < strict.distance_m < 2000
    assert place(with_max(adm1, 2000), lat, lon) == Placement(LocationStatus.OUTSIDE, "75", (), strict.distance_m)


# -- routing ------------------------------------------------------------------------------------------


def test_polda_routes_to_the_child_holding_the_caller(adm2_features: list[dict[str, Any]]) -> None:
    polda = load(adm2_options(children=POLDA_CHILDREN))
    assert polda.child_of("75.03") == "gorontalo/bone-bolango"
    for f in adm2_features:
        p = f["properties"]
        assert polda.route(Location(p["label_lat"], p["label_lon"], 50.0)) == polda.child_of(p["code"])
    assert polda.route(Location(*TELUK_TOMINI)) is None  # nobody's: keep it or send it up
    assert polda.route(None) is None


def test_mabes_routes_a_province_with_a_child_and_keeps_the_rest(adm2_features: list[dict[str, Any]]) -> None:
    mabes = load(JurisdictionOptions(file=ADM1, children=("75=gorontalo", "71=sulawesi-utara")))
    kota = next(f["properties"] for f in adm2_features if f["properties"]["code"] == "75.71")
    assert mabes.route(Location(kota["label_lat"], kota["label_lon"])) == "gorontalo"
    assert mabes.route(Location(*JAKARTA)) is None  # DKI Jakarta has no child node configured here


def test_child_property_names_the_child_node(tmp_path: Path) -> None:
    doc = json.loads(ADM2.read_text())
    for f in doc["features"]:
        f["properties"]["node"] = "gorontalo/" + f["properties"]["name"].lower().replace("kabupaten ", "").replace(" ", "-")
    path = tmp_path / "with-nodes.geojson"
    path.write_text(json.dumps(doc))

    def options(children: tuple[str, ...] = ()) -> JurisdictionOptions:
        return JurisdictionOptions(file=path, include_property="level", include_values=REGENCIES, child_property="node", children=children)

    polda = load(options())
    assert polda.child_of("75.03") == "gorontalo/bone-bolango"
    assert polda.child_of("75.71") == "gorontalo/kota-gorontalo"
    # The children mapping may agree with the property, not contradict it.
    assert load(options(POLDA_CHILDREN[2:3])).child_of("75.03") == "gorontalo/bone-bolango"
    with pytest.raises(JurisdictionError, match=r"children\[0\]: '75.03' -> 'gorontalo/x' contradicts"):
        load(options(("75.03=gorontalo/x",)))


# -- bulk -----------------------------------------------------------------------------------------------


def test_bulk_assignment_equals_point_lookups(adm2: JurisdictionIndex, adm1: JurisdictionIndex) -> None:
    rng = np.random.default_rng(20261122)
    lats = rng.uniform(0.25, 1.10, 2000)
    lons = rng.uniform(121.1, 123.6, 2000)
    lats[:3] = [math.nan, 0.5, 95.0]
    bulk = adm2.assign_bulk(lats, lons)
    assert bulk == [adm2.jurisdiction_of(la, lo) for la, lo in zip(lats.tolist(), lons.tolist(), strict=True)]
    assert bulk[0] is None and bulk[2] is None
    assert set(bulk) == {*adm2.ids, None}  # every regency and the sea were hit
    lats = rng.uniform(-11.0, 6.0, 2000)
    lons = rng.uniform(95.0, 141.0, 2000)
    bulk = adm1.assign_bulk(lats.tolist(), lons.tolist())
    assert bulk == [adm1.jurisdiction_of(la, lo) for la, lo in zip(lats.tolist(), lons.tolist(), strict=True)]
    assert sum(b is not None for b in bulk) > 300
    assert adm1.assign_bulk([], []) == []
    with pytest.raises(ValueError, match="equal length"):
        adm1.assign_bulk([1.0, 2.0], [3.0])


def test_a_caller_placed_from_the_cell_cache_is_placed_as_the_polygons_place_him(adm2: JurisdictionIndex) -> None:
    """`locate` answers a caller whose uncertainty circle lies in a cache cell that one jurisdiction holds alone without
    testing polygons: the same placement as from the polygons, for callers anywhere (near borders too), with and
    without an accuracy, on the regencies and on the provinces."""
    rng = np.random.default_rng(20261207)
    for index, (south, north, west, east) in ((with_max(adm2, 5000.0), (0.25, 1.10, 121.1, 123.6)),
                                               (load(JurisdictionOptions(file=ADM1)), (-11.0, 6.0, 95.0, 141.0))):
        lats, lons = rng.uniform(south, north, 3000).tolist(), rng.uniform(west, east, 3000).tolist()
        accuracies = [None, 0.0, 5.0, 30.0, 300.0, 3000.0, 30000.0]
        statuses = set()
        for i, (lat, lon) in enumerate(zip(lats, lons, strict=True)):
            acc = accuracies[i % len(accuracies)]
            got = index.locate(Location(lat, lon, acc))
            assert got == index._locate_by_polygons(lat, lon, acc or None), (lat, lon, acc)
            statuses.add(got.status)
        assert statuses == {LocationStatus.OK, LocationStatus.APPROXIMATE, LocationStatus.OUTSIDE}
        alone = sum(0 <= r < len(index.ids) for r in index._cells.values())
        assert alone > 300  # most callers on land were answered from a cell


# -- in-memory features and repair ----------------------------------------------------------------------


def test_an_invalid_polygon_is_repaired() -> None:
    bowtie = shapely.Polygon([(0.1, 0.1), (0.3, 0.3), (0.3, 0.1), (0.1, 0.3), (0.1, 0.1)])
    assert not bowtie.is_valid
    square = shapely.box(0.3, 0.1, 0.5, 0.3)
    index = JurisdictionIndex.from_features([Jurisdiction("A", "bowtie", bowtie), Jurisdiction("B", "square", square, "x/b")])
    assert index.jurisdiction("A").geometry.is_valid
    assert index.jurisdiction_of(0.2, 0.12) == "A"  # lower lobe
    assert index.jurisdiction_of(0.2, 0.28) == "A"  # upper lobe
    assert index.jurisdiction_of(0.12, 0.2) is None  # the bowtie's notch
    assert index.jurisdiction_of(0.2, 0.3) == "A"  # the bowtie's corner on B's edge: lowest id
    assert index.route(Location(0.2, 0.4)) == "x/b"


def test_in_memory_features_are_checked_like_a_file() -> None:
    a = Jurisdiction("A", "a", shapely.box(0.1, 0.1, 0.2, 0.2))
    with pytest.raises(JurisdictionError, match=r"^<memory>: features\[1\]: duplicate id 'A' \(also features\[0\]\)"):
        JurisdictionIndex.from_features([a, a])
    with pytest.raises(JurisdictionError, match=r"features\[0\]: geometry must be a Polygon or MultiPolygon, got LineString"):
        JurisdictionIndex.from_features([Jurisdiction("L", "line", shapely.LineString([(0, 0), (1, 1)]))])
    with pytest.raises(JurisdictionError, match=r"outside_max_m: must be a number between 0 and 200000"):
        JurisdictionIndex.from_features([a], outside_max_m=-1.0)


def test_haversine() -> None:
    assert haversine_m(0.0, 0.0, 0.0, 1.0) == pytest.approx(M_PER_DEG)
    assert haversine_m(0.5, 123.0, 0.5, 123.0) == 0.0


# -- errors -------------------------------------------------------------------------------------------


def feature(code: str | None, geometry: dict[str, Any] | None, **props: Any) -> dict[str, Any]:
    properties = {"name": f"Area {code}", **props}
    if code is not None:
        properties["code"] = code
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def square(x: float, y: float) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[[x, y], [x + 1, y], [x + 1, y + 1], [x, y + 1], [x, y]]]}


def write_fc(tmp_path: Path, features: list[dict[str, Any]] | str) -> Path:
    path = tmp_path / "areas.geojson"
    doc = features if isinstance(features, str) else json.dumps({"type": "FeatureCollection", "features": features})
    path.write_text(doc)
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", r"areas\.geojson: not valid JSON"),
        ('{"type": "Feature"}', r"areas\.geojson: not a GeoJSON FeatureCollection"),
        ([feature("A", square(0, 0)), feature("B", {"type": "LineString", "coordinates": [[0, 0], [1, 1]]})],
         r"features\[1\]\.geometry: must be a Polygon or MultiPolygon, got LineString"),
        ([feature("A", None)], r"features\[0\]\.geometry: must be a Polygon or MultiPolygon"),
        ([feature("A", square(0, 0)), feature(None, square(2, 0))], r"features\[1\]: no 'code' property"),
        ([feature("A", square(0, 0)), feature("A", square(2, 0))], r"features\[1\]: duplicate id 'A' \(also features\[0\]\)"),
        ([feature("A", {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1]]]})], r"features\[0\]\.geometry: malformed Polygon"),
        ([feature("A", square(0.5, 120))], r"features\[0\]: coordinates out of range .*swapped lat/lon"),
        ([feature("A", square(0, 0)), {"type": "Feature", "properties": {"code": "B"}, "geometry": square(2, 0)}],
         r"features\[1\]: no usable 'name' property"),
        ([feature("A", square(0, 0)), feature("B", {"type": "Polygon", "coordinates": [[[0, 0], [3, 0], [3, 3], [0, 3], [0, 0]]]})],
         r"overlaps .*include_property/include_values"),
        ([feature("A", {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [2, 0], [0, 0]]]})], r"features\[0\]: .*no area"),
        ([feature("A", square(0, 0), child="Not A Path")], r"features\[0\]\.properties\.child: not a node path"),
        ([], r"no jurisdictions"),
    ],
    ids=[
        "not-json", "not-a-collection", "linestring", "null-geometry", "missing-id", "duplicate-id", "open-ring",
        "swapped-lat-lon", "missing-name", "nested-levels", "no-area", "bad-child", "empty",
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, content: list[dict[str, Any]] | str, message: str) -> None:
    path = write_fc(tmp_path, content)
    with pytest.raises(JurisdictionError, match=message) as info:
        load(JurisdictionOptions(file=path, child_property="child"))
    assert str(path) in str(info.value)


def test_an_include_filter_matching_nothing_and_an_unknown_child_id_are_errors(tmp_path: Path) -> None:
    with pytest.raises(JurisdictionError, match=r"no jurisdictions \(is the include filter right\?\)"):
        load(JurisdictionOptions(file=ADM2, include_property="level", include_values=("village",)))
    with pytest.raises(JurisdictionError, match=r"children\[1\]: no jurisdiction with id '75'"):
        load(adm2_options(children=("75.01=gorontalo/gorontalo", "75=gorontalo")))
    with pytest.raises(JurisdictionError, match=r"cannot read"):
        load(JurisdictionOptions(file=tmp_path))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"children": ("75.01 gorontalo",)}, r"^children\[0\]: must be ID=node/path"),
        ({"children": ("75.01=Gorontalo/X",)}, r"^children\[0\]: must be ID=node/path"),
        ({"children": ("75.01=",)}, r"^children\[0\]: must be ID=node/path"),
        ({"children": (" 75.01=gorontalo",)}, r"^children\[0\]: must be ID=node/path"),
        ({"children": ("75.01=a", "75.01=b")}, r"^children\[1\]: id '75.01' is mapped twice"),
        ({"include_property": "level"}, r"^include_values: must list"),
        ({"include_values": ("regency",)}, r"^include_property: must name"),
        ({"outside_max_m": -1.0}, r"^outside_max_m: must be a number between 0 and 200000"),
        ({"child_property": "code"}, r"^child_property: must differ"),
    ],
)
def test_bad_options_are_refused(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(JurisdictionError, match=message):
        JurisdictionOptions(file=ADM2, **kw)


def test_the_config_section_builds_strictly(tmp_path: Path) -> None:
    config_file = tmp_path / "alkomd.toml"
    (tmp_path / "jurisdictions").mkdir()
    (tmp_path / "jurisdictions" / "g.geojson").write_bytes(ADM2.read_bytes())
    table = {
        "file": "jurisdictions/g.geojson",
        "include_property": "level",
        "include_values": ["regency", "city"],
        "outside_max_m": 8000,
        "children": ["75.03=gorontalo/bone-bolango"],
    }
    opts = build(JurisdictionOptions, table, "jurisdictions", config_file)
    assert opts.file == tmp_path / "jurisdictions" / "g.geojson"
    assert opts.include_values == REGENCIES and opts.outside_max_m == 8000.0
    assert load(opts).child_of("75.03") == "gorontalo/bone-bolango"
    bad = [
        ({**table, "children": ["75.03:gorontalo"]}, "jurisdictions.children[0]"),
        ({**table, "outside_max_m": 300_000}, "jurisdictions.outside_max_m"),
        ({**table, "file": "missing.geojson"}, "jurisdictions.file"),
        ({**table, "radius": 3}, "jurisdictions.radius"),
        ({**table, "include_values": []}, "jurisdictions"),
    ]
    for t, key in bad:
        with pytest.raises(ConfigError) as info:
            build(JurisdictionOptions, t, "jurisdictions", config_file)
        assert info.value.key == key, str(info.value)

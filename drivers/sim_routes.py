"""Routes for simulated units: polylines along Gorontalo's main roads, and where a unit driving one is at a given time."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

from alkomd.daemon.geodesy import haversine_m


class Position(NamedTuple):
    """Where a simulated unit is: degrees, and course over ground in degrees from true north."""

    lat: float
    lon: float
    course: float


def bearing_deg(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Initial bearing from a to b, degrees in [0, 360)."""
    la1, lo1, la2, lo2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    y = math.sin(lo2 - lo1) * math.cos(la2)
    x = math.cos(la1) * math.sin(la2) - math.sin(la1) * math.cos(la2) * math.cos(lo2 - lo1)
    return math.degrees(math.atan2(y, x)) % 360.0


@dataclass(frozen=True)
class Route:
    """A polyline of (lat, lon) waypoints. Closed (first == last) routes loop; open ones go back and forth."""

    name: str
    summary: str
    waypoints: tuple[tuple[float, float], ...]
    cumulative_m: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.waypoints) < 2:
            raise ValueError(f"route {self.name!r}: needs at least two waypoints")
        cum = [0.0]
        for a, b in zip(self.waypoints, self.waypoints[1:], strict=False):
            cum.append(cum[-1] + haversine_m(*a, *b))
        object.__setattr__(self, "cumulative_m", tuple(cum))

    @property
    def loop(self) -> bool:
        return self.waypoints[0] == self.waypoints[-1]

    @property
    def length_m(self) -> float:
        return self.cumulative_m[-1]


def _route(name: str, summary: str, *points: tuple[float, float]) -> Route:
    return Route(name, summary, tuple(points))


# Waypoints follow the main roads roughly (from general knowledge, checked to fall inside the
# right regency of the real polygons in shared/data/gorontalo-adm2.geojson).
ROUTES: dict[str, Route] = {
    r.name: r
    for r in (
        _route(
            "kota-gorontalo-loop",
            "A patrol loop through the centre of Kota Gorontalo.",
            (0.5436, 123.0573), (0.5478, 123.0625), (0.5523, 123.0688), (0.5468, 123.0742),
            (0.5402, 123.0716), (0.5351, 123.0660), (0.5332, 123.0590), (0.5381, 123.0541),
            (0.5436, 123.0573),
        ),
        _route(
            "limboto-gorontalo",
            "Limboto (Kab. Gorontalo) to Kota Gorontalo and back, north of Lake Limboto.",
            (0.6235, 122.9795), (0.6130, 122.9950), (0.6000, 123.0120), (0.5850, 123.0270),
            (0.5700, 123.0400), (0.5560, 123.0520), (0.5450, 123.0590),
        ),
        _route(
            "bone-bolango-coast",
            "Kota Gorontalo harbour east along the Bone Bolango coast road and back.",
            (0.5120, 123.0640), (0.5050, 123.0900), (0.4960, 123.1200), (0.4890, 123.1500),
            (0.4790, 123.1800), (0.4650, 123.2100), (0.4500, 123.2400),
        ),
        _route(
            "gorontalo-kwandang",
            "Kota Gorontalo through Limboto and Isimu north to Kwandang (Gorontalo Utara) and back.",
            (0.5560, 123.0520), (0.5850, 123.0270), (0.6235, 122.9795), (0.6400, 122.9300),
            (0.6530, 122.8800), (0.7000, 122.8700), (0.7500, 122.8800), (0.8000, 122.9000),
            (0.8390, 122.9150),
        ),
        _route(
            "marisa-town",
            "A loop through Marisa, the seat of Kab. Pohuwato.",
            (0.4700, 121.9300), (0.4740, 121.9400), (0.4700, 121.9500), (0.4630, 121.9450),
            (0.4640, 121.9340), (0.4700, 121.9300),
        ),
        _route(
            "tilamuta-town",
            "A loop through Tilamuta, the seat of Kab. Boalemo.",
            (0.5150, 122.3360), (0.5190, 122.3450), (0.5160, 122.3550), (0.5115, 122.3500),
            (0.5110, 122.3400), (0.5150, 122.3360),
        ),
    )
}


def position_at(route: Route, speed_kmh: float, t_s: float) -> Position:
    """Where a unit that left the route's start `t_s` seconds ago at `speed_kmh` is now.

    Closed routes loop; open routes are driven to the end and back. Distances are great-circle;
    between two waypoints the position is interpolated linearly (segments are short).
    """
    total = route.length_m
    pts, cum = route.waypoints, route.cumulative_m
    if total <= 0 or speed_kmh <= 0:
        return Position(pts[0][0], pts[0][1], 0.0)
    d = speed_kmh / 3.6 * max(t_s, 0.0)
    forward = True
    if route.loop:
        d %= total
    else:
        d %= 2 * total
        if d > total:
            d, forward = 2 * total - d, False
    i = 0
    while i < len(pts) - 2 and (cum[i + 1] <= d or cum[i + 1] == cum[i]):
        i += 1
    a, b = pts[i], pts[i + 1]
    seg = cum[i + 1] - cum[i]
    f = min(max((d - cum[i]) / seg, 0.0), 1.0) if seg > 0 else 0.0
    lat = a[0] + (b[0] - a[0]) * f
    lon = a[1] + (b[1] - a[1]) * f
    course = bearing_deg(a, b) if forward else bearing_deg(b, a)
    return Position(lat, lon, course)

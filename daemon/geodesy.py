"""Distances on the Earth: one haversine for the whole project (checked against WGS84 in the tests)."""

from __future__ import annotations

import math

EARTH_MEAN_RADIUS_M = 6_371_008.8  # IUGG mean radius R1


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres on the mean-radius sphere (up to 0.56% off WGS84 in Indonesia)."""
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    s1 = math.sin((p2 - p1) * 0.5)
    s2 = math.sin(math.radians(lon2 - lon1) * 0.5)
    h = s1 * s1 + math.cos(p1) * math.cos(p2) * s2 * s2
    return 2.0 * EARTH_MEAN_RADIUS_M * math.asin(math.sqrt(min(1.0, h)))

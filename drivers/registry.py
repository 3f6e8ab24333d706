"""Finds drivers by name: the built-in ones and those other packages register under `alkomd.drivers`.

Drivers are imported only when a configuration uses them, so a station without Modbus modems
never pays for importing pymodbus.
"""

from __future__ import annotations

import importlib
import logging
from functools import cache
from importlib.metadata import entry_points

from alkomd.drivers.base import DriverSpec

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "alkomd.drivers"
BUILTIN = {
    "nmea": "alkomd.drivers.nmea_serial",
    "fleetsync": "alkomd.drivers.fleetsync",
    "modbus": "alkomd.drivers.modbus",
    "gpsd": "alkomd.drivers.gpsd",
    "nmea_udp": "alkomd.drivers.nmea_udp",
    "simulator": "alkomd.drivers.simulator",
    "tetra": "alkomd.drivers.tetra_driver",
    "owntracks": "alkomd.drivers.owntracks_driver",
    "lrrp": "alkomd.drivers.lrrp_driver",
    "hytera": "alkomd.drivers.hytera_driver",
}


def names() -> list[str]:
    """Every driver name known, built-in first."""
    extra = sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} - set(BUILTIN))
    return list(BUILTIN) + extra


@cache
def get(name: str) -> DriverSpec | None:
    """The driver called `name`, or None. Built-ins win over an entry point of the same name."""
    if name in BUILTIN:
        spec = importlib.import_module(BUILTIN[name]).DRIVER
        assert isinstance(spec, DriverSpec)
        return spec
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        try:
            loaded = ep.load()
        except Exception:  # a broken third-party plug-in is reported, not fatal to the caller
            log.exception("driver plug-in %s (%s) failed to load", ep.name, ep.value)
            return None
        if isinstance(loaded, DriverSpec):
            return loaded
        log.error("driver plug-in %s (%s) is not a DriverSpec", ep.name, ep.value)
    return None

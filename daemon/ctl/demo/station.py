"""The demo's simulated station: its units, their radios and routes, and the daemon's configuration for them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = "polri110"
NODE_PATH = "gorontalo/kota-gorontalo"
NODE_NAME = "Polres Gorontalo Kota (demo)"
# The faulty car's script (START+SECONDS:KIND from its start), each long enough to cross the state
# thresholds of a device with the default settings (silent_after_s 10, no_fix_after_s 30): a test
# holds them to it. What each one shows in the view is FAULT_SHOWS.
NO_FIX_AFTER_S = 30.0
FAULTY_DEVICE_FAULTS = ("20+15:unplug", "45+20:noise", "75+6:bad_checksum", "95+40:no_fix")
FAULT_SHOWS = {
    "unplug": "disconnected, then waiting and connected when plugged back",
    "noise": "line noise between sentences: the garbage column climbs, the sentences still decode",
    "bad_checksum": "every checksum wrong: degraded until the corrupt sentences leave its 10 s window",
    "no_fix": f"sentences without a fix: no_fix once {NO_FIX_AFTER_S:g} s pass without one",
}
BASE_RADIO = "base-radio"
BASE_RADIO_FAULTS = ("40+10:emergency",)
HANDHELDS = (("HT-01", "Rajawali 01", "100-1001"), ("HT-02", "Rajawali 02", "100-1002"), ("HT-03", "Rajawali 03", "100-1003"))
TRBO_DEVICE = "trbo-cs"  # a simulated MOTOTRBO control station (lrrp driver, radios on loopback)
TRBO_RADIOS = (
    ("HT-11", "Garuda 11", "2101", "kota-gorontalo-loop", 5.0),
    ("HT-12", "Garuda 12", "2102", "bone-bolango-coast", 45.0),
    ("HT-13", "Garuda 13", "2103", "limboto-gorontalo", 50.0),
)
TRBO_INTERVAL_S = 5
TRBO_EMERGENCY_S = 70.0  # the second MOTOTRBO radio presses its emergency button this long after the start
MAX_UNITS = 99


@dataclass(frozen=True)
class UnitPlan:
    """One simulated unit of the demo: its [[unit]] and its [[device]]."""

    unit: str
    callsign: str
    type: str
    device: str
    route: str
    speed_kmh: float
    talker: str
    start_offset_s: float
    faults: tuple[str, ...] = ()
    radio: str = ""  # set for a handheld heard through the base radio `device`
    driver: str = "simulator"  # "lrrp": a MOTOTRBO radio behind the simulated control station


# (route, unit type, speed km/h, talker): cycled through for --units.
_TEMPLATES = (
    ("kota-gorontalo-loop", "car", 40.0, "GP"),
    ("limboto-gorontalo", "motorcycle", 55.0, "GN"),
    ("bone-bolango-coast", "car", 60.0, "GP"),
    ("gorontalo-kwandang", "car", 70.0, "GN"),
    ("kota-gorontalo-loop", "foot", 5.0, "GL"),
    ("tilamuta-town", "motorcycle", 30.0, "GA"),
    ("marisa-town", "car", 35.0, "BD"),
    ("limboto-gorontalo", "car", 45.0, "GB"),
)


def plan_units(n: int) -> tuple[UnitPlan, ...]:
    """The demo's units: different routes, start offsets and talkers; the second one has faults."""
    if not 1 <= n <= MAX_UNITS:
        raise ValueError(f"units must be between 1 and {MAX_UNITS}, got {n}")
    faulty = 1 if n > 1 else 0
    plans = []
    for i in range(n):
        route, kind, speed, talker = _TEMPLATES[i % len(_TEMPLATES)]
        plans.append(
            UnitPlan(
                unit=f"R2-{i + 1:02d}",
                callsign=f"Macan {i + 1:02d}",
                type=kind,
                device=f"sim-{i + 1:02d}",
                route=route,
                speed_kmh=speed,
                talker=talker,
                start_offset_s=float((i * 137) % 900),
                faults=FAULTY_DEVICE_FAULTS if i == faulty else (),
            )
        )
    for unit, callsign, radio in HANDHELDS:  # officers on foot, heard through one base radio
        plans.append(UnitPlan(unit, callsign, "foot", BASE_RADIO, "kota-gorontalo-loop", 5.0, "GP", 300.0, BASE_RADIO_FAULTS, radio))
    for i, (unit, callsign, radio, route, speed) in enumerate(TRBO_RADIOS):  # MOTOTRBO handhelds: ARS and LRRP over UDP
        kind = "foot" if speed < 10 else "motorcycle"
        plans.append(UnitPlan(unit, callsign, kind, TRBO_DEVICE, route, speed, "", 60.0 * i, (), radio, "lrrp"))
    return tuple(plans)


def _q(value: str | Path) -> str:
    """A TOML basic string (JSON string escapes are valid TOML for these values)."""
    return json.dumps(str(value), ensure_ascii=False)


def demo_config(
    plans: Sequence[UnitPlan], broker_port: int, workdir: Path, protocol: str = "5", udp: tuple[int, int, int] = (4001, 4005, 4001)
) -> str:
    """The daemon's config for the demo (TOML text); `udp`: the lrrp device's LRRP and ARS ports and the radios' port."""
    out = [
        "# alkomd demo station, written by `alkomctl demo`: simulated radios, private broker.",
        "[node]",
        f"path = {_q(NODE_PATH)}",
        f"root = {_q(ROOT)}",
        f"name = {_q(NODE_NAME)}",
        'tier = "polres"',
        "",
        "[store]",
        f"path = {_q(workdir / 'alkomd.db')}",
        'synchronous = "normal"',
        "",
        "[mqtt]",
        'host = "127.0.0.1"',
        f"port = {broker_port}",
        "tls = false",
        f"protocol = {_q(protocol)}",
        "health_interval_s = 2",
        "",
        "[log]",
        'level = "info"',
    ]
    devices: dict[str, list[UnitPlan]] = {}
    for p in plans:
        devices.setdefault(p.device, []).append(p)
    for device, group in devices.items():
        p = group[0]
        if p.driver == "lrrp":
            out += _trbo_device(device, udp)
            continue
        faults = ", ".join(_q(f) for f in p.faults)
        radios = ", ".join(_q(g.radio) for g in group if g.radio)
        out += [
            "",
            "[[device]]",
            f"id = {_q(device)}",
            'driver = "simulator"',
            f"route = {_q(p.route)}",
            f"speed_kmh = {p.speed_kmh}",
            f"interval_s = {5.0 if radios else 1.0}",
            f"talker = {_q(p.talker)}",
            f"start_offset_s = {p.start_offset_s}",
            f"link = {_q(workdir / 'dev' / device)}",
            f"faults = [{faults}]",
        ] + ([f"radios = [{radios}]", "silent_after_s = 30", "no_fix_after_s = 60"] if radios else [])
    for p in plans:
        out += [
            "",
            "[[unit]]",
            f"id = {_q(p.unit)}",
            f"callsign = {_q(p.callsign)}",
            f"type = {_q(p.type)}",
            f"device = {_q(p.device)}",
        ] + ([f"radio = {_q(p.radio)}", "report_interval_s = 5"] if p.radio else [])
    return "\n".join(out) + "\n"


def _trbo_device(device: str, udp: tuple[int, int, int]) -> list[str]:
    """The simulated MOTOTRBO control station: radios at 127.x.y.z (all loopback on Linux) instead of 12.x.y.z."""
    lrrp_port, ars_port, radio_port = udp
    return [
        "", "[[device]]", f"id = {_q(device)}", 'driver = "lrrp"', 'bind = "127.0.0.1"', f"lrrp_port = {lrrp_port}",
        f"ars_port = {ars_port}", "radio_network = 127", f"radio_lrrp_port = {radio_port}", f"report_interval_s = {TRBO_INTERVAL_S}",
        "unsolicited_emergency = true", "silent_after_s = 30", "no_fix_after_s = 60",
    ]

"""The alkomd configuration: one TOML file, validated strictly into frozen dataclasses.

Any problem raises `ConfigError` naming the key and the file; the CLIs print it as one line and
exit 78 (EX_CONFIG), which the systemd unit treats as "do not restart".
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alkomd.daemon.calls import jurisdictions
from alkomd.daemon.calls.jurisdictions import JurisdictionError, JurisdictionIndex, JurisdictionOptions
from alkomd.daemon.calls.options import DispatchOptions
from alkomd.daemon.calls.recommend import RecommendOptions
from alkomd.daemon.exit_codes import EX_CONFIG as EX_CONFIG  # re-exported: older code imports it from here
from alkomd.daemon.schema import ID_PATTERN as ID_PATTERN
from alkomd.daemon.schema import NODE_PATTERN as NODE_PATTERN
from alkomd.daemon.schema import ConfigError, build, spec
from alkomd.drivers import registry
from alkomd.drivers.location_gate import EmergencySource

DEFAULT_PATH = Path("/etc/alkomd/alkomd.toml")
TIERS = ("polres", "polda", "mabes")
UNIT_TYPES = ("car", "motorcycle", "foot", "boat")


@dataclass(frozen=True)
class NodeConfig:
    path: str = spec("", pattern=f"({NODE_PATTERN})?", doc="Node path under the root, e.g. gorontalo/bone-bolango; empty for Mabes.")
    root: str = spec("polri110", pattern=ID_PATTERN, doc="First topic level of every topic.")
    tier: str = spec("polres", choices=TIERS, doc="Which tier this node is.")
    name: str = spec("", doc="Human name of the station, e.g. Polres Bone Bolango.")

    @property
    def topic(self) -> str:
        """`<root>/<path>`: the prefix of every topic this node publishes."""
        return f"{self.root}/{self.path}" if self.path else self.root


@dataclass(frozen=True)
class StoreConfig:
    path: Path = spec(Path("/var/lib/alkomd/alkomd.db"), doc="SQLite database (WAL); relative paths are relative to the config file.")
    synchronous: str = spec("full", choices=("full", "normal"), doc="full survives power loss; normal only process crashes.")
    position_retention_days: int = spec(90, min=1, max=3650, doc="Position history older than this is deleted.")
    sent_retention_hours: int = spec(24, min=0, max=720, doc="Outbox rows the broker acknowledged are kept this long.")
    outbox_budget_mb: float = spec(
        500.0, min=0.01, max=1_000_000,
        doc="Payload megabytes (10^6 bytes) of unsent messages kept during an outage; beyond it old position messages "
        "are thinned (never calls, alerts or statuses; the position history keeps every fix).",
    )

    @property
    def outbox_budget_bytes(self) -> int:
        return int(self.outbox_budget_mb * 1_000_000)


@dataclass(frozen=True)
class MqttConfig:
    host: str = spec("localhost", doc="Broker host name or address.")
    port: int = spec(8883, min=1, max=65535, doc="Broker port (8883 for TLS, 1883 for plain).")
    tls: bool = spec(True, doc="Use TLS. Turn off only on a trusted loopback or test broker.")
    protocol: str = spec(
        "5", choices=("5", "3.1.1"), doc="MQTT version. 3.1.1 only for a broker without MQTT 5: it hides ACL refusals."
    )
    ca_file: Path | None = spec(None, must_exist=True, doc="CA certificate(s) to verify the broker; default: the system store.")
    cert_file: Path | None = spec(None, must_exist=True, doc="Client certificate for mutual TLS.")
    key_file: Path | None = spec(None, must_exist=True, doc="Client private key for mutual TLS (e.g. a systemd credential).")
    username: str = spec("", doc="MQTT user name (often the station id).")
    password_file: Path | None = spec(
        None, must_exist=True, doc="File holding the MQTT password (e.g. /run/credentials/alkomd.service/mqtt-password)."
    )
    client_id: str = spec("", pattern=f"({ID_PATTERN})?", doc="MQTT client id; default alkomd-<node path with - for />.")
    keepalive_s: int = spec(
        30, min=5, max=3600, doc="MQTT keepalive; a dead link is noticed after about twice this (paho pings one keepalive "
        "after the last bytes received and gives up one keepalive later).",
    )
    reconnect_min_s: float = spec(1.0, min=0.1, max=60, doc="First reconnect delay.")
    reconnect_max_s: float = spec(30.0, min=1, max=600, doc="Largest reconnect delay.")
    session_expiry_s: int = spec(
        86400, min=0, max=2**32 - 1, doc="MQTT 5 session expiry: how long the broker keeps our subscriptions while we are away."
    )
    below_connection: str = spec(
        "same", choices=("same", "separate"),
        doc="Polda and Mabes: take the units below's positions and statuses on the daemon's own connection (same), or "
        "on a second one read by a child process (separate: calls never wait behind them; for Mabes's peak).",
    )
    will_delay_s: int = spec(
        0, min=0, max=3600,
        doc="MQTT 5 Will Delay Interval: the broker says this node is offline (its will) only when no process of it is "
        "back on its session within this many seconds. 0: at once. Where a standby runs: a few seconds more than it "
        "needs to take over (README, Central tiers).",
    )
    health_interval_s: float = spec(60.0, min=1, max=3600, doc="How often <node>/health is published.")
    inflight: int = spec(20, min=1, max=100, doc="QoS 1 messages in flight at once (paho is slower with a larger window).")


@dataclass(frozen=True)
class LogConfig:
    level: str = spec("info", choices=("debug", "info", "warning", "error"), doc="Log level.")


@dataclass(frozen=True)
class AvailabilityConfig:
    missed_reports: int = spec(3, min=1, max=100, doc="A unit is offline after this many expected reports without a fix.")
    interval_car_s: float = spec(10.0, min=0.5, max=86400, doc="Expected seconds between fixes of a car.")
    interval_motorcycle_s: float = spec(10.0, min=0.5, max=86400, doc="... of a motorcycle.")
    interval_foot_s: float = spec(60.0, min=0.5, max=86400, doc="... of an officer on foot (handheld radio).")
    interval_boat_s: float = spec(30.0, min=0.5, max=86400, doc="... of a boat.")
    max_speed_car_kmh: float = spec(
        300.0, min=10, max=2000, doc="A fix implying a faster move from the unit's last fix is rejected (daemon/plausibility.py)."
    )
    max_speed_motorcycle_kmh: float = spec(300.0, min=10, max=2000, doc="... for a motorcycle.")
    max_speed_foot_kmh: float = spec(300.0, min=10, max=2000, doc="... for a handheld radio (it rides in cars too).")
    max_speed_boat_kmh: float = spec(150.0, min=10, max=2000, doc="... for a boat.")

    def interval(self, unit_type: str) -> float:
        value: float = getattr(self, f"interval_{unit_type}_s")
        return value

    def max_speed(self, unit_type: str) -> float:
        value: float = getattr(self, f"max_speed_{unit_type}_kmh")
        return value


@dataclass(frozen=True)
class CallsConfig:
    repeat_caller_count: int = spec(3, min=1, max=1000, doc="More calls than this from one number in the window: flag repeat_caller.")
    repeat_caller_window_s: float = spec(3600.0, min=60, max=7 * 86400, doc="The window for repeat_caller.")
    aml_window_s: float = spec(
        600.0, min=10, max=3600,
        doc="An AML SMS or ELS report is attached to the open voice call received this close in time (and to the same "
        "caller number when the report carries one); else it is a call of its own, flagged aml_unmatched.",
    )
    aml_match_m: float = spec(
        10000.0, min=100, max=200_000,
        doc="... and, when the voice call has a location, no farther from it than this.",
    )
    closed_retention_s: float = spec(
        3600.0, min=5, max=30 * 86400,
        doc="A closed or escalated call's retained state is cleared from the broker this long after its last change "
        "(it stays in the database and the audit record).",
    )
    taken_retention_s: float = spec(
        2 * 86400.0, min=3600, max=30 * 86400,
        doc="Polda, Mabes: a taken marker on a node below is cleared after this long (keep it above that node's "
        "[mqtt] session_expiry_s: a node away longer gets no queued call to mistake).",
    )


_CODE = dict(min=0, max=999)


@dataclass(frozen=True)
class RadioStatusConfig:
    emergency: tuple[int, ...] = spec(
        (99,), **_CODE, doc="Radio status codes that mean emergency: published at once on <node>/unit/<unit>/emergency "
        "and recorded in the audit record. Set to what your radios are programmed to send.",
    )
    available: tuple[int, ...] = spec((), **_CODE, doc="Status codes that set the unit available.")
    assigned: tuple[int, ...] = spec((), **_CODE, doc="... assigned (to its current call).")
    enroute: tuple[int, ...] = spec((), **_CODE, doc="... en route.")
    onscene: tuple[int, ...] = spec((), **_CODE, doc="... on scene.")
    unavailable: tuple[int, ...] = spec((), **_CODE, doc="... unavailable (off duty, refuelling).")

    def statuses(self) -> dict[int, str]:
        """Code -> unit status name, for the codes that set one."""
        return {code: name for name in ("available", "assigned", "enroute", "onscene", "unavailable") for code in getattr(self, name)}


@dataclass(frozen=True)
class UnitConfig:
    id: str = spec(pattern=ID_PATTERN, doc="Unit id, used in topics, e.g. R2-12.")
    callsign: str = spec("", doc="Radio callsign.")
    type: str = spec("car", choices=UNIT_TYPES, doc="Kind of unit (sets its speed class).")
    device: str = spec("", doc="Id of the [[device]] whose fixes are this unit's position.")
    radio: str = spec(
        "", pattern=r"([0-9]{3}-[0-9]{4}|U[0-9]{5}|U[0-9]{8}|[0-9]{1,10}|[A-Za-z0-9_.:-]{1,64}"
        r"|[A-Za-z0-9_.:@-]{1,64}/[A-Za-z0-9_.:@-]{1,64})?",
        doc="The unit's radio on a device that relays many (a FleetSync base radio: fleet-id, e.g. 100-1001; NXDN/DMR: "
        "U-id, e.g. U00002; a numeric id as the base radio prints it, leading zeros kept, e.g. 004332199 for a dPMR "
        "radio; a UDP NMEA source: its id or address; a TETRA radio: its ISSI, e.g. 2269001; an OwnTracks phone: "
        "user/device, e.g. bripka-andi/pixel7). With `device`, only that device; without, any.",
    )
    report_interval_s: float = spec(0.0, min=0, max=86400, doc="Expected seconds between fixes; 0: the type's [availability] value.")


@dataclass(frozen=True)
class ConsoleConfig:
    """The `[console]` section: read only by `alkomd-console`, the dispatchers' web page (the daemon ignores it)."""

    listen_address: str = spec("127.0.0.1", doc="Address the web console listens on (the station's LAN address, or 0.0.0.0).")
    listen_port: int = spec(8110, min=1, max=65535, doc="TCP port of the web console.")
    tls_cert_file: Path | None = spec(None, doc="Certificate (PEM) for HTTPS; without it the console speaks plain HTTP.")
    tls_key_file: Path | None = spec(None, doc="Private key (PEM) of tls_cert_file.")
    users_file: Path = spec(Path("/etc/alkomd/console-users"), doc="Dispatcher accounts: name and argon2 hash per line.")
    tile_url: str = spec("", doc="Optional map tile server, e.g. http://tiles.polres.lan/{z}/{x}/{y}.png; empty: polygons only.")
    client_id: str = spec("", pattern=f"({ID_PATTERN})?", doc="The console's MQTT client id; default alkomd-console-<node>.")
    username: str = spec("", doc="The console's own MQTT user name.")
    password_file: Path | None = spec(None, doc="File holding the console's MQTT password (a systemd credential).")
    session_hours: float = spec(12.0, min=0.1, max=168, doc="A login lasts this long without activity.")
    login_max_failures: int = spec(5, min=1, max=1000, doc="Failed logins per name or address before a lockout.")
    login_lockout_s: float = spec(300.0, min=1, max=86400, doc="How long that lockout lasts.")


@dataclass(frozen=True)
class HistoryConfig:
    """The `[history]` section: read only by `alkomd-history`, the central tiers' history workers (the daemon ignores it)."""

    path: Path = spec(Path("/var/lib/alkomd/history.db"), doc="SQLite file of the units below's positions (all workers of the "
                      "node write to it); relative paths are relative to the config file. Not used when `dsn` is set.")
    dsn: str = spec("", doc="PostgreSQL instead of the SQLite file: a libpq connection string, e.g. "
                    "postgresql://alkomd@db.mabes/history?passfile=/etc/alkomd/pgpass (workers on several hosts, months "
                    "of history; needs psycopg in alkomd's venv: pip install 'psycopg[binary]>=3.1,<4', the postgres extra).")
    retention_days: int = spec(30, min=1, max=3650, doc="Positions stored longer ago than this are deleted.")
    username: str = spec("", doc="The workers' own MQTT user name (read access to the units below's positions).")
    password_file: Path | None = spec(None, doc="File holding that MQTT password (a systemd credential).")


@dataclass(frozen=True)
class DeviceConfig:
    id: str
    driver: str
    enabled: bool
    options: Any  # the driver's own frozen options dataclass


@dataclass(frozen=True)
class _DeviceCommon:
    id: str = spec(pattern=ID_PATTERN, doc="Device id, used in topics and logs, e.g. car12-gps.")
    driver: str = spec(doc="Which driver reads it (nmea, simulator, ...).")
    enabled: bool = spec(True, doc="Set false to keep the entry but not open the device.")


@dataclass(frozen=True)
class Config:
    source: Path
    node: NodeConfig
    store: StoreConfig
    mqtt: MqttConfig
    log: LogConfig
    availability: AvailabilityConfig
    dispatch: DispatchOptions
    recommend: RecommendOptions
    calls: CallsConfig
    radio_status: RadioStatusConfig
    jurisdictions: JurisdictionOptions | None
    devices: tuple[DeviceConfig, ...]
    units: tuple[UnitConfig, ...]
    console: ConsoleConfig | None = None  # only alkomd-console reads it
    history: HistoryConfig | None = None  # only alkomd-history reads it


_SECTIONS = {
    "node": NodeConfig, "store": StoreConfig, "mqtt": MqttConfig, "log": LogConfig, "availability": AvailabilityConfig,
    "dispatch": DispatchOptions, "recommend": RecommendOptions, "calls": CallsConfig, "radio_status": RadioStatusConfig,
}
_COMMON = ("id", "driver", "enabled")


def load(path: Path | str) -> Config:
    """Read and validate a config file; raises ConfigError."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found") from None
    except PermissionError:
        raise ConfigError(path, "", "permission denied") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from None
    return parse(raw, path)


def parse(raw: dict[str, Any], path: Path) -> Config:
    """Validate an already-parsed TOML document (see `load`)."""
    known = set(_SECTIONS) | {"device", "unit", "jurisdictions", "console", "history"}
    for key in raw:
        if key not in known:
            raise ConfigError(path, key, f"unknown section (known: {', '.join(sorted(known))})")
    sections: dict[str, Any] = {name: build(cls, raw.get(name, {}), name, path) for name, cls in _SECTIONS.items()}
    if "node" not in raw or "path" not in raw["node"]:
        raise ConfigError(path, "node.path", "missing (required): the node path, e.g. gorontalo/bone-bolango")
    devices = tuple(_device(t, i, path) for i, t in enumerate(_array(raw, "device", path)))
    units = tuple(build(UnitConfig, t, f"unit[{i}]", path) for i, t in enumerate(_array(raw, "unit", path)))
    _cross_check(devices, units, path)
    _check_codes(sections["radio_status"], devices, path)
    juris = build(JurisdictionOptions, raw["jurisdictions"], "jurisdictions", path) if "jurisdictions" in raw else None
    console = build(ConsoleConfig, raw["console"], "console", path) if "console" in raw else None
    history = build(HistoryConfig, raw["history"], "history", path) if "history" in raw else None
    return Config(source=path, devices=devices, units=units, jurisdictions=juris, console=console, history=history, **sections)


def _array(raw: dict[str, Any], key: str, path: Path) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(path, key, f"must be an array of tables ([[{key}]]), not a single table")
    return value


def _device(table: Any, i: int, path: Path) -> DeviceConfig:
    where = f"device[{i}]"
    if not isinstance(table, dict):
        raise ConfigError(path, where, "must be a table")
    common = build(_DeviceCommon, {k: v for k, v in table.items() if k in _COMMON}, where, path)
    driver = registry.get(common.driver)
    if driver is None:
        known = ", ".join(registry.names())
        raise ConfigError(path, f"{where}.driver", f"unknown driver {common.driver!r} (known: {known})")
    options = build(driver.options, {k: v for k, v in table.items() if k not in _COMMON}, where, path)
    return DeviceConfig(common.id, common.driver, common.enabled, options)


def _cross_check(devices: tuple[DeviceConfig, ...], units: tuple[UnitConfig, ...], path: Path) -> None:
    seen: dict[str, int] = {}
    for i, d in enumerate(devices):
        if d.id in seen:
            raise ConfigError(path, f"device[{i}].id", f"duplicate device id {d.id!r} (also device[{seen[d.id]}])")
        seen[d.id] = i
    unit_ids: dict[str, int] = {}
    owner: dict[tuple[str, str], str] = {}  # (device, radio) -> unit
    for i, u in enumerate(units):
        if u.id in unit_ids:
            raise ConfigError(path, f"unit[{i}].id", f"duplicate unit id {u.id!r} (also unit[{unit_ids[u.id]}])")
        unit_ids[u.id] = i
        if u.device and u.device not in seen:
            raise ConfigError(path, f"unit[{i}].device", f"no [[device]] with id {u.device!r}")
        if u.device or u.radio:
            key = (u.device, u.radio)
            if key in owner:
                what = f"radio {u.radio!r}" + (f" on device {u.device!r}" if u.device else "") if u.radio else f"device {u.device!r}"
                raise ConfigError(path, f"unit[{i}].{'radio' if u.radio else 'device'}", f"{what} already belongs to unit {owner[key]!r}")
            owner[key] = u.id


def _check_codes(rs: RadioStatusConfig, devices: tuple[DeviceConfig, ...], path: Path) -> None:
    """Each code in one list at most; the code a device gives a radio's emergency is an emergency code (else its
    emergencies would raise no alarm), and the code that ends one is in no list."""
    seen: dict[int, str] = {}
    for name in ("emergency", "available", "assigned", "enroute", "onscene", "unavailable"):
        for code in getattr(rs, name):
            if code in seen:
                raise ConfigError(path, f"radio_status.{name}", f"code {code} is also in radio_status.{seen[code]}")
            seen[code] = name
    for i, d in enumerate(devices):
        codes = d.options.emergency_codes() if isinstance(d.options, EmergencySource) else None
        if codes is None or not d.enabled:
            continue
        raised, after = codes
        if raised not in rs.emergency:
            raise ConfigError(path, "radio_status.emergency", f"lacks {raised}, the code device[{i}] ({d.id!r}, driver "
                              f"{d.driver}) gives a radio's emergency: add it, or those emergencies raise no alarm")
        if after in seen:
            raise ConfigError(path, f"device[{i}].after_emergency_code", f"code {after} is in radio_status.{seen[after]}: "
                              "the end of a radio's emergency must be a code in no [radio_status] list")


def load_jurisdictions(cfg: Config) -> JurisdictionIndex | None:
    """The configured polygons, loaded and checked (a bad file is a config error naming it)."""
    if cfg.jurisdictions is None:
        return None
    try:
        return jurisdictions.load(cfg.jurisdictions)
    except JurisdictionError as exc:
        raise ConfigError(cfg.source, "jurisdictions.file", str(exc)) from None

"""Modbus register maps: the model, the built-in Teltonika RUT map, map files, read planning and decoding.

Everything here is pure (no I/O besides reading a map file), so the driver and `alkomctl modbus
probe` share it. Addresses are 0-based protocol addresses (what goes on the wire); vendor manuals
often list register numbers, which are address + 1.

Word order: a 32-bit value spans two registers, and modems disagree on how its four bytes ABCD
are laid out. `big` is ABCD (the Modbus convention), `little` is CDAB (registers swapped:
pymodbus's `word_order="little"`), `big-byteswap` is BADC and `little-byteswap` is DCBA (all four
bytes reversed, which is how the Signal K plugin reads some Teltonika firmware's GPS floats).
With `auto`, the order is found from the coordinates: the wrong orders give numbers outside any
plausible place (tiny garbage such as 1e-21, or out of range), the right one lands in Indonesia.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from alkomd.daemon.records import ModemHealth
from alkomd.daemon.schema import ConfigError, build, spec

MAX_READ = 125  # registers per read request (Modbus application protocol, FC 3/4)
TYPES: dict[str, int] = {"float32": 2, "int32": 2, "uint32": 2, "uint16": 1, "int16": 1, "ascii": 0}
WORD_ORDERS = ("big", "little", "big-byteswap", "little-byteswap")
FIELD_ORDERS = ("device", *WORD_ORDERS)

# What the driver understands. Any other field is read and shown by `alkomctl modbus probe` only.
LAT, LON, SPEED, SATS, HDOP = "lat", "lon", "speed_kmh", "sats", "hdop"
UPTIME, SIGNAL, TEMPERATURE, OPERATOR, SIM, NETWORK = "uptime_s", "signal_dbm", "temperature_c", "operator", "sim", "network"
TEXT_MEANINGS = (OPERATOR, SIM, NETWORK)
MEANINGS = (LAT, LON, SPEED, SATS, HDOP, UPTIME, SIGNAL, TEMPERATURE, *TEXT_MEANINGS)
GPS_MEANINGS = (LAT, LON, SPEED, SATS, HDOP)

# Indonesia's bounding box, with a margin: Sabang (95.3 E, 5.9 N) to Merauke (141.0 E, 8.5 S), Rote (11 S).
INDONESIA_LAT = (-11.5, 6.5)
INDONESIA_LON = (94.5, 141.5)
TINY = 1e-6  # |coordinate| below this (and not 0) is float garbage from a wrong word order, never a place

Value = int | float | str


@cache
def _pymodbus() -> tuple[Any, dict[str, Any]]:
    """pymodbus's register conversion, imported on first use (alkomctl's parser needs only the names here)."""
    from pymodbus.client.mixin import ModbusClientMixin

    dt = ModbusClientMixin.DATATYPE
    types = {"float32": dt.FLOAT32, "int32": dt.INT32, "uint32": dt.UINT32, "uint16": dt.UINT16, "int16": dt.INT16}
    return ModbusClientMixin, types


@dataclass(frozen=True)
class Field:
    """One value in a register map."""

    name: str
    address: int  # 0-based
    count: int  # registers
    type: str  # one of TYPES
    scale: float = 1.0  # the decoded number is multiplied by this (0.1 for tenths)
    meaning: str = ""  # one of MEANINGS, or "" for a value only shown by the probe
    word_order: str = "device"  # 32-bit types: "device" follows the device's word order, else fixed
    description: str = ""

    @property
    def end(self) -> int:
        return self.address + self.count


@dataclass(frozen=True)
class RegisterMap:
    name: str
    description: str
    fields: tuple[Field, ...]
    registers: str = "holding"  # holding (FC 3) or input (FC 4)
    max_gap: int = 0  # unused registers a single read may span between two fields
    title: str = ""  # what the probe calls a device that fits: "Teltonika RUT"

    @property
    def label(self) -> str:
        return self.title or self.name

    def by_meaning(self, meaning: str) -> Field | None:
        for f in self.fields:
            if f.meaning == meaning:
                return f
        return None


@dataclass(frozen=True)
class Block:
    """One read request: `count` registers from `start`, holding `fields`."""

    start: int
    count: int
    fields: tuple[Field, ...]


@dataclass(frozen=True)
class GpsReading:
    """The GPS registers of one poll, decoded in one word order (None: not read or not decodable)."""

    lat: float | None
    lon: float | None
    speed_kmh: float | None = None
    sats: int | None = None
    hdop: float | None = None


@dataclass(frozen=True)
class OrderGuess:
    """What the coordinates say about the word order (`order` None: cannot tell yet)."""

    order: str | None
    in_indonesia: bool
    reason: str


# ---------------------------------------------------------------------------------------------
# The built-in map: Teltonika RUT9xx / RUTX (RutOS Modbus TCP server, holding registers).

TELTONIKA_RUT = RegisterMap(
    name="teltonika-rut",
    description="Teltonika RUT9xx/RUTX (RutOS Modbus TCP server; GPS models only for the GPS registers)",
    fields=(
        Field("uptime", 1, 2, "uint32", meaning=UPTIME, word_order="big", description="modem uptime, s"),
        Field("signal", 3, 2, "int32", meaning=SIGNAL, word_order="big", description="mobile signal strength (RSSI), dBm"),
        Field("temperature", 5, 2, "int32", 0.1, TEMPERATURE, "big", "modem temperature, 0.1 °C"),
        Field("operator", 23, 16, "ascii", meaning=OPERATOR, description="mobile operator name"),
        Field("active_sim", 87, 16, "ascii", meaning=SIM, description="active SIM (sim1/sim2)"),
        Field("network_type", 119, 16, "ascii", meaning=NETWORK, description="mobile network type, e.g. LTE"),
        Field("latitude", 143, 2, "float32", meaning=LAT, description="GPS latitude, degrees"),
        Field("longitude", 145, 2, "float32", meaning=LON, description="GPS longitude, degrees"),
        Field("speed", 179, 2, "float32", meaning=SPEED, description="GPS speed, km/h"),
        Field("satellites", 181, 2, "uint32", meaning=SATS, word_order="big", description="satellites in use"),
        Field("accuracy", 183, 2, "float32", meaning=HDOP, description="GPS accuracy (HDOP)"),
    ),
    title="Teltonika RUT",
)
BUILTIN_MAPS: dict[str, RegisterMap] = {TELTONIKA_RUT.name: TELTONIKA_RUT}


# ---------------------------------------------------------------------------------------------
# Map files (TOML): a [map] table and one [[field]] table per value; see config/modbus/README.md.


@dataclass(frozen=True)
class _MapTable:
    name: str = spec(pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", doc="Name of the map, shown by the probe and in logs.")
    title: str = spec("", doc="What the probe calls a device that fits, e.g. Teltonika RUT; default: the name.")
    description: str = spec("", doc="Which modems it fits.")
    registers: str = spec("holding", choices=("holding", "input"), doc="Register table: holding (FC 3) or input (FC 4).")
    max_gap: int = spec(0, min=0, max=MAX_READ - 2, doc="Unused registers one read may span between two fields (0: only adjacent).")


@dataclass(frozen=True)
class _FieldTable:
    name: str = spec(pattern=r"[a-z][a-z0-9_]{0,31}", doc="Field name (lower case, digits, _).")
    address: int = spec(min=0, max=65535, doc="0-based register address (a manual's register number minus 1).")
    type: str = spec(choices=tuple(TYPES), doc="Value type.")
    count: int = spec(0, min=0, max=MAX_READ, doc="Registers; required for ascii, implied by the other types.")
    scale: float = spec(1.0, doc="Multiplier applied to the decoded number.")
    meaning: str = spec("", choices=("", *MEANINGS), doc="What the driver does with it; empty: shown by the probe only.")
    word_order: str = spec("device", choices=FIELD_ORDERS, doc="32-bit types: device (the device's word order) or fixed.")
    description: str = spec("", doc="What it is, with its unit.")


def resolve_map(path: Path) -> RegisterMap:
    """The map a device's `map` key names: a built-in name, or a .toml file. Raises ValueError."""
    if path.suffix != ".toml":
        found = BUILTIN_MAPS.get(path.name)
        if found is None:
            known = ", ".join(BUILTIN_MAPS)
            raise ValueError(f"unknown map {path.name!r}: a built-in map ({known}) or a map file ending in .toml")
        return found
    if not path.is_file():
        raise ValueError(f"map file not found: {path}")
    try:
        return load_map_file(path)
    except ConfigError as exc:
        raise ValueError(f"map file {exc}") from None


def load_map_file(path: Path) -> RegisterMap:
    """Read and check a map file strictly; a problem raises ConfigError naming the key and the file."""
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from None
    for key in raw:
        if key not in ("map", "field"):
            raise ConfigError(path, key, "unknown section (known: map, field)")
    if "map" not in raw:
        raise ConfigError(path, "map", "missing (required): a [map] table with at least name")
    head = build(_MapTable, raw["map"], "map", path)
    tables = raw.get("field", [])
    if not isinstance(tables, list) or not tables:
        raise ConfigError(path, "field", "must be one or more [[field]] tables")
    fields = tuple(_field(build(_FieldTable, t, f"field[{i}]", path), f"field[{i}]", path) for i, t in enumerate(tables))
    reg_map = RegisterMap(head.name, head.description, fields, head.registers, head.max_gap, head.title)
    _check_map(reg_map, path)
    return reg_map


def _field(t: _FieldTable, where: str, path: Path) -> Field:
    size = TYPES[t.type]
    count = t.count
    if size == 0:
        if count == 0:
            raise ConfigError(path, f"{where}.count", "missing (required for ascii): how many registers the text spans")
    elif count not in (0, size):
        raise ConfigError(path, f"{where}.count", f"a {t.type} spans {size} register(s), got {count}")
    else:
        count = size
    if t.address + count > 65536:
        raise ConfigError(path, f"{where}.address", f"registers {t.address}..{t.address + count - 1} go past 65535")
    if t.word_order != "device" and size != 2:
        raise ConfigError(path, f"{where}.word_order", f"only 32-bit types have a word order, not {t.type}")
    if t.meaning in TEXT_MEANINGS and t.type != "ascii":
        raise ConfigError(path, f"{where}.type", f"meaning {t.meaning} is text: type must be ascii")
    if t.meaning and t.meaning not in TEXT_MEANINGS and t.type == "ascii":
        raise ConfigError(path, f"{where}.type", f"meaning {t.meaning} is a number: ascii does not fit")
    if not math.isfinite(t.scale) or t.scale == 0:
        raise ConfigError(path, f"{where}.scale", f"must be a finite, non-zero number, got {t.scale!r}")
    return Field(t.name, t.address, count, t.type, t.scale, t.meaning, t.word_order, t.description)


def _check_map(m: RegisterMap, path: Path) -> None:
    names: dict[str, int] = {}
    meanings: dict[str, int] = {}
    for i, f in enumerate(m.fields):
        if f.name in names:
            raise ConfigError(path, f"field[{i}].name", f"duplicate field name {f.name!r} (also field[{names[f.name]}])")
        names[f.name] = i
        if f.meaning:
            if f.meaning in meanings:
                raise ConfigError(path, f"field[{i}].meaning", f"{f.meaning} already given to field[{meanings[f.meaning]}]")
            meanings[f.meaning] = i
    for need in (LAT, LON):
        if need not in meanings:
            raise ConfigError(path, "field", f"no field has meaning = {need!r}: the driver needs the GPS position")


# ---------------------------------------------------------------------------------------------
# Planning reads


def plan_reads(fields: Sequence[Field], max_gap: int = 0, limit: int = MAX_READ) -> tuple[Block, ...]:
    """As few read requests as sensible: adjacent (or overlapping) fields share a request.

    Fields at most `max_gap` unused registers apart are read together too; no request exceeds
    `limit` registers. Unused registers are never read unless `max_gap` allows it (many devices
    answer a read that touches an unmapped register with exception 2).
    """
    blocks: list[Block] = []
    start = end = -1
    members: list[Field] = []
    for f in sorted(fields, key=lambda f: (f.address, f.count)):
        if f.count > limit:
            raise ValueError(f"field {f.name} spans {f.count} registers, more than one request may read ({limit})")
        if members and f.address <= end + max_gap and max(end, f.end) - start <= limit:
            end = max(end, f.end)
            members.append(f)
            continue
        if members:
            blocks.append(Block(start, end - start, tuple(members)))
        start, end, members = f.address, f.end, [f]
    if members:
        blocks.append(Block(start, end - start, tuple(members)))
    return tuple(blocks)


# ---------------------------------------------------------------------------------------------
# Decoding


def _swap_bytes(reg: int) -> int:
    return ((reg & 0xFF) << 8) | (reg >> 8)


def decode_registers(regs: Sequence[int], type_: str, order: str = "big", scale: float = 1.0) -> Value:
    """Decode one value from its registers (pymodbus conversion, one 2-register pair at a time)."""
    if type_ == "ascii":
        raw = b"".join(r.to_bytes(2, "big") for r in regs)
        return raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()
    size = TYPES[type_]
    if len(regs) != size:
        raise ValueError(f"{type_} needs {size} register(s), got {len(regs)}")
    words = list(regs)
    if order.endswith("-byteswap"):
        words = [_swap_bytes(r) for r in words]
    word_order: Literal["big", "little"] = "little" if order.startswith("little") else "big"
    # One value per call: pymodbus#2675 reverses the whole list for word_order="little".
    mixin, datatypes = _pymodbus()
    value = mixin.convert_from_registers(words, data_type=datatypes[type_], word_order=word_order)
    assert isinstance(value, int | float)
    if scale == 1.0:
        return value
    return value * scale


def field_order(f: Field, device_order: str | None) -> str | None:
    """The word order a field is decoded with (None: the device's order is not known yet)."""
    if TYPES[f.type] != 2:
        return "big"
    return device_order if f.word_order == "device" else f.word_order


def decode_field(f: Field, registers: Mapping[int, int], device_order: str | None) -> Value | None:
    """The field's value from a poll's registers; None if a register is missing or the order unknown."""
    order = field_order(f, device_order)
    if order is None:
        return None
    try:
        regs = [registers[a] for a in range(f.address, f.end)]
    except KeyError:
        return None
    return decode_registers(regs, f.type, order, f.scale)


def _number(v: Value | None) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def gps_reading(m: RegisterMap, registers: Mapping[int, int], device_order: str | None) -> GpsReading:
    """The GPS fields of a map, decoded (values that are not numbers or not sane are None)."""

    def get(meaning: str) -> float | None:
        f = m.by_meaning(meaning)
        return None if f is None else _number(decode_field(f, registers, device_order))

    speed, sats, hdop = get(SPEED), get(SATS), get(HDOP)
    return GpsReading(
        lat=get(LAT),
        lon=get(LON),
        speed_kmh=speed if speed is not None and 0 <= speed < 2000 else None,
        sats=int(sats) if sats is not None and sats.is_integer() and 0 <= sats <= 255 else None,
        hdop=hdop if hdop is not None and 0 <= hdop < 100 else None,
    )


def modem_health(m: RegisterMap, registers: Mapping[int, int]) -> ModemHealth | None:
    """The modem's own health from the map's health fields; None if the map has none or none was read."""

    def get(meaning: str) -> Value | None:
        f = m.by_meaning(meaning)
        return None if f is None else decode_field(f, registers, None)

    def text(meaning: str) -> str | None:
        v = get(meaning)
        return v if isinstance(v, str) and v else None

    uptime, signal, temp = _number(get(UPTIME)), _number(get(SIGNAL)), _number(get(TEMPERATURE))
    health = ModemHealth(
        uptime_s=int(uptime) if uptime is not None and uptime >= 0 else None,
        signal_dbm=int(signal) if signal is not None and -150 <= signal < 0 else None,  # 0: not registered
        temperature_c=round(temp, 1) if temp is not None and -60 <= temp <= 150 else None,
        network=text(NETWORK),
        operator=text(OPERATOR),
        sim=text(SIM),
    )
    return None if health == ModemHealth() else health


# ---------------------------------------------------------------------------------------------
# Validity gates and word-order detection


def in_indonesia(lat: float, lon: float) -> bool:
    return INDONESIA_LAT[0] <= lat <= INDONESIA_LAT[1] and INDONESIA_LON[0] <= lon <= INDONESIA_LON[1]


def position_problem(lat: float | None, lon: float | None) -> str:
    """Why a coordinate pair is not a position ("" when it is one)."""
    if lat is None or lon is None:
        return "no coordinates (registers not read or not numbers)"
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return f"coordinates out of range ({lat:.6g}, {lon:.6g}): wrong word order or register map?"
    if lat == 0 and lon == 0:
        return "modem reports 0,0: no GPS fix"
    if 0 < abs(lat) < TINY or 0 < abs(lon) < TINY or (abs(lat) < TINY and abs(lon) < TINY):
        return f"coordinates near 0,0 ({lat:.3g}, {lon:.3g}): no fix, or wrong word order"
    return ""


def fix_problem(g: GpsReading) -> str:
    """The validity gates of a Modbus GPS reading: why it is not a fix ("" when it is one)."""
    problem = position_problem(g.lat, g.lon)
    if problem:
        return problem
    if g.sats == 0:
        return "modem reports 0 satellites: no GPS fix"
    return ""


def detect_word_order(m: RegisterMap, registers: Mapping[int, int]) -> OrderGuess:
    """Find the word order in which the coordinates make sense (Indonesia first, then anywhere)."""
    lat_f, lon_f = m.by_meaning(LAT), m.by_meaning(LON)
    if lat_f is None or lon_f is None:
        return OrderGuess(None, False, "the map has no coordinates")
    fixed = {o for o in (lat_f.word_order, lon_f.word_order) if o != "device"}
    candidates = tuple(fixed) if fixed else WORD_ORDERS
    if any(a not in registers for f in (lat_f, lon_f) for a in range(f.address, f.end)):
        return OrderGuess(None, False, "the coordinate registers were not read")
    scored: list[tuple[int, str, float, float]] = []
    for order in candidates:
        lat = _number(decode_field(lat_f, registers, order))
        lon = _number(decode_field(lon_f, registers, order))
        if lat is not None and lon is not None and not position_problem(lat, lon):
            scored.append((2 if in_indonesia(lat, lon) else 1, order, lat, lon))
    if not scored:
        return OrderGuess(None, False, "no word order gives a plausible position (no GPS fix yet?)")
    best = max(s[0] for s in scored)
    top = [s for s in scored if s[0] == best]
    score, order, lat, lon = top[0]
    where = "in Indonesia" if score == 2 else "outside Indonesia"
    if len(top) > 1:
        return OrderGuess(None, False, f"{len(top)} word orders give a position {where}: cannot tell which")
    return OrderGuess(order, score == 2, f"lat {lat:.6f}, lon {lon:.6f} ({where}) in word order {order}")

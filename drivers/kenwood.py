"""Kenwood FleetSync and NXDN/DMR sentences ($PKLDS $PKNDS $PKLSH $PKNSH $PKLID $PKNID) for pynmea2.

A Kenwood base or control-station radio prints on its data port the GPS reports and status
codes it hears from the fleet's radios, mixed with standard NMEA of its own. pynmea2's PyPI
release does not know these sentences, so the classes here register themselves in pynmea2's
proprietary-sentence registry when this module is imported (`alkomd.drivers.nmea` imports it):
`pynmea2.parse("$PKLDS,...")` then returns a `KLDS`. pynmea2 splits `P` plus three characters
as the manufacturer, so `$PKLDS` is manufacturer `KLD` with `S` as the first data field.

Layouts (mission-anchors section 4.1; fields after the sentence name):

    $PKLDS,time,A,lat,N,lon,E,sog_kn,cog,ddmmyy,var,W00,fleet,id,status,reserved,*hh
    $PKNDS,time,A,lat,N,lon,E,sog_kn,cog,ddmmyy,var,W00,Uid,status,reserved,*hh
    $PKLSH,lat,N,lon,E,time,A,fleet,id,*hh
    $PKNSH,lat,N,lon,E,time,A,Uid,*hh
    $PKLID,version,fleet,id,status,reserved,*hh          (a status without a position)
    $PKNID,version,Uid,status,reserved,*hh

`relayed()` reads one sentence into a `Relayed` value without judging it; the decoder applies
the same validity gates as to the radio's own NMEA. A radio is named the way `[[unit]] radio`
spells it: `<fleet>-<id>` for FleetSync (`100-1001`), the `U` id for NXDN/DMR (`U00002`), and
the digits exactly as sent, leading zeros kept, for the numeric ids of dPMR radios heard through
a Kenwood base radio (`004332199`: tests/captures/kenwood-dpmr-numeric-id).

Around the sentences a base radio also prints who keys up (`caller_id`), and after a
`$PKNDS`/`$PKNSH` it may repeat the same report as `$GPRMC`/`$GPGGA`/`$GPGLL` carrying the
relayed radio's time and position, not its own (`RelayEcho`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time
from typing import ClassVar

import pynmea2

from alkomd.drivers.nmea_fields import coord, date_of, to_float, to_int, tod_of, within

KNOTS_TO_KMH = 1.852
NUMERIC_ID_MAX = 10  # digits of a numeric radio id (dPMR ids are sent as 9, zero-padded)
ECHO_WINDOW_S = 5.0  # a base radio's standard sentences repeat a relayed report within this
ECHO_TOLERANCE_DEG = 2e-5  # and at the same place (about 2 m: the sentences may round differently)


@dataclass(frozen=True, slots=True)
class Relayed:
    """What one relayed sentence says about one radio; None for what it does not carry."""

    radio: str
    status: int | None  # the radio's status code (FleetSync 10-99, NXDN 1-255)
    has_position: bool  # the sentence carries a position (DS/SH), even if it is invalid
    valid: bool = False  # the report's A/V flag is A
    lat: float | None = None
    lon: float | None = None
    tod: time | None = None
    day: date | None = None
    speed_kmh: float | None = None
    course: float | None = None


def fleetsync_id(fleet: str, ident: str) -> str | None:
    """`100-1001` from fleet `100` and id `1001`; None unless both are all digits (3 and 4 of them)."""
    if len(fleet) == 3 and fleet.isdigit() and len(ident) == 4 and ident.isdigit():
        return f"{fleet}-{ident}"
    return None


def nxdn_id(value: str) -> str | None:
    """`U00002` (NXDN, 5 digits), `U00000001` (DMR, 8 digits) or a numeric id as sent (`004332199`); None otherwise."""
    if len(value) in (6, 9) and value[0] == "U" and value[1:].isascii() and value[1:].isdigit():
        return value
    if 0 < len(value) <= NUMERIC_ID_MAX and value.isascii() and value.isdigit():
        return value
    return None


def caller_id(frame: bytes) -> tuple[str, bool] | None:
    """The radio and whether it keyed up (True) or unkeyed (False) of a caller-ID frame without its STX.

    FleetSync `I1` + fleet (3 digits) + id (4 digits), usually twice: `I110040021004002` is
    100-4002 keying up; NXDN `gI1` + U-id, usually twice: `gI0U03001U03001` is U03001 unkeying.
    """
    text = frame.decode("ascii", "replace")
    if text[:2] in ("I1", "I0") and len(text) >= 9 and text[2:].isdigit():
        radio = fleetsync_id(text[2:5], text[5:9])
        return None if radio is None else (radio, text[1] == "1")
    if text[:3] in ("gI1", "gI0"):
        rest = text[3:]
        second = rest.find("U", 1)
        radio = nxdn_id(rest if second < 0 else rest[:second])
        return None if radio is None or radio[0] != "U" else (radio, text[2] == "1")
    return None


def caller_id_frame(radio: str, keyed: bool) -> bytes | None:
    """The caller-ID frame a base radio prints for `radio` (STX ... ETX), the reverse of `caller_id`; None for a numeric id."""
    flag = b"1" if keyed else b"0"
    if fleetsync_id(radio[:3], radio[4:]) == radio:
        digits = (radio[:3] + radio[4:]).encode()
        return b"\x02I" + flag + digits + digits + b"\x03"
    if nxdn_id(radio) == radio and radio[0] == "U":
        return b"\x02gI" + flag + radio.encode() * 2 + b"\x03"
    return None


@dataclass(frozen=True, slots=True)
class RelayEcho:
    """A relayed report's time and place: the base radio's next standard sentences may repeat it."""

    radio: str
    tod: time
    lat: float
    lon: float
    mono: float

    def repeated_by(self, stype: str, d: list[str], mono: float) -> bool:
        """Whether a standard sentence (`RMC`, `GGA`, `GLL`; fields padded) repeats this report."""
        if stype == "RMC":
            tod_s, lat_s, ns, lon_s, ew = d[0], d[2], d[3], d[4], d[5]
        elif stype == "GGA":
            tod_s, lat_s, ns, lon_s, ew = d[0], d[1], d[2], d[3], d[4]
        elif stype == "GLL":
            tod_s, lat_s, ns, lon_s, ew = d[4], d[0], d[1], d[2], d[3]
        else:
            return False
        if mono - self.mono > ECHO_WINDOW_S or tod_of(tod_s) != self.tod:
            return False
        lat, lon = coord(lat_s, ns), coord(lon_s, ew)
        return (
            lat is not None and lon is not None
            and abs(lat - self.lat) <= ECHO_TOLERANCE_DEG and abs(lon - self.lon) <= ECHO_TOLERANCE_DEG
        )


def _status(value: str) -> int | None:
    code = to_int(value)
    return code if code is not None and 0 <= code <= 999 else None


class KenwoodSentence(pynmea2.ProprietarySentence):  # type: ignore[misc]  # pynmea2 is untyped
    """Shared by the six manufacturers' classes: dispatch on the letter after the manufacturer."""

    sentence_types: ClassVar[dict[str, type[pynmea2.ProprietarySentence]]] = {}
    fields: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __new__(cls, manufacturer: str, data: list[str]) -> KenwoodSentence:
        sub = cls.sentence_types.get(manufacturer + (data[0] if data else ""), cls)
        return super().__new__(sub)  # type: ignore[no-any-return]

    def __init__(self, manufacturer: str, data: list[str]) -> None:
        self.sentence_type = manufacturer + (data[0] if data else "")
        super().__init__(manufacturer, data)
        pad = len(self.fields) - len(self.data)
        if pad > 0:
            self.data.extend([""] * pad)

    def relayed(self) -> Relayed | None:
        """This sentence read into a `Relayed`, or None when its radio identity is unreadable."""
        return None

    def _field(self, name: str) -> str:
        return str(self.data[self.name_to_idx[name]])

    def _position(self, radio: str, status: int | None, day: str = "", sog: str = "", cog: str = "") -> Relayed:
        lat, lon = coord(self._field("lat"), self._field("lat_dir")), coord(self._field("lon"), self._field("lon_dir"))
        knots = within(to_float(sog), 0.0, 1000.0)
        return Relayed(
            radio=radio,
            status=status,
            has_position=True,
            valid=self._field("valid") == "A",
            lat=lat,
            lon=lon,
            tod=tod_of(self._field("time")),
            day=date_of(day) if day else None,
            speed_kmh=None if knots is None else knots * KNOTS_TO_KMH,
            course=within(to_float(cog), 0.0, 360.0),
        )


_SUBTYPE = ("Sentence subtype (the letter after the manufacturer)", "subtype")
_DS_FIELDS = (
    _SUBTYPE, ("UTC time", "time"), ("Status (A valid, V void)", "valid"), ("Latitude", "lat"), ("N/S", "lat_dir"),
    ("Longitude", "lon"), ("E/W", "lon_dir"), ("Speed over ground, knots", "sog"), ("Course over ground", "cog"),
    ("Date ddmmyy", "date"), ("Magnetic variation", "var"), ("Variation E/W and sentence version", "var_dir_version"),
)
_SH_FIELDS = (
    _SUBTYPE, ("Latitude", "lat"), ("N/S", "lat_dir"), ("Longitude", "lon"), ("E/W", "lon_dir"), ("UTC time", "time"),
    ("Status (A valid, V void)", "valid"),
)


# The six manufacturers pynmea2 sees: a class each. pynmea2's metaclass files a class under its
# direct base's registry, so these land in KenwoodSentence's; `_register` below files them where
# `pynmea2.parse` looks them up. Their subclasses (KLDS, ...) land in their own registries.
class KLD(KenwoodSentence):
    sentence_types: ClassVar[dict[str, type[pynmea2.ProprietarySentence]]] = {}


class KND(KenwoodSentence):
    sentence_types: ClassVar[dict[str, type[pynmea2.ProprietarySentence]]] = {}


class KLS(KenwoodSentence):
    sentence_types: ClassVar[dict[str, type[pynmea2.ProprietarySentence]]] = {}


class KNS(KenwoodSentence):
    sentence_types: ClassVar[dict[str, type[pynmea2.ProprietarySentence]]] = {}


class KLI(KenwoodSentence):
    sentence_types: ClassVar[dict[str, type[pynmea2.ProprietarySentence]]] = {}


class KNI(KenwoodSentence):
    sentence_types: ClassVar[dict[str, type[pynmea2.ProprietarySentence]]] = {}


class KLDS(KLD):
    """FleetSync position and status: RMC-like position, then fleet, unit id, status."""

    fields = (*_DS_FIELDS, ("Fleet", "fleet"), ("Unit id", "unit_id"), ("Unit status", "status"), ("Reserved", "reserved"))

    def relayed(self) -> Relayed | None:
        radio = fleetsync_id(self._field("fleet"), self._field("unit_id"))
        if radio is None:
            return None
        return self._position(radio, _status(self._field("status")), self._field("date"), self._field("sog"), self._field("cog"))


class KNDS(KND):
    """NXDN/DMR/dPMR position and status: RMC-like position, then U-id (or numeric id), status."""

    fields = (*_DS_FIELDS, ("Unit id (U + 5 or 8 digits, or digits)", "unit_id"), ("Unit status", "status"), ("Reserved", "reserved"))

    def relayed(self) -> Relayed | None:
        radio = nxdn_id(self._field("unit_id"))
        if radio is None:
            return None
        return self._position(radio, _status(self._field("status")), self._field("date"), self._field("sog"), self._field("cog"))


class KLSH(KLS):
    """FleetSync short position: position, time, status flag, fleet, unit id (no date, no status code)."""

    fields = (*_SH_FIELDS, ("Fleet", "fleet"), ("Unit id", "unit_id"))

    def relayed(self) -> Relayed | None:
        radio = fleetsync_id(self._field("fleet"), self._field("unit_id"))
        return None if radio is None else self._position(radio, None)


class KNSH(KNS):
    """NXDN/DMR short position: position, time, status flag, U-id."""

    fields = (*_SH_FIELDS, ("Unit id (U + 5 or 8 digits, or digits)", "unit_id"))

    def relayed(self) -> Relayed | None:
        radio = nxdn_id(self._field("unit_id"))
        return None if radio is None else self._position(radio, None)


class KLID(KLI):
    """FleetSync identity and status, without a position."""

    fields = (_SUBTYPE, ("Sentence version", "version"), ("Fleet", "fleet"), ("Unit id", "unit_id"), ("Unit status", "status"),
              ("Reserved", "reserved"))

    def relayed(self) -> Relayed | None:
        radio = fleetsync_id(self._field("fleet"), self._field("unit_id"))
        return None if radio is None else Relayed(radio, _status(self._field("status")), has_position=False)


class KNID(KNI):
    """NXDN/DMR identity and status, without a position."""

    fields = (_SUBTYPE, ("Sentence version", "version"), ("Unit id (U + 5 or 8 digits, or digits)", "unit_id"), ("Unit status", "status"),
              ("Reserved", "reserved"))

    def relayed(self) -> Relayed | None:
        radio = nxdn_id(self._field("unit_id"))
        return None if radio is None else Relayed(radio, _status(self._field("status")), has_position=False)


def _register() -> None:
    registry = pynmea2.ProprietarySentence.sentence_types
    registry.pop("KenwoodSentence", None)  # filed there by the metaclass; never a manufacturer
    for cls in (KLD, KND, KLS, KNS, KLI, KNI):
        registry[cls.__name__] = cls


_register()

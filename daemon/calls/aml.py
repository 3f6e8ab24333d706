"""AML SMS (v1 and v2) and ELS form bodies on `<node>/call/aml` become CallRequests, never an exception (rules: intake.py)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

from alkomd.daemon.calls.fields import (
    EARLIEST,
    MAX_FORM_FIELDS,
    MAX_FUTURE,
    MAX_NOTE,
    MAX_PAYLOAD,
    STALE_FIX,
    Absent,
    Fields,
    Problem,
    as_bytes,
    as_utc,
    caller_number,
    clean_text,
    decode_text,
    duplicated_location,
    fallback_call,
    fields_of,
    location_of,
    make_call,
    parse_iso,
    sha256_hex,
    show,
)
from alkomd.daemon.calls.types import CallRequest, Location
from alkomd.daemon.records import utc_iso


def parse_aml(payload: bytes, now: datetime) -> CallRequest:
    """The call carried by a `<node>/call/aml` payload (AML SMS V1/V2 or ELS form body); never raises."""
    try:
        return _parse_aml(as_bytes(payload), as_utc(now))
    except Exception as exc:  # never drop a call, whatever went wrong
        return fallback_call(payload, now, "aml-", "aml-sms", exc)

@dataclass(frozen=True, slots=True)
class _Aml:
    """What one AML/ELS message says, before it becomes a CallRequest."""

    source: str
    location: Location | None = None
    caller: str = ""
    notes: tuple[str, ...] = ()

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")

_METHODS = {"G": "GNSS", "W": "Wi-Fi", "C": "cell", "F": "fused", "U": "unknown", "N": "none"}

_ELS_MARKERS = ("location_", "device_", "cell_", "emergency_number", "thunderbird_version")

def _parse_aml(payload: bytes, now: datetime) -> CallRequest:
    raw = sha256_hex(payload)
    call_id = "aml-" + sha256_hex(payload.strip())[:20]
    problems: list[str] = []
    if len(payload) > MAX_PAYLOAD:
        problems.append(f"{Problem.TOO_LARGE}: payload too large ({len(payload)} bytes > {MAX_PAYLOAD}); not parsed")
        return make_call(call_id, "aml-sms", now, raw, problems)
    text = decode_text(payload, problems)
    if text is None:
        return make_call(call_id, "aml-sms", now, raw, problems)
    text = text.strip()
    if not text:
        problems.append(f"{Problem.PARSE}: empty payload")
        return make_call(call_id, "aml-sms", now, raw, problems)
    aml = _aml(text, now, problems)
    note, _ = clean_text("; ".join(aml.notes))
    return make_call(call_id, aml.source, now, raw, problems, caller=aml.caller, location=aml.location, note=note[:MAX_NOTE])

def _aml(text: str, now: datetime, problems: list[str]) -> _Aml:
    if text.startswith('A"ML='):
        version = text[5:].split(";", 1)[0].strip()
        if version == "1":
            return _sms_v1(text, now, problems)
        if version == "2":
            return _sms_v2(text, now, problems)
        problems.append(f"{Problem.FORMAT}: AML SMS version {show(version)} is not supported (1 and 2 are)")
        return _Aml("aml-sms")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="replace")
    except ValueError:
        problems.append(f"{Problem.FORMAT}: more than {MAX_FORM_FIELDS} form fields; not an ELS body")
        return _Aml("aml-sms")
    if any(key.startswith(_ELS_MARKERS) for key, _ in pairs):
        return _els(pairs, now, problems)
    problems.append(f'{Problem.FORMAT}: neither an AML SMS (A"ML=1;...) nor an ELS form body: {show(text)}')
    return _Aml("aml-sms")

def _sms_fields(text: str, problems: list[str]) -> Fields:
    pairs: list[tuple[str, str]] = []
    for part in text.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            problems.append(f"{Problem.FORMAT}: AML field {show(part)} has no '='")
            continue
        pairs.append((key.strip(), value.strip()))
    return fields_of(pairs, problems)

def _str(value: object) -> str | None:
    """A present, non-blank AML/ELS field value, else None (absent, duplicated or blank)."""
    return value if isinstance(value, str) and value else None

def _decimal(name: str, value: object, problems: list[str]) -> float | None:
    text = _str(value)
    if text is None:
        return None
    if not _DECIMAL.fullmatch(text):
        problems.append(f"{Problem.FORMAT}: {name} {show(text)} is not a decimal number")
        return None
    number = float(text)
    if not math.isfinite(number):
        problems.append(f"{Problem.NONFINITE}: {name} {show(text)} is not a finite number")
        return None
    return number

def _digits(name: str, value: object, lengths: tuple[int, int], problems: list[str]) -> str | None:
    text = _str(value)
    if text is None:
        return None
    if not re.fullmatch(f"[0-9]{{{lengths[0]},{lengths[1]}}}", text):
        problems.append(f"{Problem.FORMAT}: {name} {show(text)} is not {lengths[0]}..{lengths[1]} digits")
        return None
    return text

def _positioned(name: str, t: datetime, now: datetime, problems: list[str]) -> str:
    """The note for a time of positioning; a stale or future one is also a problem."""
    if t - now > MAX_FUTURE:
        problems.append(f"{Problem.TIME}: {name} {utc_iso(t)} is in the future (handset clock?)")
    elif now - t > STALE_FIX:
        problems.append(f"{Problem.TIME}: {name} {utc_iso(t)}: the position is {(now - t).total_seconds() / 60:.0f} min old")
    return f"positioned {utc_iso(t)}"

def _epoch(name: str, value: object, unit: str, problems: list[str]) -> datetime | None:
    """An epoch time in `unit` ("s" or "ms"); a 10- vs 13-digit mix-up is read the other way, noted."""
    text = _digits(name, value, (1, 15), problems)
    if text is None:
        return None
    if len(text) == 13:
        seconds = int(text) / 1000
    elif len(text) == 10:
        seconds = float(text)
    else:
        problems.append(f"{Problem.TIME}: {name} {text} is neither 10-digit seconds nor 13-digit milliseconds")
        return None
    if (len(text) == 13) != (unit == "ms"):
        problems.append(f"{Problem.TIME}: {name} {text} has {len(text)} digits: read as {'ms' if len(text) == 13 else 's'}, not {unit}")
    t = datetime.fromtimestamp(seconds, UTC)
    if t < EARLIEST:
        problems.append(f"{Problem.TIME}: {name} {utc_iso(t)} is before 2000; ignored")
        return None
    return t

def _method(name: str, value: object, problems: list[str]) -> str | None:
    text = _str(value)
    if text is None:
        return None
    if text.upper() not in _METHODS:
        problems.append(f"{Problem.FORMAT}: {name} {show(text)} is not one of {'/'.join(_METHODS)}")
        return None
    return text.upper()

def _common_notes(f: Fields, problems: list[str], *, lc: str, ei: str, si: str | None = None, network: str | None = None) -> list[str]:
    """Notes for confidence (percent), IMEI, IMSI and network (MCC+MNC), read from the given keys."""
    notes: list[str] = []
    confidence = _decimal(lc, f.get(lc), problems)
    if confidence is not None:
        if 0 <= confidence <= 100:
            notes.append(f"confidence {confidence:g}%")
        else:
            problems.append(f"{Problem.FORMAT}: {lc} {confidence:g} is not a percentage")
    imei = _digits(ei, f.get(ei), (14, 16), problems)
    if imei:
        notes.append(f"IMEI {imei}")
    imsi = _digits(si, f.get(si), (5, 15), problems) if si else None
    if imsi:
        notes.append(f"IMSI {imsi}")
    mccmnc = _digits(network, f.get(network), (5, 6), problems) if network else None
    if mccmnc:
        notes.append(f"network {mccmnc[:3]}-{mccmnc[3:]}")
    return notes

def _sms_v1(text: str, now: datetime, problems: list[str]) -> _Aml:
    f = _sms_fields(text, problems)
    notes = ["AML SMS V1"]
    method = _method("pm", f.get("pm"), problems)
    lat = _decimal("lt", f.get("lt"), problems)
    lon = _decimal("lg", f.get("lg"), problems)
    for key, value in (("lt", lat), ("lg", lon)):
        if value is None and f.get(key) is Absent.MISSING:
            problems.append(f"{Problem.FORMAT}: {key} is missing")
    rd = _str(f.get("rd"))
    accuracy = None if rd is None or rd.upper() == "N" else _decimal("rd", rd, problems)
    location: Location | None = None
    if duplicated_location(f, ("lt", "lg", "rd", "pm"), problems):
        pass
    elif method == "N":
        notes.append("no fix (pm=N)")
        if lat or lon:  # neither None nor 0
            problems.append(f"{Problem.LOCATION}: pm=N (no fix) but lt/lg are not zero; location not used")
    else:
        if method:
            notes.append(f"method {method} ({_METHODS[method]})")
        location = location_of(lat, lon, accuracy or None, ("lt", "lg", "rd"), problems)  # rd=0 means unknown
    top = _str(f.get("top"))
    if top is not None:
        t = parse_iso(f"{top[:4]}-{top[4:6]}-{top[6:8]}T{top[8:10]}:{top[10:12]}:{top[12:]}Z") if re.fullmatch("[0-9]{14}", top) else None
        if isinstance(t, datetime):
            notes.append(_positioned("top", t, now, problems))
        else:
            problems.append(f"{Problem.FORMAT}: top {show(top)} is not a yyyyMMddHHmmss time")
    mcc = _digits("mcc", f.get("mcc"), (3, 3), problems)
    mnc = _digits("mnc", f.get("mnc"), (2, 3), problems)
    notes += _common_notes(f, problems, lc="lc", ei="ei", si="si")
    if mcc and mnc:
        notes.append(f"network {mcc}-{mnc}")
    ml = _digits("ml", f.get("ml"), (1, 4), problems)
    if ml is not None and int(ml) != len(text):
        problems.append(f"{Problem.FORMAT}: ml={ml} but the message has {len(text)} characters (truncated or altered?)")
    return _Aml("aml-sms", location, "", tuple(notes))

def _sms_v2(text: str, now: datetime, problems: list[str]) -> _Aml:
    f = _sms_fields(text, problems)
    notes = ["AML SMS V2"]
    number = _str(f.get("en"))
    if number is not None and re.fullmatch(r"\+?[0-9]{1,15}", number):
        notes.append(f"emergency number {number}")
    start = _epoch("et", f.get("et"), "s", problems)
    if start is not None:
        notes.append(f"call started {utc_iso(start)}")
        offset = _str(f.get("lt"))
        if offset is not None and re.fullmatch("[0-9]{1,6}", offset):
            notes.append(_positioned("et+lt", start + timedelta(seconds=int(offset)), now, problems))
    method = _method("ls", f.get("ls"), problems)
    if method:
        notes.append(f"method {method} ({_METHODS[method]})")
    location: Location | None = None
    lo = _str(f.get("lo"))
    if duplicated_location(f, ("lo",), problems):
        pass
    elif lo is None:
        notes.append("no location")
    else:
        parts = lo.split(",")
        if len(parts) not in (2, 3):
            problems.append(f"{Problem.FORMAT}: lo {show(lo)} is not lat,lon[,accuracy]")
        else:
            lat, lon = _decimal("lo latitude", parts[0].strip(), problems), _decimal("lo longitude", parts[1].strip(), problems)
            acc = _decimal("lo accuracy", parts[2].strip(), problems) if len(parts) == 3 else None
            location = location_of(lat, lon, acc or None, ("lo latitude", "lo longitude", "lo accuracy"), problems)
    notes += _common_notes(f, problems, lc="lc", ei="ei", network="nc")
    return _Aml("aml-sms", location, "", tuple(notes))

def _els(pairs: list[tuple[str, str]], now: datetime, problems: list[str]) -> _Aml:
    f = fields_of(pairs, problems)
    notes = ["ELS HTTPS"]
    number = _str(f.get("emergency_number"))
    if number is not None and re.fullmatch(r"\+?[0-9]{1,15}", number):
        notes.append(f"emergency number {number}")
    start = _epoch("time", f.get("time"), "ms", problems)
    if start is not None:
        notes.append(f"call started {utc_iso(start)}")
    source = _str(f.get("location_source"))
    if source is not None:
        if re.fullmatch("[A-Za-z_]{1,16}", source):
            notes.append(f"method {source.lower()}")
        else:
            problems.append(f"{Problem.FORMAT}: location_source {show(source)} is not a method name")
    keys = ("location_latitude", "location_longitude")
    location: Location | None = None
    lat = _decimal(keys[0], f.get(keys[0]), problems)
    lon = _decimal(keys[1], f.get(keys[1]), problems)
    if duplicated_location(f, (*keys, "location_accuracy"), problems):
        pass
    elif _str(f.get(keys[0])) is None and _str(f.get(keys[1])) is None:
        notes.append("no location")
    else:
        for key in keys:
            if _str(f.get(key)) is None:
                problems.append(f"{Problem.LOCATION}: {key} is missing but the other coordinate is given; location unusable")
        accuracy = _decimal("location_accuracy", f.get("location_accuracy"), problems)
        location = location_of(lat, lon, accuracy, (*keys, "location_accuracy"), problems)
        fixed = _epoch("location_time", f.get("location_time"), "ms", problems)
        if fixed is not None:
            notes.append(_positioned("location_time", fixed, now, problems))
    confidence = _decimal("location_confidence", f.get("location_confidence"), problems)
    if confidence is not None:
        if 0 <= confidence <= 1:
            notes.append(f"confidence {confidence * 100:g}%")
        else:
            problems.append(f"{Problem.FORMAT}: location_confidence {confidence:g} is not within 0..1")
    notes += _common_notes(f, problems, lc="location_certainty", ei="device_imei", si="device_imsi")
    mcc = _digits("cell_network_mcc", f.get("cell_network_mcc"), (3, 3), problems)
    mnc = _digits("cell_network_mnc", f.get("cell_network_mnc"), (2, 3), problems)
    if mcc and mnc:
        notes.append(f"network {mcc}-{mnc}")
    caller = caller_number("device_number", f.get("device_number"), problems, required=False)
    return _Aml("els-https", location, caller, tuple(notes))

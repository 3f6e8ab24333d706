"""Call intake: raw `<node>/call/new` JSON and `<node>/call/aml` AML/ELS payloads become CallRequests, never an exception."""

# Rules (design.md sections 3 and 8, reliability-anchors.md section 7): a bad location is rejected,
# never the call. Every payload, however broken, becomes a CallRequest; what was wrong is listed
# in `problems` (each "E_CODE: text", ASCII only, values shown escaped and truncated) for the human
# who must call back. Decisions:
# - MAX_PAYLOAD is 8 KiB: a complete call/new is under 1 KiB (500-char note included), an AML SMS
#   is at most a few hundred characters and an ELS form body about 2 KiB; the cap bounds parsing
#   cost and the nesting depth reachable, and is checked before decoding. An oversized payload is
#   still a call (derived call_id, no location).
# - call_id: 1..64 of [A-Za-z0-9_.:-], not "new"/"aml"/dots only, taken verbatim (never stripped).
#   Missing, invalid or duplicated: "x" + sha256(payload)[:24], so a redelivered identical payload
#   is the same call. On call/aml: "aml-" + sha256(payload stripped of ASCII whitespace)[:20].
# - Duplicate JSON keys: listed; a duplicated field's value is not used (a duplicated lat/lon means
#   no location, a duplicated call_id a derived one).
# - NaN/Infinity literals, 1e999 and integers beyond 32 digits (read as floats) are non-finite or
#   out of range; bool is not a number; numeric strings ("-6.2") are not numbers.
# - lat/lon: both null is "no location" (contract-valid, no problem); one null, out of range,
#   non-finite or (0, 0) Null Island: no location. Outside Indonesia is NOT rejected here: the
#   jurisdiction step knows the polygons and calls it "outside".
# - accuracy_m: null is unknown; <= 0, wrong type or non-finite (NaN, Infinity, 1e999): location
#   kept, accuracy None, noted; > 100 km: location unusable (the circle spans several jurisdictions).
# - received_at: ISO 8601 string with Z or an offset (converted to UTC). Missing, no timezone, not
#   a string (epoch numbers are NOT accepted: s/ms ambiguity), unparseable, before 2000 or more
#   than 5 min after `now`: `now` is used, noted. More than 24 h before `now`: kept, noted.
# - caller: separators " -.()/" removed, then "+"? and 3..20 ASCII digits; "anonymous"-like words
#   give "" silently; anything else gives "" (a wrong number is worse than none), noted.
# - Free text (category <= 64, note <= 500): control, format (bidi overrides, zero-width) and
#   surrogate code points removed (noted), whitespace runs collapsed to one space, truncated
#   (noted). Every string in the result encodes as UTF-8.
# - escalated_from: 1..256 chars, "/"-separated non-empty levels without whitespace, + # NUL or
#   control characters; invalid: None, noted (the call is still taken).
# - Unknown fields are ignored silently: the contract is additive (additionalProperties: true).
# - AML/ELS calls: received_at is `now` (the message arrives after the call started; its times go
#   to `note`), category "unknown", confidence/method/IMEI/IMSI/network in `note`. AML SMS text
#   carries no caller number: caller "". ELS: caller from device_number. An ml mismatch, a stale
#   (> 30 min) or future time of positioning is noted, the location kept.

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qsl

from alkomd.daemon.calls.types import CallRequest, Location
from alkomd.daemon.records import utc_iso

MAX_PAYLOAD = 8192  # bytes; see the rules above
MAX_FUTURE = timedelta(minutes=5)  # clock skew allowed for received_at and times of positioning
MAX_AGE = timedelta(hours=24)  # an older received_at is kept but noted
STALE_FIX = timedelta(minutes=30)  # an older AML/ELS time of positioning is noted
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # before: a clock that was never set
MAX_ACCURACY_M = 100_000.0
CALL_ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
RESERVED_CALL_IDS = frozenset({"new", "aml"})
MAX_CALLER = 32
MAX_CATEGORY = 64
MAX_NOTE = 500
MAX_NODE = 256
MAX_FORM_FIELDS = 100
MAX_PROBLEMS = 20
DEFAULT_CATEGORY = "unknown"


class Problem(enum.StrEnum):
    """Reason codes prefixing every entry of CallRequest.problems (for per-reason counters)."""

    TOO_LARGE = "E_TOO_LARGE"
    PARSE = "E_PARSE"  # not UTF-8, not JSON, empty
    SCHEMA = "E_SCHEMA"  # JSON but not an object
    MISSING = "E_MISSING"
    TYPE = "E_TYPE"
    NONFINITE = "E_NONFINITE"
    LOCATION = "E_LOCATION"
    TIME = "E_TIME"
    DUPLICATE = "E_DUPLICATE"
    STRING = "E_STRING"  # text cleaned, truncated or unusable
    CALL_ID = "E_CALL_ID"
    FORMAT = "E_FORMAT"  # call/aml: not AML/ELS, or a malformed field
    INTERNAL = "E_INTERNAL"


# ---------------------------------------------------------------------------------------------
# shared helpers


class _Absent(enum.Enum):
    MISSING = "missing"
    DUPLICATE = "duplicate"  # present more than once: ambiguous, already reported


@dataclass(frozen=True, slots=True)
class _NonFinite:
    """A NaN, Infinity or -Infinity literal, kept as a marker so the rest of the object parses."""

    literal: str


@dataclass(frozen=True, slots=True)
class _Obj:
    """A JSON object as its key/value pairs in order (duplicates kept, so they can be reported)."""

    pairs: tuple[tuple[str, object], ...]


@dataclass(frozen=True, slots=True)
class _Fields:
    """Fields of one message: first value of each key that occurs once, and the duplicated keys."""

    values: dict[str, object]
    duplicates: tuple[str, ...]

    def get(self, key: str) -> object:
        if key in self.duplicates:
            return _Absent.DUPLICATE
        return self.values.get(key, _Absent.MISSING)


def _fields(pairs: tuple[tuple[str, object], ...] | list[tuple[str, str]], problems: list[str]) -> _Fields:
    values: dict[str, object] = {}
    counts: dict[str, int] = {}
    for key, value in pairs:
        if key in values:
            counts[key] = counts.get(key, 1) + 1
        else:
            values[key] = value
    dups = tuple(counts)
    if dups:
        shown = ", ".join(f"{_show(k)} x{counts[k]}" for k in dups[:10])
        more = f" and {len(dups) - 10} more" if len(dups) > 10 else ""
        problems.append(f"{Problem.DUPLICATE}: duplicated keys {shown}{more}: ambiguous, their values are not used")
    return _Fields(values, dups)


def _show(value: object) -> str:
    """A short, escaped, ASCII rendering of a value for a problem text (never the whole payload)."""
    if isinstance(value, str):
        return ascii(value[:40]) + ("..." if len(value) > 40 else "")
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return ascii(value)[:40]
    if isinstance(value, _NonFinite):
        return value.literal
    if isinstance(value, list):
        return "an array"
    if isinstance(value, _Obj):
        return "an object"
    return type(value).__name__


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")  # terminal control sequences (CSI), removed whole


def _clean(text: str) -> tuple[str, int]:
    """Text without terminal escapes, control, format or surrogate code points, whitespace runs made one space.

    Returns the text and how many escapes and code points were removed (whitespace collapsing not counted).
    """
    out: list[str] = []
    text, removed = _ANSI_ESCAPE.subn("", text)
    for ch in text:
        if ch.isspace():
            out.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs"):
            removed += 1
        else:
            out.append(ch)
    return " ".join("".join(out).split()), removed


def _utc(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cap(problems: list[str]) -> tuple[str, ...]:
    if len(problems) <= MAX_PROBLEMS:
        return tuple(problems)
    return (*problems[: MAX_PROBLEMS - 1], f"{Problem.FORMAT}: and {len(problems) - MAX_PROBLEMS + 1} more problems")


def _number(name: str, value: object, problems: list[str]) -> float | None:
    """A finite JSON number as float; None for null, absent or unusable (reported unless duplicated)."""
    if value is None or value is _Absent.DUPLICATE:
        return None
    if value is _Absent.MISSING:
        problems.append(f"{Problem.MISSING}: {name} is missing")
        return None
    if isinstance(value, _NonFinite):
        problems.append(f"{Problem.NONFINITE}: {name} is {value.literal}, not a finite number")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(f"{Problem.TYPE}: {name} must be a number, got {_show(value)}")
        return None
    number = float(value)
    if not math.isfinite(number):
        problems.append(f"{Problem.NONFINITE}: {name} is {_show(value)}, not a finite number")
        return None
    return number


def _location(
    lat: float | None, lon: float | None, accuracy: float | None, names: tuple[str, str, str], problems: list[str]
) -> Location | None:
    """The usable location, or None; `names` are the input's names for lat, lon and accuracy."""
    if lat is None or lon is None:
        return None
    lat_name, lon_name, acc_name = names
    usable = True
    if not (-90.0 <= lat <= 90.0):
        hint = f" ({lat_name} and {lon_name} swapped?)" if -90.0 <= lon <= 90.0 else ""
        problems.append(f"{Problem.LOCATION}: {lat_name} {lat!r} is outside -90..90{hint}; location unusable")
        usable = False
    if not (-180.0 <= lon <= 180.0):
        problems.append(f"{Problem.LOCATION}: {lon_name} {lon!r} is outside -180..180; location unusable")
        usable = False
    if not usable:
        return None
    if lat == 0.0 and lon == 0.0:
        problems.append(f"{Problem.LOCATION}: {lat_name} 0, {lon_name} 0 is Null Island (a zeroed fix); location unusable")
        return None
    if accuracy is not None and not (0.0 < accuracy <= MAX_ACCURACY_M):
        if accuracy > MAX_ACCURACY_M:
            problems.append(
                f"{Problem.LOCATION}: {acc_name} {accuracy!r} m is over {MAX_ACCURACY_M:.0f} m, the circle spans several "
                "jurisdictions; location unusable"
            )
            return None
        problems.append(f"{Problem.LOCATION}: {acc_name} {accuracy!r} must be > 0; uncertainty taken as unknown")
        accuracy = None
    return Location(lat, lon, accuracy)


def _call(
    call_id: str,
    source: str,
    now: datetime,
    raw: str,
    problems: list[str],
    *,
    caller: str = "",
    location: Location | None = None,
    received_at: datetime | None = None,
    category: str = DEFAULT_CATEGORY,
    escalated_from: str | None = None,
    note: str = "",
) -> CallRequest:
    return CallRequest(
        call_id=call_id,
        caller=caller,
        location=location,
        received_at=now if received_at is None else received_at,
        category=category,
        source=source,
        problems=_cap(problems),
        escalated_from=escalated_from,
        note=note,
        raw_sha256=raw,
    )


def _decode(payload: bytes, problems: list[str]) -> str | None:
    """The payload as text (a leading BOM removed and noted), or None when it is not UTF-8."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(f"{Problem.PARSE}: payload is not UTF-8 (byte {exc.start}: {exc.reason}); nothing could be read")
        return None
    if text.startswith("\ufeff"):
        problems.append(f"{Problem.PARSE}: leading UTF-8 byte order mark removed")
        text = text[1:]
    return text


def _as_bytes(payload: object) -> bytes:
    """The payload as bytes, whatever the caller passed (a str is encoded, anything else is empty)."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogatepass")
    return b""


def _fallback(payload: bytes, now: datetime, prefix: str, source: str, exc: Exception) -> CallRequest:
    """Last line of defence: a validator bug must still leave a call for the human."""
    raw = _sha(_as_bytes(payload))
    problem = f"{Problem.INTERNAL}: the validator failed ({type(exc).__name__}); the call is kept without its fields"
    return _call(prefix + raw[: 20 if prefix == "aml-" else 24], source, _utc(now), raw, [problem])


# ---------------------------------------------------------------------------------------------
# <node>/call/new


def parse_call(payload: bytes, now: datetime, topic_kind: str = "new") -> CallRequest:
    """The call carried by a `<node>/call/<topic_kind>` payload; never raises.

    `topic_kind` "new" is the JSON contract, "aml" delegates to parse_aml; anything else is read as
    "new" and noted. `now` is the intake time (UTC; a naive value is taken as UTC).
    """
    if topic_kind == "aml":
        return parse_aml(payload, now)
    try:
        problems: list[str] = []
        if topic_kind != "new":
            problems.append(f"{Problem.SCHEMA}: unknown topic kind {_show(topic_kind)}, read as call/new")
        return _parse_new(_as_bytes(payload), _utc(now), problems)
    except Exception as exc:  # never drop a call, whatever went wrong
        return _fallback(payload, now, "x", "mqtt", exc)


def _parse_int(digits: str) -> int | float:
    # Python refuses int() beyond 4300 digits (ValueError, losing the whole object); no field
    # needs more than a few digits, so long integers become floats (possibly inf) and fail later.
    return int(digits) if len(digits) <= 32 else float(digits)


def _load_json(text: str, problems: list[str]) -> object | _Absent:
    try:
        doc: object = json.loads(
            text,
            object_pairs_hook=lambda pairs: _Obj(tuple(pairs)),
            parse_constant=_NonFinite,
            parse_int=_parse_int,
        )
        return doc
    except RecursionError:
        problems.append(f"{Problem.PARSE}: JSON nested too deeply; nothing could be read")
    except json.JSONDecodeError as exc:
        problems.append(f"{Problem.PARSE}: invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    except ValueError as exc:
        problems.append(f"{Problem.PARSE}: invalid JSON ({type(exc).__name__})")
    return _Absent.MISSING


_JSON_KIND = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean", type(None): "null"}


def _parse_new(payload: bytes, now: datetime, problems: list[str]) -> CallRequest:
    raw = _sha(payload)
    derived = "x" + raw[:24]
    if len(payload) > MAX_PAYLOAD:
        problems.append(f"{Problem.TOO_LARGE}: payload too large ({len(payload)} bytes > {MAX_PAYLOAD}); not parsed")
        return _call(_derive(derived, "not read", problems), "mqtt", now, raw, problems)
    text = _decode(payload, problems)
    if text is None:
        return _call(_derive(derived, "not read", problems), "mqtt", now, raw, problems)
    if not text.strip():
        problems.append(f"{Problem.PARSE}: empty payload")
        return _call(_derive(derived, "not read", problems), "mqtt", now, raw, problems)
    doc = _load_json(text, problems)
    if doc is _Absent.MISSING:
        return _call(_derive(derived, "not read", problems), "mqtt", now, raw, problems)
    if not isinstance(doc, _Obj):
        kind = "a non-finite number" if isinstance(doc, _NonFinite) else _JSON_KIND.get(type(doc), "not an object")
        problems.append(f"{Problem.SCHEMA}: payload is {kind}, expected a JSON object")
        return _call(_derive(derived, "not read", problems), "mqtt", now, raw, problems)

    f = _fields(doc.pairs, problems)
    call_id = _call_id(f.get("call_id"), derived, problems)
    lat_value, lon_value = f.get("lat"), f.get("lon")
    lat = _number("lat", lat_value, problems)
    lon = _number("lon", lon_value, problems)
    for name, value, other in (("lat", lat_value, lon_value), ("lon", lon_value, lat_value)):
        if value is None and other is not None and not isinstance(other, _Absent):
            problems.append(f"{Problem.LOCATION}: {name} is null but the other coordinate is given; location unusable")
    accuracy = _number("accuracy_m", f.get("accuracy_m"), problems)
    location = None
    if not _duplicated_location(f, ("lat", "lon"), problems):
        location = _location(lat, lon, accuracy, ("lat", "lon", "accuracy_m"), problems)
    notes = [n for n in (_text(k, f.get(k), MAX_NOTE, problems) for k in ("caller_note", "note")) if n]
    return _call(
        call_id,
        "mqtt",
        now,
        raw,
        problems,
        caller=_caller("caller", f.get("caller"), problems, required=True),
        location=location,
        received_at=_received_at(f.get("received_at"), now, problems),
        category=_text("category", f.get("category"), MAX_CATEGORY, problems, required=True) or DEFAULT_CATEGORY,
        escalated_from=_escalated_from(f.get("escalated_from"), problems),
        note=" / ".join(notes)[:MAX_NOTE],
    )


def _derive(derived: str, reason: str, problems: list[str]) -> str:
    problems.append(
        f"{Problem.CALL_ID}: call_id {reason}; using {derived}, derived from the payload's SHA-256 "
        "(a resend of the same bytes is the same call)"
    )
    return derived


def _call_id(value: object, derived: str, problems: list[str]) -> str:
    if value is _Absent.DUPLICATE:
        return _derive(derived, "is duplicated", problems)
    if value is _Absent.MISSING:
        return _derive(derived, "is missing", problems)
    if not isinstance(value, str):
        return _derive(derived, f"must be a string, got {_show(value)}", problems)
    if value in RESERVED_CALL_IDS or value.strip(".") == "":
        return _derive(derived, f"{_show(value)} is reserved (a topic level)", problems)
    if not CALL_ID_PATTERN.fullmatch(value):
        return _derive(derived, f"{_show(value)} is not 1..64 characters of A-Z a-z 0-9 _ . : -", problems)
    return value


_CALLER_SEPARATORS = str.maketrans("", "", " -.()/")
_CALLER_PATTERN = re.compile(r"\+?[0-9]{3,20}")
_WITHHELD = frozenset({"", "anonymous", "unknown", "private", "withheld", "restricted", "unavailable", "-"})


def _caller(name: str, value: object, problems: list[str], *, required: bool) -> str:
    """The caller's number as "+"? and digits, or "" when unknown or unusable (noted)."""
    if value is _Absent.DUPLICATE:
        return ""
    if value is _Absent.MISSING:
        if required:
            problems.append(f"{Problem.MISSING}: {name} is missing")
        return ""
    if not isinstance(value, str):
        problems.append(f"{Problem.TYPE}: {name} must be a string, got {_show(value)}")
        return ""
    clean, removed = _clean(value)
    if clean.lower() in _WITHHELD:
        return ""
    number = clean.translate(_CALLER_SEPARATORS)
    if len(clean) > MAX_CALLER or not _CALLER_PATTERN.fullmatch(number):
        problems.append(f"{Problem.STRING}: {name} {_show(value)} is not a phone number (+ and 3..20 digits); caller unknown")
        return ""
    if removed:
        problems.append(f"{Problem.STRING}: {name}: {removed} control/format characters removed")
    return number


def _text(name: str, value: object, limit: int, problems: list[str], *, required: bool = False) -> str:
    """Cleaned free text of at most `limit` characters; "" when absent or unusable."""
    if value is _Absent.DUPLICATE:
        return ""
    if value is _Absent.MISSING or value is None:
        if required:
            problems.append(f"{Problem.MISSING}: {name} is {'missing' if value is _Absent.MISSING else 'null'}")
        return ""
    if not isinstance(value, str):
        problems.append(f"{Problem.TYPE}: {name} must be a string, got {_show(value)}")
        return ""
    clean, removed = _clean(value)
    if removed:
        problems.append(f"{Problem.STRING}: {name}: {removed} control/format characters removed")
    if len(clean) > limit:
        problems.append(f"{Problem.STRING}: {name} truncated from {len(clean)} to {limit} characters")
        clean = clean[:limit].rstrip()
    if not clean and required:
        problems.append(f"{Problem.STRING}: {name} is empty")
    return clean


_NODE_PATTERN = re.compile(r"[^\s+#/\x00]+(?:/[^\s+#/\x00]+)*")


def _escalated_from(value: object, problems: list[str]) -> str | None:
    if value is None or isinstance(value, _Absent):
        return None
    if not isinstance(value, str):
        problems.append(f"{Problem.TYPE}: escalated_from must be a string, got {_show(value)}; not marked as escalated")
        return None
    clean, removed = _clean(value)
    if removed or clean != value or len(value) > MAX_NODE or not _NODE_PATTERN.fullmatch(value):
        problems.append(
            f"{Problem.STRING}: escalated_from {_show(value)} is not a node path (levels split by /, no spaces, + # or "
            "control characters); not marked as escalated"
        )
        return None
    return value


_ISO_PATTERN = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:[.,]([0-9]{1,9}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):?([0-9]{2}))?"
)


def _iso(text: str) -> datetime | str:
    """An ISO 8601 time with a timezone as UTC, or why it is not one."""
    m = _ISO_PATTERN.fullmatch(text)
    if not m:
        return "is not an ISO 8601 time"
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or "0").ljust(6, "0")[:6])
    if m.group(8):
        tz = UTC
    elif m.group(9):
        offset = timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
        if offset >= timedelta(hours=24) or int(m.group(11)) >= 60:
            return "has an impossible UTC offset"
        tz = timezone(-offset if m.group(9) == "-" else offset)
    else:
        return "has no timezone (Z or +hh:mm)"
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz).astimezone(UTC)
    except (ValueError, OverflowError):
        return "is not a valid date and time"


def _received_at(value: object, now: datetime, problems: list[str]) -> datetime:
    if value is _Absent.DUPLICATE:
        return now
    if value is _Absent.MISSING:
        problems.append(f"{Problem.MISSING}: received_at is missing; the intake time is used")
        return now
    if not isinstance(value, str):
        problems.append(
            f"{Problem.TIME}: received_at must be an ISO 8601 string with a timezone, got {_show(value)}; the intake time is used"
        )
        return now
    t = _iso(value)
    if isinstance(t, str):
        problems.append(f"{Problem.TIME}: received_at {_show(value)} {t}; the intake time is used")
        return now
    if t < EARLIEST:
        problems.append(f"{Problem.TIME}: received_at {utc_iso(t)} is before 2000 (clock not set?); the intake time is used")
        return now
    if t - now > MAX_FUTURE:
        problems.append(f"{Problem.TIME}: received_at {utc_iso(t)} is in the future (after {utc_iso(now)}); the intake time is used")
        return now
    if now - t > MAX_AGE:
        problems.append(f"{Problem.TIME}: received_at {utc_iso(t)} is {(now - t).total_seconds() / 3600:.0f} h before intake (kept)")
    return t


# ---------------------------------------------------------------------------------------------
# <node>/call/aml: AML SMS V1/V2 text or an Android ELS HTTPS form body


def parse_aml(payload: bytes, now: datetime) -> CallRequest:
    """The call carried by a `<node>/call/aml` payload (AML SMS V1/V2 or ELS form body); never raises."""
    try:
        return _parse_aml(_as_bytes(payload), _utc(now))
    except Exception as exc:  # never drop a call, whatever went wrong
        return _fallback(payload, now, "aml-", "aml-sms", exc)


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
    raw = _sha(payload)
    call_id = "aml-" + _sha(payload.strip())[:20]
    problems: list[str] = []
    if len(payload) > MAX_PAYLOAD:
        problems.append(f"{Problem.TOO_LARGE}: payload too large ({len(payload)} bytes > {MAX_PAYLOAD}); not parsed")
        return _call(call_id, "aml-sms", now, raw, problems)
    text = _decode(payload, problems)
    if text is None:
        return _call(call_id, "aml-sms", now, raw, problems)
    text = text.strip()
    if not text:
        problems.append(f"{Problem.PARSE}: empty payload")
        return _call(call_id, "aml-sms", now, raw, problems)
    aml = _aml(text, now, problems)
    note, _ = _clean("; ".join(aml.notes))
    return _call(call_id, aml.source, now, raw, problems, caller=aml.caller, location=aml.location, note=note[:MAX_NOTE])


def _aml(text: str, now: datetime, problems: list[str]) -> _Aml:
    if text.startswith('A"ML='):
        version = text[5:].split(";", 1)[0].strip()
        if version == "1":
            return _sms_v1(text, now, problems)
        if version == "2":
            return _sms_v2(text, now, problems)
        problems.append(f"{Problem.FORMAT}: AML SMS version {_show(version)} is not supported (1 and 2 are)")
        return _Aml("aml-sms")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="replace")
    except ValueError:
        problems.append(f"{Problem.FORMAT}: more than {MAX_FORM_FIELDS} form fields; not an ELS body")
        return _Aml("aml-sms")
    if any(key.startswith(_ELS_MARKERS) for key, _ in pairs):
        return _els(pairs, now, problems)
    problems.append(f'{Problem.FORMAT}: neither an AML SMS (A"ML=1;...) nor an ELS form body: {_show(text)}')
    return _Aml("aml-sms")


def _sms_fields(text: str, problems: list[str]) -> _Fields:
    pairs: list[tuple[str, str]] = []
    for part in text.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            problems.append(f"{Problem.FORMAT}: AML field {_show(part)} has no '='")
            continue
        pairs.append((key.strip(), value.strip()))
    return _fields(pairs, problems)


def _str(value: object) -> str | None:
    """A present, non-blank AML/ELS field value, else None (absent, duplicated or blank)."""
    return value if isinstance(value, str) and value else None


def _decimal(name: str, value: object, problems: list[str]) -> float | None:
    text = _str(value)
    if text is None:
        return None
    if not _DECIMAL.fullmatch(text):
        problems.append(f"{Problem.FORMAT}: {name} {_show(text)} is not a decimal number")
        return None
    number = float(text)
    if not math.isfinite(number):
        problems.append(f"{Problem.NONFINITE}: {name} {_show(text)} is not a finite number")
        return None
    return number


def _digits(name: str, value: object, lengths: tuple[int, int], problems: list[str]) -> str | None:
    text = _str(value)
    if text is None:
        return None
    if not re.fullmatch(f"[0-9]{{{lengths[0]},{lengths[1]}}}", text):
        problems.append(f"{Problem.FORMAT}: {name} {_show(text)} is not {lengths[0]}..{lengths[1]} digits")
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
        problems.append(f"{Problem.FORMAT}: {name} {_show(text)} is not one of {'/'.join(_METHODS)}")
        return None
    return text.upper()


def _common_notes(f: _Fields, problems: list[str], *, lc: str, ei: str, si: str | None = None, network: str | None = None) -> list[str]:
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


def _duplicated_location(f: _Fields, keys: tuple[str, ...], problems: list[str]) -> bool:
    dup = [k for k in keys if k in f.duplicates]
    if dup:
        problems.append(f"{Problem.LOCATION}: {', '.join(dup)} duplicated; location unusable")
    return bool(dup)


def _sms_v1(text: str, now: datetime, problems: list[str]) -> _Aml:
    f = _sms_fields(text, problems)
    notes = ["AML SMS V1"]
    method = _method("pm", f.get("pm"), problems)
    lat = _decimal("lt", f.get("lt"), problems)
    lon = _decimal("lg", f.get("lg"), problems)
    for key, value in (("lt", lat), ("lg", lon)):
        if value is None and f.get(key) is _Absent.MISSING:
            problems.append(f"{Problem.FORMAT}: {key} is missing")
    rd = _str(f.get("rd"))
    accuracy = None if rd is None or rd.upper() == "N" else _decimal("rd", rd, problems)
    location: Location | None = None
    if _duplicated_location(f, ("lt", "lg", "rd", "pm"), problems):
        pass
    elif method == "N":
        notes.append("no fix (pm=N)")
        if lat or lon:  # neither None nor 0
            problems.append(f"{Problem.LOCATION}: pm=N (no fix) but lt/lg are not zero; location not used")
    else:
        if method:
            notes.append(f"method {method} ({_METHODS[method]})")
        location = _location(lat, lon, accuracy or None, ("lt", "lg", "rd"), problems)  # rd=0 means unknown
    top = _str(f.get("top"))
    if top is not None:
        t = _iso(f"{top[:4]}-{top[4:6]}-{top[6:8]}T{top[8:10]}:{top[10:12]}:{top[12:]}Z") if re.fullmatch("[0-9]{14}", top) else None
        if isinstance(t, datetime):
            notes.append(_positioned("top", t, now, problems))
        else:
            problems.append(f"{Problem.FORMAT}: top {_show(top)} is not a yyyyMMddHHmmss time")
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
    if _duplicated_location(f, ("lo",), problems):
        pass
    elif lo is None:
        notes.append("no location")
    else:
        parts = lo.split(",")
        if len(parts) not in (2, 3):
            problems.append(f"{Problem.FORMAT}: lo {_show(lo)} is not lat,lon[,accuracy]")
        else:
            lat, lon = _decimal("lo latitude", parts[0].strip(), problems), _decimal("lo longitude", parts[1].strip(), problems)
            acc = _decimal("lo accuracy", parts[2].strip(), problems) if len(parts) == 3 else None
            location = _location(lat, lon, acc or None, ("lo latitude", "lo longitude", "lo accuracy"), problems)
    notes += _common_notes(f, problems, lc="lc", ei="ei", network="nc")
    return _Aml("aml-sms", location, "", tuple(notes))


def _els(pairs: list[tuple[str, str]], now: datetime, problems: list[str]) -> _Aml:
    f = _fields(pairs, problems)
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
            problems.append(f"{Problem.FORMAT}: location_source {_show(source)} is not a method name")
    keys = ("location_latitude", "location_longitude")
    location: Location | None = None
    lat = _decimal(keys[0], f.get(keys[0]), problems)
    lon = _decimal(keys[1], f.get(keys[1]), problems)
    if _duplicated_location(f, (*keys, "location_accuracy"), problems):
        pass
    elif _str(f.get(keys[0])) is None and _str(f.get(keys[1])) is None:
        notes.append("no location")
    else:
        for key in keys:
            if _str(f.get(key)) is None:
                problems.append(f"{Problem.LOCATION}: {key} is missing but the other coordinate is given; location unusable")
        accuracy = _decimal("location_accuracy", f.get("location_accuracy"), problems)
        location = _location(lat, lon, accuracy, (*keys, "location_accuracy"), problems)
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
    caller = _caller("device_number", f.get("device_number"), problems, required=False)
    return _Aml("els-https", location, caller, tuple(notes))

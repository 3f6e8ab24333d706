"""Field checks shared by call intake (call/new JSON) and AML/ELS parsing: limits, problem codes, text, numbers, places, times."""

from __future__ import annotations

import enum
import hashlib
import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from alkomd.daemon.calls.types import CallRequest, Location

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

class Absent(enum.Enum):
    MISSING = "missing"
    DUPLICATE = "duplicate"  # present more than once: ambiguous, already reported

@dataclass(frozen=True, slots=True)
class NonFinite:
    """A NaN, Infinity or -Infinity literal, kept as a marker so the rest of the object parses."""

    literal: str

@dataclass(frozen=True, slots=True)
class JsonObject:
    """A JSON object as its key/value pairs in order (duplicates kept, so they can be reported)."""

    pairs: tuple[tuple[str, object], ...]

@dataclass(frozen=True, slots=True)
class Fields:
    """Fields of one message: first value of each key that occurs once, and the duplicated keys."""

    values: dict[str, object]
    duplicates: tuple[str, ...]

    def get(self, key: str) -> object:
        if key in self.duplicates:
            return Absent.DUPLICATE
        return self.values.get(key, Absent.MISSING)

def fields_of(pairs: tuple[tuple[str, object], ...] | list[tuple[str, str]], problems: list[str]) -> Fields:
    values: dict[str, object] = {}
    counts: dict[str, int] = {}
    for key, value in pairs:
        if key in values:
            counts[key] = counts.get(key, 1) + 1
        else:
            values[key] = value
    dups = tuple(counts)
    if dups:
        shown = ", ".join(f"{show(k)} x{counts[k]}" for k in dups[:10])
        more = f" and {len(dups) - 10} more" if len(dups) > 10 else ""
        problems.append(f"{Problem.DUPLICATE}: duplicated keys {shown}{more}: ambiguous, their values are not used")
    return Fields(values, dups)

def show(value: object) -> str:
    """A short, escaped, ASCII rendering of a value for a problem text (never the whole payload)."""
    if isinstance(value, str):
        return ascii(value[:40]) + ("..." if len(value) > 40 else "")
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return ascii(value)[:40]
    if isinstance(value, NonFinite):
        return value.literal
    if isinstance(value, list):
        return "an array"
    if isinstance(value, JsonObject):
        return "an object"
    return type(value).__name__

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")  # terminal control sequences (CSI), removed whole

def clean_text(text: str) -> tuple[str, int]:
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

def as_utc(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)

def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

def capped(problems: list[str]) -> tuple[str, ...]:
    if len(problems) <= MAX_PROBLEMS:
        return tuple(problems)
    return (*problems[: MAX_PROBLEMS - 1], f"{Problem.FORMAT}: and {len(problems) - MAX_PROBLEMS + 1} more problems")

def number(name: str, value: object, problems: list[str]) -> float | None:
    """A finite JSON number as float; None for null, absent or unusable (reported unless duplicated)."""
    if value is None or value is Absent.DUPLICATE:
        return None
    if value is Absent.MISSING:
        problems.append(f"{Problem.MISSING}: {name} is missing")
        return None
    if isinstance(value, NonFinite):
        problems.append(f"{Problem.NONFINITE}: {name} is {value.literal}, not a finite number")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(f"{Problem.TYPE}: {name} must be a number, got {show(value)}")
        return None
    number = float(value)
    if not math.isfinite(number):
        problems.append(f"{Problem.NONFINITE}: {name} is {show(value)}, not a finite number")
        return None
    return number

def location_of(
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

def make_call(
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
    caller_calls: int = 0,
) -> CallRequest:
    return CallRequest(
        call_id=call_id,
        caller=caller,
        location=location,
        received_at=now if received_at is None else received_at,
        category=category,
        source=source,
        problems=capped(problems),
        escalated_from=escalated_from,
        note=note,
        raw_sha256=raw,
        caller_calls=caller_calls,
    )

def decode_text(payload: bytes, problems: list[str]) -> str | None:
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

def as_bytes(payload: object) -> bytes:
    """The payload as bytes, whatever the caller passed (a str is encoded, anything else is empty)."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogatepass")
    return b""

def fallback_call(payload: bytes, now: datetime, prefix: str, source: str, exc: Exception) -> CallRequest:
    """Last line of defence: a validator bug must still leave a call for the human."""
    raw = sha256_hex(as_bytes(payload))
    problem = f"{Problem.INTERNAL}: the validator failed ({type(exc).__name__}); the call is kept without its fields"
    return make_call(prefix + raw[: 20 if prefix == "aml-" else 24], source, as_utc(now), raw, [problem])

CALLER_SEPARATORS = str.maketrans("", "", " -.()/")

CALLER_PATTERN = re.compile(r"\+?[0-9]{3,20}")

WITHHELD = frozenset({"", "anonymous", "unknown", "private", "withheld", "restricted", "unavailable", "-"})

def caller_number(name: str, value: object, problems: list[str], *, required: bool) -> str:
    """The caller's number as "+"? and digits, or "" when unknown or unusable (noted)."""
    if value is Absent.DUPLICATE:
        return ""
    if value is Absent.MISSING:
        if required:
            problems.append(f"{Problem.MISSING}: {name} is missing")
        return ""
    if not isinstance(value, str):
        problems.append(f"{Problem.TYPE}: {name} must be a string, got {show(value)}")
        return ""
    clean, removed = clean_text(value)
    if clean.lower() in WITHHELD:
        return ""
    number = clean.translate(CALLER_SEPARATORS)
    if len(clean) > MAX_CALLER or not CALLER_PATTERN.fullmatch(number):
        problems.append(f"{Problem.STRING}: {name} {show(value)} is not a phone number (+ and 3..20 digits); caller unknown")
        return ""
    if removed:
        problems.append(f"{Problem.STRING}: {name}: {removed} control/format characters removed")
    return number

ISO_PATTERN = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:[.,]([0-9]{1,9}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):?([0-9]{2}))?"
)

def parse_iso(text: str) -> datetime | str:
    """An ISO 8601 time with a timezone as UTC, or why it is not one."""
    m = ISO_PATTERN.fullmatch(text)
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

def duplicated_location(f: Fields, keys: tuple[str, ...], problems: list[str]) -> bool:
    dup = [k for k in keys if k in f.duplicates]
    if dup:
        problems.append(f"{Problem.LOCATION}: {', '.join(dup)} duplicated; location unusable")
    return bool(dup)

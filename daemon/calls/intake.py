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

import json
import re
from datetime import datetime

from alkomd.daemon.calls.aml import parse_aml
from alkomd.daemon.calls.fields import (
    CALL_ID_PATTERN,
    DEFAULT_CATEGORY,
    EARLIEST,
    MAX_AGE,
    MAX_CATEGORY,
    MAX_FUTURE,
    MAX_NODE,
    MAX_NOTE,
    MAX_PAYLOAD,
    RESERVED_CALL_IDS,
    Absent,
    JsonObject,
    NonFinite,
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
    number,
    parse_iso,
    sha256_hex,
    show,
)
from alkomd.daemon.calls.types import CallRequest
from alkomd.daemon.records import utc_iso


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
            problems.append(f"{Problem.SCHEMA}: unknown topic kind {show(topic_kind)}, read as call/new")
        return _parse_new(as_bytes(payload), as_utc(now), problems)
    except Exception as exc:  # never drop a call, whatever went wrong
        return fallback_call(payload, now, "x", "mqtt", exc)

def _parse_int(digits: str) -> int | float:
    # Python refuses int() beyond 4300 digits (ValueError, losing the whole object); no field
    # needs more than a few digits, so long integers become floats (possibly inf) and fail later.
    return int(digits) if len(digits) <= 32 else float(digits)

def _load_json(text: str, problems: list[str]) -> object | Absent:
    try:
        doc: object = json.loads(
            text,
            object_pairs_hook=lambda pairs: JsonObject(tuple(pairs)),
            parse_constant=NonFinite,
            parse_int=_parse_int,
        )
        return doc
    except RecursionError:
        problems.append(f"{Problem.PARSE}: JSON nested too deeply; nothing could be read")
    except json.JSONDecodeError as exc:
        problems.append(f"{Problem.PARSE}: invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    except ValueError as exc:
        problems.append(f"{Problem.PARSE}: invalid JSON ({type(exc).__name__})")
    return Absent.MISSING

_JSON_KIND = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean", type(None): "null"}

def _parse_new(payload: bytes, now: datetime, problems: list[str]) -> CallRequest:
    raw = sha256_hex(payload)
    derived = "x" + raw[:24]
    if len(payload) > MAX_PAYLOAD:
        problems.append(f"{Problem.TOO_LARGE}: payload too large ({len(payload)} bytes > {MAX_PAYLOAD}); not parsed")
        return make_call(_derive(derived, "not read", problems), "mqtt", now, raw, problems)
    text = decode_text(payload, problems)
    if text is None:
        return make_call(_derive(derived, "not read", problems), "mqtt", now, raw, problems)
    if not text.strip():
        problems.append(f"{Problem.PARSE}: empty payload")
        return make_call(_derive(derived, "not read", problems), "mqtt", now, raw, problems)
    doc = _load_json(text, problems)
    if doc is Absent.MISSING:
        return make_call(_derive(derived, "not read", problems), "mqtt", now, raw, problems)
    if not isinstance(doc, JsonObject):
        kind = "a non-finite number" if isinstance(doc, NonFinite) else _JSON_KIND.get(type(doc), "not an object")
        problems.append(f"{Problem.SCHEMA}: payload is {kind}, expected a JSON object")
        return make_call(_derive(derived, "not read", problems), "mqtt", now, raw, problems)

    f = fields_of(doc.pairs, problems)
    call_id = _call_id(f.get("call_id"), derived, problems)
    lat_value, lon_value = f.get("lat"), f.get("lon")
    lat = number("lat", lat_value, problems)
    lon = number("lon", lon_value, problems)
    for name, value, other in (("lat", lat_value, lon_value), ("lon", lon_value, lat_value)):
        if value is None and other is not None and not isinstance(other, Absent):
            problems.append(f"{Problem.LOCATION}: {name} is null but the other coordinate is given; location unusable")
    accuracy = number("accuracy_m", f.get("accuracy_m"), problems)
    location = None
    if not duplicated_location(f, ("lat", "lon"), problems):
        location = location_of(lat, lon, accuracy, ("lat", "lon", "accuracy_m"), problems)
    notes = [n for n in (_text(k, f.get(k), MAX_NOTE, problems) for k in ("caller_note", "note")) if n]
    return make_call(
        call_id,
        "mqtt",
        now,
        raw,
        problems,
        caller=caller_number("caller", f.get("caller"), problems, required=True),
        location=location,
        received_at=_received_at(f.get("received_at"), now, problems),
        category=_text("category", f.get("category"), MAX_CATEGORY, problems, required=True) or DEFAULT_CATEGORY,
        escalated_from=_escalated_from(f.get("escalated_from"), problems),
        note=" / ".join(notes)[:MAX_NOTE],
        caller_calls=_caller_calls(f.get("caller_calls"), problems),
    )


def _caller_calls(value: object, problems: list[str]) -> int:
    """How many calls the escalating node counted from this caller in its window (0: not given)."""
    if value is Absent.MISSING or value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000:
        problems.append(f"{Problem.TYPE}: caller_calls must be an integer 0..1000000, got {show(value)}; ignored")
        return 0
    return value

def _derive(derived: str, reason: str, problems: list[str]) -> str:
    problems.append(
        f"{Problem.CALL_ID}: call_id {reason}; using {derived}, derived from the payload's SHA-256 "
        "(a resend of the same bytes is the same call)"
    )
    return derived

def _call_id(value: object, derived: str, problems: list[str]) -> str:
    if value is Absent.DUPLICATE:
        return _derive(derived, "is duplicated", problems)
    if value is Absent.MISSING:
        return _derive(derived, "is missing", problems)
    if not isinstance(value, str):
        return _derive(derived, f"must be a string, got {show(value)}", problems)
    if value in RESERVED_CALL_IDS or value.strip(".") == "":
        return _derive(derived, f"{show(value)} is reserved (a topic level)", problems)
    if not CALL_ID_PATTERN.fullmatch(value):
        return _derive(derived, f"{show(value)} is not 1..64 characters of A-Z a-z 0-9 _ . : -", problems)
    return value

def _text(name: str, value: object, limit: int, problems: list[str], *, required: bool = False) -> str:
    """Cleaned free text of at most `limit` characters; "" when absent or unusable."""
    if value is Absent.DUPLICATE:
        return ""
    if value is Absent.MISSING or value is None:
        if required:
            problems.append(f"{Problem.MISSING}: {name} is {'missing' if value is Absent.MISSING else 'null'}")
        return ""
    if not isinstance(value, str):
        problems.append(f"{Problem.TYPE}: {name} must be a string, got {show(value)}")
        return ""
    clean, removed = clean_text(value)
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
    if value is None or isinstance(value, Absent):
        return None
    if not isinstance(value, str):
        problems.append(f"{Problem.TYPE}: escalated_from must be a string, got {show(value)}; not marked as escalated")
        return None
    clean, removed = clean_text(value)
    if removed or clean != value or len(value) > MAX_NODE or not _NODE_PATTERN.fullmatch(value):
        problems.append(
            f"{Problem.STRING}: escalated_from {show(value)} is not a node path (levels split by /, no spaces, + # or "
            "control characters); not marked as escalated"
        )
        return None
    return value

def _received_at(value: object, now: datetime, problems: list[str]) -> datetime:
    if value is Absent.DUPLICATE:
        return now
    if value is Absent.MISSING:
        problems.append(f"{Problem.MISSING}: received_at is missing; the intake time is used")
        return now
    if not isinstance(value, str):
        problems.append(
            f"{Problem.TIME}: received_at must be an ISO 8601 string with a timezone, got {show(value)}; the intake time is used"
        )
        return now
    t = parse_iso(value)
    if isinstance(t, str):
        problems.append(f"{Problem.TIME}: received_at {show(value)} {t}; the intake time is used")
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

"""A capture decoded with the daemon's own decoder, and the text and JSON forms of its fixes (decode, sniff).

A base radio's capture also gives relayed radios' fixes (with their `radio`) and status codes.
`fix_dict` is the one definition of the `--json` form of a fix (tests/captures/*.expected.jsonl).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import date, datetime, time, timezone
from typing import BinaryIO, TextIO

from alkomd.daemon.ctl.capture.file import capture_day, strip_comments
from alkomd.daemon.exit_codes import EX_NOINPUT, EX_OK
from alkomd.daemon.records import Fix, RadioHeard, RadioStatus, utc_iso, utc_now
from alkomd.drivers.nmea import Decoded, Decoder

CHUNK = 1 << 20


def fix_dict(f: Fix) -> dict[str, object]:
    """The `--json` object of one fix (also the format of tests/captures/*.expected.jsonl)."""
    return {
        "time": utc_iso(f.time),
        "lat": round(f.lat, 7),
        "lon": round(f.lon, 7),
        "mode": f.mode,
        "alt": None if f.alt is None else round(f.alt, 2),
        "speed_kmh": None if f.speed_kmh is None else round(f.speed_kmh, 2),
        "course": None if f.course is None else round(f.course, 2),
        "hdop": None if f.hdop is None else round(f.hdop, 2),
        "sats": f.sats,
        **({"radio": f.radio} if f.radio else {}),
    }


def _num(v: float | int | None) -> str:
    return "null" if v is None else repr(v)


def fix_json(f: Fix) -> str:
    """`fix_dict` as compact JSON, written directly (the same text as json.dumps, 3x faster)."""
    return (
        f'{{"time":"{utc_iso(f.time)}","lat":{round(f.lat, 7)!r},"lon":{round(f.lon, 7)!r},"mode":{f.mode},'
        f'"alt":{_num(None if f.alt is None else round(f.alt, 2))},'
        f'"speed_kmh":{_num(None if f.speed_kmh is None else round(f.speed_kmh, 2))},'
        f'"course":{_num(None if f.course is None else round(f.course, 2))},'
        f'"hdop":{_num(None if f.hdop is None else round(f.hdop, 2))},"sats":{_num(f.sats)}'
        + (f',"radio":"{f.radio}"}}' if f.radio else "}")
    )


def status_json(s: RadioStatus) -> str:
    """A relayed radio's status code as `--json` (no time: a capture only has the reading time)."""
    return f'{{"radio":"{s.radio}","status":{s.code}}}'


def heard_json(h: RadioHeard) -> str:
    """A relayed radio heard without a position or code (it keyed up) as `--json`."""
    return f'{{"radio":"{h.radio}","heard":true}}'


def fix_line(f: Fix) -> str:
    def opt(v: float | int | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    return (
        f"{utc_iso(f.time)}  {f.lat:11.7f} {f.lon:12.7f}  {f.mode}D"
        f"  alt {opt(f.alt, '.1f')} m  {opt(f.speed_kmh, '.1f')} km/h  course {opt(f.course, '.1f')}"
        f"  hdop {opt(f.hdop, '.2f')}  sats {opt(f.sats, 'd')}"
        + (f"  radio {f.radio}" if f.radio else "")
    )


def status_line(s: RadioStatus) -> str:
    return f"radio {s.radio} status {s.code}"


def heard_line(h: RadioHeard) -> str:
    return f"radio {h.radio} heard"


def decode_stream(src: BinaryIO, decoder: Decoder, day: date | None = None) -> Iterator[Decoded]:
    """Fixes of a whole capture, read in bounded chunks split at line ends.

    Sentences without a date (a GGA-only radio) are dated from `day`, else from the capture's
    `# Date:` header, else today: the decoder takes the date closest to its reference clock.
    """
    rest = b""
    now = utc_now()
    first = True
    while True:
        chunk = src.read(CHUNK)
        if not chunk:
            break
        if first:
            first = False
            day = day or capture_day(chunk[:4096])
            if day is not None:
                now = datetime.combine(day, time(12), timezone.utc)
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        data, rest = data[:cut], data[cut:]
        yield from decoder.feed(strip_comments(data), now, 0.0)
    if rest and not rest.startswith(b"#"):
        decoder.feed(rest, now, 0.0)
    yield from decoder.flush()


def summary(d: Decoder) -> str:
    reasons = ", ".join(f"{r.value}: {n}" for r, n in sorted(d.rejected.items(), key=lambda kv: -kv[1]))
    text = (
        f"{d.sentences} sentences ({d.unknown} of unknown types), {d.checksum_errors} checksum errors, "
        f"{d.parse_errors} parse errors, {d.garbage_bytes} garbage bytes, {d.fixes} fixes, "
        f"{d.rejected_fixes} epochs without a valid fix"
    )
    return text + (f" ({reasons})" if reasons else "")


def decode_file(
    path: str, as_json: bool, max_hdop: float, day: date | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    """`alkomctl decode`: one line (or JSON object) per fix on `out`, the summary on `err`; 0, or 66 cannot read `path`."""
    decoder = Decoder("capture", max_hdop=max_hdop)
    try:
        src: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        print(f"alkomctl decode: cannot read {path}: {exc.strerror}", file=err)
        return EX_NOINPUT
    with src:
        write = out.write
        if as_json:
            for r in decode_stream(src, decoder, day):
                if r.__class__ is Fix:
                    write(fix_json(r) + "\n")
                else:
                    write((status_json(r) if isinstance(r, RadioStatus) else heard_json(r)) + "\n")  # type: ignore[arg-type]
        else:
            for r in decode_stream(src, decoder, day):
                write((fix_line(r) if isinstance(r, Fix) else status_line(r) if isinstance(r, RadioStatus) else heard_line(r)) + "\n")
    print(summary(decoder), file=err)
    if decoder.sentences == 0 and decoder.garbage_bytes + decoder.checksum_errors > 0:
        print("hint: no valid sentence at all: was the capture made at the wrong baud rate?", file=err)
    return EX_OK

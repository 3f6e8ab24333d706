"""A capture decoded with the daemon's own decoder, and the text and JSON forms of its fixes (decode, sniff).

`alkomctl decode` prints every fix the receiver reported with the verdict of the daemon's gates
(`verdicts.JudgingDecoder`): `ok`, or the gate that rejects it.

A base radio's capture also gives relayed radios' fixes (with their `radio`) and status codes.
`fix_dict` is the one definition of the `--json` form of a fix (tests/captures/*.expected.jsonl).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import date
from typing import BinaryIO, TextIO

from alkomd.daemon.ctl.capture.file import capture_day, strip_comments
from alkomd.daemon.ctl.verdicts import OK, JudgingDecoder
from alkomd.daemon.exit_codes import EX_NOINPUT, EX_OK
from alkomd.daemon.records import Fix, RadioHeard, RadioStatus, utc_iso
from alkomd.drivers.nmea import Decoded

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


def decode_stream(src: BinaryIO, decoder: JudgingDecoder, first: bytes = b"") -> Iterator[Decoded]:
    """Every fix of a whole capture (each with its verdict: `decoder.verdict`), read in bounded chunks split at line ends.

    `first` is the capture's first chunk, already read (for its `# Date:` header)."""
    rest = b""
    while True:
        chunk, first = first or src.read(CHUNK), b""
        if not chunk:
            break
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        data, rest = data[:cut], data[cut:]
        yield from decoder.feed_capture(strip_comments(data))
    if rest and not rest.startswith(b"#"):
        yield from decoder.feed_capture(rest)
    yield from decoder.flush()


def summary(d: JudgingDecoder) -> str:
    verdicts = ", ".join(f"{v}: {n}" for v, n in d.verdicts.most_common())
    text = (
        f"{d.sentences} sentences ({d.unknown} of unknown types), {d.checksum_errors} checksum errors, "
        f"{d.parse_errors} parse errors, {d.garbage_bytes} garbage bytes, {sum(d.verdicts.values())} fixes reported"
    )
    text += f" ({verdicts})" if verdicts else ""
    return text + f", {d.without_fix} epochs without a position or a time"


def decode_file(
    path: str,
    as_json: bool,
    max_hdop: float,
    day: date | None = None,
    ok_only: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """`alkomctl decode`: one line (or JSON object) per fix with its verdict on `out`, the summary on `err`; 0, or 66.

    Fixes without a date of their own are dated from `day`, else from the capture's `# Date:` header, else today.
    """
    try:
        src: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        print(f"alkomctl decode: cannot read {path}: {exc.strerror}", file=err)
        return EX_NOINPUT
    with src:
        first = src.read(CHUNK)  # a whole chunk (or all there is): a pipe's first read may be short
        decoder = JudgingDecoder(max_hdop, day or capture_day(first[:4096]))
        write = out.write
        for r in decode_stream(src, decoder, first):
            if isinstance(r, Fix):
                verdict = decoder.verdict(r)
                if ok_only and verdict != OK:
                    continue
                write(fix_json(r)[:-1] + f',"verdict":"{verdict}"}}\n' if as_json else f"{verdict:<7} {fix_line(r)}\n")
            elif isinstance(r, RadioStatus):
                write((status_json(r) if as_json else status_line(r)) + "\n")
            else:
                write((heard_json(r) if as_json else heard_line(r)) + "\n")
    print(summary(decoder), file=err)
    if decoder.sentences == 0 and decoder.garbage_bytes + decoder.checksum_errors > 0:
        print("hint: no valid sentence at all: was the capture made at the wrong baud rate?", file=err)
    return EX_OK

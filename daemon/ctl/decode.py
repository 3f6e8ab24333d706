"""`alkomctl decode`: decode a capture with the daemon's own decoders, one line per fix with the verdict of its gates.

NMEA (the default, Kenwood FleetSync included) is `decoding`; LRRP, Hytera, LIP and OwnTracks packet
files are `decode_packets`.
"""

from __future__ import annotations

import argparse
from datetime import date

from alkomd.daemon.ctl.common import RAW, Subparsers, epilog, wrap


def add_parser(sub: Subparsers) -> None:
    d = sub.add_parser(
        "decode",
        help="decode an NMEA capture with the daemon's decoder",
        formatter_class=RAW,
        description=wrap(
            "Decode a capture (a file, or - for standard input) with the same code the daemon runs, and print one line "
            "per fix the receiver reported, starting with the verdict of the daemon's gates: ok, or the gate that "
            "rejects it (void, no-fix, mode, range, hdop, future). The receiver's own date (RMC, ZDA) dates the fixes; "
            "the '# Date:' header or --date only dates sentences without one (GGA-only radios). Lines starting with # "
            "are comments (capture headers). A summary of sentences, errors and verdicts goes to standard error. "
            "--format reads the other formats alkomd takes, one packet per line: hexadecimal for lrrp and hytera "
            "(the UDP payload; ARS registrations too) and lip (the SDS user data, 0A first), one JSON object for "
            "owntracks (a '# topic: owntracks/USER/DEVICE' comment before it names the sender)."
        ),
        epilog=epilog(
            "0 decoded (even if nothing in it was valid: the summary and a hint say so), 66 cannot read FILE",
            "alkomctl decode r2-12.nmea                    one line per fix and its verdict (alkomctl capture wrote it)",
            "alkomctl decode --ok r2-12.nmea               only the fixes the daemon would accept",
            "alkomctl decode --json - < capture.nmea       one JSON object per fix, for scripts",
            "alkomctl decode --date 2024-10-15 tests/captures/kenwood-gga-only.nmea",
            "alkomctl decode --format lrrp --json tests/captures/lrrp/trbo-net.hex",
            "alkomctl decode --format owntracks phone.jsonl",
        ),
    )
    d.add_argument("file", metavar="FILE|-", help="a capture (alkomctl capture, tests/captures/*.nmea), or - for standard input")
    d.add_argument(
        "--json",
        action="store_true",
        help='one JSON object per fix: nmea {"time","lat","lon","mode","alt","speed_kmh","course","hdop","sats",'
        '"verdict"}; the packet formats {"lat","lon"} and "time", "radio" where the packet has them, the protocol\'s '
        'extras (speed_kmh, course, radius_m or accuracy_m, result, ...) and "verdict"',
    )
    d.add_argument(
        "--format",
        choices=("nmea", "lrrp", "hytera", "lip", "owntracks"),
        default="nmea",
        help="what FILE holds (default nmea: NMEA 0183 and Kenwood FleetSync; the others one packet per line)",
    )
    d.add_argument("--ok", action="store_true", help="only the fixes the daemon would accept (verdict ok)")
    d.add_argument(
        "--max-hdop", type=float, default=20.0, help="the daemon's HDOP bound: a larger HDOP has the verdict hdop (default 20)"
    )
    d.add_argument(
        "--date",
        type=date.fromisoformat,
        default=None,
        metavar="YYYY-MM-DD",
        help="date for sentences without one (GGA-only radios); default: the '# Date:' header, else today",
    )


def run(args: argparse.Namespace) -> int:
    if args.format != "nmea":
        from alkomd.daemon.ctl.decode_packets import decode_packets

        return decode_packets(args.file, args.format, args.json, args.ok)
    from alkomd.daemon.ctl.decoding import decode_file

    return decode_file(args.file, args.json, args.max_hdop, args.date, args.ok)

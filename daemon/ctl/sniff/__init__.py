"""`alkomctl sniff`: a live view of what a serial port says, line by line, judged by the daemon's decoder.

The port is opened the way the daemon opens it (`open_port`, with its flock), so a port the
daemon holds is refused with a message naming it rather than silently shared. Every line read
is shown with the verdict of each sentence in it (ok, bad checksum, unknown, garbage, ...),
next to the rates, the fix status, satellites, HDOP and the last fix; for a base radio that
relays many units, the units heard (`Fix.radio`) with their last fix. `--json` prints one
object per sentence, garbage line, fix and status code instead, for scripts.

The parts: `sniffer` (bytes to judged lines and records, no I/O), `view` (the live table, plain
lines, JSON) and `watch` (the loop that reads the port). `udp://host:port` listens where a radio
driver would instead (`--format lrrp`: MOTOTRBO LRRP and ARS; `--format hytera`: Hytera LP):
`datagrams` judges each datagram, `udp` is its loop and view.
"""

from __future__ import annotations

import argparse

from alkomd.daemon.ctl.common import RAW, Subparsers, epilog, line_args, wrap


def add_parser(sub: Subparsers) -> None:
    sn = sub.add_parser(
        "sniff",
        help="watch what a serial port (or a radio driver's UDP port) says, live, sentence by sentence",
        formatter_class=RAW,
        description=wrap(
            "A live view of a port (like gpsmon): recent lines with the decoder's verdict for each sentence (ok, bad "
            "checksum, unknown, garbage), sentences per second, the checksum error rate, fix status, satellites, HDOP "
            "and the last fix; for a base radio, the units heard with their last fix. The port is opened exclusively, "
            "as the daemon does: a port the daemon holds is refused, not shared. With udp://HOST:PORT it listens where "
            "the lrrp or hytera driver would (--format lrrp or hytera; 4001, 4005 and 3003 are recognised) and shows each "
            "datagram's verdict, the radios heard and their fixes; it only listens (it acknowledges and asks nothing)."
        ),
        epilog=epilog(
            "0 valid sentences seen, 1 none, 66 no such port, 69 port failed, 75 port busy (the daemon holds it?), "
            "77 permission denied",
            "alkomctl sniff /dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K4Z9B-if00-port0",
            "alkomctl sniff /dev/ttyUSB0 --baud 4800 --framing 7N2 --raw    bytes in hex",
            "alkomctl sniff /dev/ttyUSB0 --seconds 30 --json > sniff.jsonl",
            "alkomctl sniff udp://0.0.0.0:4001 --format lrrp    MOTOTRBO location reports (stop the daemon first)",
            "alkomctl sniff udp://0.0.0.0:3003 --format hytera",
        ),
    )
    sn.add_argument("port", metavar="PORT", help="a device path or pyserial URL (socket://host:port), or udp://host:port")
    line_args(sn)
    sn.add_argument("--raw", action="store_true", help="show the bytes of each line in hex")
    sn.add_argument("--seconds", type=float, default=None, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    sn.add_argument("--json", action="store_true", help="one JSON object per sentence, garbage line, fix and status code")
    sn.add_argument(
        "--format", choices=("nmea", "lrrp", "hytera"), default=None,
        help="what the port carries: nmea (serial, the default), lrrp (MOTOTRBO LRRP/ARS) or hytera (Hytera LP) on udp://",
    )
    sn.add_argument(
        "--radio-network", type=int, default=None, metavar="N",
        help="udp://: first byte of the radios' addresses, which name the radio (default 12 for lrrp, 10 for hytera)",
    )


def run(args: argparse.Namespace) -> int:
    if args.port.startswith("udp://"):
        from alkomd.daemon.ctl.sniff.udp import sniff_udp

        return sniff_udp(args.port, args.format, args.raw, args.seconds, args.json, args.radio_network)
    if args.format not in (None, "nmea"):
        import sys

        print(f"alkomctl sniff: --format {args.format} needs a udp:// address (e.g. udp://0.0.0.0:4001)", file=sys.stderr)
        return 2
    from alkomd.daemon.ctl.sniff.watch import sniff

    return sniff(args.port, args.baud, args.framing, args.raw, args.seconds, args.json)

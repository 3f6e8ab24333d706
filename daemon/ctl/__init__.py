"""`alkomctl`: the technician's and operator's tool (one subcommand per job)."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from datetime import date
from pathlib import Path

from alkomd.daemon import __version__
from alkomd.daemon.config import DEFAULT_PATH
from alkomd.daemon.exit_codes import EX_CONFIG, EX_INTERRUPTED, EX_OK, EX_USAGE

DESCRIPTION = """\
alkomctl helps a station technician check captures, configurations and the whole
station. Every command exits 0 when all is well; see each command's --help.
"""

EPILOG = """\
examples:
  alkomctl decode capture.nmea            one line per fix in a recorded capture
  alkomctl decode --json - < capture.nmea one JSON object per fix, for scripts
  alkomctl check-config /etc/alkomd/alkomd.toml
  alkomctl status                         the running daemon: broker link, outbox, devices, units
  alkomctl backup /root/alkomd-backup.db  online copy of the database, verified
  alkomctl audit verify                   is the station's audit record intact?
  alkomctl call show C-0001               a call's timeline
  alkomctl demo                           a simulated station with a live view (Ctrl-C stops it)
  alkomctl modbus probe tcp://192.168.1.1 which modem is this, and does its GPS work?
  alkomctl ports                          serial ports, who holds them, what may steal them
  alkomctl sniff /dev/ttyUSB0             what the port says, live (Ctrl-C stops)
  alkomctl baud /dev/ttyUSB0              which baud rate gives NMEA?
  alkomctl capture /dev/ttyUSB0 60 x.nmea record a port for 60 s (decode and replay read it)
  alkomctl replay x.nmea --to pty:/tmp/gps play it into a pty that a daemon reads
  alkomctl support-bundle /tmp/b.tar.gz   versions, ports, config without secrets, errors
  alkomctl mqtt-check                     log in to the broker as the daemon does; probe round trip
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="alkomctl", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version=f"alkomctl {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    raw = argparse.RawDescriptionHelpFormatter
    d = sub.add_parser(
        "decode",
        help="decode an NMEA capture with the daemon's decoder",
        formatter_class=raw,
        description=_wrap("Decode a capture (a file, or - for standard input) with the same code the daemon "
        "runs, and print one line per valid fix. Lines starting with # are comments (capture headers). "
        "A summary of sentences, errors and rejected epochs goes to standard error."),
        epilog=_epilog(
            "0 decoded (even if nothing in it was valid: the summary and a hint say so), 66 cannot read FILE",
            "alkomctl decode r2-12.nmea                    one line per fix (alkomctl capture wrote it)",
            "alkomctl decode --json - < capture.nmea       one JSON object per fix, for scripts",
            "alkomctl decode --date 2024-10-15 tests/captures/kenwood-gga-only.nmea",
        ),
    )  # fmt: skip
    d.add_argument("file", metavar="FILE|-", help="a capture (alkomctl capture, tests/captures/*.nmea), or - for standard input")
    d.add_argument("--json", action="store_true",
                   help='one JSON object per fix: {"time","lat","lon","mode","alt","speed_kmh","course","hdop","sats"}')  # fmt: skip
    d.add_argument("--max-hdop", type=float, default=20.0, help="reject fixes with a larger HDOP (default 20)")
    d.add_argument("--date", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                   help="date for sentences without one (GGA-only radios); default: the '# Date:' header, else today")  # fmt: skip

    c = sub.add_parser(
        "check-config",
        help="validate a configuration file (exit 0 valid, 78 invalid)",
        formatter_class=raw,
        description=_wrap("Validate a configuration as the daemon does at start and on reload (alkomd --check-config): "
        "every key, type and range, the files it names, the jurisdictions. A problem is one line naming the file "
        "and the key."),
        epilog=_epilog("0 valid, 78 invalid", "alkomctl check-config /etc/alkomd/alkomd.toml",
                       "sudo -u alkomd alkomctl check-config    as the service user, who may read its secrets"),
    )  # fmt: skip
    c.add_argument("file", nargs="?", type=Path, default=DEFAULT_PATH, metavar="FILE", help=f"default {DEFAULT_PATH}")
    _daemon_queries(sub)

    audit_examples = ("alkomctl audit verify", "alkomctl audit verify --db /var/backups/alkomd/alkomd-2024-10-15.db --json")
    a = sub.add_parser("audit", help="check the tamper-evident audit record", formatter_class=raw,
                       epilog=_epilog("see alkomctl audit verify --help", *audit_examples))  # fmt: skip
    asub = a.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    av = asub.add_parser(
        "verify",
        help="verify the audit record's hash chain (exit 0 intact, 65 broken)",
        formatter_class=raw,
        description=_wrap("Walk the audit record of a station's database and check that every entry holds the hash "
        "of the previous one: an altered, removed or reordered entry is reported with its id. Safe while the "
        "daemon runs (read-only)."),
        epilog=_epilog("0 intact, 65 broken (the first bad entry is named), 66 no database or no audit record in it, "
                       "77 permission denied (run as root or as the alkomd user), 78 --config cannot be read",
                       *audit_examples),
    )  # fmt: skip
    _db_args(av)

    call_examples = ("alkomctl call show C-0001", "alkomctl call show C-0001 --json | jq '.timeline[].kind'")
    c2 = sub.add_parser("call", help="look at calls", formatter_class=raw,
                        epilog=_epilog("see alkomctl call show --help", *call_examples))  # fmt: skip
    csub = c2.add_subparsers(dest="call_command", metavar="ACTION", required=True)
    cs = csub.add_parser(
        "show",
        help="a call's whole timeline from the audit record",
        formatter_class=raw,
        description=_wrap("Every step of one call from the station's audit record (intake, jurisdiction, offers, "
        "answers, alerts, escalations, closing), oldest first, and its last stored state. Read-only: safe while "
        "the daemon runs."),
        epilog=_epilog("0 shown, 1 no such call in this database, 66 no database, 77 permission denied, 78 --config "
                       "cannot be read", *call_examples),
    )  # fmt: skip
    cs.add_argument("call_id", metavar="CALL_ID")
    _db_args(cs)

    m = sub.add_parser(
        "demo",
        help="run a whole simulated station with a live view",
        formatter_class=raw,
        description=_wrap("Start a private broker (mosquitto if installed, else an embedded one), simulated "
        "radios writing real NMEA into pseudo-terminals, and the daemon; show the positions arriving "
        "over MQTT. Ctrl-C stops all of it and leaves nothing running."),
        epilog=_epilog("0 stopped cleanly, 1 the broker could not start or the daemon failed (its log's end is shown)",
                       "alkomctl demo", "alkomctl demo --units 10 --duration 60",
                       "alkomctl demo --embedded-broker --workdir /tmp/demo    keep its config, database and logs"),
    )  # fmt: skip
    m.add_argument("--units", type=int, default=6, choices=range(1, 100), metavar="N", help="simulated units, 1 to 99 (default 6)")
    m.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="stop after this long")
    m.add_argument("--embedded-broker", action="store_true", help="use the embedded broker even if mosquitto exists")
    m.add_argument("--workdir", type=Path, default=None, help="keep the demo's config, database and logs here")
    _serial_tools(sub)
    from alkomd.daemon.ctl import modbus as cmd_modbus

    cmd_modbus.add_parser(sub)
    from alkomd.daemon.ctl import mqtt_check as cmd_mqtt_check

    cmd_mqtt_check.add_parser(sub)
    return p


def _serial_tools(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The serial-port tools: ports, sniff, baud, capture, replay, support-bundle (daemon/cmd_*.py)."""
    from alkomd.drivers.nmea_serial import FRAMINGS

    raw = argparse.RawDescriptionHelpFormatter
    po = sub.add_parser(
        "ports",
        help="list serial ports, who holds them, and what may steal them",
        formatter_class=raw,
        description=_wrap("Every serial port (or the ports named): its stable /dev/serial/by-id name, USB VID:PID, serial "
        "number, kernel driver, the processes holding it open (other users' processes need root), whether the "
        "alkomd daemon holds it and as which [[device]], and warnings with the fix for the usual thieves of "
        "USB-serial adapters: ModemManager, brltty, gpsd's hotplug, and permissions (dialout)."),
        epilog=_epilog("0 no problem, 1 problems found, 66 a named port does not exist, 78 --config cannot be read",
                       "alkomctl ports", "sudo alkomctl ports /dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K4Z9B-if00-port0",
                       "alkomctl ports --config /etc/alkomd/alkomd.toml --user www-data --json"),
    )  # fmt: skip
    po.add_argument("ports", nargs="*", metavar="PORT", help="only these ports (default: every port, and the config's)")
    po.add_argument("--config", type=Path, default=None, metavar="FILE",
                    help=f"label ports with the [[device]] that uses them (default {DEFAULT_PATH} if it exists)")  # fmt: skip
    po.add_argument("--user", action="append", default=[], metavar="NAME",
                    help="also check that this user may open the ports (repeatable; alkomd is always checked)")  # fmt: skip
    po.add_argument("--json", action="store_true", help="JSON output")

    sn = sub.add_parser(
        "sniff",
        help="watch what a serial port says, live, sentence by sentence",
        formatter_class=raw,
        description=_wrap("A live view of a port (like gpsmon): recent lines with the decoder's verdict for each sentence "
        "(ok, bad checksum, unknown, garbage), sentences per second, the checksum error rate, fix status, "
        "satellites, HDOP and the last fix; for a base radio, the units heard with their last fix. The port is "
        "opened exclusively, as the daemon does: a port the daemon holds is refused, not shared."),
        epilog=_epilog("0 valid sentences seen, 1 none, 66 no such port, 69 port failed, 75 port busy (the daemon "
                       "holds it?), 77 permission denied",
                       "alkomctl sniff /dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K4Z9B-if00-port0",
                       "alkomctl sniff /dev/ttyUSB0 --baud 4800 --framing 7N2 --raw    bytes in hex",
                       "alkomctl sniff /dev/ttyUSB0 --seconds 30 --json > sniff.jsonl"),
    )  # fmt: skip
    sn.add_argument("port", metavar="PORT", help="a device path or pyserial URL (socket://host:port)")
    _line_args(sn)
    sn.add_argument("--raw", action="store_true", help="show the bytes of each line in hex")
    sn.add_argument("--seconds", type=float, default=None, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    sn.add_argument("--json", action="store_true", help="one JSON object per sentence, garbage line, fix and status code")

    bd = sub.add_parser(
        "baud",
        help="find a port's baud rate and framing (gpsd's hunt)",
        formatter_class=raw,
        description=_wrap("Listen to the port at each baud rate from 1200 to 115200 (in gpsd's order: 4800 first, then "
        "up, then the radio rates 2400 and 1200), in 8N1 and then 7N2, each until two sentences with a valid "
        "checksum arrive or a few seconds pass; report the setting that gives NMEA with the evidence (valid and "
        "invalid sentences per setting, a sample sentence). The port is opened exclusively, as the daemon does."),
        epilog=_epilog("0 found, 1 no setting gives NMEA, 2 usage (an unknown framing), 66 no such port, 69 port "
                       "failed, 75 port busy, 77 permission denied",
                       "alkomctl baud /dev/serial/by-id/usb-Prolific_Technology_Inc._USB-Serial_Controller-if00-port0",
                       "alkomctl baud /dev/ttyUSB0 --rates 9600,4800 --dwell 10     a radio that reports every few seconds",
                       "alkomctl baud /dev/ttyUSB0 --framings 8N1 --all --json      every setting's evidence, for scripts"),
    )  # fmt: skip
    bd.add_argument("port", metavar="PORT", help="a device path or pyserial URL")
    bd.add_argument("--rates", type=_int_list, default=None, metavar="N,N,...", help="rates to try, in order")
    bd.add_argument("--framings", type=lambda v: v.split(","), default=None, metavar="8N1,7N2",
                    help="framings to try, in order (default 8N1,7N2)")  # fmt: skip
    bd.add_argument("--dwell", type=float, default=None, metavar="S", help="seconds per setting (default 3)")
    bd.add_argument("--all", action="store_true", help="try every setting even after one gives NMEA")
    bd.add_argument("--json", action="store_true", help="JSON output")

    cp = sub.add_parser(
        "capture",
        help="record a port's raw bytes into a capture file (decode and replay read it)",
        formatter_class=raw,
        description=_wrap("Record what a port says for SECONDS into FILE: a metadata header (device, place, date, "
        "baud, notes, alkomctl version) in the tests/captures format, then the bytes exactly as read, with '#t=' "
        "lines giving the arrival time of each burst so `alkomctl replay` keeps the pace. `alkomctl decode FILE` "
        "reads it; a capture with its expected output becomes a regression test. The port is opened "
        "exclusively, as the daemon does: stop the daemon first for a port it reads."),
        epilog=_epilog("0 captured valid sentences, 1 none, 66 no such port, 69 port lost, 73 FILE exists (--force) "
                       "or cannot be created, 75 port busy, 77 permission denied",
                       "alkomctl capture /dev/ttyUSB0 60 r2-12.nmea --device 'R2-12 Kenwood NX-3220 GPS' "
                       "--place 'Jl. Ahmad Yani, Limboto'",
                       "alkomctl capture /dev/ttyUSB0 600 base.nmea --baud 4800 --notes 'base radio, 5 units on air'",
                       "alkomctl capture /dev/ttyUSB0 30 again.nmea --force --json"),
    )  # fmt: skip
    cp.add_argument("port", metavar="PORT", help="a device path or pyserial URL")
    cp.add_argument("seconds", type=float, metavar="SECONDS", help="how long to record (Ctrl-C stops early; the file is kept)")
    cp.add_argument("file", type=Path, metavar="FILE", help="the capture to write (not overwritten without --force)")
    _line_args(cp)
    cp.add_argument("--device", default="", metavar="TEXT", help="which device: model, unit, firmware, output settings")
    cp.add_argument("--place", default="", metavar="TEXT", help="where it was recorded")
    cp.add_argument("--notes", default="", metavar="TEXT", help="anything odd about it")
    cp.add_argument("--name", default="", metavar="TEXT", help="a title (default: capture of DEVICE)")
    cp.add_argument("--force", action="store_true", help="overwrite FILE")
    cp.add_argument("--json", action="store_true", help="the summary as JSON")

    rp = sub.add_parser(
        "replay",
        help="play a capture into a pty, a serial port or socket:// at the recorded pace",
        formatter_class=raw,
        description=_wrap("Write a capture's data lines (not its # lines) to TARGET: pty:PATH creates a pseudo-terminal "
        "with PATH linked to it and waits for a program to open it (like gpsfake: point a daemon's url at PATH); "
        "a device path writes to that serial port (a null-modem cable into another port); socket://host:port "
        "connects to a listening TCP server. The pace is the capture's '#t=' times, else the NMEA times in the "
        "sentences, else --rate lines per second; --speed multiplies it, --speed 0 sends as fast as the reader "
        "takes it."),
        epilog=_epilog("0 played, 2 usage, 66 no such FILE, 69 nobody opened the pty or the target failed, 73 cannot "
                       "create the pty's PATH, 75 target busy, 77 permission denied",
                       'alkomctl replay r2-12.nmea --to pty:/tmp/ttyR212              then run a daemon with url = "/tmp/ttyR212"',
                       "alkomctl replay base.nmea --to /dev/ttyUSB1 --speed 4         four times faster, into a null-modem cable",
                       "alkomctl replay r2-12.nmea --to socket://127.0.0.1:4001 --speed 0",
                       "alkomctl replay r2-12.nmea --to pty:/tmp/x --dry-run           when each line would be sent"),
    )  # fmt: skip
    rp.add_argument("file", type=Path, metavar="FILE", help="a capture (alkomctl capture, tests/captures/*.nmea)")
    rp.add_argument("--to", required=True, metavar="TARGET", help="pty:PATH, a serial port, or socket://host:port")
    rp.add_argument("--speed", type=_speed, default=1.0, metavar="X", help="pace multiplier (default 1; 0: as fast as possible)")
    rp.add_argument("--rate", type=float, default=None, metavar="N", help="lines per second for captures without times (default 10)")
    rp.add_argument("--max-gap", type=float, default=None, metavar="S", help="cap every pause at S seconds (default 60)")
    rp.add_argument("--baud", type=int, default=None, metavar="N", help="baud rate of a serial TARGET (default: the capture's)")
    rp.add_argument("--framing", default=None, choices=FRAMINGS, help="framing of a serial TARGET (default: the capture's)")
    rp.add_argument("--wait", type=float, default=None, metavar="S", help="pty: how long to wait for a reader (default 60)")
    rp.add_argument("--dry-run", action="store_true", help="print when each line would be sent; send nothing")
    rp.add_argument("--json", action="store_true", help="JSON output")

    sb = sub.add_parser(
        "support-bundle",
        help="one tar.gz for the maintainers: versions, ports, config without secrets, counters, recent errors",
        formatter_class=raw,
        description=_wrap("Collect what the maintainers need to help into OUT.tar.gz: versions (alkomd, Python, "
        "libraries, mosquitto, OS), `alkomctl ports`, the effective configuration with secrets as paths only, the "
        "daemon's status and counters (from its control socket, else its database read-only), the recent "
        "warnings and errors of the journal (journalctl -u alkomd) or of a log file, udev rules. Never "
        "included: password or key file contents, calls, caller numbers, unit positions."),
        epilog=_epilog("0 written, 73 cannot create OUT",
                       "sudo alkomctl support-bundle /tmp/alkomd-support.tar.gz",
                       "alkomctl support-bundle bundle.tar.gz --config ./alkomd.toml --log ./alkomd.log --json"),
    )  # fmt: skip
    sb.add_argument("out", type=Path, metavar="OUT.tar.gz", help="the bundle to write (replaced if it exists)")
    sb.add_argument("--config", type=Path, default=None, metavar="FILE", help=f"the daemon's configuration (default {DEFAULT_PATH})")
    sb.add_argument("--log", type=Path, default=None, metavar="FILE", help="a log file to take recent errors from (besides the journal)")
    sb.add_argument("--socket", type=Path, default=None, metavar="PATH", help="the daemon's control socket (default: from the config)")
    sb.add_argument("--json", action="store_true", help="what was written, as JSON")


def _daemon_queries(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """status, units, devices, backup: the running station (daemon/cmd_status.py, daemon/cmd_backup.py)."""
    raw = argparse.RawDescriptionHelpFormatter
    where = (
        "The daemon answers on its control socket: /run/alkomd/control.sock under systemd, else control.sock next "
        "to the database. Works while the broker is down."
    )
    codes = (
        "0 ok, 69 no daemon answers (is alkomd running?), 76 the reply is not understood (alkomctl older than the "
        "daemon?), 77 permission denied (join the alkomd group), 78 --config cannot be read"
    )
    for name, what in (
        ("status", "the daemon at a glance: broker link, outbox, database, devices and units by state, last reload"),
        ("units", "every unit: status, last fix, its age and place, where it came from"),
        ("devices", "every device: state and since when, counters, age of the last data, modem health"),
    ):
        q = sub.add_parser(name, help=what, description=_wrap(f"{what[0].upper()}{what[1:]}. {where}"),
                           epilog=_epilog(codes, f"alkomctl {name}", f"alkomctl {name} --json | jq .",
                                          f"alkomctl {name} --socket /run/alkomd/control.sock"),
                           formatter_class=raw)  # fmt: skip
        q.add_argument("--socket", type=Path, default=None, metavar="PATH", help="the daemon's control socket")
        q.add_argument("--config", type=Path, default=None, metavar="FILE",
                       help=f"find the socket from this configuration's [store] path (default {DEFAULT_PATH})")  # fmt: skip
        q.add_argument("--json", action="store_true", help="the daemon's reply as JSON, for scripts")
    b = sub.add_parser(
        "backup",
        help="online backup of the station's database, verified",
        description=_wrap("Copy the station's database while the daemon runs (SQLite's backup API, one consistent "
        "snapshot: everything committed before the backup started), then check the copy (integrity_check, schema "
        "version, the audit record's hash chain) and only then rename it to FILE (mode 0600: it holds callers' "
        "data). Run it as root or as the alkomd user."),
        epilog=_epilog("0 written and sound, 65 the copy fails a check (a broken audit chain is still written: the "
                       "copy is faithful), 66 no database, 73 FILE exists (--force) or cannot be created, 77 "
                       "permission denied, 78 --config cannot be read",
                       "sudo alkomctl backup /var/backups/alkomd/alkomd-$(date +%F).db",
                       "alkomctl backup --db /var/lib/alkomd/alkomd.db --json /srv/backup/alkomd.db"),
        formatter_class=raw,
    )  # fmt: skip
    b.add_argument("file", type=Path, metavar="FILE", help="where the copy goes")
    _db_args(b)
    b.add_argument("--force", action="store_true", help="replace FILE if it exists")


def _wrap(text: str) -> str:
    return textwrap.fill(text, 100)


def _epilog(exit_codes: str, *examples: str) -> str:
    """The end of a command's --help: its exit codes and examples (kept true by tests/test_docs.py)."""
    return f"{_wrap('exit codes: ' + exit_codes)}\n\nexamples:\n" + "\n".join(f"  {e}" for e in examples)


def _int_list(value: str) -> list[int]:
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {value!r}") from None
    if not out or any(v < 50 or v > 4_000_000 for v in out):
        raise argparse.ArgumentTypeError(f"rates must be between 50 and 4000000: {value!r}")
    return out


def _speed(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError("the speed is 0 (as fast as possible) or more")
    return v


def _line_args(p: argparse.ArgumentParser) -> None:
    from alkomd.drivers.nmea_serial import FRAMINGS

    p.add_argument("--baud", type=int, default=9600, metavar="N", help="baud rate (default 9600)")
    p.add_argument("--framing", default="8N1", choices=FRAMINGS, help="data bits, parity, stop bits (default 8N1)")


def _db_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", type=Path, default=None, metavar="FILE", help="the database (default: [store] path of --config)")
    p.add_argument("--config", type=Path, default=DEFAULT_PATH, metavar="FILE", help=f"configuration (default {DEFAULT_PATH})")
    p.add_argument("--json", action="store_true", help="JSON output")


def _db_path(args: argparse.Namespace) -> Path | None:
    """--db, else the [store] path of --config read as plain TOML (None, with the reason printed, if it cannot be read).

    Not validated: the whole file may name secrets only the service can see (a systemd credential).
    """
    if args.db is not None:
        return Path(args.db)
    from alkomd.daemon.ctl.status import store_path

    try:
        return store_path(args.config)
    except (OSError, ValueError) as exc:
        print(f"alkomctl: cannot read {args.config}: {exc} (or name the database with --db)", file=sys.stderr)
        return None


def issue_order(argv: list[str]) -> list[str]:
    """`modbus URL [--unit N] read ADDR ...` (the order the toolbox was specified in) as `modbus read URL ...`."""
    if len(argv) >= 3 and argv[0] == "modbus" and argv[1] not in ("read", "probe") and not argv[1].startswith("-"):
        rest = argv[2:]
        for action in ("read", "probe"):
            if action in rest:
                i = rest.index(action)
                return ["modbus", action, argv[1], *rest[:i], *rest[i + 1 :]]
    return argv


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(issue_order(sys.argv[1:] if argv is None else argv))
    try:
        return dispatch(args)
    except BrokenPipeError:  # `alkomctl decode big.nmea | head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EX_OK
    except KeyboardInterrupt:  # Ctrl-C in a command that does not catch it itself (a query, a Modbus read): no traceback
        print("alkomctl: interrupted", file=sys.stderr)
        return EX_INTERRUPTED


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "decode":
        from alkomd.daemon.ctl import decode as cmd_decode

        return cmd_decode.run(args.file, args.json, args.max_hdop, args.date)
    if args.command in ("audit", "call", "backup"):
        db = _db_path(args)
        if db is None:
            return EX_CONFIG
        if args.command == "backup":
            from alkomd.daemon.ctl import backup as cmd_backup

            return cmd_backup.run(db, args.file, args.force, args.json)
        from alkomd.daemon.ctl import audit as cmd_audit

        if args.command == "audit":
            return cmd_audit.verify_cmd(db, args.json)
        return cmd_audit.call_show(db, args.call_id, args.json)
    if args.command in ("status", "units", "devices"):
        from alkomd.daemon.ctl import status as cmd_status

        return cmd_status.run(args.command, args.socket, args.config, args.json)
    if args.command == "check-config":
        from alkomd.daemon import main as cli

        return cli.main(["--check-config", str(args.file)])
    if args.command == "ports":
        from alkomd.daemon.ctl import ports as cmd_ports

        return cmd_ports.run(args.ports, args.config, args.json, args.user)
    if args.command == "sniff":
        from alkomd.daemon.ctl import sniff as cmd_sniff

        return cmd_sniff.run(args.port, args.baud, args.framing, args.raw, args.seconds, args.json)
    if args.command == "modbus":
        from alkomd.daemon.ctl import modbus as cmd_modbus

        return cmd_modbus.run(args)
    if args.command == "mqtt-check":
        from alkomd.daemon.ctl import mqtt_check as cmd_mqtt_check

        return cmd_mqtt_check.run(args.config, args.password_file, args.timeout, args.json)
    if args.command == "baud":
        from alkomd.daemon.ctl import baud as cmd_baud

        return cmd_baud.run(
            args.port, args.rates or cmd_baud.RATES, args.framings or cmd_baud.FRAMINGS, args.dwell or cmd_baud.DWELL_S,
            args.all, args.json,
        )  # fmt: skip
    if args.command == "capture":
        from alkomd.daemon.ctl import capture as cmd_capture

        info = cmd_capture.CaptureInfo(args.port, args.baud, args.framing, args.seconds, args.device, args.place, args.notes, args.name)
        return cmd_capture.capture(info, args.file, args.force, args.json)
    if args.command == "replay":
        from alkomd.daemon.ctl import capture as cmd_capture

        return cmd_capture.replay(
            args.file, args.to, args.speed, args.rate or cmd_capture.DEFAULT_RATE, args.max_gap or cmd_capture.MAX_GAP_S,
            args.baud, args.framing, args.wait or cmd_capture.WAIT_FOR_READER_S, dry_run=args.dry_run, as_json=args.json,
        )  # fmt: skip
    if args.command == "support-bundle":
        from alkomd.daemon.ctl import support as cmd_support

        return cmd_support.run(args.out, args.config, args.log, args.socket, args.json)
    if args.command == "demo":
        from alkomd.daemon.ctl import demo

        return demo.run_demo(
            duration_s=args.duration, units=args.units, embedded_broker=args.embedded_broker, workdir=args.workdir
        )
    return EX_USAGE


if __name__ == "__main__":
    sys.exit(main())

"""`alkomctl sniff udp://host:port`: listen where a radio driver would, show each datagram's verdict and the radios heard.

The sniff only listens (it acknowledges and asks nothing): radios that register keep trying,
and reports arrive only from radios that were asked before (or send unsolicited). A port the
daemon holds is refused (75), as a serial port the daemon holds is.
"""

from __future__ import annotations

import errno
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO
from urllib.parse import urlsplit

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from alkomd.daemon.ctl.decoding import fix_dict
from alkomd.daemon.ctl.serial_port import printable, stop_on_signals
from alkomd.daemon.ctl.sniff.datagrams import DEFAULT_PORTS, OK, DatagramSniffer, Seen
from alkomd.daemon.exit_codes import EX_NOINPUT, EX_NOPERM, EX_OK, EX_PROBLEM, EX_TEMPFAIL, EX_UNAVAILABLE, EX_USAGE
from alkomd.daemon.records import Fix, RadioStatus, utc_iso, utc_now

REFRESH_S = 0.25
TICK_S = 0.1
STYLE = {OK: "green", "bad checksum": "bold red", "unparsable": "red"}


class UrlError(ValueError):
    """The udp:// address is not usable."""


def parse_url(url: str) -> tuple[str, int]:
    """(host, port) of `udp://host:port` (host may be empty: every interface)."""
    parts = urlsplit(url)
    if parts.scheme != "udp":
        raise UrlError(f"{url}: not a udp:// address")
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None or not 1 <= port <= 65535:
        raise UrlError(f"{url}: needs a port, e.g. udp://0.0.0.0:4001")
    return parts.hostname or "0.0.0.0", port


def format_for(port: int, fmt: str | None) -> str | None:
    return fmt if fmt not in (None, "nmea") else DEFAULT_PORTS.get(port)


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    sock.settimeout(TICK_S)
    return sock


def _bind_error(exc: OSError, where: str) -> tuple[int, str]:
    if exc.errno == errno.EADDRINUSE:
        return EX_TEMPFAIL, f"{where} is in use by another program (the daemon? stop it first: systemctl stop alkomd)"
    if exc.errno == errno.EACCES:
        return EX_NOPERM, f"{where}: permission denied (ports below 1024 need privileges)"
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return EX_NOINPUT, f"{where}: no such address on this machine"
    return EX_UNAVAILABLE, f"{where}: {exc.strerror or exc}"


def sniff_udp(
    url: str, fmt: str | None, raw: bool = False, seconds: float | None = None, as_json: bool = False,
    radio_network: int | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
) -> int:
    """`alkomctl sniff udp://...`: 0 valid datagrams seen, 1 none, 2 bad address or format, 66/69/75/77 cannot listen."""
    try:
        host, port = parse_url(url)
    except UrlError as exc:
        print(f"alkomctl sniff: {exc}", file=err)
        return EX_USAGE
    chosen = format_for(port, fmt)
    if chosen is None:
        print(f"alkomctl sniff: {url}: say what it carries with --format lrrp or --format hytera", file=err)
        return EX_USAGE
    where = f"udp {host}:{port}"
    try:
        sock = _bind(host, port)
    except OSError as exc:
        code, text = _bind_error(exc, where)
        print(f"alkomctl sniff: {text}", file=err)
        return code
    sn = DatagramSniffer(chosen, radio_network)
    stop = threading.Event()
    started = time.monotonic()
    live_view = not as_json and out.isatty()
    console = Console(file=out, highlight=False, markup=False)

    def emit(items: list[Seen | Fix | RadioStatus]) -> None:
        if live_view:
            return
        for item in items:
            if as_json:
                out.write(json.dumps(json_object(item, raw), separators=(",", ":")) + "\n")
            else:
                out.write(plain_line(item, raw) + "\n")
        out.flush()

    def loop(live: Live | None) -> None:
        next_draw = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if seconds is not None and now - started >= seconds:
                break
            try:
                data, addr = sock.recvfrom(65535)
            except TimeoutError:
                data = None
            except OSError:
                continue
            if data is not None:
                emit(sn.feed(data, addr[0], int(addr[1]), utc_now(), time.monotonic()))
            if live is not None and now >= next_draw:
                live.update(render(sn, where, raw, now - started, console.size.height))
                next_draw = now + REFRESH_S

    with stop_on_signals(stop):
        try:
            if live_view:
                with Live(console=console, refresh_per_second=1 / REFRESH_S, transient=False, redirect_stderr=False) as live:
                    loop(live)
                    live.update(render(sn, where, raw, time.monotonic() - started, console.size.height))
            else:
                loop(None)
        finally:
            sock.close()
    elapsed = time.monotonic() - started
    if as_json:
        out.write(json.dumps(summary(sn, elapsed), separators=(",", ":")) + "\n")
        out.flush()
    print(f"alkomctl sniff: {summary_line(sn, elapsed)}", file=err)
    if not sn.valid:
        print(f"hint: no valid {chosen} datagram on {where}: are the radios' server address and port this station's? "
              "(tcpdump -n udp port " + str(port) + ")", file=err)
    return EX_OK if sn.valid else EX_PROBLEM


def plain_line(item: Seen | Fix | RadioStatus, raw: bool) -> str:
    if isinstance(item, Seen):
        body = item.raw.hex(" ") if raw else item.kind
        radio = f"  radio {item.radio}" if item.radio else ""
        return f"{item.received.strftime('%H:%M:%S.%f')[:12]}  {item.verdict:<12} {item.source:<21} {body}{radio}"
    if isinstance(item, Fix):
        acc = f"  ±{item.accuracy_m:g} m" if item.accuracy_m is not None else ""
        return f"fix {utc_iso(item.time)}  {item.lat:.6f} {item.lon:.6f}  {item.mode}D{acc}  radio {item.radio}"
    return f"radio {item.radio} status {item.code} (emergency)"


def json_object(item: Seen | Fix | RadioStatus, raw: bool) -> dict[str, object]:
    if isinstance(item, Seen):
        o: dict[str, object] = {"type": "datagram", "received": utc_iso(item.received), "source": item.source,
                                "verdict": item.verdict, "kind": item.kind, "radio": item.radio}
        if raw:
            o["hex"] = item.raw.hex()
        return o
    if isinstance(item, Fix):
        return {"type": "fix", "received": utc_iso(item.received), **fix_dict(item), "radio": item.radio,
                "accuracy_m": item.accuracy_m}
    return {"type": "status", "received": utc_iso(item.received), "radio": item.radio, "status": item.code}


def summary(sn: DatagramSniffer, elapsed: float) -> dict[str, object]:
    return {
        "type": "summary", "format": sn.format, "seconds": round(elapsed, 1), "datagrams": sn.datagrams, "bytes": sn.bytes,
        "valid": sn.valid, "checksum_errors": sn.checksum_errors, "parse_errors": sn.parse_errors, "fixes": sn.fixes,
        "radios": sorted(sn.radios),
    }


def summary_line(sn: DatagramSniffer, elapsed: float) -> str:
    return (
        f"{elapsed:.0f} s: {sn.datagrams} datagrams ({sn.bytes} bytes), {sn.valid} valid {sn.format}, "
        f"{sn.checksum_errors} bad checksums, {sn.parse_errors} unparsable, {sn.fixes} fixes, {len(sn.radios)} radios heard"
    )


def _rows(sn: DatagramSniffer) -> Iterator[tuple[str, ...]]:
    for r in sorted(sn.radios.values(), key=lambda r: r.radio):
        f = r.last
        yield (r.radio, str(r.messages), str(r.fixes), utc_iso(f.time) if f else "-", f"{f.lat:.6f}" if f else "-",
               f"{f.lon:.6f}" if f else "-", "-" if f is None or f.accuracy_m is None else f"{f.accuracy_m:g}",
               "EMERGENCY" if r.emergency else "")


def render(sn: DatagramSniffer, where: str, raw: bool, elapsed: float, height: int) -> Group:
    head = Text()
    head.append(where, style="bold")
    head.append(f"  {sn.format}\nalkomctl sniff, running {elapsed:.0f} s  ")
    head.append("Ctrl-C stops", style="dim")
    stats = Text(f"{summary_line(sn, elapsed)}", style="red" if sn.errors > sn.valid else "")
    radios = Table(title="Radios heard", expand=True, title_justify="left")
    for col in ("radio", "messages", "fixes", "last fix", "lat", "lon", "± m", ""):
        radios.add_column(col, justify="left" if col in ("radio", "last fix", "") else "right")
    for row in _rows(sn):
        radios.add_row(*row[:-1], Text(row[-1], style="bold red"))
    show = max(3, height - len(sn.radios) - 12)
    lines = Table(title="Recent datagrams" + (" (hex)" if raw else ""), expand=True, title_justify="left", box=None)
    for col, width in (("time", 12), ("verdict", 12), ("source", 21), ("radio", 8)):
        lines.add_column(col, no_wrap=True, width=width)
    lines.add_column("what", no_wrap=True, overflow="ellipsis", ratio=1)
    for s in list(sn.items)[-show:]:
        what = s.raw.hex(" ") if raw else (s.kind if s.verdict == OK else f"{s.kind}: {printable(s.raw[:40])}")
        lines.add_row(s.received.strftime("%H:%M:%S.%f")[:12], Text(s.verdict, style=STYLE.get(s.verdict, "")), s.source,
                      s.radio or "", what)
    return Group(head, stats, radios, lines)

"""NMEA over UDP from vehicle modems: one listening port, many senders, one `Fix(radio=<sender>)` stream.

Cellular modems in patrol cars (Sierra Wireless AirLink, Teltonika, Cradlepoint, ...) can send
their GPS receiver's NMEA sentences to a server as UDP datagrams, one or more sentences each.
The driver listens on `bind`:`port` and keeps one `alkomd.drivers.nmea.Decoder` per sender, so
epochs, gates and counters are exactly those of the serial `nmea` driver. A sender is named
either by its source address (`identify = "address"`: the modem's IP, e.g. `10.64.1.23`) or by
an id the modem writes at the start of each datagram (`identify = "field"`, for modems behind
NAT or with dynamic addresses). With the default `id_pattern` the id is a leading `ID=<id>;` or
`<id>,` (e.g. `ID=car12;$GPRMC,...` or `354678901234567,$GPRMC,...`); any regular expression
with one group can be configured (e.g. an identifying `$GPSTN,<id>` line), and the whole match is
removed before decoding. The `[[unit]]` `radio` key names the sender; a Kenwood FleetSync/NXDN
report relayed through a modem keeps the radio it names (`100-1001`), as on a serial base radio.

Bounded: at most `max_senders` decoders (the longest-quiet sender is forgotten and counted);
datagrams over `max_datagram_bytes`, without an id, or from outside `allow` are dropped and
counted, never fatal.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import logging
import re
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from alkomd.daemon.records import Counters, DeviceState, Fix, utc_now
from alkomd.daemon.schema import spec
from alkomd.drivers.base import DriverSpec, Emit, LinkError, Reconnecting, StateTracker
from alkomd.drivers.nmea import Decoded, Decoder

log = logging.getLogger(__name__)

TICK_S = 0.1  # socket timeout: how often quiet epochs are closed and a stop request is seen
QUIET_CLOSE_S = 0.3  # a sender quiet this long has its open epoch closed (as on a serial line)
RECEIVE_BUFFER = 1 << 20  # asked of the kernel (capped by net.core.rmem_max): bursts of many cars
IDENTIFY = ("address", "field")
DEFAULT_ID_PATTERN = r"(?:ID=)?([A-Za-z0-9_.:-]{1,64})[;,]"
SENDER_ID = re.compile(rb"[A-Za-z0-9_.:-]{1,64}")  # what a [[unit]] radio may be
MAX_LOGGED_SOURCES = 64  # refused sources are logged once each, up to this many


@dataclass(frozen=True)
class NmeaUdpOptions:
    port: int = spec(min=1, max=65535, doc="UDP port the modems send to (use >= 1024: the service may not bind lower ports).")
    bind: str = spec(
        "0.0.0.0", pattern=r"[A-Za-z0-9_.:-]{1,253}",
        doc="Local address to listen on: 0.0.0.0 (every IPv4 interface), :: (IPv6 and IPv4), or one interface's address.",
    )
    identify: str = spec(
        "address", choices=IDENTIFY, doc="How a sender is named: address (its IP address) or field (an id at the start of each datagram)."
    )
    id_pattern: str = spec(
        DEFAULT_ID_PATTERN,
        doc="identify = field: regular expression matched at the start of each datagram; its first group is the sender's id "
        "(up to 64 of A-Z a-z 0-9 _ . : -); the whole match is removed before decoding.",
    )
    allow: tuple[str, ...] = spec((), doc="Accept datagrams only from these networks (CIDR, e.g. 10.64.0.0/16); empty: from any address.")
    max_senders: int = spec(1024, min=1, max=100_000, doc="Senders tracked at once; beyond, the longest-quiet one is forgotten.")
    max_datagram_bytes: int = spec(4096, min=64, max=65507, doc="Larger datagrams are dropped and counted.")
    max_hdop: float = spec(20.0, min=0.5, max=99.99, doc="Fixes with a larger HDOP are rejected.")
    silent_after_s: float = spec(30.0, min=1, max=3600, doc="No valid sentence from any sender for this long: state silent.")
    no_fix_after_s: float = spec(60.0, min=1, max=86400, doc="Sentences but no valid fix from any sender for this long: state no_fix.")
    reconnect_max_s: float = spec(30.0, min=0.5, max=600, doc="Upper bound of the delay between attempts to bind the port.")

    def __post_init__(self) -> None:
        for i, net in enumerate(self.allow):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"allow[{i}]: {net!r} is not a network (CIDR, e.g. 10.64.0.0/16, or one address)") from None
        try:
            groups = re.compile(self.id_pattern.encode()).groups
        except (re.error, UnicodeEncodeError) as exc:
            raise ValueError(f"id_pattern: not a valid regular expression ({exc})") from None
        if groups < 1:
            raise ValueError("id_pattern: needs a group ( ) around the sender's id")


def sender_address(host: str) -> str:
    """A datagram's source address as a sender id: IPv4-mapped IPv6 as IPv4, no scope suffix."""
    host = host.split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _emit_as(sid: str, records: list[Decoded], emit: Emit) -> bool:
    """Emit a sender's records, its own fixes named after it; True if one was a fix.

    A relayed report (a Kenwood base radio behind the modem) keeps the radio it names, fix and
    status code alike: the sender is only the path it came by.
    """
    fixed = False
    for r in records:
        if isinstance(r, Fix):
            fixed = True
            if r.radio is None:
                r = dataclasses.replace(r, radio=sid)
        emit(r)
    return fixed


def bind_hint(exc: OSError) -> str:
    """A one-line, technician-facing reason why the port cannot be bound."""
    if isinstance(exc, socket.gaierror):
        return f"unknown address ({exc.strerror})"
    if exc.errno == errno.EADDRINUSE:
        return "port in use by another program"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges: use a higher port)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "no such address on this machine"
    return exc.strerror or str(exc)


def bind_udp(bind: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to `bind`:`port`; LinkError (with the reason) when it cannot be."""
    where = f"udp {bind}:{port}"
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(bind, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # :: hears IPv4 senders too
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.bind(addr)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        raise LinkError(f"cannot listen on {where}: {bind_hint(exc)}") from exc
    sock.setblocking(False)
    return sock


class NmeaUdp(Reconnecting[socket.socket]):
    """Driver instance for one configured UDP listening port."""

    driver_name = "nmea_udp"

    def __init__(self, device: str, opts: NmeaUdpOptions) -> None:
        super().__init__(device, opts, log)
        self.opts = opts
        self.where = f"udp {opts.bind}:{opts.port}"
        self._id_re = re.compile(opts.id_pattern.encode()) if opts.identify == "field" else None
        self._allow = [ipaddress.ip_network(n, strict=False) for n in opts.allow]
        self._senders: OrderedDict[str, Decoder] = OrderedDict()  # least recently heard first
        self._open: dict[str, float] = {}  # senders with an epoch that may be open -> monotonic time heard
        self._refused_logged: set[str] = set()
        # Totals over every sender ever heard (forgotten ones included): counters never go back.
        self._bytes = self._sentences = self._checksum = self._parse = self._garbage = 0
        self._fixes = self._rejected = 0
        self.datagrams = self.denied = self.oversized = self.unidentified = self.evicted = 0

    @property
    def senders(self) -> list[str]:
        """Senders currently tracked, least recently heard first."""
        return list(self._senders)

    def counters(self) -> Counters:
        return Counters(
            bytes=self._bytes,
            sentences=self._sentences,
            checksum_errors=self._checksum,
            parse_errors=self._parse,
            garbage_bytes=self._garbage,
            fixes=self._fixes,
            rejected_fixes=self._rejected,
            reconnects=self.link.reconnects,
        )

    def open(self, stop: threading.Event) -> socket.socket:
        """Bind the listening socket."""
        sock = bind_udp(self.opts.bind, self.opts.port)
        sock.settimeout(TICK_S)
        return sock

    def opened_text(self) -> str:
        return f"listening on {self.where}, senders named by {self.opts.identify}"

    def close(self, sock: socket.socket) -> None:
        sock.close()

    def read(self, sock: socket.socket, stop: threading.Event, emit: Emit, tracker: StateTracker) -> None:
        mono = time.monotonic
        last_eval = mono()
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(65535)
            except TimeoutError:
                data = None
            except OSError as exc:  # not expected of a bound UDP socket, but never a reason to die
                raise LinkError(f"{self.where}: {exc}", f"{self.where} failed: {exc}") from exc
            now = mono()
            fixed = False
            if data is not None:
                fixed = self._datagram(data, addr[0], now, emit, tracker)
            while self._open:  # oldest first: close the epochs of senders gone quiet
                sid, heard = next(iter(self._open.items()))
                if now - heard < QUIET_CLOSE_S:
                    break
                fixed = self._close(sid, emit) or fixed
            if fixed:
                tracker.saw_fix()
            if (fixed and tracker.state is not DeviceState.CONNECTED) or now - last_eval >= 0.5:
                tracker.evaluate()
                last_eval = now

    def stopped(self, emit: Emit) -> None:
        for sid in list(self._open):  # what the senders' open epochs still hold
            self._close(sid, emit)
        log.info(
            "%s: stopped; %d datagrams, %d senders tracked, %d forgotten, %d refused (allow), %d oversized, %d without an id",
            self.device,
            self.datagrams,
            len(self._senders),
            self.evicted,
            self.denied,
            self.oversized,
            self.unidentified,
        )

    def _datagram(self, data: bytes, host: str, now: float, emit: Emit, tracker: StateTracker) -> bool:
        """Decode one datagram; True if it completed a fix."""
        self.datagrams += 1
        source = sender_address(host)
        if self._allow and not self._allowed(source):
            self.denied += 1
            self._log_refused(source, "not in allow")
            return False
        if len(data) > self.opts.max_datagram_bytes:
            self.oversized += 1
            self._parse += 1
            self._garbage += len(data)
            self._log_refused(source, f"datagram larger than max_datagram_bytes ({self.opts.max_datagram_bytes})")
            return False
        self._bytes += len(data)
        if self._id_re is None:
            sid = source
        else:
            m = self._id_re.match(data)
            raw = m.group(1) if m else None
            if m is None or raw is None or not SENDER_ID.fullmatch(raw):
                self.unidentified += 1
                self._parse += 1
                self._garbage += len(data)
                self._log_refused(source, "datagram without a sender id (id_pattern)")
                return False
            sid = raw.decode("ascii")
            data = data[m.end() :]
        dec = self._decoder(sid, emit)
        if not data.endswith(b"\n"):
            data += b"\r\n"  # a datagram is whole: its last sentence needs no next line to end it
        s0, c0, p0, g0, f0, r0 = dec.sentences, dec.checksum_errors, dec.parse_errors, dec.garbage_bytes, dec.fixes, dec.rejected_fixes
        fixes = dec.feed(data, utc_now(), now)
        self._checksum += dec.checksum_errors - c0
        self._parse += dec.parse_errors - p0
        self._garbage += dec.garbage_bytes - g0
        self._fixes += dec.fixes - f0
        self._rejected += dec.rejected_fixes - r0
        if dec.sentences != s0:
            self._sentences += dec.sentences - s0
            tracker.saw_sentence()
        self._open.pop(sid, None)
        self._open[sid] = now
        return _emit_as(sid, fixes, emit)

    def _decoder(self, sid: str, emit: Emit) -> Decoder:
        """The sender's decoder (made on first hearing); forgets the longest-quiet sender beyond max_senders."""
        dec = self._senders.get(sid)
        if dec is not None:
            self._senders.move_to_end(sid)
            return dec
        while len(self._senders) >= self.opts.max_senders:
            old = next(iter(self._senders))
            self._close(old, emit)
            del self._senders[old]
            self.evicted += 1
            if self.evicted == 1:
                log.warning(
                    "%s: more than %d senders: forgetting the longest quiet (raise max_senders?)", self.device, self.opts.max_senders
                )
        log.info("%s: new sender %s", self.device, sid)
        dec = self._senders[sid] = Decoder(self.device, max_hdop=self.opts.max_hdop)
        return dec

    def _close(self, sid: str, emit: Emit) -> bool:
        """Close a sender's open epoch (it went quiet, or is forgotten); True if that made a fix."""
        self._open.pop(sid, None)
        dec = self._senders.get(sid)
        if dec is None:
            return False
        f0, r0 = dec.fixes, dec.rejected_fixes
        fixes = dec.close_epoch()
        self._fixes += dec.fixes - f0
        self._rejected += dec.rejected_fixes - r0
        return _emit_as(sid, fixes, emit)

    def _allowed(self, source: str) -> bool:
        try:
            ip = ipaddress.ip_address(source)
        except ValueError:
            return False
        return any(ip in net for net in self._allow)

    def _log_refused(self, source: str, why: str) -> None:
        key = f"{source} {why}"
        if key not in self._refused_logged and len(self._refused_logged) < MAX_LOGGED_SOURCES:
            self._refused_logged.add(key)
            log.warning("%s: dropped from %s: %s (logged once)", self.device, source, why)


DRIVER = DriverSpec(
    name="nmea_udp",
    options=NmeaUdpOptions,
    create=NmeaUdp,
    summary="NMEA 0183 in UDP datagrams from vehicle modems (many senders on one port, told apart by address or id)",
)

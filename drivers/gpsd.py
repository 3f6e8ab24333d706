"""gpsd as a source: watches a gpsd's JSON reports (TPV, SKY) and turns them into validated fixes.

For a receiver that gpsd already owns (a station where gpsd serves other programs too). The
driver connects to gpsd's TCP port (2947 by default), sends
`?WATCH={"enable":true,"json":true}` (with `"device"` when `gpsd_device` picks one receiver of
several) and reads one JSON report per line with bounded memory (`GpsdStream`, no I/O).

A TPV report becomes a `Fix` through the gates the NMEA decoder applies: mode 2 or 3, status
not dead reckoning, surveyed or simulated, coordinates present, in range and not 0,0, a time
that is not in the future, HDOP (from the latest SKY report) within `max_hdop`. gpsd sends
several TPVs for one epoch while it learns a receiver's cycle; only the first of each time is
a fix (a fix never repeats; a time going back is passed on, for the station's plausibility gate
to judge: one glitch into the future must not hide every later fix). Bad JSON is counted, never
fatal. When gpsd is absent or restarts the driver reports `disconnected` ("gpsd at host:port:
connection refused") and reconnects with capped, jittered backoff.
"""

from __future__ import annotations

import enum
import errno
import json
import logging
import math
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from alkomd.daemon.records import Counters, Fix, utc_now
from alkomd.daemon.schema import spec
from alkomd.drivers.base import DriverSpec, Emit, LinkError, Reconnecting, StateTracker
from alkomd.drivers.net import connect_tcp

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.25  # bounds how long a stop request waits for a blocked read
CONNECT_TIMEOUT_S = 5.0  # a connection attempt gives up after this long (checked against stop)
MAX_LINE = 65536  # bytes kept of a report without its newline (a SKY with 100 satellites is ~12 kB)
FUTURE_TOLERANCE = timedelta(days=1)  # as the NMEA decoder: later than this ahead of our clock is rejected
SKY_MAX_AGE_S = 5.0  # a SKY report older than this gives no HDOP or satellite count
MAX_GPSD_DEVICES = 16  # receivers tracked per gpsd (last fix time, last SKY); more are forgotten
_CONTROL = frozenset(("VERSION", "DEVICES", "DEVICE", "WATCH", "ERROR", "POLL"))
_BAD_STATUS = {5: "dead reckoning", 7: "surveyed time", 8: "simulated"}
_MS_TO_KMH = 3.6


@dataclass(frozen=True)
class GpsdOptions:
    host: str = spec("127.0.0.1", pattern=r"[A-Za-z0-9_.:-]{1,253}", doc="gpsd host name or address.")
    port: int = spec(2947, min=1, max=65535, doc="gpsd TCP port.")
    gpsd_device: str = spec(
        "", pattern=r"([^\s\"\\]{1,255})?",
        doc="Watch only this receiver of the gpsd (its path as gpsd names it, e.g. /dev/ttyUSB0); empty: every receiver.",
    )
    max_hdop: float = spec(20.0, min=0.5, max=99.99, doc="Fixes with a larger HDOP are rejected.")
    silent_after_s: float = spec(10.0, min=1, max=3600, doc="No report from a receiver for this long: state silent.")
    no_fix_after_s: float = spec(30.0, min=1, max=86400, doc="Reports but no valid fix for this long: state no_fix.")
    reconnect_max_s: float = spec(30.0, min=0.5, max=600, doc="Upper bound of the reconnect backoff.")


class TpvReject(enum.StrEnum):
    """Why a TPV report gave no fix."""

    NO_FIX = "mode 0 or 1 (no fix)"
    BAD_STATUS = "status dead reckoning, surveyed time or simulated"
    NO_POSITION = "no position"
    ZERO = "position 0,0"
    OUT_OF_RANGE = "coordinates out of range"
    NO_TIME = "no time"
    FUTURE = "fix time in the future"
    HDOP = "HDOP above the configured bound"


def _num(obj: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
    """A finite JSON number in [lo, hi], or None (booleans are not numbers here)."""
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) and lo <= f <= hi else None


def _time(value: object) -> datetime | None:
    """gpsd's ISO 8601 UTC time (`2024-05-01T12:00:00.000Z`), or None."""
    if not isinstance(value, str) or not value.endswith("Z"):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


@dataclass(frozen=True, slots=True)
class _Sky:
    hdop: float | None
    sats: int | None
    mono: float


class GpsdStream:
    """gpsd JSON bytes -> `Fix` records for one configured device; counts what it sees.

    Not thread-safe: the driver's thread owns it. `only_device` ignores reports of other
    receivers of the same gpsd.
    """

    def __init__(self, device: str, max_hdop: float = 20.0, only_device: str = "") -> None:
        self.device = device
        self.max_hdop = max_hdop
        self.only_device = only_device
        self.reports = 0  # receiver reports (TPV, SKY, ...), not gpsd's control replies
        self.control = 0
        self.parse_errors = 0
        self.garbage_bytes = 0
        self.fixes = 0
        self.duplicates = 0  # TPVs of a time already emitted (gpsd repeats them while it learns a cycle)
        self.rejected: dict[TpvReject, int] = {}
        self.last_reject: TpvReject | None = None
        self.version = ""
        self._pending = b""
        self._skipping = False  # inside an overlong line: drop bytes up to its newline
        self._last_time: dict[str, datetime] = {}  # gpsd device path -> time of the last fix
        self._sky: dict[str, _Sky] = {}
        self._active: dict[str, bool] = {}  # gpsd device path -> activated (for logging changes)

    @property
    def rejected_fixes(self) -> int:
        return sum(self.rejected.values())

    def reset_connection(self) -> None:
        """A new connection: forget a partial line (the old connection's bytes are gone)."""
        self._pending = b""
        self._skipping = False

    def feed(self, data: bytes, received: datetime, mono: float) -> list[Fix]:
        """Decode a chunk of the stream; fixes completed by it are stamped `received`/`mono`."""
        buf = self._pending + data if self._pending else data
        lines = buf.split(b"\n")
        tail = lines.pop()
        if self._skipping and lines:
            self.garbage_bytes += len(lines.pop(0))
            self._skipping = False
        if self._skipping:
            self.garbage_bytes += len(tail)
            tail = b""
        elif len(tail) > MAX_LINE:
            self.parse_errors += 1
            self.garbage_bytes += len(tail)
            tail, self._skipping = b"", True
        self._pending = tail
        out: list[Fix] = []
        for line in lines:
            line = line.strip()
            if line:
                self._line(line, received, mono, out)
        return out

    def _line(self, line: bytes, received: datetime, mono: float, out: list[Fix]) -> None:
        if len(line) > MAX_LINE:
            self.parse_errors += 1
            self.garbage_bytes += len(line)
            return
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError):
            obj = None
        cls = obj.get("class") if isinstance(obj, dict) else None
        if not isinstance(obj, dict) or not isinstance(cls, str):
            self.parse_errors += 1
            self.garbage_bytes += len(line)
            return
        if cls in _CONTROL:
            self.control += 1
            self._control(cls, obj)
            return
        path = obj.get("device")
        path = path if isinstance(path, str) else ""
        if self.only_device and path and path != self.only_device:
            return
        self.reports += 1
        if cls == "SKY":
            self._remember(self._sky, path, self._read_sky(obj, mono))
        elif cls == "TPV":
            fix = self._tpv(obj, path, received, mono)
            if isinstance(fix, TpvReject):
                self.rejected[fix] = self.rejected.get(fix, 0) + 1
                self.last_reject = fix
            elif fix is not None:
                self.fixes += 1
                out.append(fix)

    @staticmethod
    def _read_sky(obj: dict[str, Any], mono: float) -> _Sky:
        hdop = _num(obj, "hdop", 0.0, 99.99)
        used = _num(obj, "uSat", 0, 999)
        sats = int(used) if used is not None else None
        sat_list = obj.get("satellites")
        if sats is None and isinstance(sat_list, list):
            sats = sum(1 for s in sat_list if isinstance(s, dict) and s.get("used") is True)
        if sats == 0:  # no satellite used: gpsd's 99.99 is "no fix", not a DOP to gate the next fix on
            return _Sky(None, None, mono)
        return _Sky(hdop, sats, mono)

    @staticmethod
    def _remember(table: dict[str, Any], key: str, value: Any) -> None:
        table.pop(key, None)
        table[key] = value
        while len(table) > MAX_GPSD_DEVICES:
            del table[next(iter(table))]

    def _tpv(self, obj: dict[str, Any], path: str, received: datetime, mono: float) -> Fix | TpvReject | None:
        """A Fix, the reason there is none, or None for a repeat of a time already emitted."""
        mode = obj.get("mode")
        if mode not in (2, 3):  # (true == 1: a JSON boolean is no fix either)
            return TpvReject.NO_FIX
        status = obj.get("status")
        if isinstance(status, int) and status in _BAD_STATUS:
            return TpvReject.BAD_STATUS
        if obj.get("lat") is None or obj.get("lon") is None:
            return TpvReject.NO_POSITION
        lat, lon = _num(obj, "lat", -90.0, 90.0), _num(obj, "lon", -180.0, 180.0)
        if lat is None or lon is None:
            return TpvReject.OUT_OF_RANGE
        if lat == 0.0 and lon == 0.0:
            return TpvReject.ZERO
        when = _time(obj.get("time"))
        if when is None:
            return TpvReject.NO_TIME
        if when - received > FUTURE_TOLERANCE:
            return TpvReject.FUTURE
        sky = self._sky.get(path)
        if sky is not None and mono - sky.mono > SKY_MAX_AGE_S:
            sky = None
        hdop = sky.hdop if sky else None
        if hdop is not None and hdop > self.max_hdop:
            return TpvReject.HDOP
        if self._last_time.get(path) == when:
            self.duplicates += 1
            return None
        self._remember(self._last_time, path, when)
        alt = None
        if mode == 3:
            for key in ("altMSL", "alt", "altHAE"):  # MSL first: what GGA (and so the nmea driver) reports
                alt = _num(obj, key, -1000.0, 20000.0)
                if alt is not None:
                    break
        speed = _num(obj, "speed", 0.0, 1852.0 / _MS_TO_KMH)
        return Fix(
            device=self.device,
            time=when,
            lat=lat,
            lon=lon,
            mode=mode,
            received=received,
            received_mono=mono,
            alt=alt,
            speed_kmh=None if speed is None else speed * _MS_TO_KMH,
            course=_num(obj, "track", 0.0, 360.0),
            hdop=hdop,
            sats=sky.sats if sky else None,
        )

    def _control(self, cls: str, obj: dict[str, Any]) -> None:
        """gpsd's own replies: log what changed (version, receivers coming and going, errors)."""
        if cls == "VERSION":
            release = obj.get("release")
            self.version = release if isinstance(release, str) else "?"
        elif cls == "ERROR":
            log.warning("%s: gpsd says: %s", self.device, str(obj.get("message", ""))[:200])
        elif cls == "DEVICES":
            devices = obj.get("devices")
            for d in devices if isinstance(devices, list) else []:
                if isinstance(d, dict):
                    self._device(d)
        elif cls == "DEVICE":
            self._device(obj)

    def _device(self, d: dict[str, Any]) -> None:
        path = d.get("path")
        if not isinstance(path, str) or (self.only_device and path != self.only_device):
            return
        active = bool(d.get("activated"))  # gpsd reports a closed receiver with activated 0
        if self._active.get(path) is not active:
            self._remember(self._active, path, active)
            log.info("%s: gpsd receiver %s %s", self.device, path[:200], "active" if active else "closed")


def _reason(exc: BaseException) -> str:
    """A short, technician-facing reason for a failed or lost gpsd connection."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (gpsd not running, or listening elsewhere?)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, TimeoutError):
        return "connection timed out"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by gpsd"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return f"unreachable ({exc.strerror})"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _keepalive(sock: socket.socket) -> None:
    """TCP keepalive, so a gpsd host that vanished (no FIN) is noticed in about 25 s."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        opt = getattr(socket, name, None)
        if opt is not None:
            sock.setsockopt(socket.IPPROTO_TCP, opt, value)


def watch_command(gpsd_device: str) -> bytes:
    """The ?WATCH command that asks for JSON reports (of one receiver, if named)."""
    body: dict[str, object] = {"enable": True, "json": True}
    if gpsd_device:
        body["device"] = gpsd_device
    return b"?WATCH=" + json.dumps(body, separators=(",", ":")).encode() + b"\n"


class GpsdClient(Reconnecting[socket.socket]):
    """Driver instance for one configured gpsd (or one receiver of it)."""

    driver_name = "gpsd"

    def __init__(self, device: str, opts: GpsdOptions) -> None:
        super().__init__(device, opts, log)
        self.opts = opts
        self.where = f"gpsd at {opts.host}:{opts.port}"
        self.stream = GpsdStream(device, opts.max_hdop, opts.gpsd_device)
        self._bytes = 0
        self._version = ""  # the gpsd release last logged

    def counters(self) -> Counters:
        s = self.stream
        return Counters(
            bytes=self._bytes,
            sentences=s.reports,
            parse_errors=s.parse_errors,
            garbage_bytes=s.garbage_bytes,
            fixes=s.fixes,
            rejected_fixes=s.rejected_fixes,
            reconnects=self.link.reconnects,
        )

    def open(self, stop: threading.Event) -> socket.socket | None:
        """Connect and ask for JSON reports."""
        o = self.opts
        try:
            sock = connect_tcp(o.host, o.port, CONNECT_TIMEOUT_S, stop, READ_TIMEOUT_S)
            if sock is None:
                return None
            try:
                _keepalive(sock)
                sock.settimeout(READ_TIMEOUT_S)
                sock.sendall(watch_command(o.gpsd_device))
            except OSError:
                sock.close()
                raise
        except OSError as exc:
            reason = f"{self.where}: {_reason(exc)}"
            raise LinkError(reason, f"cannot connect: {reason}") from exc
        self.stream.reset_connection()
        return sock

    def opened_text(self) -> str:
        watching = f", watching {self.opts.gpsd_device}" if self.opts.gpsd_device else ""
        return f"connected to {self.where}{watching}"

    def close(self, sock: socket.socket) -> None:
        sock.close()

    def read(self, sock: socket.socket, stop: threading.Event, emit: Emit, tracker: StateTracker) -> None:
        """Read reports until stop; LinkError when gpsd closes the connection or it fails."""
        stream = self.stream
        mono = time.monotonic
        last_eval = mono()
        while not stop.is_set():
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                chunk = None
            except OSError as exc:
                raise self._lost(_reason(exc)) from exc
            now = mono()
            fixes: list[Fix] = []
            if chunk == b"":
                raise self._lost("connection closed by gpsd")
            if chunk:
                self._bytes += len(chunk)
                seen = stream.reports
                fixes = stream.feed(chunk, utc_now(), now)
                if stream.reports != seen:
                    tracker.saw_sentence()
                if stream.version != self._version:
                    self._version = stream.version
                    log.info("%s: %s runs gpsd %s", self.device, self.where, stream.version[:40])
            for fix in fixes:
                tracker.saw_fix()
                emit(fix)
            if fixes or now - last_eval >= 0.5:
                tracker.evaluate()
                last_eval = now

    def _lost(self, reason: str) -> LinkError:
        return LinkError(f"{self.where}: {reason}", f"lost {self.where}: {reason}")


DRIVER = DriverSpec(
    name="gpsd",
    options=GpsdOptions,
    create=GpsdClient,
    summary="a receiver owned by gpsd, read through gpsd's JSON reports (TPV, SKY)",
)

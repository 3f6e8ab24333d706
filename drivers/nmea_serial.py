"""NMEA GPS on a serial port (or any pyserial URL): the driver for radios and patrol-car receivers.

Opens the port with pyserial's `serial_for_url` (`/dev/ttyUSB0`, `/dev/serial/by-id/...`,
`socket://host:port`, `rfc2217://host:port`), exclusively (flock: a second opener fails fast),
reads in chunks (never `readline()`, which costs a syscall per byte) and decodes with
`alkomd.drivers.nmea.Decoder`. When the port fails or vanishes the reconnect loop
(`Reconnecting` in drivers/base.py) reports `disconnected` and reopens it with capped, jittered
backoff; the state tracker reports `waiting`, `connected`, `no_fix`, `silent` and `degraded` as they change.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from dataclasses import dataclass

import serial

from alkomd.daemon.records import Counters, Fix, utc_now
from alkomd.daemon.schema import spec
from alkomd.drivers.base import DriverSpec, Emit, LinkError, Reconnecting, StateTracker
from alkomd.drivers.nmea import Decoder

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.25  # bounds how long a stop request waits for a blocked read
QUIET_CLOSE_S = 0.3  # a line quiet this long closes the open epoch (first epochs, odd cycles)
FRAMINGS = ("8N1", "8N2", "8E1", "8O1", "7N2", "7E1", "7O1")


@dataclass(frozen=True)
class NmeaOptions:
    url: str = spec(doc="pyserial port or URL: /dev/serial/by-id/..., /dev/ttyUSB0, socket://host:port, rfc2217://host:port")
    baud: int = spec(9600, min=50, max=4_000_000, doc="Baud rate (radios: usually 4800 or 9600).")
    framing: str = spec("8N1", choices=FRAMINGS, doc="Data bits, parity, stop bits.")
    max_hdop: float = spec(20.0, min=0.5, max=99.99, doc="Fixes with a larger HDOP are rejected.")
    silent_after_s: float = spec(10.0, min=1, max=3600, doc="No valid sentence for this long: state silent.")
    no_fix_after_s: float = spec(30.0, min=1, max=86400, doc="Sentences but no valid fix for this long: state no_fix.")
    reconnect_max_s: float = spec(30.0, min=0.5, max=600, doc="Upper bound of the reopen backoff.")
    exclusive: bool = spec(True, doc="Lock the port (flock) so no other program reads it at the same time.")


def port_hint(exc: BaseException) -> str:
    """A one-line, technician-facing reason for a port failure."""
    err = getattr(exc, "errno", None)
    text = str(exc)
    if err == errno.EACCES or "Permission denied" in text:
        return f"permission denied: add the service user to the dialout group ({text})"
    if err == errno.ENOENT or "No such file" in text:
        return f"port not found: unplugged, or wrong path? ({text})"
    if err in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in text:
        return f"port in use by another program (ModemManager, gpsd, brltty, alkomctl sniff?) ({text})"
    if "returned no data" in text:
        return "device vanished while reading (unplugged?)"
    return text


def open_port(url: str, baud: int, framing: str, exclusive: bool, timeout: float = READ_TIMEOUT_S) -> serial.SerialBase:
    """Open any pyserial URL with the given line settings (raises SerialException/OSError/ValueError)."""
    bits, parity, stop = int(framing[0]), framing[1], int(framing[2])
    kwargs = dict(baudrate=baud, bytesize=bits, parity=parity, stopbits=stop, timeout=timeout)
    if "://" not in url:
        kwargs["exclusive"] = exclusive  # flock applies to device nodes only
    return serial.serial_for_url(url, **kwargs)


class NmeaSerial(Reconnecting[serial.SerialBase]):
    """Driver instance for one configured NMEA port."""

    driver_name = "nmea"

    def __init__(self, device: str, opts: NmeaOptions) -> None:
        super().__init__(device, opts, log)
        self.opts = opts
        self.decoder = Decoder(device, max_hdop=opts.max_hdop)
        self._bytes = 0

    def counters(self) -> Counters:
        d = self.decoder
        return Counters(
            bytes=self._bytes,
            sentences=d.sentences,
            checksum_errors=d.checksum_errors,
            parse_errors=d.parse_errors,
            garbage_bytes=d.garbage_bytes,
            fixes=d.fixes,
            rejected_fixes=d.rejected_fixes,
            reconnects=self.link.reconnects,
        )

    def open(self, stop: threading.Event) -> serial.SerialBase:
        o = self.opts
        try:
            return open_port(o.url, o.baud, o.framing, o.exclusive)
        except (serial.SerialException, OSError, ValueError) as exc:
            hint = port_hint(exc)
            raise LinkError(hint, f"cannot open {o.url}: {hint}") from exc

    def opened_text(self) -> str:
        o = self.opts
        return f"opened {o.url} at {o.baud} {o.framing}"

    def close(self, port: serial.SerialBase) -> None:
        try:
            port.close()
        except (serial.SerialException, OSError):
            pass

    def read(self, port: serial.SerialBase, stop: threading.Event, emit: Emit, tracker: StateTracker) -> None:
        dec = self.decoder
        mono = time.monotonic
        last_eval = last_data = mono()
        try:
            while not stop.is_set():
                chunk = port.read(port.in_waiting or 1)
                now = mono()
                if chunk:
                    last_data = now
                    self._bytes += len(chunk)
                    seen = dec.sentences
                    fixes = dec.feed(chunk, utc_now(), now)
                    if dec.sentences != seen:
                        tracker.saw_sentence()
                elif now - last_data > QUIET_CLOSE_S:
                    fixes = dec.close_epoch()
                else:
                    fixes = []
                for record in fixes:
                    if isinstance(record, Fix):
                        tracker.saw_fix()
                    emit(record)
                if fixes or now - last_eval >= 0.5:
                    tracker.evaluate()
                    last_eval = now
        except (serial.SerialException, OSError) as exc:
            hint = port_hint(exc)
            raise LinkError(hint, f"lost {self.opts.url}: {hint}") from exc


DRIVER = DriverSpec(
    name="nmea",
    options=NmeaOptions,
    create=NmeaSerial,
    summary="NMEA 0183 GPS on a serial port or pyserial URL (one unit per port)",
)

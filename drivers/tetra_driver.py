"""The `tetra` driver: a TETRA terminal's PEI on a serial port, its radios' LIP reports as fixes and emergencies.

A fixed or mobile TETRA terminal at the station, wired to it by its PEI cable, receives the LIP
location reports the fleet's radios send and, registered with `AT+CTSP=1,3,10`, prints each as
an unsolicited `+CTSDSR:` header and a hex line (drivers/tetra_pei.py). The port is opened as
the `nmea` driver opens one (`open_port`, flock, pyserial URLs) on the shared reconnect loop;
the registration (`REGISTER_LIP`, a command at a time, each after the previous one's result or
a timeout) is sent at every open, so after every reconnect, and again
whenever the terminal has said nothing for `keepalive_s` (its `OK` tells the driver the terminal
is there; a terminal that rebooted behind a live USB cable is registered again). Each LIP report
(drivers/tetra_lip.py) becomes a `Fix` whose radio is the sender's ISSI, and an emergency
(reason for sending 2) a `RadioStatus` with `emergency_code`; the radio's next report that is
not an emergency passes on `after_emergency_code`, so that the station, which raises one alarm
per signal (when a radio's code turns to an emergency code), raises its next emergency too.
Lines that cannot be read and reports that cannot be decoded are counted as parse errors;
`+CME ERROR` replies are logged once per code.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import serial

from alkomd.daemon.records import Counters, utc_now
from alkomd.daemon.schema import spec
from alkomd.drivers.base import DriverSpec, Emit, LinkError, Reconnecting, StateTracker
from alkomd.drivers.location_gate import EmergencyLatch, after_emergency_spec
from alkomd.drivers.nmea_serial import FRAMINGS, open_port, port_hint
from alkomd.drivers.tetra_lip import EMERGENCY_CODE, PROTOCOL_LIP, LipError, decode_sds, to_records
from alkomd.drivers.tetra_pei import REGISTER_LIP, PeiReader, Result, Sds

log = logging.getLogger(__name__)

MAX_LINE = 1024  # a +CTSDSR hex line of 2047 bits is 512 digits; longer runs without a line end are garbage
EVALUATE_S = 0.5
COMMAND_TIMEOUT_S = 2.0  # a command without its final result code by then: the next one is sent all the same


@dataclass(frozen=True)
class TetraOptions:
    url: str = spec(doc="pyserial port or URL of the terminal's PEI: /dev/serial/by-id/..., /dev/ttyUSB0, socket://host:port")
    baud: int = spec(38400, min=50, max=4_000_000, doc="PEI baud rate (Motorola MTM/MTP and Sepura terminals: 38400 by default).")
    framing: str = spec("8N1", choices=FRAMINGS, doc="Data bits, parity, stop bits.")
    keepalive_s: float = spec(60.0, min=0, max=3600, doc="Register again (AT+CTSP) after this long without a line from the "
                              "terminal; 0: only at open.")
    emergency_code: int = spec(EMERGENCY_CODE, min=0, max=999, doc="The status code a LIP emergency report becomes "
                               "(as listed in [radio_status] emergency).")
    after_emergency_code: int = after_emergency_spec()
    silent_after_s: float = spec(180.0, min=1, max=86400, doc="No line from the terminal (not even the keepalive's OK) "
                                 "for this long: state silent.")
    no_fix_after_s: float = spec(1800.0, min=1, max=86400, doc="No valid LIP fix from any radio for this long: state no_fix.")
    reconnect_max_s: float = spec(30.0, min=0.5, max=600, doc="Upper bound of the reopen backoff.")
    exclusive: bool = spec(True, doc="Lock the port (flock) so no other program reads it at the same time.")

    def emergency_codes(self) -> tuple[int, int] | None:
        """A LIP emergency report is `emergency_code` (location_gate.EmergencySource)."""
        return self.emergency_code, self.after_emergency_code


class TetraPei(Reconnecting[serial.SerialBase]):
    """Driver instance for one TETRA terminal's PEI."""

    driver_name = "tetra"

    def __init__(self, device: str, opts: TetraOptions) -> None:
        super().__init__(device, opts, log)
        self.opts = opts
        self.reader = PeiReader()
        self._bytes = 0
        self._lines = 0  # lines understood: SDS and final result codes
        self._lip_errors = 0
        self._garbage = 0
        self._fixes = 0
        self._rejected = 0
        self._other_sds = 0  # SDS that are not LIP (text messages): read, not counted as errors
        self._buf = b""
        self._cme_logged: set[int | None] = set()
        self.latch = EmergencyLatch(device, opts.after_emergency_code)
        self._commands: list[str] = []  # registration commands still to send, each after the previous one's result
        self._sent: str | None = None  # the command waiting for its result
        self._sent_at = 0.0
        self._results = 0
        self._accepted = False  # the terminal said OK to the registration on this connection

    def counters(self) -> Counters:
        r = self.reader
        return Counters(
            bytes=self._bytes,
            sentences=self._lines,
            parse_errors=r.errors + r.dropped + self._lip_errors,
            garbage_bytes=self._garbage,
            fixes=self._fixes,
            rejected_fixes=self._rejected,
            reconnects=self.link.reconnects,
        )

    def open(self, stop: threading.Event) -> serial.SerialBase:
        o = self.opts
        try:
            port = open_port(o.url, o.baud, o.framing, o.exclusive)
        except (serial.SerialException, OSError, ValueError) as exc:
            hint = port_hint(exc)
            raise LinkError(hint, f"cannot open {o.url}: {hint}") from exc
        self._buf = b""
        self.reader = _carry(self.reader)
        self._accepted = False
        try:
            self.register(port, time.monotonic())
        except (serial.SerialException, OSError) as exc:
            port.close()
            hint = port_hint(exc)
            raise LinkError(hint, f"cannot register for LIP on {o.url}: {hint}") from exc
        return port

    def register(self, port: serial.SerialBase, now: float) -> None:
        """Start the LIP registration: `AT`, then `AT+CTSP=1,3,10` once the terminal answered (or after a timeout)."""
        self._commands = list(REGISTER_LIP)
        self._send_next(port, now)

    def _send_next(self, port: serial.SerialBase, now: float) -> None:
        self._sent = self._commands.pop(0) if self._commands else None
        if self._sent is not None:
            port.write(self._sent.encode("ascii") + b"\r")
            self._sent_at = now

    def opened_text(self) -> str:
        o = self.opts
        return f"opened {o.url} at {o.baud} {o.framing}, registering for LIP ({REGISTER_LIP[-1]})"

    def close(self, port: serial.SerialBase) -> None:
        try:
            port.close()
        except (serial.SerialException, OSError):
            pass

    def read(self, port: serial.SerialBase, stop: threading.Event, emit: Emit, tracker: StateTracker) -> None:
        mono = time.monotonic
        keepalive = self.opts.keepalive_s
        last_eval = last_line = mono()
        try:
            while not stop.is_set():
                chunk = port.read(port.in_waiting or 1)
                now = mono()
                if chunk:
                    self._bytes += len(chunk)
                    results = self._results
                    if self.feed(chunk, emit, tracker, now):
                        last_line = now
                    if self._sent is not None and self._results != results:
                        self._send_next(port, now)
                elif keepalive and now - last_line > keepalive:
                    self.register(port, now)
                    last_line = now  # wait another keepalive for the answer before asking again
                if self._sent is not None and now - self._sent_at > COMMAND_TIMEOUT_S:
                    self._send_next(port, now)
                if now - last_eval >= EVALUATE_S:
                    tracker.evaluate()
                    last_eval = now
        except (serial.SerialException, OSError) as exc:
            hint = port_hint(exc)
            raise LinkError(hint, f"lost {self.opts.url}: {hint}") from exc

    def feed(self, chunk: bytes, emit: Emit, tracker: StateTracker | None, mono: float) -> bool:
        """Read the complete lines in `chunk` (and what was held before it); True if one was understood."""
        data = self._buf + chunk if self._buf else chunk
        lines = data.replace(b"\r", b"\n").split(b"\n")
        rest = lines.pop()
        if len(rest) > MAX_LINE:
            self._garbage += len(rest)
            rest = b""
        self._buf = rest
        understood = False
        for raw in lines:
            if not raw:
                continue
            if len(raw) > MAX_LINE:
                self._garbage += len(raw)
                continue
            msg = self.reader.feed(raw.decode("ascii", "replace"))
            if msg is None:
                continue
            understood = True
            self._lines += 1
            if tracker is not None:
                tracker.saw_sentence()
            if isinstance(msg, Sds):
                self._sds(msg, emit, tracker, mono)
            else:
                self._result(msg)
        return understood

    def _sds(self, sds: Sds, emit: Emit, tracker: StateTracker | None, mono: float) -> None:
        if sds.protocol != PROTOCOL_LIP:
            self._other_sds += 1
            return
        try:
            report = decode_sds(sds.data, sds.bits)
        except LipError as exc:
            self._lip_errors += 1
            log.debug("%s: LIP from %s not read: %s", self.device, sds.radio or "?", exc)
            return
        if not sds.radio:
            self._lip_errors += 1  # a report without its sender is nobody's position
            return
        received = utc_now()
        mapped = to_records(report, device=self.device, radio=sds.radio, received=received, received_mono=mono,
                            emergency_code=self.opts.emergency_code)
        status = self.latch.status(sds.radio, mapped.status, received, mono)
        if status is not None:
            emit(status)
        if mapped.fix is not None:
            self._fixes += 1
            if tracker is not None:
                tracker.saw_fix()
            emit(mapped.fix)
        else:
            self._rejected += 1

    def _result(self, result: Result) -> None:
        self._results += 1
        if result.ok and self._sent == REGISTER_LIP[-1] and not self._accepted:
            self._accepted = True
            log.info("%s: the terminal accepted the LIP registration", self.device)
        if result.ok or result.code in self._cme_logged or len(self._cme_logged) > 32:
            return
        self._cme_logged.add(result.code)
        log.warning("%s: the terminal answered %s to a command (LIP registration %s refused? check the terminal's PEI "
                    "and codeplug settings)", self.device, result.line, REGISTER_LIP[-1])


def _carry(old: PeiReader) -> PeiReader:
    """A fresh reader for a new connection that keeps the error counts of the old one."""
    new = PeiReader()
    new.errors, new.dropped = old.errors, old.dropped
    return new


DRIVER = DriverSpec(
    name="tetra",
    options=TetraOptions,
    create=TetraPei,
    summary="TETRA terminal's PEI on a serial port: many radios' LIP location reports and emergencies (radio = ISSI)",
)

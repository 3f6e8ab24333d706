"""The `lrrp` driver: MOTOTRBO radios behind a control station's or repeater's IP interface (ARS in, LRRP requests out, reports in).

A MOTOTRBO radio that powers on registers with ARS (UDP 4005) under its radio id; the driver
acknowledges, asks it for a report every `report_interval_s` (Triggered Location Start Request)
and for one now (Immediate Location Request), on UDP 4001 at the radio's address (12.x.y.z, the
low 24 bits being the radio id); a radio silent since is asked again, less and less often. A
radio that deregisters (powers off) is sent a Stop request.
Reports (immediate, triggered, unsolicited) become `Fix(radio=<radio id>)` with the circle's
radius as `accuracy_m`. LRRP reports carry no emergency flag: with `unsolicited_emergency`, an
unsolicited report (radios programmed to send their location on emergency) is one (code 99), and
the radio's next ordinary report passes on `after_emergency_code` (location_gate.EmergencyLatch).

A radio is named by its ARS identity, or by its source address on the radios' network; a report
from elsewhere is dropped and counted. Bad datagrams are counted as parse errors, never fatal.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from alkomd.daemon.records import Counters, DeviceState, utc_now
from alkomd.daemon.schema import spec
from alkomd.drivers import lrrp, lrrp_ars
from alkomd.drivers.base import DriverSpec, Emit, Reconnecting, StateTracker
from alkomd.drivers.location_gate import EMERGENCY_CODE, EmergencyLatch, after_emergency_spec
from alkomd.drivers.lrrp import LocationReport, LrrpError, MessageType
from alkomd.drivers.lrrp_ars import ArsError, ArsEventKind
from alkomd.drivers.udp_radio import OnceLog, Radios, Sender, Sockets, Tally, emit_report, radio_address, radio_of_address

log = logging.getLogger(__name__)

ARS_REFRESH_30MIN = 1  # radios re-register every 30 minutes (ack(1), as TRBO-NET answers)
RETRY_MIN_S = 60.0  # a registered radio silent since its start request is asked again after 2 intervals, at least this ...
RETRY_MAX_S = 1800.0  # ... doubling up to this (a radio out of coverage does not deregister)
GONE_S = 10.0  # reports this soon after a radio deregistered do not make it known again
_ANSWERS = (MessageType.TRIGGERED_START_ANSWER, MessageType.TRIGGERED_STOP_ANSWER)


@dataclass(frozen=True)
class LrrpOptions:
    bind: str = spec(
        "0.0.0.0", pattern=r"[A-Za-z0-9_.:-]{1,253}",
        doc="Local address to listen on: 0.0.0.0 (every interface) or the address of the control station's network interface.",
    )
    lrrp_port: int = spec(lrrp.PORT, min=1, max=65535, doc="UDP port for LRRP reports (the radios' Location server port).")
    ars_port: int = spec(lrrp_ars.PORT, min=1, max=65535, doc="UDP port for ARS registrations (the radios' ARS server port).")
    radio_network: int = spec(
        lrrp.CAI_NETWORK, min=1, max=254, doc="First byte of the radios' addresses: 12 (the MOTOTRBO CAI network) unless changed."
    )
    radio_lrrp_port: int = spec(lrrp.PORT, min=1, max=65535, doc="UDP port the radios take LRRP requests on.")
    report_interval_s: int = spec(30, min=1, max=86400, doc="Seconds between a registered radio's reports (Triggered Location Request).")
    speed_direction: bool = spec(True, doc="Ask radios for speed and direction with each report.")
    unsolicited_emergency: bool = spec(
        False, doc="An unsolicited report is an emergency (code 99): radios programmed to send their location on emergency."
    )
    after_emergency_code: int = after_emergency_spec()
    stop_on_exit: bool = spec(
        False, doc="Send the registered radios a Stop request when the daemon stops (they then report again once they re-register)."
    )
    max_radios: int = spec(1024, min=1, max=100_000, doc="Radios tracked at once; beyond, the longest-quiet one is forgotten.")
    silent_after_s: float = spec(300.0, min=1, max=86400, doc="No valid message from any radio for this long: state silent.")
    no_fix_after_s: float = spec(600.0, min=1, max=86400, doc="Messages but no valid fix from any radio for this long: state no_fix.")
    reconnect_max_s: float = spec(30.0, min=0.5, max=600, doc="Upper bound of the delay between attempts to bind the ports.")

    def emergency_codes(self) -> tuple[int, int] | None:
        """An unsolicited report is an emergency only with `unsolicited_emergency` (location_gate.EmergencySource)."""
        return (EMERGENCY_CODE, self.after_emergency_code) if self.unsolicited_emergency else None


@dataclass
class Radio:
    """What the driver knows of one radio."""

    address: str  # where its ARS or reports came from
    registered: bool  # heard its ARS registration (not only its reports)
    started: bool = False  # a Triggered Location Start Request was sent
    asked: float = 0.0  # monotonic time of the last start request
    heard: float | None = None  # monotonic time of its last report
    retries: int = 0  # start requests sent again without a report since


def request_id(kind: str, radio: str) -> bytes:
    """The request id for a radio: T (triggered) or I (immediate) and the radio id, so an answer names its radio."""
    return kind.encode("ascii") + radio.encode("ascii")


class LrrpDriver(Reconnecting[Sockets]):
    """Driver instance for one control station (or repeater) interface."""

    driver_name = "lrrp"

    def __init__(self, device: str, opts: LrrpOptions) -> None:
        super().__init__(device, opts, log)
        self.opts = opts
        self.where = f"udp {opts.bind}:{opts.lrrp_port} (LRRP) and :{opts.ars_port} (ARS)"
        self.radios: Radios[Radio] = Radios(opts.max_radios)
        self.tally = Tally()
        self.latch = EmergencyLatch(device, opts.after_emergency_code)
        self.sender = Sender(device, log)
        self.registrations = self.deregistrations = self.unidentified = 0
        self._once = OnceLog(device, log)
        self._by_address: dict[str, str] = {}  # source address off the radios' network -> radio id (from ARS)
        self._conn: Sockets | None = None  # the open sockets, while `read` runs
        self._gone: dict[str, float] = {}  # radio -> when it deregistered: a report still on its way does not bring it back

    def counters(self) -> Counters:
        return self.tally.counters(self.link.reconnects)

    def open(self, stop: threading.Event) -> Sockets:
        return Sockets(self.opts.bind, {"lrrp": self.opts.lrrp_port, "ars": self.opts.ars_port})

    def opened_text(self) -> str:
        return f"listening on {self.where}, radios on {self.opts.radio_network}.x.y.z"

    def close(self, conn: Sockets) -> None:
        self._conn = None
        conn.close()

    def read(self, conn: Sockets, stop: threading.Event, emit: Emit, tracker: StateTracker) -> None:
        self._conn = conn
        last_eval = last_retry = time.monotonic()
        while not stop.is_set():
            for name, data, source in conn.receive():
                now = time.monotonic()
                self.tally.received_bytes += len(data)
                fixed = self._ars(conn, data, source, tracker) if name == "ars" else self._lrrp(data, source, now, emit, tracker)
                if fixed:
                    tracker.saw_fix()
                    if tracker.state is not DeviceState.CONNECTED:
                        tracker.evaluate()
            now = time.monotonic()
            if now - last_eval >= 0.5:
                tracker.evaluate()
                last_eval = now
            if now - last_retry >= 1.0:
                self._retry(conn, now)
                last_retry = now
        if self.opts.stop_on_exit:
            for radio, r in self.radios.items():
                if r.started:
                    self._request(conn, radio, lrrp.triggered_stop(request_id("T", radio)), "a Stop request")

    def stopped(self, emit: Emit) -> None:
        log.info(
            "%s: stopped; %d radios known, %d registrations, %d deregistrations, %d reports without a radio, %d forgotten",
            self.device, len(self.radios), self.registrations, self.deregistrations, self.unidentified, self.radios.evicted,
        )

    # --- ARS ---------------------------------------------------------------------------------

    def _ars(self, conn: Sockets, data: bytes, source: tuple[str, int], tracker: StateTracker) -> bool:
        try:
            ev = lrrp_ars.decode(data)
        except ArsError as exc:
            self.tally.bad(data)
            self._once.warn(f"ars {source[0]}", f"not an ARS message from {source[0]}:{source[1]}: {exc}")
            return False
        self.tally.messages += 1
        tracker.saw_sentence()
        if ev.kind is ArsEventKind.REGISTERED and ev.radio_id is not None:
            self._registered(conn, ev.radio_id, ev.refresh, source)
        elif ev.kind is ArsEventKind.DEREGISTERED:
            radio = self._radio_of(source[0])
            if radio is None:
                self._once.warn(f"dereg {source[0]}", f"deregistration from {source[0]}, which is no known radio")
            else:
                self._deregistered(conn, radio)
        return False

    def _registered(self, conn: Sockets, radio: str, refresh: bool, source: tuple[str, int]) -> None:
        self.registrations += 1
        self._gone.pop(radio, None)
        sock = conn.by_name["ars"]
        self.sender.send(sock, lrrp_ars.ack(ARS_REFRESH_30MIN), source, "an ARS acknowledgement")
        known = self.radios.get(radio)
        if source[0] != radio_address(radio, self.opts.radio_network):
            if len(self._by_address) >= 2 * self.radios.limit:  # addresses radios have left behind
                self._by_address = {a: r for a, r in self._by_address.items() if r in self.radios}
            self._by_address[source[0]] = radio
        if known is not None and known.registered and known.started and refresh:
            known.address = source[0]
            self.radios.touch(radio)
            return  # a periodic re-registration: its triggered reports run on
        if known is None or not known.registered:
            log.info("%s: radio %s registered from %s%s", self.device, radio, source[0], " (refresh)" if refresh else "")
        r = Radio(source[0], registered=True)
        self._remember(radio, r)
        self._ask(conn, radio, r, time.monotonic())

    def _ask(self, conn: Sockets, radio: str, r: Radio, now: float) -> None:
        """A Triggered Location Start Request and an Immediate Location Request."""
        sd = self.opts.speed_direction
        start = lrrp.triggered_start(request_id("T", radio), self.opts.report_interval_s, sd)
        r.asked = now
        r.started = self._request(conn, radio, start, "a Triggered Location Start Request") or r.started
        self._request(conn, radio, lrrp.immediate_request(request_id("I", radio), sd), "an Immediate Location Request")

    def _retry(self, conn: Sockets, now: float) -> None:
        """Ask again the registered radios that have not reported since they were asked (the request or its reports were lost)."""
        first = max(2.0 * self.opts.report_interval_s, RETRY_MIN_S)
        for radio, r in self.radios.items():
            if not r.started or (r.heard is not None and r.heard >= r.asked):
                continue
            if now - r.asked >= min(first * 2**r.retries, RETRY_MAX_S):
                r.retries += 1
                if r.retries == 1:
                    log.info("%s: radio %s has not reported since it was asked: asking again", self.device, radio)
                self._ask(conn, radio, r, now)

    def _deregistered(self, conn: Sockets, radio: str) -> None:
        self.deregistrations += 1
        r = self.radios.pop(radio)
        if len(self._gone) >= self.radios.limit:
            self._gone.clear()
        self._gone[radio] = time.monotonic()
        log.info("%s: radio %s deregistered", self.device, radio)
        if r is not None:
            self._by_address.pop(r.address, None)
        self._request(conn, radio, lrrp.triggered_stop(request_id("T", radio)), "a Stop request")

    def _request(self, conn: Sockets, radio: str, data: bytes, what: str) -> bool:
        address = radio_address(radio, self.opts.radio_network)
        if address is None:
            self._once.warn(f"addr {radio}", f"radio {radio} has no address on the radios' network (id above 16777215)")
            return False
        return self.sender.send(conn.by_name["lrrp"], data, (address, self.opts.radio_lrrp_port), f"{what} for radio {radio}")

    def _remember(self, radio: str, r: Radio) -> None:
        old = self.radios.put(radio, r)
        if old is not None:
            self._by_address.pop(old.address, None)
            if self.radios.evicted == 1:
                log.warning("%s: more than %d radios: forgetting the longest quiet (raise max_radios?)", self.device, self.radios.limit)

    def _radio_of(self, address: str) -> str | None:
        return radio_of_address(address, self.opts.radio_network) or self._by_address.get(address)

    # --- LRRP --------------------------------------------------------------------------------

    def _lrrp(self, data: bytes, source: tuple[str, int], now: float, emit: Emit, tracker: StateTracker) -> bool:
        try:
            msg = lrrp.decode(data)
        except LrrpError as exc:
            self.tally.bad(data)
            self._once.warn(f"lrrp {source[0]}", f"not an LRRP report from {source[0]}:{source[1]}: {exc}")
            return False
        if not isinstance(msg, LocationReport):  # a request: not for us (another server's echo?)
            self.tally.bad(data)
            self._once.warn(f"req {source[0]}", f"an LRRP request from {source[0]}:{source[1]}, expected reports")
            return False
        self.tally.messages += 1
        tracker.saw_sentence()
        radio = self._radio_of(source[0]) or _radio_of_request(msg.request_id)
        if radio is None:
            self.unidentified += 1
            self._once.warn(f"who {source[0]}", f"LRRP report from {source[0]}, which is not on {self.opts.radio_network}.x.y.z")
            return False
        if radio in self.radios:
            self.radios.touch(radio)
        elif msg.kind in _ANSWERS or now - self._gone.get(radio, -GONE_S) < GONE_S:
            pass  # an answer to our stop, or a report sent before the radio left: not a new radio
        else:
            log.info("%s: radio %s reports without a registration heard: asking it for reports too", self.device, radio)
            learnt = Radio(source[0], registered=False)
            full = len(self.radios) >= self.radios.limit  # then asking would only churn the table: take its reports
            self._remember(radio, learnt)
            conn = self._conn
            if conn is not None and not full:  # its reports may run at another interval (a restart, report_interval_s changed)
                self._ask(conn, radio, learnt, now)
        r = self.radios.get(radio)
        if r is not None and msg.kind not in _ANSWERS:
            r.heard, r.retries = now, 0
        if msg.kind in _ANSWERS:
            if msg.result not in (None, lrrp.Result.SUCCESS):
                self._once.warn(f"answer {radio} {msg.result}", f"radio {radio} refused a request: {_result(msg.result)}")
            return False
        emergency = self.opts.unsolicited_emergency and msg.unsolicited
        received = utc_now()
        return emit_report(msg.position(received), self.device, radio, received, now, emergency, emit, self.tally, self.latch)


def _radio_of_request(rid: bytes | None) -> str | None:
    """The radio an answer names through the request id this driver sent (T1001, I1001)."""
    if rid is None or len(rid) < 2 or rid[:1] not in (b"T", b"I") or not rid[1:].isdigit():
        return None
    return rid[1:].decode("ascii")


def _result(code: int | None) -> str:
    try:
        return f"{lrrp.Result(code).name.lower()} (0x{code:02x})" if code is not None else "no result"
    except ValueError:
        return f"result 0x{code:02x}"


DRIVER = DriverSpec(
    name="lrrp",
    options=LrrpOptions,
    create=LrrpDriver,
    summary="MOTOTRBO radios' locations (ARS and LRRP over UDP) through a control station or repeater",
)

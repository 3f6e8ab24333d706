"""The `hytera` driver: Hytera DMR radios' locations over UDP (the LP location protocol through a control station or repeater).

Hytera's location protocol has no registration service: the driver asks the configured `radios`
for a report every `report_interval_s` (a triggered request, C001, renewed every
`RENEW_S`) and for one now (a standard request, A001), and asks again every `retry_s` a radio that
has not reported since (it may have been off). Requests go to the radio's own address
(`radio_network`.x.y.z, the low 24 bits being the radio id), or with `station` to the control
station, which forwards them by the radio address they carry. On stop the radios are sent a
triggered stop (C004). Reports (A002/A003, C003) become `Fix(radio=<radio id>)`; an emergency
report (B003) is also `RadioStatus` code 99, and the radio's next ordinary report passes on
`after_emergency_code` (location_gate.EmergencyLatch). The radio is named by the address in the message.
With `learn_radios`, a radio that reports unasked is added to the radios asked.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from alkomd.daemon.records import Counters, DeviceState, utc_now
from alkomd.daemon.schema import spec
from alkomd.drivers import hytera
from alkomd.drivers.base import DriverSpec, Emit, Reconnecting, StateTracker
from alkomd.drivers.hytera import HyteraError, Opcode
from alkomd.drivers.location_gate import EMERGENCY_CODE, EmergencyLatch, after_emergency_spec
from alkomd.drivers.udp_radio import OnceLog, Radios, Sender, Sockets, Tally, emit_report, radio_address

log = logging.getLogger(__name__)

RENEW_S = 12 * 3600.0  # a triggered request runs for a day; it is renewed after half of it
TRIGGER_SPAN = timedelta(days=1)
_REPORTS = (Opcode.STANDARD_REPORT, Opcode.STANDARD_REPORT_RSSI, Opcode.TRIGGERED_REPORT, Opcode.EMERGENCY_REPORT)
_ANSWERS = (Opcode.TRIGGERED_ANSWER, Opcode.TRIGGERED_STOP_ANSWER, Opcode.EMERGENCY_STOP_ANSWER)


@dataclass(frozen=True)
class HyteraOptions:
    bind: str = spec(
        "0.0.0.0", pattern=r"[A-Za-z0-9_.:-]{1,253}",
        doc="Local address to listen on: 0.0.0.0 (every interface) or the address of the control station's network interface.",
    )
    port: int = spec(hytera.PORT, min=1, max=65535, doc="UDP port for location reports (the radios' location server port).")
    radios: tuple[str, ...] = spec((), doc="Radio ids (decimal) to ask for reports, e.g. [\"1001\", \"1002\"].")
    learn_radios: bool = spec(True, doc="A radio that reports without being asked is asked for reports too.")
    station: str = spec(
        "", pattern=r"([A-Za-z0-9_.:-]{1,253})?",
        doc="Send requests to this address (the control station, which forwards them); empty: to each radio's own address.",
    )
    station_port: int = spec(hytera.PORT, min=1, max=65535, doc="UDP port requests are sent to (the radios' or the station's).")
    radio_network: int = spec(10, min=1, max=254, doc="First byte of the radios' addresses (Hytera: 10 unless changed).")
    report_interval_s: int = spec(30, min=1, max=86400, doc="Seconds between a radio's reports (triggered request).")
    after_emergency_code: int = after_emergency_spec()
    retry_s: float = spec(300.0, min=10, max=86400, doc="A radio that has not reported since it was asked is asked again after this long.")
    max_radios: int = spec(1024, min=1, max=100_000, doc="Radios tracked at once; beyond, the longest-quiet one is forgotten.")
    silent_after_s: float = spec(300.0, min=1, max=86400, doc="No valid message from any radio for this long: state silent.")
    no_fix_after_s: float = spec(600.0, min=1, max=86400, doc="Messages but no valid fix from any radio for this long: state no_fix.")
    reconnect_max_s: float = spec(30.0, min=0.5, max=600, doc="Upper bound of the delay between attempts to bind the port.")

    def emergency_codes(self) -> tuple[int, int] | None:
        """An emergency report (B003) is code 99 (location_gate.EmergencySource)."""
        return EMERGENCY_CODE, self.after_emergency_code

    def __post_init__(self) -> None:
        for i, r in enumerate(self.radios):
            if not r.isdigit() or int(r) >= 2**24:
                raise ValueError(f"radios[{i}]: {r!r} is not a radio id (decimal, below 16777216)")


@dataclass
class Radio:
    """What the driver knows of one radio (times are monotonic)."""

    trigger_id: int = 0  # the request id of its running triggered request (0: none)
    asked: float = 0.0  # when it was last sent a triggered request
    heard: float | None = None  # when it last reported


class HyteraDriver(Reconnecting[Sockets]):
    """Driver instance for one Hytera control station (or repeater) interface."""

    driver_name = "hytera"

    def __init__(self, device: str, opts: HyteraOptions) -> None:
        super().__init__(device, opts, log)
        self.opts = opts
        self.where = f"udp {opts.bind}:{opts.port}"
        self.radios: Radios[Radio] = Radios(opts.max_radios)
        self.tally = Tally()
        self.latch = EmergencyLatch(device, opts.after_emergency_code)
        self.sender = Sender(device, log)
        self._once = OnceLog(device, log)
        self._next_id = 1

    def counters(self) -> Counters:
        return self.tally.counters(self.link.reconnects)

    def open(self, stop: threading.Event) -> Sockets:
        return Sockets(self.opts.bind, {"lp": self.opts.port})

    def opened_text(self) -> str:
        asked = f"{len(self.opts.radios)} radios configured" + (", learning others" if self.opts.learn_radios else "")
        return f"listening on {self.where}, {asked}"

    def close(self, conn: Sockets) -> None:
        conn.close()

    def read(self, conn: Sockets, stop: threading.Event, emit: Emit, tracker: StateTracker) -> None:
        now = time.monotonic()
        for radio in self.opts.radios:
            if radio not in self.radios:
                self.radios.put(radio, Radio())
        last_eval = last_due = now
        self._ask_due(conn, now)
        while not stop.is_set():
            for _, data, source in conn.receive():
                self.tally.received_bytes += len(data)
                if self._datagram(conn, data, source, time.monotonic(), emit, tracker):
                    tracker.saw_fix()
                    if tracker.state is not DeviceState.CONNECTED:
                        tracker.evaluate()
            now = time.monotonic()
            if now - last_eval >= 0.5:
                tracker.evaluate()
                last_eval = now
            if now - last_due >= 1.0:
                self._ask_due(conn, now)
                last_due = now
        for radio, r in self.radios.items():  # leave the radios quiet: nobody listens now
            if r.trigger_id:
                self._send(conn, radio, hytera.triggered_stop(r.trigger_id, int(radio), self.opts.radio_network), "a triggered stop")
                r.trigger_id = 0

    def stopped(self, emit: Emit) -> None:
        log.info("%s: stopped; %d radios known, %d forgotten, %d requests sent", self.device, len(self.radios), self.radios.evicted,
                 self.sender.sent)

    def _ask_due(self, conn: Sockets, now: float) -> None:
        """Ask radios never asked, silent since they were asked (retry_s), or whose triggered request runs out."""
        for radio, r in self.radios.items():
            never = r.asked == 0.0
            unanswered = (r.heard is None or r.heard < r.asked) and now - r.asked >= self.opts.retry_s
            if never or unanswered or now - r.asked >= RENEW_S:
                self._ask(conn, radio, r, now)

    def _ask(self, conn: Sockets, radio: str, r: Radio, now: float) -> None:
        rid, net = int(radio), self.opts.radio_network
        start = utc_now()
        r.trigger_id = self._request_id()
        r.asked = now
        trig = hytera.triggered_request(r.trigger_id, rid, self.opts.report_interval_s, start, start + TRIGGER_SPAN, net)
        self._send(conn, radio, trig, "a triggered request")
        self._send(conn, radio, hytera.standard_request(self._request_id(), rid, net), "a standard request")

    def _request_id(self) -> int:
        self._next_id = self._next_id % 0xFFFFFFFF + 1
        return self._next_id

    def _send(self, conn: Sockets, radio: str, data: bytes, what: str) -> None:
        to = self.opts.station or radio_address(radio, self.opts.radio_network)
        if to is None:
            return
        self.sender.send(conn.by_name["lp"], data, (to, self.opts.station_port), f"{what} for radio {radio}")

    def _datagram(self, conn: Sockets, data: bytes, source: tuple[str, int], now: float, emit: Emit, tracker: StateTracker) -> bool:
        try:
            msg = hytera.decode(data)
        except HyteraError as exc:
            self.tally.bad(data, checksum=str(exc) == "bad checksum")
            self._once.warn(f"bad {source[0]}", f"not a Hytera location message from {source[0]}:{source[1]}: {exc}")
            return False
        self.tally.messages += 1
        tracker.saw_sentence()
        radio = msg.radio
        r = self.radios.get(radio)
        if r is None:
            if msg.opcode not in _REPORTS:
                return False
            if self.opts.learn_radios:
                log.info("%s: radio %s reports unasked: asking it for reports too", self.device, radio)
                r = Radio()
                full = len(self.radios) >= self.radios.limit  # then asking would only churn the table: take its reports
                if self.radios.put(radio, r) is not None and self.radios.evicted == 1:
                    log.warning("%s: more than %d radios: forgetting the longest quiet (raise max_radios?)", self.device,
                                self.radios.limit)
                if full:
                    r.asked = now  # not "never asked": the timer leaves it alone while it reports
                else:
                    self._ask(conn, radio, r, now)
        else:
            self.radios.touch(radio)
        if msg.opcode in _ANSWERS:
            if msg.result not in (None, hytera.Result.OK):
                self._once.warn(f"answer {radio} {msg.result}", f"radio {radio} refused a request: result {msg.result}")
            return False
        if msg.opcode not in _REPORTS:
            return False
        if r is not None:
            r.heard = now
        return emit_report(msg.position(), self.device, radio, utc_now(), now, msg.emergency, emit, self.tally, self.latch)


DRIVER = DriverSpec(
    name="hytera",
    options=HyteraOptions,
    create=HyteraDriver,
    summary="Hytera DMR radios' locations (the LP location protocol over UDP) through a control station or repeater",
)

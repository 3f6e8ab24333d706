"""A simulated MOTOTRBO control station on loopback: radios that register with ARS and answer LRRP requests along a route.

Each radio has its own address, `network`.x.y.z with x.y.z its id (on Linux all of 127.0.0.0/8 is
loopback, so `network = 127` needs no setup), and one UDP socket there on `radio_port`: it sends
its ARS registration (again every `register_retry_s` until acknowledged) to the server's ARS port,
takes LRRP requests, and sends real LRRP reports (built with `alkomd.drivers.lrrp_build`) to the
server's LRRP port: one for an Immediate request, one every interval after a Triggered Start
request until a Stop request. `emergency(radio)` sends an unsolicited report. Used by the tests,
the bench and `alkomctl demo` (the driver is then configured with `radio_network = 127` and
`radio_lrrp_port = <radio_port>`).
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from alkomd.daemon.records import utc_now
from alkomd.drivers import lrrp, lrrp_ars
from alkomd.drivers.lrrp import LocationReport, LocationRequest, LrrpError, MessageType, Shape
from alkomd.drivers.lrrp_build import encode_report
from alkomd.drivers.sim_routes import ROUTES, Position, position_at

log = logging.getLogger(__name__)

LOOPBACK_NETWORK = 127
TICK_S = 0.05


@dataclass(frozen=True)
class SimRadio:
    """One simulated radio: its id and how it moves."""

    radio: int
    route: str = "kota-gorontalo-loop"
    speed_kmh: float = 5.0
    start_offset_s: float = 0.0

    def where(self, elapsed_s: float) -> Position:
        return position_at(ROUTES[self.route], self.speed_kmh, self.start_offset_s + elapsed_s)


@dataclass
class _State:
    sim: SimRadio
    sock: socket.socket
    registered: bool = False
    next_register: float = 0.0
    trigger: bytes | None = None  # request id of the running triggered request
    interval_s: float = 0.0
    next_report: float = 0.0
    requests: list[MessageType] = field(default_factory=list)
    deaf: bool = False  # requests are lost on the air


def bind_radio(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class MototrboSim:
    """The station's radios; `start()` runs them in a thread until `close()`."""

    def __init__(
        self,
        radios: Sequence[SimRadio],
        server: str = "127.0.0.1",
        lrrp_port: int = lrrp.PORT,
        ars_port: int = lrrp_ars.PORT,
        network: int = LOOPBACK_NETWORK,
        radio_port: int = 0,
        register_retry_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server, self.lrrp_port, self.ars_port = server, lrrp_port, ars_port
        self.network = network
        self.register_retry_s = register_retry_s
        self._clock = clock
        self._t0 = clock()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sel = selectors.DefaultSelector()
        self.radios: dict[str, _State] = {}
        self.reports_sent = 0
        self.radio_port = radio_port
        try:
            for r in radios:
                sock = bind_radio(lrrp.radio_ip(r.radio, network), self.radio_port)
                self.radio_port = sock.getsockname()[1]  # the first radio picks a free port; the others share it
                self.radios[str(r.radio)] = _State(r, sock)
                self._sel.register(sock, selectors.EVENT_READ, str(r.radio))
        except BaseException:
            self.close()
            raise

    def start(self) -> MototrboSim:
        self._thread = threading.Thread(target=self.run, name="sim-mototrbo", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        self._sel.close()
        for st in self.radios.values():
            st.sock.close()

    # --- what a test or the demo does to a radio -------------------------------------------------

    def registered(self, radio: str) -> bool:
        return self.radios[radio].registered

    def requests(self, radio: str) -> list[MessageType]:
        with self._lock:
            return list(self.radios[radio].requests)

    def triggered(self, radio: str) -> bool:
        return self.radios[radio].trigger is not None

    def lose_requests(self, radio: str, lost: bool = True) -> None:
        """The radio's location requests are lost on the air (it still registers)."""
        with self._lock:
            self.radios[radio].deaf = lost

    def deregister(self, radio: str) -> None:
        """The radio powers off: an ARS Device Deregistration; it stops registering."""
        with self._lock:
            st = self.radios[radio]
            st.registered, st.next_register = True, float("inf")
            st.sock.sendto(b"\x00\x01\x31", (self.server, self.ars_port))

    def register(self, radio: str) -> None:
        """The radio powers on again: it registers (until acknowledged)."""
        with self._lock:
            st = self.radios[radio]
            st.registered, st.next_register = False, 0.0

    def emergency(self, radio: str) -> None:
        """The radio's emergency button: an unsolicited location report."""
        with self._lock:
            self._report(self.radios[radio], MessageType.UNSOLICITED_REPORT, None)

    def send_raw(self, radio: str, data: bytes, ars: bool = False) -> None:
        """Any bytes from the radio's address (garbage tests)."""
        self.radios[radio].sock.sendto(data, (self.server, self.ars_port if ars else self.lrrp_port))

    # --- the loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                ready = self._sel.select(TICK_S)
            except (OSError, ValueError):  # closed under us
                return
            with self._lock:
                for key, _ in ready:
                    self._receive(self.radios[str(key.data)])
                self._timers(self._clock())

    def _timers(self, now: float) -> None:
        for st in self.radios.values():
            if not st.registered and now >= st.next_register:
                st.next_register = now + self.register_retry_s
                self._send(st, lrrp_ars.encode_registration(st.sim.radio), self.ars_port)
            if st.trigger is not None and now >= st.next_report:
                st.next_report = now + st.interval_s
                self._report(st, MessageType.TRIGGERED_REPORT, st.trigger)

    def _receive(self, st: _State) -> None:
        while True:
            try:
                data = st.sock.recv(65535)
            except (BlockingIOError, InterruptedError, ConnectionRefusedError):
                return
            except OSError:
                return
            if data[:3] == b"\x00\x02\xbf":  # the ARS acknowledgement
                st.registered = True
                continue
            try:
                msg = lrrp.decode(data)
            except LrrpError:
                continue
            if isinstance(msg, LocationRequest) and not st.deaf:
                self._request(st, msg)

    def _request(self, st: _State, msg: LocationRequest) -> None:
        st.requests.append(msg.kind)
        if msg.kind is MessageType.IMMEDIATE_REQUEST:
            self._report(st, MessageType.IMMEDIATE_REPORT, msg.request_id)
        elif msg.kind is MessageType.TRIGGERED_START_REQUEST:
            st.trigger, st.interval_s = msg.request_id or b"T", float(msg.interval_s or 30)
            st.next_report = self._clock() + st.interval_s
            self._answer(st, MessageType.TRIGGERED_START_ANSWER, st.trigger)
        elif msg.kind is MessageType.TRIGGERED_STOP_REQUEST:
            st.trigger = None
            self._answer(st, MessageType.TRIGGERED_STOP_ANSWER, msg.request_id)

    def _answer(self, st: _State, kind: MessageType, rid: bytes | None) -> None:
        self._send(st, encode_report(LocationReport(kind, request_id=rid, result=lrrp.Result.SUCCESS)), self.lrrp_port)

    def _report(self, st: _State, kind: MessageType, rid: bytes | None) -> None:
        self._send(st, encode_report(self.report(st.sim, kind, rid, utc_now())), self.lrrp_port)
        self.reports_sent += 1

    def report(self, sim: SimRadio, kind: MessageType, rid: bytes | None, now: datetime) -> LocationReport:
        p = sim.where(self._clock() - self._t0)
        return LocationReport(
            kind, request_id=rid, shape=Shape.CIRCLE_2D, lat=p.lat, lon=p.lon, radius_m=5.0, time=now.replace(microsecond=0),
            speed_kmh=sim.speed_kmh, course=round(p.course / 2) * 2 % 360,
        )

    def _send(self, st: _State, data: bytes, port: int) -> None:
        try:
            st.sock.sendto(data, (self.server, port))
        except OSError as exc:  # the server is not there yet: real radios lose datagrams too
            log.debug("sim radio %s: %s", st.sim.radio, exc)

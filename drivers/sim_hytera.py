"""A simulated Hytera control station on loopback: radios that answer LP location requests along a route.

One UDP socket stands for the control station: the driver is configured with `station` and
`station_port` set to it, and every request carries the radio it is for. A radio answers a
standard request (A001) with a report (A002), a triggered request (C001) with an answer (C002)
and a report (C003) every interval until a triggered stop (C004); `emergency(radio)` sends an
emergency report (B003). Radios that are `off` answer nothing. Used by the tests and the bench.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from alkomd.daemon.records import utc_now
from alkomd.drivers import hytera
from alkomd.drivers.hytera import HyteraError, LpMessage, Opcode
from alkomd.drivers.sim_mototrbo import SimRadio

TICK_S = 0.05
KMH_TO_KNOTS = 1 / 1.852


@dataclass
class _State:
    sim: SimRadio
    on: bool = True
    trigger: int | None = None
    interval_s: float = 0.0
    next_report: float = 0.0
    requests: list[Opcode] = field(default_factory=list)


def _seconds(interval: str | None) -> float:
    """ddhhmmss as seconds (30 s when unreadable)."""
    if interval is None or len(interval) != 8 or not interval.isdigit():
        return 30.0
    d, h, m, s = (int(interval[i : i + 2]) for i in range(0, 8, 2))
    return float(((d * 24 + h) * 60 + m) * 60 + s) or 30.0


class HyteraSim:
    """The station and its radios; `start()` runs them in a thread until `close()`."""

    def __init__(
        self,
        radios: Sequence[SimRadio],
        server: str = "127.0.0.1",
        server_port: int = hytera.PORT,
        network: int = 10,
        bind: str = "127.0.0.1",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server, self.server_port, self.network = server, server_port, network
        self._clock = clock
        self._t0 = clock()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.radios = {str(r.radio): _State(r) for r in radios}
        self.reports_sent = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((bind, 0))
        self.sock.settimeout(TICK_S)
        self.port: int = self.sock.getsockname()[1]

    def start(self) -> HyteraSim:
        self._thread = threading.Thread(target=self.run, name="sim-hytera", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        self.sock.close()

    def requests(self, radio: str) -> list[Opcode]:
        with self._lock:
            return list(self.radios[radio].requests)

    def triggered(self, radio: str) -> bool:
        return self.radios[radio].trigger is not None

    def power(self, radio: str, on: bool) -> None:
        with self._lock:
            st = self.radios[radio]
            st.on = on
            if not on:
                st.trigger = None

    def emergency(self, radio: str) -> None:
        with self._lock:
            self._report(self.radios[radio], Opcode.EMERGENCY_REPORT, 0)

    def report_unasked(self, radio: str) -> None:
        """A standard report nobody asked for (a radio the driver does not know yet)."""
        with self._lock:
            self._report(self.radios[radio], Opcode.STANDARD_REPORT, 0)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, (self.server, self.server_port))

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                data: bytes | None = self.sock.recv(65535)
            except TimeoutError:
                data = None
            except OSError:
                if self._stop.is_set():
                    return
                data = None
            with self._lock:
                if data is not None:
                    self._request(data)
                now = self._clock()
                for st in self.radios.values():
                    if st.on and st.trigger is not None and now >= st.next_report:
                        st.next_report = now + st.interval_s
                        self._report(st, Opcode.TRIGGERED_REPORT, st.trigger)

    def _request(self, data: bytes) -> None:
        try:
            msg = hytera.decode(data)
        except HyteraError:
            return
        st = self.radios.get(msg.radio)
        if st is None or not st.on:
            return
        st.requests.append(msg.opcode)
        rid = msg.request_id or 0
        if msg.opcode is Opcode.STANDARD_REQUEST:
            self._report(st, Opcode.STANDARD_REPORT, rid)
        elif msg.opcode is Opcode.TRIGGERED_REQUEST:
            st.trigger, st.interval_s = rid, _seconds(msg.interval)
            st.next_report = self._clock() + st.interval_s
            self._answer(msg, Opcode.TRIGGERED_ANSWER)
        elif msg.opcode is Opcode.TRIGGERED_STOP_REQUEST:
            st.trigger = None
            self._answer(msg, Opcode.TRIGGERED_STOP_ANSWER)

    def _answer(self, msg: LpMessage, op: Opcode) -> None:
        payload = (msg.request_id or 0).to_bytes(4, "big") + hytera.radio_ip_bytes(msg.radio_id, self.network) + b"\x00\x00"
        checked = op.to_bytes(2, "big") + len(payload).to_bytes(2, "big") + payload
        data = bytes([hytera.SERVICE_LP]) + checked + bytes([hytera.checksum(checked), hytera.END])
        self.sock.sendto(data, (self.server, self.server_port))

    def _report(self, st: _State, op: Opcode, rid: int) -> None:
        p = st.sim.where(self._clock() - self._t0)
        gps = hytera.gps_block(True, utc_now().replace(microsecond=0), p.lat, p.lon, st.sim.speed_kmh * KMH_TO_KNOTS, round(p.course))
        data = hytera.encode_report(op, rid, st.sim.radio, gps, emergency_type=1, subnet=self.network)
        try:
            self.sock.sendto(data, (self.server, self.server_port))
        except OSError:
            return
        self.reports_sent += 1

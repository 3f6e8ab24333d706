"""The demo's announced faults show: each crosses its state's threshold, and garbage is counted in the view."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console

from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.daemon.ctl.demo.station import FAULT_SHOWS, NO_FIX_AFTER_S, plan_units
from alkomd.daemon.ctl.demo.view import LiveState, render
from alkomd.daemon.records import Counters, DeviceState, DeviceStatus, Fix
from alkomd.drivers.base import StateTracker
from alkomd.drivers.nmea import Decoder
from alkomd.drivers.nmea_serial import NmeaOptions
from alkomd.drivers.sim_receiver import SimulatedReceiver, parse_faults
from alkomd.drivers.sim_routes import ROUTES


class _NoPty:
    """The receiver is stepped by hand here; nothing is written."""


def test_the_demo_thresholds_are_the_devices_defaults() -> None:
    defaults = NmeaOptions(url="/dev/null")
    assert defaults.no_fix_after_s == NO_FIX_AFTER_S


def test_each_scripted_fault_shows_its_state_or_counter_with_the_default_thresholds() -> None:
    """Steps the faulty car's receiver second by second through the real decoder and state tracker
    (a clock of its own, no waiting). Unplug is the serial link's (tested with a real pty elsewhere)."""
    plan = next(p for p in plan_units(6) if p.faults)
    faults = parse_faults(plan.faults)
    assert {f.kind for f in faults} == set(FAULT_SHOWS)
    opts = NmeaOptions(url="/dev/null")
    rx = SimulatedReceiver(_NoPty(), ROUTES[plan.route], plan.speed_kmh, 1.0, plan.talker, faults, plan.start_offset_s)  # type: ignore[arg-type]
    dec = Decoder(plan.device, max_hdop=opts.max_hdop)
    now = [0.0]

    def counters() -> Counters:
        return Counters(sentences=dec.sentences, checksum_errors=dec.checksum_errors, parse_errors=dec.parse_errors,
                        garbage_bytes=dec.garbage_bytes, fixes=dec.fixes)

    seen: list[tuple[float, DeviceState]] = []
    tracker = StateTracker(plan.device, "simulator", lambda r: seen.append((now[0], r.state)) if isinstance(r, DeviceStatus) else None,
                           opts.silent_after_s, opts.no_fix_after_s, counters, clock=lambda: now[0])
    tracker.opened()
    garbage_at: dict[str, int] = {}
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    end = max(f.start_s + f.duration_s for f in faults) + 15
    t = 0.0
    while t < end:
        kinds = rx.active(t) - {"unplug"}
        data = rx.epoch_bytes(t, t0 + timedelta(seconds=t), kinds)
        for half in (data[: len(data) // 2], data[len(data) // 2 :]):
            before = dec.sentences
            out = dec.feed(half, t0 + timedelta(seconds=t), t)
            if dec.sentences != before:
                tracker.saw_sentence()
            if any(isinstance(r, Fix) for r in out):
                tracker.saw_fix()
            now[0] = t
            tracker.evaluate()
            t += 0.5
        for f in faults:
            if f.kind == "noise" and t == f.start_s:
                garbage_at["before"] = dec.garbage_bytes
            if f.kind == "noise" and t == f.start_s + f.duration_s:
                garbage_at["after"] = dec.garbage_bytes

    def states_during(kind: str) -> set[DeviceState]:
        f = next(f for f in faults if f.kind == kind)
        return {s for at, s in seen if f.start_s <= at <= f.start_s + f.duration_s + 1}

    assert DeviceState.DEGRADED in states_during("bad_checksum")
    assert DeviceState.SILENT not in states_during("bad_checksum"), "too long: it would read as silent, not degraded"
    assert DeviceState.NO_FIX in states_during("no_fix")
    assert garbage_at["after"] - garbage_at["before"] > 100, "the noise is counted as garbage bytes"
    assert seen[0][1] is DeviceState.WAITING and seen[-1][1] is DeviceState.CONNECTED  # and it recovers after each


def test_the_live_view_counts_garbage_bytes_and_explains_the_faults() -> None:
    plans = plan_units(3)
    state = LiveState("polri110/x")
    state.handle("polri110/x/device/sim-02/status", b'{"device": "sim-02", "driver": "simulator", "state": "connected", '
                 b'"since": "2026-01-01T00:00:00.000Z", "detail": "", "counters": {"garbage_bytes": 10}}')
    state.take_events()
    state.handle("polri110/x/health", b'{"devices": {"sim-02": {"driver": "simulator", "state": "connected", "garbage_bytes": 4711}}}')
    assert state.take_events() == ["device sim-02 garbage bytes 4711 (+4701)"]  # the plain view says it too
    out = io.StringIO()
    Console(file=out, width=250).print(render(state, plans, Broker("amqtt"), Path("/tmp/demo"), 1.0))
    text = out.getvalue()
    assert "garbage bytes" in text and "4711" in text
    assert "at 95 s for 40 s: no_fix" in text and "garbage column climbs" in text

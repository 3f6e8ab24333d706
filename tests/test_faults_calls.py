"""Fault matrix I4, I6, E1, E2 (reliability-anchors.md section 8): 110 calls through real daemons and a private broker.

Already covered elsewhere, not repeated here: I1 and I2 (tests/test_call_intake.py, and
test_calls_e2e.py::test_a_call_with_an_unusable_location_is_still_a_call), I3 (the same call
re-sent: test_calls_e2e.py::test_a_call_answered_at_the_polres_goes_to_the_nearest_unit_and_is_on_record),
E3 (SIGKILL mid-escalation: test_calls_e2e.py::test_an_unanswered_call_escalates_to_the_polda_even_across_a_restart),
the whole Polres -> Polda -> Mabes chain (test_tiers_e2e.py).
"""

from __future__ import annotations

import asyncio
import glob
import hashlib
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from conftest import NODE, Daemon, Station, Subscriber, wait_until
from helpers_faults import NotifySocket
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from alkomd.daemon.calls import intake as call_intake
from alkomd.daemon.calls.desk import CallDesk
from alkomd.daemon.config import parse
from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.daemon.mqtt.publisher import Publisher
from alkomd.daemon.positions.station import Station as Core
from alkomd.daemon.store.database import Store
from alkomd.drivers.simulator import PtyGps

POLDA = "polri110/gorontalo"
MABES = "polri110"
# E1: the matrix asks "within +-1 s"; measured 1-2 ms late on the daemons' own clocks. The bound is 3 s so a
# loaded shared CI machine cannot fail it, while a deadline polled instead of timed would; never early is exact.
TOLERANCE_S = 3.0


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _call(call_id: str, received_at: datetime | None = None, caller: str = "+6281234567890", lat: float = 0.5450) -> bytes:
    when = received_at or datetime.now(UTC)
    return json.dumps({"call_id": call_id, "caller": caller, "lat": lat, "lon": 123.0620, "accuracy_m": 15,
                       "received_at": _iso(when), "category": "pencurian"}).encode()


def _states(sub: Subscriber, node: str, call_id: str) -> list[dict[str, Any]]:
    return [m.payload for m in sub.on("") if m.topic == f"{node}/call/{call_id}"]


def _online(sub: Subscriber, node: str = NODE) -> None:
    wait_until(lambda: any(m.topic == f"{node}/state" and m.payload.get("state") == "online" for m in sub.on("/state")),
               20, f"{node} online")


def _timeline(db: Path, call_id: str) -> list[dict[str, Any]]:
    r = subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", "call", "show", call_id, "--db", str(db), "--json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    timeline: list[dict[str, Any]] = json.loads(r.stdout)["timeline"]
    return timeline


def _at(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00"))


def _one(timeline: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [e for e in timeline if e["kind"] == kind]
    assert len(found) == 1, (kind, [e["kind"] for e in timeline])
    return found[0]


def _verify(db: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", "audit", "verify", "--db", str(db)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout


def _configure(station: Station, dispatch: str = "answer_timeout_polres_s = 3600\n", calls: str = "") -> None:
    station.write_config()
    station.config.write_text(station.config.read_text() + f"\n[dispatch]\n{dispatch}\n[calls]\n{calls}\n")


# -- I4: replay ----------------------------------------------------------------------------------


def test_i4_a_replayed_call_is_never_a_second_call_and_an_old_one_is_flagged_on_record(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    """I4. (a) A captured call is answered and closed, then re-published byte for byte and once more with the same
    call_id but another place and caller (a forged replay). Pass: calls created by the 2 replays: 0 (the call stays
    closed, no new state is published), and 2 `call.duplicate` audit rows carry the SHA-256 of each replayed
    payload (the forged one differs from the original's in `call.received`). (b) A captured call re-published
    with a fresh call_id but its received_at 2 days old (outside the 24 h window). Pass: never dropped (110 rule)
    but flagged `old_call` in the retained call state, with an E_TIME problem in its `call.received` audit row.
    The audit hash chain verifies."""
    _configure(station)
    sub = subscriber_factory(broker.port)
    ptys(station.links[0])
    d = daemons(station.config)
    _online(sub)
    captured = _call("I4-A")
    sub.client.publish(f"{NODE}/call/new", captured, qos=1)
    wait_until(lambda: bool(_states(sub, NODE, "I4-A")), what="I4-A offered")
    for body in ({"action": "answer", "by": "piket"}, {"action": "close", "by": "piket", "note": "prank"}):
        sub.client.publish(f"{NODE}/call/I4-A/event", json.dumps(body), qos=1)
    wait_until(lambda: _states(sub, NODE, "I4-A")[-1]["state"] == "closed", what="I4-A closed")
    versions = len(_states(sub, NODE, "I4-A"))

    forged = _call("I4-A", caller="+6289999999999", lat=0.6)
    sub.client.publish(f"{NODE}/call/new", captured, qos=1)
    sub.client.publish(f"{NODE}/call/new", forged, qos=1)
    wait_until(lambda: len([e for e in _timeline(station.db, "I4-A") if e["kind"] == "call.duplicate"]) == 2,
               what="2 duplicate rows")
    time.sleep(0.5)
    assert len(_states(sub, NODE, "I4-A")) == versions and _states(sub, NODE, "I4-A")[-1]["state"] == "closed"
    assert station.query("SELECT count(*) FROM calls WHERE call_id = 'I4-A'") == [(1,)]
    timeline = _timeline(station.db, "I4-A")
    original = _one(timeline, "call.received")["detail"]["sha256"]
    replays = [e["detail"]["sha256"] for e in timeline if e["kind"] == "call.duplicate"]
    assert replays == [hashlib.sha256(captured).hexdigest(), hashlib.sha256(forged).hexdigest()]
    assert replays[0] == original != replays[1]
    assert station.query("SELECT count(*) FROM audit WHERE kind = 'call.received' AND call_id = 'I4-A'") == [(1,)]

    old = datetime.now(UTC) - timedelta(days=2)
    sub.client.publish(f"{NODE}/call/new", _call("I4-B", received_at=old), qos=1)
    wait_until(lambda: bool(_states(sub, NODE, "I4-B")), what="I4-B taken")
    state = _states(sub, NODE, "I4-B")[-1]
    assert state["state"] == "offered" and "old_call" in state["flags"] and state["received_at"] == _iso(old)
    received = _one(_timeline(station.db, "I4-B"), "call.received")["detail"]
    assert any(p.startswith("E_TIME: received_at") and "48 h before intake" in p for p in received["problems"])
    assert "flagged old_call" in d.log
    fresh = _call("I4-C")
    sub.client.publish(f"{NODE}/call/new", fresh, qos=1)
    wait_until(lambda: bool(_states(sub, NODE, "I4-C")), what="a fresh call")
    assert "old_call" not in _states(sub, NODE, "I4-C")[-1]["flags"]
    _verify(station.db)


# -- I6: flood -----------------------------------------------------------------------------------

FLOOD_CALLS = 3000  # scaled from the matrix's 10k msgs/s for 10 s to stay well under 30 s on 2 shared cores
FLOOD_BURST = 150  # calls published back to back, every FLOOD_PERIOD_S: 1500 calls/s for 2 s
FLOOD_PERIOD_S = 0.1
FLOOD_REPEAT_EVERY = 2  # every 2nd call comes from one number (the flood of one prankster), the rest from distinct ones


def _rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def test_i6_flood_every_call_is_recorded_memory_stays_bounded_and_the_watchdog_keeps_pinging(
    station_broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """I6, scaled: 3000 calls on the intake topic at 1500 calls/s (bursts of 150 every 0.1 s for 2 s, QoS 1), two to
    five times what the daemon handles here (about 300-650 calls/s, one fsync'ed transaction each), half from one
    number. WATCHDOG_USEC = 2 s (pings every 1 s; the shipped unit has 30 s). The daemon acknowledges a call once it
    is stored, so the backlog waits in the broker's queue for the daemon (not in the daemon's memory, where a crash
    would lose it): the broker has the shipped station broker's flow control (bridge-station.conf,
    max_queued_messages 100000). Were the queue overrun, the broker would drop messages before the daemon sees them,
    and the test says so instead of blaming the daemon.
    Pass: calls recorded: 3000 of 3000 (one calls row and one call.received audit row each, none lost silently);
    the single number's calls beyond the 3rd are flagged repeat_caller (1497 of its 1500); the largest gap between
    WATCHDOG=1 pings stays under WATCHDOG_USEC (systemd would not kill the daemon); the daemon's resident memory
    grows by less than 64 MiB and its peak stays under the unit's MemoryMax (256 MiB)."""
    broker = station_broker
    station = Station(tmp_path / "station", broker.port)
    _configure(station, calls="repeat_caller_count = 3\n")
    wd = NotifySocket(tmp_path / "wd.sock")
    try:
        with monkeypatch.context() as m:
            m.setenv("NOTIFY_SOCKET", wd.address)
            m.setenv("WATCHDOG_USEC", "2000000")
            sub = subscriber_factory(broker.port, topic=f"{NODE}/state")
            ptys(station.links[0])
            d = daemons(station.config)
        assert d.proc is not None
        _online(sub)
        wait_until(lambda: len(wd.pings) >= 2, what="watchdog pings")
        rss_before, _ = _rss_kib(d.proc.pid)

        pub = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="flood", protocol=MQTTProtocolVersion.MQTTv5)
        pub.max_queued_messages_set(0)
        pub.max_inflight_messages_set(200)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        started = time.monotonic()
        infos = []
        for i in range(FLOOD_CALLS):
            caller = "+628111111111" if i % FLOOD_REPEAT_EVERY == 0 else f"+62822{i:07d}"
            infos.append(pub.publish(f"{NODE}/call/new", _call(f"F-{i:05d}", caller=caller), qos=1))
            if i % FLOOD_BURST == FLOOD_BURST - 1:
                time.sleep(max(0.0, started + (i + 1) // FLOOD_BURST * FLOOD_PERIOD_S - time.monotonic()))
        for info in infos:
            info.wait_for_publish(30)
        sent = time.monotonic() - started
        pub.disconnect()
        pub.loop_stop()

        dropped = lambda: "dropped" in broker.log_path.read_text(errors="replace")  # noqa: E731
        wait_until(lambda: station.query("SELECT count(*) FROM calls")[0][0] == FLOOD_CALLS or dropped(), 60, "every call recorded")
        assert not dropped(), "the broker dropped messages (its per-client queue), not the daemon: " + broker.log_tail(5)
        done = time.monotonic() - started
        rss_after, hwm = _rss_kib(d.proc.pid)
        received = station.query("SELECT count(DISTINCT call_id) FROM audit WHERE kind = 'call.received'")[0][0]
        assert received == FLOOD_CALLS
        flagged = station.query("SELECT count(*) FROM calls WHERE call LIKE '%repeat_caller%'")[0][0]
        assert flagged == FLOOD_CALLS // FLOOD_REPEAT_EVERY - 3
        window = [p for p in wd.pings if started - 1.0 <= p <= started + done + 1.0]
        gaps = [b - a for a, b in itertools.pairwise(window)]
        assert len(window) >= 2 and max(gaps) < 2.0, f"watchdog gaps {gaps}"
        assert rss_after - rss_before < 64 * 1024 and hwm < 256 * 1024
        print(f"I6: {FLOOD_CALLS} calls published in {sent:.1f} s ({FLOOD_CALLS / sent:.0f}/s), all recorded after "
              f"{done:.1f} s ({FLOOD_CALLS / done:.0f}/s); largest watchdog gap {max(gaps):.2f} s; RSS {rss_before / 1024:.1f}"
              f" -> {rss_after / 1024:.1f} MiB, peak {hwm / 1024:.1f} MiB")
    finally:
        wd.close()


def test_i6_the_repeat_caller_memory_forgets_callers_whose_calls_left_the_window(tmp_path: Path) -> None:
    """I6, memory: 500 calls from 500 distinct numbers, one a second, with repeat_caller_window_s = 60. Pass: the
    desk remembers at most the 61 numbers heard within the last 60 s (it kept all 500, for ever, before), and a
    number calling 4 times within the window is still flagged on its 4th call."""
    cfg = parse({"node": {"path": "gorontalo/kota-gorontalo"}, "calls": {"repeat_caller_window_s": 60, "repeat_caller_count": 3}},
                tmp_path / "alkomd.toml")
    store = Store(tmp_path / "a.db", "normal")
    loop = asyncio.new_event_loop()
    t0 = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)
    now = [t0]
    try:
        station = Core(cfg, store, Publisher(store, loop), loop, now=lambda: now[0])
        desk = CallDesk(cfg, store, station, station.publisher, loop, lambda: now[0], None)
        for i in range(500):
            now[0] = t0 + timedelta(seconds=i)
            desk.receive(call_intake.parse_call(_call(f"M-{i}", received_at=now[0], caller=f"+62822{i:07d}"), now[0]))
            assert len(desk.callers) <= 61
        flagged = []
        for k in range(4):
            now[0] = t0 + timedelta(seconds=500 + k)
            desk.receive(call_intake.parse_call(_call(f"R-{k}", received_at=now[0], caller="+628111111111"), now[0]))
            flagged.append("repeat_caller" in desk.calls[f"R-{k}"].flags)
        assert flagged == [False, False, False, True]
    finally:
        for timer in desk._timers.values():
            timer.cancel()
        loop.close()
        store.close()


# -- E1: escalation timing -----------------------------------------------------------------------

T1, T2 = 5, 6  # Polres and Polda answer timeouts (5 s is the smallest the config allows)


def _polda_config(path: Path, port: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    cfg = path / "alkomd.toml"
    cfg.write_text(
        f'[node]\npath = "gorontalo"\ntier = "polda"\n[store]\npath = "{path}/alkomd.db"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ntls = false\nreconnect_min_s = 0.5\nreconnect_max_s = 2\n'
        f"[dispatch]\nanswer_timeout_polda_s = {T2}\n"
    )
    return cfg


def test_e1_an_unanswered_call_escalates_at_t1_then_t2_and_every_step_is_on_record(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber], tmp_path: Path,
) -> None:
    """E1 with short deadlines: Polres T1 = 5 s, Polda T2 = 6 s, nobody answers. Pass: the Polres escalates T1 after it
    received the call and the Polda T2 after it received the escalation, each within [T, T + 3 s] by the daemons'
    own audit times (never early: also checked against the test's clock, which saw the escalations no sooner than
    T1 and T1 + T2 after publishing); one escalation message per tier; the audit timelines hold every step
    (Polres: received, new, offered, escalated; Polda: received with escalated_from, new, offered, escalated), and
    both hash chains verify."""
    _configure(station, dispatch=f"answer_timeout_polres_s = {T1}\n")
    polda_cfg = _polda_config(tmp_path / "polda", broker.port)
    sub = subscriber_factory(broker.port, topic="polri110/#")
    ptys(station.links[0])
    daemons(station.config)
    daemons(polda_cfg)
    _online(sub)
    _online(sub, POLDA)

    published = time.monotonic()
    sub.client.publish(f"{NODE}/call/new", _call("E1"), qos=1)
    wait_until(lambda: any(m.topic == f"{POLDA}/call/new" for m in sub.on("/call/new")), T1 + 15, "escalation to the Polda")
    seen_polda = time.monotonic() - published
    wait_until(lambda: any(m.topic == f"{MABES}/call/new" for m in sub.on("/call/new")), T2 + 15, "escalation to Mabes")
    seen_mabes = time.monotonic() - published
    assert seen_polda >= T1 and seen_mabes >= T1 + T2
    time.sleep(0.5)
    assert len([m for m in sub.on("/call/new") if m.topic == f"{POLDA}/call/new"]) == 1
    assert len([m for m in sub.on("/call/new") if m.topic == f"{MABES}/call/new"]) == 1
    assert _states(sub, POLDA, "E1")[-1]["state"] == "escalated" and _states(sub, POLDA, "E1")[-1]["escalated_to"] == MABES

    polres = _timeline(station.db, "E1")
    polda = _timeline(tmp_path / "polda" / "alkomd.db", "E1")
    assert [e["kind"] for e in polres] == ["call.received", "call.new", "call.offered", "call.escalated"]
    assert [e["kind"] for e in polda] == ["call.received", "call.new", "call.offered", "call.escalated"]
    assert _one(polda, "call.received")["detail"]["escalated_from"] == NODE
    late1 = (_at(_one(polres, "call.escalated")) - _at(_one(polres, "call.received"))).total_seconds() - T1
    late2 = (_at(_one(polda, "call.escalated")) - _at(_one(polda, "call.received"))).total_seconds() - T2
    assert 0 <= late1 <= TOLERANCE_S and 0 <= late2 <= TOLERANCE_S, (late1, late2)
    print(f"E1: escalated {late1 * 1000:.0f} ms after T1 and {late2 * 1000:.0f} ms after T2 (daemon clocks); "
          f"seen by the test at {seen_polda:.2f} s and {seen_mabes:.2f} s")
    _verify(station.db)
    _verify(tmp_path / "polda" / "alkomd.db")


# -- E2: wall-clock step during a pending escalation -------------------------------------------------


def _libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    assert found, "libfaketime is missing: apt-get install faketime (./run-tests installs it)"
    return found[0]


def test_e2_a_wall_clock_step_of_plus_or_minus_an_hour_does_not_move_a_pending_escalation(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], ptys: Callable[[Path], PtyGps],
    subscriber_factory: Callable[..., Subscriber], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """E2. The daemon runs under libfaketime with its wall clock read from a file we rewrite while it runs
    (CLOCK_REALTIME only: CLOCK_MONOTONIC stays real, as in an NTP step). Call A is pending when the wall clock
    steps +1 h, call B when it steps back -1 h; T1 = 5 s. Pass: the step is real inside the daemon (its health
    messages' wall-clock `time` moves by about +3600 s, then back), yet A and B each escalate once, no sooner than
    T1 after they were published (a timer on wall time would fire A at once) and within the 20 s bound (a timer on
    wall time would hold B for an hour), and their audit records show T1 <= escalated - received <= T1 + 3 s
    (records are not skewed by the step)."""
    _configure(station, dispatch=f"answer_timeout_polres_s = {T1}\n")
    rc = tmp_path / "faketime.rc"
    rc.write_text("+0\n")
    sub = subscriber_factory(broker.port, topic="polri110/#")
    ptys(station.links[0])
    with monkeypatch.context() as m:
        for key, value in (("LD_PRELOAD", _libfaketime()), ("FAKETIME_TIMESTAMP_FILE", str(rc)), ("FAKETIME_NO_CACHE", "1"),
                           ("FAKETIME_DONT_FAKE_MONOTONIC", "1")):
            m.setenv(key, value)
        daemons(station.config)
    _online(sub)

    def wall_offset() -> float:
        """The daemon's wall clock minus ours, from its newest health message."""
        last = sub.on(f"{NODE}/health")[-1].payload["time"]
        return (datetime.fromisoformat(str(last).replace("Z", "+00:00")) - datetime.now(UTC)).total_seconds()

    wait_until(lambda: bool(sub.on(f"{NODE}/health")) and abs(wall_offset()) < 60, what="health at the real time")
    escalations = lambda: [m.payload["call_id"] for m in sub.on("/call/new") if m.topic == f"{POLDA}/call/new"]  # noqa: E731
    seen: dict[str, float] = {}
    for call_id, step in (("E2-A", "+3600"), ("E2-B", "+0")):
        published = time.monotonic()
        sub.client.publish(f"{NODE}/call/new", _call(call_id), qos=1)
        wait_until(lambda c=call_id: bool(_states(sub, NODE, c)), what=f"{call_id} offered")  # type: ignore[misc]
        rc.write_text(step + "\n")  # the wall clock steps while the answer timer runs
        wanted = 3600 if step == "+3600" else 0
        wait_until(lambda w=wanted: abs(wall_offset() - w) < 60, what=f"daemon wall clock {step}")  # type: ignore[misc]
        wait_until(lambda c=call_id: c in escalations(), 20, f"{call_id} escalated")  # type: ignore[misc]
        seen[call_id] = time.monotonic() - published
        assert seen[call_id] >= T1, f"{call_id} escalated early, {seen[call_id]:.2f} s after publishing"
    time.sleep(0.5)
    assert sorted(escalations()) == ["E2-A", "E2-B"]
    for call_id in ("E2-A", "E2-B"):
        timeline = _timeline(station.db, call_id)
        late = (_at(_one(timeline, "call.escalated")) - _at(_one(timeline, "call.received"))).total_seconds() - T1
        assert 0 <= late <= TOLERANCE_S, (call_id, late)
    print(f"E2: escalations seen {seen['E2-A']:.2f} s (step +1 h) and {seen['E2-B']:.2f} s (step -1 h) after publishing")

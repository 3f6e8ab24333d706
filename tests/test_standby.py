"""C1: a standby process of a node takes over from its SIGKILLed active process (daemons as processes, one broker).

One `alkomd` per node holds the kernel lock on `<database>.lock`; a second one of the same node
waits as its standby and, the moment the lock is free, opens the same database (every open call,
its timers and the audit chain are there) and resumes the same MQTT session (what the broker
queued for the node meanwhile is delivered to it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import NODE, Daemon, Station, Subscriber, wait_until

from alkomd.daemon.ctl.demo.broker import Broker

POLDA, POLRES = "polri110/gorontalo", "polri110/gorontalo/kota-gorontalo"
T_POLDA = 20  # the Polda's answer timeout in these tests (s): an offered call escalates to Mabes after it
WILL_DELAY_S = 10


@pytest.fixture
def standbys() -> Iterator[Callable[[Path], Daemon]]:
    """Start `alkomd` processes that are expected to wait as standbys; killed at the end if still running."""
    made: list[Daemon] = []

    def make(config: Path) -> Daemon:
        d = Daemon(config)
        made.append(d)
        return d.start(until="standby: waiting for the active process")

    yield make
    for d in made:
        if d.proc is not None and d.proc.poll() is None:
            os.kill(d.proc.pid, signal.SIGCONT)
            d.kill()


def _polda(path: Path, port: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    cfg = path / "alkomd.toml"
    cfg.write_text(
        f'[node]\npath = "gorontalo"\ntier = "polda"\n[store]\npath = "{path}/alkomd.db"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ntls = false\nkeepalive_s = 5\nreconnect_min_s = 0.5\n'
        f"reconnect_max_s = 2\nwill_delay_s = {WILL_DELAY_S}\n"
        f"[dispatch]\nanswer_timeout_polda_s = {T_POLDA}\n[recommend]\nmax_fix_age_s = 3600\n"
    )
    return cfg


def _call(call_id: str) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return json.dumps({"call_id": call_id, "caller": "+6285200000000", "lat": 0.5450, "lon": 123.0620, "accuracy_m": 10,
                       "received_at": now, "category": "pelaporan/kecelakaan"})


def _answer(unit: str, msg_id: str) -> str:
    return json.dumps({"action": "answer", "by": "piket-polda", "unit": unit, "msg_id": msg_id})


def _states(sub: Subscriber, call_id: str) -> list[dict[str, object]]:
    return [m.payload for m in sub.on("") if m.topic == f"{POLDA}/call/{call_id}" and m.payload]


def _results(sub: Subscriber, event_id: str) -> list[dict[str, object]]:
    return [m.payload for m in sub.on("/event/result") if m.payload.get("event_id") == event_id]


def _ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", *args], capture_output=True, text=True, timeout=60)


def test_c1_the_standby_takes_over_a_sigkilled_active_polda_with_its_open_calls_once(
    tmp_path: Path, broker: Broker, daemons: Callable[[Path], Daemon], standbys: Callable[[Path], Daemon],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    """C1. The active Polda process holds two offered calls and one answered with a unit assigned, and is SIGKILLed.
    Its standby (held with SIGSTOP while the node has no process, so what is published then is published while
    nothing of the node is connected, and released after) takes over within 10 s. Then: a call published in the gap
    is offered once; an event published in the gap is applied once (one result); the answer event the dead process
    had applied, sent again with its msg_id, is not applied again (no second result); an offered call's answer
    deadline, which passes after the takeover, still escalates it to Mabes, once; `alkomctl audit verify` passes on the
    database; and with `will_delay_s` the parent (a subscriber standing in for Mabes) never sees the node offline."""
    sub = subscriber_factory(broker.port, topic="polri110/#")
    for unit in ("R2-01", "R2-02", "R2-03"):  # units of a Polres below, as its node publishes them (retained)
        t = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        sub.client.publish(f"{POLRES}/unit/{unit}/position",
                           json.dumps({"lat": 0.5412, "lon": 123.0595, "time": t, "type": "car"}), qos=1, retain=True)
        sub.client.publish(f"{POLRES}/unit/{unit}/status", json.dumps({"status": "available", "type": "car"}), qos=1, retain=True)
    cfg = _polda(tmp_path / "polda", broker.port)
    active = daemons(cfg)
    assert active.proc is not None
    wait_until(lambda: any(m.payload.get("state") == "online" for m in sub.on(f"{POLDA}/state")), what="the Polda online")
    standby = standbys(cfg)
    assert standby.proc is not None
    assert f"(pid {active.proc.pid}) to stop" in standby.log

    for call_id in ("C1-A", "C1-B", "C1-C"):
        sub.client.publish(f"{POLDA}/call/new", _call(call_id), qos=1)
    for call_id in ("C1-A", "C1-B", "C1-C"):
        wait_until(lambda c=call_id: bool(_states(sub, c)), 15, f"{call_id} offered")  # type: ignore[misc]
    sub.client.publish(f"{POLDA}/call/C1-C/event", _answer("R2-01", "ev-c-answer"), qos=1)
    wait_until(lambda: _states(sub, "C1-C")[-1]["state"] == "assigned", 10, "C1-C answered with R2-01")
    assert [r["result"] for r in _results(sub, "ev-c-answer")] == ["accepted"]

    # The gap: no process of the node is connected.
    os.kill(standby.proc.pid, signal.SIGSTOP)
    killed = time.monotonic()
    active.kill()
    sub.client.publish(f"{POLDA}/call/new", _call("C1-GAP"), qos=1).wait_for_publish(5)
    sub.client.publish(f"{POLDA}/call/C1-B/event", _answer("R2-02", "ev-b-gap"), qos=1).wait_for_publish(5)
    sub.client.publish(f"{POLDA}/call/C1-C/event", _answer("R2-01", "ev-c-answer"), qos=1).wait_for_publish(5)  # resent
    released = time.monotonic()
    os.kill(standby.proc.pid, signal.SIGCONT)

    wait_until(lambda: "took over as the node's active process" in standby.log, 10, "the standby taking over")
    wait_until(lambda: bool(_states(sub, "C1-GAP")), 10, "the call published in the gap offered by the standby")
    print(f"C1: the standby offered the call published in the gap {time.monotonic() - released:.2f} s after it was "
          "released (SIGCONT); takeover alone: see bench/bench_standby.py")
    wait_until(lambda: len(_results(sub, "ev-b-gap")) == 1, 10, "the event published in the gap applied")
    assert _results(sub, "ev-b-gap")[0]["result"] == "accepted", _results(sub, "ev-b-gap")[0]["reason"]
    # (its result is the transaction's first message, the call's state the next one)
    wait_until(lambda: _states(sub, "C1-B")[-1]["state"] == "assigned", 10, "C1-B assigned by the event published in the gap")
    assert f"standby: the active process (pid {active.proc.pid}) stopped" in standby.log

    # The answer deadline of C1-A passes after the takeover: it escalates to Mabes, once.
    wait_until(lambda: _states(sub, "C1-A")[-1]["state"] == "escalated", T_POLDA + 15, "C1-A escalated by the standby")
    # Past the will delay, and long enough for a second copy of anything to show.
    time.sleep(max(0.0, killed + WILL_DELAY_S + 2 - time.monotonic()))

    escalations = [m for m in sub.on("polri110/call/new") if m.topic == "polri110/call/new" and m.payload.get("call_id") == "C1-A"]
    assert len(escalations) == 1 and escalations[0].payload["escalated_from"] == POLDA
    assert [s["version"] for s in _states(sub, "C1-GAP")].count(1) == 1, "the call published in the gap handled twice"
    assert len(_results(sub, "ev-b-gap")) == 1, "the event published in the gap applied twice"
    # Applied again, it would be answered with a new result (a new msg_id). The same result may come twice: one whose
    # PUBACK reached the dead process in its last ACK_COMMIT_S was not marked sent, and the standby sends it again.
    assert len({r["msg_id"] for r in _results(sub, "ev-c-answer")}) == 1, "an event the dead process applied was applied again"
    assert _states(sub, "C1-C")[-1]["state"] == "assigned" and _states(sub, "C1-C")[-1]["version"] == 2
    offline = [m.payload for m in sub.on(f"{POLDA}/state") if m.payload.get("state") == "offline"]
    assert not offline, f"the parent saw the node offline during the takeover: {offline}"

    db = Station(tmp_path / "polda", broker.port)
    db_path = tmp_path / "polda" / "alkomd.db"
    assert db.query("SELECT count(*) FROM audit WHERE call_id = 'C1-GAP' AND kind = 'call.received'", ()) == [(1,)]
    assert db.query("SELECT call_id FROM call_events ORDER BY event_id") == [("C1-B",), ("C1-C",)]
    r = _ctl("audit", "verify", "--db", str(db_path))
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_second_start_of_a_node_waits_as_its_standby_and_never_kicks_the_first_off_the_broker(
    station: Station, broker: Broker, daemons: Callable[[Path], Daemon], standbys: Callable[[Path], Daemon],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    """Started while the node runs, a second alkomd of it waits (one log line naming the active pid), says so on
    `alkomctl status` (the active one names it; its own standby.sock answers), and the first stays connected and keeps
    handling calls. SIGTERM stops the waiting standby at once (exit 0); a clean stop of the active one hands over."""
    station.write_config(devices=0, extra_mqtt="will_delay_s = 5\n")
    sub = subscriber_factory(broker.port)
    active = daemons(station.config)
    assert active.proc is not None
    wait_until(lambda: any(m.payload.get("state") == "online" for m in sub.on(f"{NODE}/state")), what="online")
    standby = standbys(station.config)
    assert standby.proc is not None
    time.sleep(2.0)  # long enough for a client-id clash to show: it would have kicked the first process off
    assert standby.log.count("standby: waiting for the active process") == 1
    assert "mqtt: connected" not in standby.log and "disconnected" not in active.log

    r = _ctl("status", "--config", str(station.config), "--json")
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["role"] == "active" and status["pid"] == active.proc.pid
    assert status["standby"]["pid"] == standby.proc.pid and status["standby"]["active_pid"] == active.proc.pid
    r = _ctl("status", "--config", str(station.config))
    assert r.returncode == 0 and f"standby: pid {standby.proc.pid}" in r.stdout, r.stdout + r.stderr

    sub.client.publish(f"{NODE}/call/new", _call("SB-1"), qos=1)
    wait_until(lambda: any(m.topic == f"{NODE}/call/SB-1" for m in sub.on("/SB-1")), 10, "the active one offers a call")
    assert standby.stop(signal.SIGTERM, timeout=10) == 0
    assert "stopped while waiting as a standby" in standby.log

    again = standbys(station.config)
    assert active.stop(signal.SIGTERM) == 0
    wait_until(lambda: "took over as the node's active process" in again.log, 10, "the standby taking over on a clean stop")
    sub.client.publish(f"{NODE}/call/new", _call("SB-2"), qos=1)
    wait_until(lambda: any(m.topic == f"{NODE}/call/SB-2" for m in sub.on("/SB-2")), 10, "the new active one offers a call")
    time.sleep(6.0)  # past the will delay: the clean stop left "offline" to the will, which the takeover cancelled
    assert not [m for m in sub.on(f"{NODE}/state") if m.payload.get("state") == "offline"]
    assert again.stop(signal.SIGTERM) == 0
    wait_until(lambda: any(m.payload.get("state") == "offline" for m in sub.on(f"{NODE}/state")), 15,
               "the will, once no process of the node is back within the delay")

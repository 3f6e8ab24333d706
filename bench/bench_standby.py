"""A standby taking over a SIGKILLed active Polda process: SIGKILL -> the standby's first state of a call sent in the gap.

One Polda node, its database and config shared by two processes on a private mosquitto: the active
one and a standby waiting on the node's lock (daemon/standby.py). Each run SIGKILLs the active
process, at once publishes a call to the node (nobody of it is connected), and measures from the
kill to the node's first call state for that call, as a subscriber sees it. The killed process is
started again, as systemd's Restart= would, and becomes the next run's standby.

Baseline in the same run, interleaved: the same kill with no standby, the node's process started
again at once (systemd's RestartSec= not counted), to its first state of the call. Both include the
desk's settle after a connect (calls wait 2 s for the parent's retained `taken` markers). With
`[mqtt] will_delay_s = 10` the parent (the subscriber) should see no "offline": counted.

    python bench/bench_standby.py [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import Daemon, Mosquitto, dump_json, machine, median, table

POLDA = "polri110/gorontalo"
WILL_DELAY_S = 10


class Watch:
    """Arrival times (perf_counter_ns) of the first message on each topic; "offline" states counted."""

    def __init__(self, port: int) -> None:
        self.seen: dict[str, int] = {}
        self.offline = 0
        self.cv = threading.Condition()
        self.c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-parent",
                             protocol=MQTTProtocolVersion.MQTTv5)
        self.c.on_message = self._on
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.c.subscribe("polri110/#", 1)
        time.sleep(0.3)

    def _on(self, cl: paho.Client, ud: object, m: paho.MQTTMessage) -> None:
        t = time.perf_counter_ns()
        if m.topic == f"{POLDA}/state" and b'"offline"' in m.payload:
            self.offline += 1
        with self.cv:
            self.seen.setdefault(m.topic, t)
            self.cv.notify_all()

    def wait(self, topic: str, timeout: float = 30.0) -> int:
        with self.cv:
            if not self.cv.wait_for(lambda: topic in self.seen, timeout):
                raise RuntimeError(f"nothing on {topic} within {timeout} s")
            return self.seen[topic]


def config(path: Path, port: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    cfg = path / "alkomd.toml"
    cfg.write_text(f'[node]\npath = "gorontalo"\ntier = "polda"\n[store]\npath = "{path}/alkomd.db"\n'
                   f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ntls = false\nkeepalive_s = 5\n'
                   f"reconnect_min_s = 0.5\nreconnect_max_s = 2\nwill_delay_s = {WILL_DELAY_S}\n")
    return cfg


def call(call_id: str) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return json.dumps({"call_id": call_id, "caller": "+6285200000000", "lat": 0.545, "lon": 123.06, "accuracy_m": 10,
                       "received_at": now, "category": "pelaporan/kecelakaan"})


def standby(cfg: Path) -> Daemon:
    d = Daemon(cfg).start()
    if not d.wait_line("standby: waiting for the active process", 20):
        raise RuntimeError("no standby:\n" + d.log_tail())
    return d


def kill(d: Daemon) -> int:
    t = time.perf_counter_ns()
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait(10)
    return t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    took: list[float] = []
    ready: list[float] = []
    restart: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp)) as broker:
        watch = Watch(broker.port)
        cfg = config(Path(tmp) / "polda", broker.port)
        active = Daemon(cfg).start()
        active.wait_ready()
        for run in range(args.runs):
            # The standby: SIGKILL the active process, a call in the gap, the standby's first state of it.
            waiting = standby(cfg)
            time.sleep(0.5)
            killed = kill(active)
            watch.c.publish(f"{POLDA}/call/new", call(f"standby-{run}"), qos=1)
            took.append((watch.wait(f"{POLDA}/call/standby-{run}") - killed) / 1e6)
            waiting.wait_ready()
            assert waiting.ready_ns is not None
            ready.append((waiting.ready_ns - killed) / 1e6)
            active = waiting
            # The baseline: no standby; the process started again at once after the kill.
            time.sleep(0.5)
            killed = kill(active)
            watch.c.publish(f"{POLDA}/call/new", call(f"restart-{run}"), qos=1)
            active = Daemon(cfg).start()
            restart.append((watch.wait(f"{POLDA}/call/restart-{run}") - killed) / 1e6)
            active.wait_ready()
        time.sleep(0.5)
        active.stop()
        offline = watch.offline
        watch.c.loop_stop()
    if args.json:
        print(dump_json({"machine": machine(), "runs": args.runs, "standby_ms": took, "standby_ready_ms": ready,
                         "restart_ms": restart, "offline_seen": offline}))
        return 0
    print(f"A standby takes over a SIGKILLed active Polda: {args.runs} runs ({machine()['cpu']}); machine possibly shared")
    rows = [
        ("standby: SIGKILL -> first state of a call sent in the gap", median(took), max(took), median(took) / median(restart)),
        ("  of which SIGKILL -> the standby's ready: line", median(ready), max(ready), median(ready) / median(restart)),
        ("baseline: SIGKILL, started again at once -> first state", median(restart), max(restart), 1.0),
    ]
    print(table(["what", "median ms", "max ms", "x baseline"], [(w, f"{m:.0f}", f"{x:.0f}", f"{r:.2f}x") for w, m, x, r in rows]))
    print(f"'offline' states the parent saw (will_delay_s = {WILL_DELAY_S}): {offline}")
    print(f"GOAL takeover within 10 s: {'met' if max(took) < 10_000 else 'NOT met'} (max {max(took) / 1000:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

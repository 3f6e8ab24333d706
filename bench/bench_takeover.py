"""A parent taking a dead child's call: from the moment the Polda can know (the child's deadline) to its offer.

Two Polres deaths, each repeated --runs times against one Polda-tier daemon on a private mosquitto:

- before: the Polres is SIGKILLed, its will ("offline") goes out, then a call is sent to it. The
  child's deadline is the call's arrival (a dead node answers nothing): measured from the publish
  of the call to the Polda's first call state (`offered`, taken with reason child_offline).
- during: the Polres offers a call, then is SIGKILLed. The deadline is its will's arrival: measured
  from the will (as a subscriber sees it) to the Polda's first call state for that call.

Baseline in the same run: the broker round trip of a message of the call's size. The Polres runs
with keepalive_s = 5, so the broker sends its will 5 to 7.5 s after the kill (not measured here:
that is mosquitto's keepalive, README "[mqtt]").

    python bench/bench_takeover.py [--runs 20] [--json]
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

POLRES, POLDA = "polri110/gorontalo/bench", "polri110/gorontalo"


class Watch:
    """Arrival times (perf_counter_ns) of the messages the bench waits for."""

    def __init__(self, port: int) -> None:
        self.seen: dict[str, int] = {}
        self.cv = threading.Condition()
        self.c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-watch",
                             protocol=MQTTProtocolVersion.MQTTv5)
        self.c.on_message = self._on
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.c.subscribe([("polri110/#", 1), ("bench/rtt", 1)])
        time.sleep(0.3)

    def _on(self, cl: paho.Client, ud: object, m: paho.MQTTMessage) -> None:
        t = time.perf_counter_ns()
        try:
            body = json.loads(m.payload) if m.payload else {}
        except ValueError:
            return
        key = m.topic
        if m.topic.endswith("/state"):
            key = f"{m.topic}:{body.get('state')}"
        with self.cv:
            self.seen.setdefault(key, t)
            self.cv.notify_all()

    def forget(self, key: str) -> None:
        with self.cv:
            self.seen.pop(key, None)

    def wait(self, key: str, timeout: float = 30.0) -> int:
        with self.cv:
            if not self.cv.wait_for(lambda: key in self.seen, timeout):
                raise RuntimeError(f"no {key} within {timeout} s")
            return self.seen[key]

    def publish(self, topic: str, payload: str) -> int:
        t = time.perf_counter_ns()
        self.c.publish(topic, payload, qos=1).wait_for_publish(10)
        return t


def config(path: Path, node: str, tier: str, port: int, keepalive: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    cfg = path / "alkomd.toml"
    cfg.write_text(f'[node]\npath = "{node}"\ntier = "{tier}"\n[store]\npath = "{path}/alkomd.db"\nsynchronous = "normal"\n'
                   f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ntls = false\nkeepalive_s = {keepalive}\n'
                   "reconnect_min_s = 0.5\nreconnect_max_s = 2\n[dispatch]\nanswer_timeout_polres_s = 60\n")
    return cfg


def call(call_id: str) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return json.dumps({"call_id": call_id, "caller": "+6285200000000", "lat": 0.545, "lon": 123.06, "accuracy_m": 10,
                       "received_at": now, "category": "pelaporan/kecelakaan"})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp)) as broker:
        work = Path(tmp)
        watch = Watch(broker.port)
        polda = Daemon(config(work / "polda", "gorontalo", "polda", broker.port, 30)).start()
        polda.wait_ready()
        watch.wait(f"{POLDA}/state:online")
        time.sleep(3.0)  # past the desk's settle after a connect (calls wait 2 s for retained taken markers)
        polres_cfg = config(work / "polres", "gorontalo/bench", "polres", broker.port, 5)
        before: list[float] = []
        during: list[float] = []
        rtt: list[float] = []
        for run in range(args.runs):
            for scenario in ("before", "during"):
                watch.forget(f"{POLRES}/state:online")
                watch.forget(f"{POLRES}/state:offline")
                polres = Daemon(polres_cfg).start()
                polres.wait_ready()
                watch.wait(f"{POLRES}/state:online")
                call_id = f"{scenario}-{run}"
                if scenario == "during":
                    watch.publish(f"{POLRES}/call/new", call(call_id))
                    watch.wait(f"{POLRES}/call/{call_id}")
                os.kill(polres.proc.pid, signal.SIGKILL)
                polres.proc.wait(10)
                will = watch.wait(f"{POLRES}/state:offline")
                if scenario == "before":
                    sent = watch.publish(f"{POLRES}/call/new", call(call_id))
                    before.append((watch.wait(f"{POLDA}/call/{call_id}") - sent) / 1e6)
                else:
                    during.append((watch.wait(f"{POLDA}/call/{call_id}") - will) / 1e6)
            sent = watch.publish("bench/rtt", call(f"rtt-{run}"))
            rtt.append((watch.wait("bench/rtt") - sent) / 1e6)
            watch.forget("bench/rtt")
        polda.stop()
        watch.c.loop_stop()
    rows = [
        ("before: call sent to a dead Polres -> Polda offers it", median(before), max(before), median(before) / median(rtt)),
        ("during: the Polres's will -> Polda offers its offered call", median(during), max(during), median(during) / median(rtt)),
        ("baseline: broker round trip of a call-sized message", median(rtt), max(rtt), 1.0),
    ]
    if args.json:
        print(dump_json({"machine": machine(), "runs": args.runs, "before_ms": before, "during_ms": during, "rtt_ms": rtt}))
        return 0
    print(f"A parent takes a dead child's call: {args.runs} runs of each ({machine()['cpu']})")
    print(table(["what", "median ms", "max ms", "x broker rtt"],
                [(w, f"{m:.1f}", f"{x:.1f}", f"{r:.1f}x") for w, m, x, r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

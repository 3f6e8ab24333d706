"""A parent taking a dead child's call: time from the child's deadline to the parent's offer, median and max over N runs.

Two Polres deaths, each repeated --runs times (default 20) against one Polda-tier daemon on a
private mosquitto:

- before: the Polres is SIGKILLed, its will ("offline") goes out, then a call is sent to it. The
  child's deadline is the call's arrival (a dead node answers nothing): measured from the publish
  of the call to the Polda's first call state (`offered`, taken with reason child_offline).
- during: the Polres offers a call, then is SIGKILLed. The deadline is its will's arrival: measured
  from the will (as a subscriber sees it) to the Polda's first call state for that call.

Also, for each Polres (re)start: how long its calls are held after the connect, until its probe to
itself is back behind the retained `taken` markers (the Polres's own log line; this was a fixed
2000 ms before). Each restart finds the previous "before" call queued and its marker retained.

Baseline in the same run: the broker round trip of a message of the call's size. The Polres runs
with keepalive_s = 5; a SIGKILL closes its socket, so mosquitto sends the will at once (a cut
cable would take 5 to 7.5 s: mosquitto's keepalive, README "[mqtt]", not measured here).

    python bench/bench_takeover.py [--runs 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
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
PROBE_BACK = r"the probe came back (\d+) ms after the connect"  # calls/settle.py: the held calls go on


def _no_delay(client: paho.Client, userdata: object, sock: object) -> None:
    setsockopt = getattr(sock, "setsockopt", None)
    if setsockopt is not None:
        setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Watch:
    """Arrival times (perf_counter_ns) of the messages the bench waits for."""

    def __init__(self, port: int) -> None:
        self.seen: dict[str, int] = {}
        self.cv = threading.Condition()
        self.c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-watch",
                             protocol=MQTTProtocolVersion.MQTTv5)
        self.c.on_message = self._on
        self.c.on_socket_open = _no_delay  # as the daemon's link: no ~40 ms Nagle wait in the figures
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
        if not polda.wait_line(PROBE_BACK, 15):  # the Polda's calls go on from here (the probe behind its markers)
            raise RuntimeError("the Polda's probe never came back:\n" + polda.log_tail())
        polres_cfg = config(work / "polres", "gorontalo/bench", "polres", broker.port, 5)
        before: list[float] = []
        during: list[float] = []
        rtt: list[float] = []
        held: list[float] = []
        for run in range(args.runs):
            for scenario in ("before", "during"):
                watch.forget(f"{POLRES}/state:online")
                watch.forget(f"{POLRES}/state:offline")
                polres = Daemon(polres_cfg).start()
                polres.wait_ready()
                watch.wait(f"{POLRES}/state:online")
                if not polres.wait_line(PROBE_BACK, 15):
                    raise RuntimeError("the Polres's probe never came back:\n" + polres.log_tail())
                held += [float(m[1]) for _, line in polres.lines if (m := re.search(PROBE_BACK, line))]
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
        ("before: call sent to a dead Polres -> Polda offers it", before),
        ("during: the Polres's will -> Polda offers its offered call", during),
        ("both: the child's deadline -> the parent's offer", before + during),
        ("a Polres (re)connect -> its probe back: calls held (was 2000 ms)", held),
        ("baseline: broker round trip of a call-sized message", rtt),
    ]
    if args.json:
        print(dump_json({"machine": machine(), "runs": args.runs, "before_ms": before, "during_ms": during, "held_ms": held,
                         "rtt_ms": rtt}))
        return 0
    print(f"A parent takes a dead child's call: time from the child's deadline to the parent's offer, median and max over "
          f"{args.runs} runs of each ({machine()['cpu']})")
    print(table(["what", "n", "median ms", "max ms", "median x broker rtt"],
                [(w, len(xs), f"{median(xs):.1f}", f"{max(xs):.1f}", f"{median(xs) / median(rtt):.1f}x") for w, xs in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

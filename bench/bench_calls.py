"""Call latency: a 110 call published on <node>/call/new -> its call state received, at 50,000 units.

Setup: 500 synthetic jurisdictions (Voronoi cells of clustered seeds over Indonesia's extent,
95-141 E, 11 S-6 N) written as GeoJSON; 50,000 units around 150 "cities" (70% available), each
belonging to one of 100 child nodes, published retained (position and status) to a private
mosquitto; then a Polda-tier daemon follows them over MQTT (as a real Polda or Mabes does) and
answers calls drawn from the same distribution. Measured: from the publish of the call to the
arrival of its first call state at a subscriber (intake, jurisdiction, recommendation over the
whole area, one SQLite transaction, MQTT out). Goal (issues 3, 11, 15): p99 <= 5 ms, idle and
while 10,000 positions a second (retained, QoS 1, as stations publish them; each unit a few
hundred metres from where it was) flood the broker from another process: the same number of
calls is measured both ways in one run.

Baselines in the same run, idle and in the same flood:
- the floor: a bare responder (another process: paho, `json.loads`, ONE durable SQLite commit in
  the daemon's settings, WAL and synchronous=FULL, on the same disk, then a retained QoS 1 answer
  of a call state's size) measured exactly as the daemon is. No answer that survives a crash can
  be faster on this machine; the daemon's ratio to it is what alkomd adds;
- the broker round trip alone with a payload of the same size (after the flood).

    python bench/bench_calls.py [--units 50000] [--calls 300] [--load 10000] [--below-connection same|separate] [--pin] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import shapely
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import Daemon, Mosquitto, RawPublisher, child_pids, dump_json, machine, median, pct, pin, proc_status, publish_packet, table

NODE = "polri110/bench"
ECHO = "polri110/bench-floor"  # the bare responder's prefix
BBOX = (95.0, -11.0, 141.0, 6.0)


def cities(rng: random.Random, n: int = 150) -> list[tuple[float, float, float]]:
    """(lon, lat, weight) with Pareto weights, like population centres."""
    return [(rng.uniform(BBOX[0] + 1, BBOX[2] - 1), rng.uniform(BBOX[1] + 1, BBOX[3] - 1), rng.paretovariate(1.2)) for _ in range(n)]


def around(rng: random.Random, towns: list[tuple[float, float, float]]) -> tuple[float, float]:
    lon, lat, _ = rng.choices(towns, weights=[w for *_, w in towns])[0]
    return lon + rng.gauss(0, 0.08), lat + rng.gauss(0, 0.08)


def jurisdictions(rng: random.Random, towns: list[tuple[float, float, float]], path: Path, n: int = 500) -> None:
    seeds = shapely.multipoints([around(rng, towns) for _ in range(n)])
    cells = shapely.get_parts(shapely.voronoi_polygons(seeds, extend_to=shapely.box(*BBOX)))
    box = shapely.box(*BBOX)
    features = []
    for i, cell in enumerate(cells):
        geom = shapely.intersection(cell, box)
        if geom.is_empty:
            continue
        features.append({"type": "Feature", "properties": {"code": f"J{i:03d}", "name": f"Jurisdiction {i}"},
                         "geometry": json.loads(shapely.to_geojson(geom))})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))


def client(port: int, cid: str) -> paho.Client:
    c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=cid, protocol=MQTTProtocolVersion.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def publish_units(port: int, rng: random.Random, towns: list[tuple[float, float, float]], n: int) -> list[tuple[float, float]]:
    """Publish n units (retained position and status); returns their places (lon, lat), where the flood moves them."""
    c = client(port, "bench-units")
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    last = None
    homes = [around(rng, towns) for _ in range(n)]
    for i in range(n):
        lon, lat = homes[i]
        node = f"{NODE}/p{i % 100:03d}"
        unit = f"U{i:05d}"
        status = "available" if rng.random() < 0.7 else "unavailable"
        pos = {"unit": unit, "lat": round(lat, 7), "lon": round(lon, 7), "time": now, "received": now, "speed_kmh": 0.0,
               "course": 0.0, "hdop": 1.0, "sats": 9, "fix": "3d", "source": "bench", "msg_id": f"p{i}"}
        c.publish(f"{node}/unit/{unit}/position", json.dumps(pos, separators=(",", ":")), qos=1, retain=True)
        last = c.publish(f"{node}/unit/{unit}/status", json.dumps({"unit": unit, "status": status, "since": now,
                                                                     "call_id": None, "msg_id": f"s{i}"}), qos=1, retain=True)
        if i % 2000 == 1999:
            last.wait_for_publish(30)
    if last is not None:
        last.wait_for_publish(60)
    c.disconnect()
    c.loop_stop()
    return homes


class StateWatch:
    """Records the arrival time of each call's first state message (`prefix`: the daemon's node or the bare responder's)."""

    def __init__(self, port: int, prefix: str = NODE) -> None:
        self.prefix = prefix
        self.first: dict[str, int] = {}
        self.candidates: dict[str, int] = {}
        self.closed: set[str] = set()
        self.c = client(port, f"bench-watch-{prefix.rsplit('/', 1)[1]}")
        self.c.on_message = self._on
        self.c.subscribe(f"{prefix}/call/+", qos=1)
        time.sleep(0.3)

    def _on(self, cl: paho.Client, ud: object, m: paho.MQTTMessage) -> None:
        t = time.perf_counter_ns()
        call_id = m.topic.rsplit("/", 1)[1]
        if call_id not in self.first and call_id not in ("new", "aml"):
            self.first[call_id] = t
            self.candidates[call_id] = len(json.loads(m.payload).get("candidates", []))


def send_calls(caller: paho.Client, watch: StateWatch, rng: random.Random, towns: list[tuple[float, float, float]],
               n: int, tag: str) -> tuple[list[float], dict[str, int], int]:
    """n calls 20 ms apart; the latency of each from its publish to its first call state (ms)."""
    sent: dict[str, int] = {}
    size = 0
    for i in range(n):
        lon, lat = around(rng, towns)
        call_id = f"B{tag}-{i}"
        body = json.dumps({"call_id": call_id, "caller": f"+62812{i:07d}", "lat": round(lat, 6), "lon": round(lon, 6),
                           "accuracy_m": 20, "received_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                           "category": "bench"})
        size = len(body)
        sent[call_id] = time.perf_counter_ns()
        caller.publish(f"{watch.prefix}/call/new", body, qos=1)
        time.sleep(0.01)
        close_answered(caller, watch, sent)  # half way to the next call: its close is not what the next call waits for
        time.sleep(0.01)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(k not in watch.first for k in sent):
        time.sleep(0.05)
    close_answered(caller, watch, sent)
    return [(watch.first[k] - t) / 1e6 for k, t in sent.items() if k in watch.first], sent, size


def close_answered(caller: paho.Client, watch: StateWatch, sent: dict[str, int]) -> None:
    """The duty officer closes each call once it has its state: a few calls are open at a time, as at a real desk
    (hundreds of offered calls at once would measure their re-ranking, not a call's intake)."""
    for call_id in sent:
        if call_id in watch.first and call_id not in watch.closed:
            watch.closed.add(call_id)
            caller.publish(f"{watch.prefix}/call/{call_id}/event", json.dumps({"action": "close", "by": "bench", "note": "measured"}),
                           qos=1)


def bare_responder(port: int, db: str, ready: Any, stop: Any) -> None:
    """A child process, the floor: each `<ECHO>/call/new` is decoded on paho's thread, stored with its answer in ONE
    durable SQLite transaction (WAL, synchronous=FULL: the daemon's store settings), and answered on `<ECHO>/call/<id>`
    (QoS 1, retained, about the size of a call state with five candidates). TCP_NODELAY as the daemon's link sets it."""
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)  # used on paho's thread only
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS calls (call_id TEXT PRIMARY KEY, request TEXT, state TEXT)")
    cands = [{"unit": f"U{i:05d}", "type": "car", "distance_m": 1234.5, "eta_s": 88.0, "fix_age_s": 3.0,
              "jurisdiction": "J123", "neighbour": False} for i in range(5)]

    def on(cl: paho.Client, ud: object, m: paho.MQTTMessage) -> None:
        req = json.loads(m.payload)
        state = json.dumps({"call_id": req["call_id"], "version": 1, "state": "offered", "request": req,
                            "candidates": cands, "flags": [], "audit": "x" * 64}, separators=(",", ":"))
        conn.execute("BEGIN")
        conn.execute("INSERT INTO calls VALUES (?, ?, ?)", (req["call_id"], m.payload.decode(), state))
        conn.execute("COMMIT")
        cl.publish(f"{ECHO}/call/{req['call_id']}", state, qos=1, retain=True)

    c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-bare-responder",
                    protocol=MQTTProtocolVersion.MQTTv5)
    c.on_socket_open = lambda cl, ud, sock: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.on_message = on
    c.on_subscribe = lambda *args: ready.set()
    c.connect("127.0.0.1", port)
    c.subscribe(f"{ECHO}/call/new", qos=1)
    c.loop_start()
    stop.wait()
    c.disconnect()
    c.loop_stop()


class BareResponder:
    """The floor's process (`bare_responder`), started once its subscription is in place."""

    def __init__(self, port: int, work: Path) -> None:
        ctx = mp.get_context("spawn")
        self.ready, self.stop_ev = ctx.Event(), ctx.Event()
        self.proc = ctx.Process(target=bare_responder, args=(port, str(work / "floor.db"), self.ready, self.stop_ev), daemon=True)
        self.proc.start()
        if not self.ready.wait(30):
            raise RuntimeError("the bare responder did not subscribe within 30 s")

    def stop(self) -> None:
        self.stop_ev.set()
        self.proc.join(10)


def flood_positions(port: int, homes: list[tuple[float, float]], rate: int, seed: int, stop: Any, count: Any) -> None:
    """A child process: retained positions of random units, each a few hundred metres from where it was published (QoS 1,
    as stations publish them) at `rate` a second, in 10 ms slices. The packets are written by `RawPublisher` from a
    byte template: the load generator costs the 2-core machine little, so the figure is the daemon's."""
    rng = random.Random(seed)
    pub = RawPublisher(port, f"bench-flood-{seed}")
    per_tick = max(1, round(rate * 0.01))
    start = time.monotonic()
    n = 0
    while not stop.is_set():
        now = datetime.now(UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.").encode() + b"%03dZ" % (now.microsecond // 1000)
        packets = []
        for _ in range(per_tick):
            i = rng.randrange(len(homes))
            lon, lat = homes[i]
            body = (b'{"unit":"U%05d","lat":%.7f,"lon":%.7f,"time":"%s","received":"%s","speed_kmh":30.0,"course":90.0,'
                    b'"hdop":1.0,"sats":9,"fix":"3d","source":"bench","msg_id":"f%d-%d"}'
                    % (i, lat + rng.gauss(0, 0.002), lon + rng.gauss(0, 0.002), stamp, stamp, seed, n))
            packets.append(publish_packet(f"{NODE}/p{i % 100:03d}/unit/U{i:05d}/position", body, n % 65535 + 1))
            n += 1
        pub.send(packets, 0)
        count.value = n
        ahead = start + n / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    pub.close()


class Flood:
    """Positions flooding the broker from another process while calls are measured."""

    def __init__(self, port: int, homes: list[tuple[float, float]], rate: int, seed: int) -> None:
        ctx = mp.get_context("spawn")
        self.stop_ev = ctx.Event()
        self.count = ctx.Value("q", 0)
        self.proc = ctx.Process(target=flood_positions, args=(port, homes, rate, seed, self.stop_ev, self.count), daemon=True)
        self.rate = rate

    def start(self) -> None:
        """Start, and return once a full second of flood has gone out."""
        self.proc.start()
        while self.count.value < self.rate:
            time.sleep(0.05)
        self.t0, self.n0 = time.monotonic(), self.count.value

    def stop(self) -> float:
        """Stop; the rate achieved while the calls were measured (positions per second)."""
        n, t = self.count.value, time.monotonic()
        self.stop_ev.set()
        self.proc.join(10)
        return (n - self.n0) / max(t - self.t0, 1e-9)


def broker_rtt(port: int, size: int, n: int = 300) -> list[float]:
    got: dict[int, int] = {}
    done = threading.Event()
    rx = client(port, "bench-rtt-rx")

    def on(cl: paho.Client, ud: object, m: paho.MQTTMessage) -> None:
        got[int(m.payload[:8])] = time.perf_counter_ns()

    rx.on_message = on
    rx.subscribe("bench/rtt", qos=1)
    tx = client(port, "bench-rtt-tx")
    time.sleep(0.3)
    sent: dict[int, int] = {}
    for i in range(n):
        sent[i] = time.perf_counter_ns()
        tx.publish("bench/rtt", f"{i:08d}".encode() + b"x" * max(0, size - 8), qos=1)
        time.sleep(0.01)
    time.sleep(0.5)
    done.set()
    for c in (rx, tx):
        c.disconnect()
        c.loop_stop()
    return [(got[i] - sent[i]) / 1e6 for i in sent if i in got]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=50_000)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--seed", type=int, default=110)
    ap.add_argument("--load", type=int, default=10_000, help="positions a second flooding the broker during the loaded "
                    "run (0: idle run only)")
    ap.add_argument("--below-connection", choices=("same", "separate"), default="same",
                    help="the daemon's [mqtt] below_connection: the units below on its own connection or a child's")
    ap.add_argument("--pin", action="store_true", help="during the loaded run, the daemon's process (then the floor's "
                    "responder) on the first CPU and everything else (its child, the broker, the flooder, this bench) on the "
                    "others: the daemon with a core of its own, as on a central server")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    towns = cities(rng)
    with tempfile.TemporaryDirectory(prefix="alkomd-bench-calls-") as tmp:
        work = Path(tmp)
        geo = work / "jurisdictions.geojson"
        jurisdictions(rng, towns, geo)
        with Mosquitto(work) as broker:
            t0 = time.monotonic()
            homes = publish_units(broker.port, rng, towns, a.units)
            published_s = time.monotonic() - t0
            cfg = work / "alkomd.toml"
            cfg.write_text(
                f'[node]\npath = "bench"\ntier = "polda"\n[store]\npath = "{work}/alkomd.db"\n'
                f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\ntls = false\nbelow_connection = "{a.below_connection}"\n'
                f'[jurisdictions]\nfile = "{geo}"\noutside_max_m = 200000\n'
                "[dispatch]\nanswer_timeout_polda_s = 3600\n[recommend]\nmax_fix_age_s = 86400\n"
            )
            d = Daemon(cfg).start()
            ready_s = d.wait_ready(60)
            # The nodes below and the console, as in production: without subscribers the broker answers the daemon's
            # alerts and event replies with 0x10, and in its first minute after a connect the daemon holds and resends
            # them every 2 s (a broker that just restarted has lost its subscribers), which is not what is measured here.
            below = client(broker.port, "bench-below-and-console")
            below.subscribe([(f"{NODE}/+/unit/+/alert", 1), (f"{NODE}/call/+/event/result", 1)])
            watch = StateWatch(broker.port)
            caller = client(broker.port, "bench-caller")
            # Wait until the daemon has taken in the retained units: a probe call gets 5 candidates.
            probe = 0
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                lon, lat = towns[max(range(len(towns)), key=lambda k: towns[k][2])][:2]
                pid = f"probe-{probe}"
                caller.publish(f"{NODE}/call/new", json.dumps({"call_id": pid, "lat": lat, "lon": lon}), qos=1)
                time.sleep(1.0)
                probe += 1
                if watch.candidates.get(pid, 0) >= 5:
                    break
            loaded_s = time.monotonic() - t0 - published_s
            idle_ms, sent, size = send_calls(caller, watch, rng, towns, a.calls, "I")
            bare = BareResponder(broker.port, work)
            floor = StateWatch(broker.port, ECHO)
            floor_ms, _, _ = send_calls(caller, floor, rng, towns, a.calls, "I")
            flood_rate = 0.0
            load_ms: list[float] = []
            floor_load_ms: list[float] = []
            if a.load > 0:
                flood = Flood(broker.port, homes, a.load, rng.randrange(1 << 30))
                flood.start()
                if a.pin:  # the daemon (and the floor's responder, measured after it) on a core of their own
                    cpus = sorted(os.sched_getaffinity(0))
                    pin(d.proc.pid, {cpus[0]})
                    pin(bare.proc.pid, {cpus[0]})
                    for kid in child_pids(d.proc.pid):
                        pin(kid, set(cpus[1:]), children=True)
                    for pid in (broker.proc.pid, flood.proc.pid, os.getpid()):
                        pin(pid, set(cpus[1:]))
                load_ms, more, _ = send_calls(caller, watch, rng, towns, a.calls, "L")
                floor_load_ms, _, _ = send_calls(caller, floor, rng, towns, a.calls, "L")
                flood_rate = flood.stop()
                if a.pin:
                    for pid in (d.proc.pid, broker.proc.pid, bare.proc.pid, os.getpid()):
                        pin(pid, set(cpus), children=pid == d.proc.pid)
                sent.update(more)
            with_cands = sum(1 for k in sent if watch.candidates.get(k, 0) > 0)
            rss = proc_status(d.proc.pid).get("VmRSS", 0) / 1024
            rtt = broker_rtt(broker.port, size)
            bare.stop()
            d.stop()
            below.disconnect()
            below.loop_stop()

    def stats(xs: list[float]) -> dict[str, float]:
        return {"n": len(xs), "median": median(xs), "p90": pct(xs, 90), "p99": pct(xs, 99), "max": max(xs, default=float("nan"))}

    res = {
        "machine": machine(), "units": a.units, "calls": a.calls, "with_candidates": with_cands, "sent": len(sent),
        "publish_units_s": round(published_s, 1), "ready_s": round(ready_s, 2), "units_loaded_s": round(loaded_s, 1),
        "daemon_rss_mb": round(rss, 1), "call_ms": stats(idle_ms), "broker_rtt_ms": stats(rtt),
        "load_positions_per_s": round(flood_rate), "pinned": a.pin, "below_connection": a.below_connection,
        "call_ms_loaded": stats(load_ms) if a.load > 0 else None, "floor_ms": stats(floor_ms),
        "floor_ms_loaded": stats(floor_load_ms) if a.load > 0 else None,
    }
    if a.json:
        print(dump_json(res))
        return 0
    print(f"\n110 call latency: {a.units:,} units over MQTT, 500 synthetic jurisdictions, {a.calls} calls 20 ms apart, idle"
          + (f" then while {flood_rate:,.0f} positions a second flood the broker (goal {a.load:,})" if a.load > 0 else "")
          + f"; below_connection {a.below_connection}"
          + ("; loaded run pinned: the daemon (then the floor's responder) on a core of its own" if a.pin else ""))
    print(f"units published in {published_s:.1f} s; daemon ready in {ready_s:.2f} s; units taken in after {loaded_s:.1f} s; "
          f"daemon RSS {rss:.1f} MB; {with_cands}/{len(sent)} calls with candidates\n")
    rows = []
    for name, xs in (("call/new -> first call state, idle", idle_ms),
                     ("floor: bare responder, one durable commit, idle", floor_ms),
                     *((("call/new -> first call state, loaded", load_ms),
                        ("floor: bare responder, one durable commit, loaded", floor_load_ms)) if a.load > 0 else ()),
                     ("baseline: broker round trip alone", rtt)):
        st = stats(xs)
        rows.append([name, st["n"], *(f"{st[k]:.3f}" for k in ("median", "p90", "p99", "max"))])
    print(table(["path", "n", "median ms", "p90 ms", "p99 ms", "max ms"], rows))
    for name, xs, base in (("idle", idle_ms, floor_ms), *((("loaded", load_ms, floor_load_ms),) if a.load > 0 else ())):
        p99 = pct(xs, 99)
        verdict = "MET" if p99 <= 5.0 else f"MISSED by {p99 - 5.0:.2f} ms"
        lost = "" if len(xs) == a.calls else f"; {a.calls - len(xs)} calls got no state"
        print(f"GOAL call -> call state p99 <= 5 ms, {name}: {p99:.3f} ms -> {verdict} "
              f"({p99 / max(pct(base, 99), 1e-9):.2f}x the floor's p99 {pct(base, 99):.3f} ms, "
              f"median {median(xs) / max(median(base), 1e-9):.2f}x){lost}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

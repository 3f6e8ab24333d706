"""Following the units below at the floor: CPU per position against a bare paho subscriber, and a restart's time to ready.

Setup (as bench_calls.py): 500 synthetic jurisdictions over Indonesia's extent, U units around
150 "cities" under 100 child nodes (`polri110/bench/pNNN/unit/UNNNNN/...`), a private mosquitto,
and a Polda-tier daemon following them. Next to it, in its own process, a bare paho subscriber
(same paho, MQTT 5, the same topics at the same QoS as the daemon subscribes them; its callback
does `json.loads` and counts, nothing else).

Ingest: the statuses of all units are published first (retained, "available"), then N positions
(round robin over the units, retained, payloads as a node publishes them) at `--rate` messages a
second, paced in 10 ms slices (`--rate 0`: as fast as the broker takes them) by a raw-socket
publisher that costs the machine almost nothing. A warm-up round gives every unit its first fix
first (a new index entry, the jurisdiction cache's first look at its cell); the goal is taken over
the rounds after it. Every subscriber takes the flood AT THE SAME TIME; each one's CPU (user+sys
from /proc/PID/stat) is read before and after. Printed: CPU us per message for the daemon
(with `--below-connection separate`, its child process's CPU counted in) and the bare subscriber,
and their ratio (goal <= 1.1); the daemon's split between its event loop thread, its other threads
(paho's network thread, the WAL checkpoint; from /proc/PID/task/TID/stat) and its child; a second
bare subscriber on the daemon's BufferedClient (daemon/mqtt/buffered.py) with the ratio to it: the
daemon's own work above paho's; and messages lost (the daemon's count of positions taken in is
read over its control socket, `alkomctl status`'s `below` section).

Start: the broker now holds 2U retained messages. The daemon is stopped and started again, (a)
on a fresh database (nothing but the broker's retained flood), (b) on its own database (the
snapshot of the units below it keeps). Measured: process start -> the control socket says all U
units are known with a position (ready to recommend from all of them; goal <= 5 s), and -> all
2U retained messages taken in. Baseline in the same run: a fresh bare subscriber's process start
-> its 2U retained messages.

    python bench/bench_ingest.py [--units 50000] [--positions 200000] [--rate 10000] [--repeats 3]
                                 [--qos N] [--skip-start] [--below-connection same|separate] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_calls import around, cities, jurisdictions
from benchlib import (
    Daemon,
    Mosquitto,
    RawPublisher,
    children_cpu_s,
    dump_json,
    machine,
    median,
    proc_cpu_s,
    proc_status,
    publish_packet,
    stop_pid,
    table,
    thread_cpu_s,
)

NODE = "polri110/bench"
TOPICS = (f"{NODE}/+/unit/+/position", f"{NODE}/+/unit/+/status")


# -- the bare subscriber (its own process) ---------------------------------------------------------


def bare_main(port: int, qos: list[int], buffered: bool, topics: list[str]) -> int:
    """A paho subscriber whose callback only decodes the JSON: answers "count" on stdin with its counts. `buffered`: paho
    with the daemon's buffered reads (daemon/mqtt/buffered.py) instead of paho's own."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

    from alkomd.daemon.mqtt.buffered import BufferedClient

    counts = {"position": 0, "status": 0}
    loads = json.loads

    def on_message(c: paho.Client, ud: object, m: paho.MQTTMessage) -> None:
        loads(m.payload)
        counts["position" if m.topic.endswith("/position") else "status"] += 1

    def on_subscribe(*args: object) -> None:
        print("subscribed", flush=True)

    c = (BufferedClient if buffered else paho.Client)(callback_api_version=CallbackAPIVersion.VERSION2,
                                                      client_id=f"bench-bare-{os.getpid()}", protocol=MQTTProtocolVersion.MQTTv5)
    c.on_message = on_message
    c.on_subscribe = on_subscribe
    c.connect("127.0.0.1", port)
    c.subscribe([(t, q) for t, q in zip(topics, qos, strict=True)])
    c.loop_start()
    for line in sys.stdin:
        if line.strip() == "count":
            print(f"{counts['position']} {counts['status']}", flush=True)
    c.loop_stop()
    return 0


class Bare:
    """The bare subscriber process, asked for its counts over a pipe."""

    def __init__(self, port: int, qos: list[int], buffered: bool = False) -> None:
        self.started = time.monotonic()
        cmd = [sys.executable, __file__, "--bare", str(port), ",".join(map(str, qos)), str(int(buffered)), *TOPICS]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "subscribed":
            raise RuntimeError(f"bare subscriber: {line!r}")

    def counts(self) -> tuple[int, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        pos, st = self.proc.stdout.readline().split()
        return int(pos), int(st)

    def stop(self) -> None:
        stop_pid(self.proc)  # type: ignore[arg-type]


# -- the daemon -------------------------------------------------------------------------------------


def below(sock: Path) -> dict[str, Any] | None:
    """The daemon's `below` status section (None while its control socket does not answer)."""
    from alkomd.daemon.control import ControlError, request

    try:
        status = request(sock, "status", timeout_s=5.0)
    except (ControlError, OSError):
        return None
    return status.get("below") if isinstance(status, dict) else None


def write_config(work: Path, port: int, geo: Path, db: Path, below: str = "same") -> Path:
    cfg = work / "alkomd.toml"
    cfg.write_text(
        f'[node]\npath = "bench"\ntier = "polda"\n[store]\npath = "{db}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\ntls = false\nbelow_connection = "{below}"\n'
        f'[jurisdictions]\nfile = "{geo}"\noutside_max_m = 200000\n'
        "[dispatch]\nanswer_timeout_polda_s = 3600\n[recommend]\nmax_fix_age_s = 86400\n"
    )
    return cfg


def wait_for(what: str, fn: Any, timeout: float = 120.0, stall: float = 15.0) -> bool:
    """Poll fn() (a number that grows, or True) until it returns True; give up after `stall` s without progress."""
    deadline = time.monotonic() + timeout
    last, last_change = None, time.monotonic()
    while time.monotonic() < deadline:
        v = fn()
        if v is True:
            return True
        if v != last:
            last, last_change = v, time.monotonic()
        elif time.monotonic() - last_change > stall:
            print(f"  {what}: stalled at {v}", file=sys.stderr)
            return False
        time.sleep(0.05)
    print(f"  {what}: timed out", file=sys.stderr)
    return False


# -- the payloads ------------------------------------------------------------------------------------


def unit_topic(i: int, kind: str) -> str:
    return f"{NODE}/p{i % 100:03d}/unit/U{i:05d}/{kind}"


def status_packets(units: int) -> list[bytes]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    out = []
    for i in range(units):
        body = json.dumps({"unit": f"U{i:05d}", "status": "available", "since": now, "call_id": None, "msg_id": f"s{i}",
                           "type": "car", "callsign": None}, separators=(",", ":")).encode()
        out.append(publish_packet(unit_topic(i, "status"), body, i % 65535 + 1))
    return out


def position_packets(rng: random.Random, towns: list[tuple[float, float, float]], homes: list[tuple[float, float]],
                     n: int, start: int) -> list[bytes]:
    """n positions, round robin over the units from message `start` on; each unit wanders around its home."""
    units = len(homes)
    t = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    out = []
    for k in range(start, start + n):
        i = k % units
        lon, lat = homes[i]
        body = json.dumps({
            "unit": f"U{i:05d}", "lat": round(lat + rng.gauss(0, 0.002), 7), "lon": round(lon + rng.gauss(0, 0.002), 7),
            "time": f"{t}.{k % 1000:03d}Z", "received": f"{t}.{k % 1000:03d}Z", "speed_kmh": round(rng.uniform(0, 60), 1),
            "course": round(rng.uniform(0, 360), 1), "hdop": 0.9, "sats": 9, "fix": "3d", "source": f"d{i % 7}",
            "msg_id": f"m{k}", "alt": 12.5, "accuracy_m": None, "type": "car", "callsign": None, "protocol": None,
        }, separators=(",", ":")).encode()
        out.append(publish_packet(unit_topic(i, "position"), body, k % 65535 + 1))
    return out


# -- the runs ----------------------------------------------------------------------------------------


def ingest(a: argparse.Namespace, work: Path, broker: Mosquitto, geo: Path, rng: random.Random,
           towns: list[tuple[float, float, float]], qos: list[int]) -> tuple[dict[str, Any], Path]:
    db = work / "alkomd.db"
    cfg = write_config(work, broker.port, geo, db, a.below_connection)
    d = Daemon(cfg).start()
    d.wait_ready(60)
    sock = db.parent / "control.sock"
    bare = Bare(broker.port, qos)
    buffered = Bare(broker.port, qos, buffered=True)
    pub = RawPublisher(broker.port)
    homes = [around(rng, towns) for _ in range(a.units)]
    pub.send(status_packets(a.units), 0)
    ok = wait_for("statuses", lambda: ((below(sock) or {}).get("statuses", 0) >= a.units and bare.counts()[1] >= a.units
                                       and buffered.counts()[1] >= a.units) or
                  ((below(sock) or {}).get("statuses", 0), bare.counts()[1], buffered.counts()[1]))
    if not ok:
        raise SystemExit("the statuses never arrived:\n" + d.log_tail())
    rounds = []
    sent = 0
    for r in range(a.repeats + 1):  # round 0 is the warm-up: every unit's first fix (and the jurisdiction cache)
        n = a.units if r == 0 else a.positions
        packets = position_packets(rng, towns, homes, n, sent)
        d0 = (below(sock) or {}).get("positions", 0)
        b0, f0 = bare.counts()[0], buffered.counts()[0]
        cpu_d0, cpu_b0, cpu_f0 = proc_cpu_s(d.proc.pid), proc_cpu_s(bare.proc.pid), proc_cpu_s(buffered.proc.pid)
        kids0 = children_cpu_s(d.proc.pid)
        loop0 = thread_cpu_s(d.proc.pid, d.proc.pid)  # the event loop's thread (the main thread)
        flood_s = pub.send(packets, a.rate)
        sent += len(packets)
        def flooded(d0: int = d0, b0: int = b0, f0: int = f0, n: int = n) -> object:
            got = ((below(sock) or {}).get("positions", 0) - d0, bare.counts()[0] - b0, buffered.counts()[0] - f0)
            return min(got) >= n or got

        wait_for("positions", flooded, stall=10.0)
        cpu_d1, cpu_b1, cpu_f1 = proc_cpu_s(d.proc.pid), proc_cpu_s(bare.proc.pid), proc_cpu_s(buffered.proc.pid)
        kids1 = children_cpu_s(d.proc.pid)
        loop1 = thread_cpu_s(d.proc.pid, d.proc.pid)
        got_d = (below(sock) or {}).get("positions", 0) - d0
        got_b = bare.counts()[0] - b0
        rounds.append({
            "flood_s": round(flood_s, 2), "rate": round(n / flood_s), "warmup": r == 0,
            "daemon_us": (cpu_d1 - cpu_d0 + kids1 - kids0) * 1e6 / n, "bare_us": (cpu_b1 - cpu_b0) * 1e6 / n,
            "child_us": (kids1 - kids0) * 1e6 / n,
            "buffered_us": (cpu_f1 - cpu_f0) * 1e6 / n,
            "daemon_lost": n - got_d, "bare_lost": n - got_b,
            # where the daemon's CPU went: its event loop thread, and every other thread (paho's, the WAL checkpoint)
            "loop_us": (loop1 - loop0) * 1e6 / n,
            "threads_us": ((cpu_d1 - cpu_d0) - (loop1 - loop0)) * 1e6 / n,
        })
        rounds[-1]["ratio"] = rounds[-1]["daemon_us"] / max(rounds[-1]["bare_us"], 1e-9)
        rounds[-1]["ratio_buffered"] = rounds[-1]["daemon_us"] / max(rounds[-1]["buffered_us"], 1e-9)
        print(f"  round {r}: {rounds[-1]}", file=sys.stderr)
    info = below(sock) or {}
    rss = proc_status(d.proc.pid).get("VmRSS", 0) / 1024
    problems = d.problems()
    pub.close()
    bare.stop()
    buffered.stop()
    d.stop()
    steady = [r for r in rounds if not r["warmup"]]
    res = {"rounds": rounds, "daemon_rss_mb": round(rss, 1), "below": info, "problems": problems[:5],
           "ratio_median": median([r["ratio"] for r in steady]),
           "ratio_buffered_median": median([r["ratio_buffered"] for r in steady]),
           "daemon_us_median": median([r["daemon_us"] for r in steady]),
           "bare_us_median": median([r["bare_us"] for r in steady]),
           "lost": sum(r["daemon_lost"] for r in rounds), "bare_lost": sum(r["bare_lost"] for r in rounds)}
    return res, cfg


def start(a: argparse.Namespace, work: Path, broker: Mosquitto, geo: Path, qos: list[int]) -> dict[str, Any]:
    """Time to ready after a restart: on a fresh database, on the daemon's own (the snapshot), and the bare baseline."""
    db = work / "alkomd.db"
    out: dict[str, Any] = {}
    runs: list[tuple[str, Path]] = [("fresh", work / "fresh" / "alkomd.db"), ("snapshot", work / "snap" / "alkomd.db")]
    for name, path in runs:
        path.parent.mkdir(exist_ok=True)
        if name == "snapshot":
            for suffix in ("", "-wal", "-shm"):
                if Path(f"{db}{suffix}").exists():
                    shutil.copy(f"{db}{suffix}", f"{path}{suffix}")
    times: dict[str, list[float]] = {}
    for _ in range(a.start_repeats):
        t0 = time.monotonic()
        bare = Bare(broker.port, qos)
        def retained(bare: Bare = bare) -> object:
            n = sum(bare.counts())
            return n >= 2 * a.units or n

        wait_for("bare retained", retained, stall=10.0)
        times.setdefault("bare_all", []).append(time.monotonic() - t0)
        bare.stop()
        for name, path in runs:
            run_db = path.parent / f"run-{len(times.get(name + '_ready', []))}.db"
            for suffix in ("", "-wal", "-shm"):
                if Path(f"{path}{suffix}").exists():
                    shutil.copy(f"{path}{suffix}", f"{run_db}{suffix}")
            cfg = write_config(path.parent, broker.port, geo, run_db, a.below_connection)
            sock = run_db.parent / "control.sock"
            d = Daemon(cfg).start()
            t0 = time.monotonic()
            ready: float | None = None
            all_in: float | None = None
            deadline = t0 + 120
            while time.monotonic() < deadline and (ready is None or all_in is None):
                b = below(sock)
                if b is not None:
                    if ready is None and b.get("located", 0) >= a.units:
                        ready = time.monotonic() - t0
                    if all_in is None and b.get("positions", 0) + b.get("statuses", 0) >= 2 * a.units:
                        all_in = time.monotonic() - t0
                time.sleep(0.02)
            d.stop()
            times.setdefault(name + "_ready", []).append(float("nan") if ready is None else ready)
            times.setdefault(name + "_all", []).append(float("nan") if all_in is None else all_in)
            print(f"  start {name}: ready {ready}, all retained {all_in}", file=sys.stderr)
    for k, v in times.items():
        out[k] = median(v)
        out[k + "_runs"] = [round(x, 2) for x in v]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=50_000)
    ap.add_argument("--positions", type=int, default=200_000, help="positions per round")
    ap.add_argument("--rate", type=float, default=10_000, help="positions a second (0: as fast as possible)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--start-repeats", type=int, default=3)
    ap.add_argument("--qos", type=int, choices=(0, 1), default=None, help="force the bare subscriber's QoS (default: the daemon's)")
    ap.add_argument("--skip-start", action="store_true")
    ap.add_argument("--seed", type=int, default=110)
    ap.add_argument("--below-connection", choices=("same", "separate"), default="same",
                    help="the daemon's [mqtt] below_connection (separate: its child's CPU counts as the daemon's)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--bare", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.bare:
        return bare_main(int(a.bare[0]), [int(q) for q in a.bare[1].split(",")], a.bare[2] == "1", a.bare[3:])
    from alkomd.daemon.mqtt import contract

    qos = [a.qos if a.qos is not None else contract.subscription_qos(t) for t in TOPICS]
    rng = random.Random(a.seed)
    towns = cities(rng)
    with tempfile.TemporaryDirectory(prefix="alkomd-bench-ingest-") as tmp:
        work = Path(tmp)
        geo = work / "jurisdictions.geojson"
        jurisdictions(rng, towns, geo)
        with Mosquitto(work) as broker:
            res, _ = ingest(a, work, broker, geo, rng, towns, qos)
            res["start"] = None if a.skip_start else start(a, work, broker, geo, qos)
    res.update({"machine": machine(), "units": a.units, "positions": a.positions, "rate": a.rate, "repeats": a.repeats,
                "qos": dict(zip(TOPICS, qos, strict=True))})
    if a.json:
        print(dump_json(res))
        return 0
    print(f"\nFollowing units below: {a.units:,} units, {a.positions:,} positions a round at "
          f"{'full speed' if a.rate <= 0 else f'{a.rate:,.0f}/s'}, {a.repeats} rounds; QoS position/status {qos[0]}/{qos[1]}; "
          f"daemon RSS {res['daemon_rss_mb']} MB\n")
    rows = [["warm-up" if r["warmup"] else k, r["flood_s"], f"{r['rate']:,}", f"{r['daemon_us']:.2f}", f"{r['loop_us']:.2f}",
             f"{r['threads_us']:.2f}", f"{r['child_us']:.2f}", f"{r['bare_us']:.2f}", f"{r['ratio']:.2f}", f"{r['buffered_us']:.2f}",
             f"{r['ratio_buffered']:.2f}", r["daemon_lost"], r["bare_lost"]] for k, r in enumerate(res["rounds"])]
    print(table(["round", "flood s", "msg/s", "daemon CPU us/msg", "of it: loop thread", "other threads (paho)", "child",
                 "bare CPU us/msg", "ratio", "bare, buffered reads", "ratio to it", "daemon lost", "bare lost"], rows))
    ratio = res["ratio_median"]
    print("\nThe warm-up round gives every unit its first fix (a new index entry, the jurisdiction cache's first look at its"
          "\ncell); the goal is taken over the rounds after it. 'bare, buffered reads': the same bare subscriber on the"
          "\ndaemon's BufferedClient; its ratio is the daemon's own work above paho's message handling.")
    print(f"\nGOAL daemon CPU per position <= 1.1x a bare paho subscriber's: {ratio:.2f}x -> "
          f"{'MET' if ratio <= 1.1 else 'MISSED'} (to the bare subscriber with buffered reads: "
          f"{res['ratio_buffered_median']:.2f}x); lost {res['lost']} (bare: {res['bare_lost']}) -> "
          f"{'MET' if res['lost'] == 0 else 'MISSED'}")
    s = res["start"]
    if s:
        print(f"\nRestart with {a.units:,} units retained ({2 * a.units:,} retained messages), median of {a.start_repeats}:\n")
        rows2 = [
            ["baseline: bare subscriber, process start -> all retained", "-", f"{s['bare_all']:.2f}"],
            ["daemon on a fresh database (broker's retained flood only)", f"{s['fresh_ready']:.2f}", f"{s['fresh_all']:.2f}"],
            ["daemon on its own database (snapshot, then the flood)", f"{s['snapshot_ready']:.2f}", f"{s['snapshot_all']:.2f}"],
        ]
        print(table(["start", "ready with all units s", "all retained in s"], rows2))
        ready = s["snapshot_ready"]
        print(f"\nGOAL restarted Polda ready to recommend from all {a.units:,} units within 5 s: {ready:.2f} s -> "
              f"{'MET' if ready <= 5.0 else 'MISSED'} (fresh database: {s['fresh_ready']:.2f} s; bare subscriber "
              f"{s['bare_all']:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""End-to-end latency of the daemon: NMEA epoch written to a serial port -> position on MQTT.

What: the time from the moment the last byte of a receiver epoch (RMC, VTG, GGA, GSA, GSV x3,
GLL; ~500 bytes) has been written to the daemon's serial port until a local MQTT subscriber
holds the unit's position message for that epoch. In between: pty -> pyserial chunked read ->
NMEA decoder (emits on the learnt cycle-ending sentence, GLL) -> asyncio loop -> SQLite commit
of position + outbox row (WAL; synchronous FULL or NORMAL) -> paho publish QoS 1 -> mosquitto
-> paho subscriber (MQTT 5, QoS 1). Goals: median <= 1 ms, p99 <= 3 ms.

How:
- a private mosquitto on a free loopback port (never 1883), stopped by PID at the end;
- per round: a fresh pty pair (os.openpty, slave raw) behind a symlink, a fresh temp config
  (node gorontalo/bench, one [[device]] nmea on the symlink, one [[unit]] B-01) and database,
  `alkomd --config FILE` as a subprocess; a paho 2.x subscriber on
  polri110/gorontalo/bench/unit/B-01/position;
- each epoch has a new, increasing UTC time and goes out in one os.write; the bench records
  time.perf_counter_ns() right after the write returns and matches each received position by
  its "time" field (latency = receive time - write time). Epochs are 100-200 ms apart (seeded;
  `--gap-ms 5,10` gives a "hot" diagnostic run: on this VM code that ran 10+ ms ago runs cold,
  often 10x slower, so the idle-paced default is the realistic case and the hot run shows what
  the code path itself costs).
  The first 5 epochs of each round are warm-up (the decoder emits a fix immediately only once
  it has learnt the receiver's cycle-ending sentence, after 2 epochs) and are not counted;
- baselines, interleaved with the daemon's epochs (after each measured epoch's position has
  arrived, in the idle gap before the next one): the broker round trip alone (paho publish
  QoS 1 -> on_message of the same subscriber client, payload as big as a position message),
  and pty write -> pyserial read latency alone (a separate reader process reading the same
  epoch bytes with chunked `read(in_waiting or 1)`, as the daemon's driver does);
- the two store configurations, synchronous = "full" (the default) and "normal", run in
  alternating rounds (default 5 rounds each, N = 300 measured epochs per configuration).

Reported per configuration: median, p90, p99, max of the pooled samples, the median of the
per-round medians, lost messages, and the ratio of the daemon's median to the baselines'
medians per round (median of the per-round ratios).

    /work/venv/bin/python bench/bench_e2e.py [--epochs 300] [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from alkomd.daemon.mqtt import contract
from alkomd.daemon.records import Fix, UnitPosition, utc_iso
from alkomd.drivers.nmea_writer import EpochSpec, epoch

NODE = "gorontalo/bench"
UNIT = "B-01"
DEVICE = "gps-b01"
TOPIC = f"polri110/{NODE}/unit/{UNIT}/position"
PROBE_TOPIC = "bench/probe/rtt"
WARMUP = 5
GOAL_MEDIAN_MS = 1.0
GOAL_P99_MS = 3.0
ARRIVAL_TIMEOUT_S = 2.0

READER = r"""
import sys, time, serial
path, size = sys.argv[1], int(sys.argv[2])
s = serial.Serial(path, 115200, timeout=0.25)
print("READY", flush=True)
have = 0
while True:
    chunk = s.read(s.in_waiting or 1)
    if chunk:
        have += len(chunk)
        while have >= size:
            have -= size
            print(time.perf_counter_ns(), flush=True)
"""


class Subscriber:
    """One paho client subscribed to the position topic and the probe topic (QoS 1)."""

    def __init__(self, port: int) -> None:
        self.received: dict[str, int] = {}  # position "time" -> perf_counter_ns at on_message
        self.stamped: dict[str, str] = {}  # position "time" -> its "received" field (daemon's read time)
        self.want: str | None = None
        self.arrived = threading.Event()
        self.probe_ns = 0
        self.probe_seq = -1
        self.probe_want = -2
        self.probe = threading.Event()
        self.payload_sizes: list[int] = []
        self._subscribed = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{os.getpid()}", protocol=MQTTProtocolVersion.MQTTv5)
        c.on_message = self._on_message
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.connect("127.0.0.1", port)
        c.loop_start()
        c.subscribe([(TOPIC, 1), (PROBE_TOPIC, 1)])
        if not self._subscribed.wait(5):
            raise RuntimeError("subscriber: no SUBACK")
        self.client = c

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        now = time.perf_counter_ns()
        if msg.topic == PROBE_TOPIC:
            seq = int(msg.payload[:12])
            if seq == self.probe_want:
                self.probe_ns = now
                self.probe.set()
            return
        if not msg.payload:
            return
        obj = json.loads(msg.payload)
        t = obj["time"]
        self.received.setdefault(t, now)
        self.stamped.setdefault(t, obj.get("received", ""))
        self.payload_sizes.append(len(msg.payload))
        if t == self.want:
            self.arrived.set()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class ProbePublisher:
    def __init__(self, port: int, size: int) -> None:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}", protocol=MQTTProtocolVersion.MQTTv5)
        ok = threading.Event()
        c.on_connect = lambda *a: ok.set()
        c.connect("127.0.0.1", port)
        c.loop_start()
        if not ok.wait(5):
            raise RuntimeError("probe publisher: not connected")
        self.client = c
        self.size = size
        self.seq = 0

    def round_trip(self, sub: Subscriber) -> float | None:
        """One QoS 1 publish -> on_message on the subscriber, in ms (None on timeout)."""
        self.seq += 1
        payload = f"{self.seq:012d}".encode() + b"x" * (self.size - 12)
        sub.probe.clear()
        sub.probe_want = self.seq
        t0 = time.perf_counter_ns()
        self.client.publish(PROBE_TOPIC, payload, qos=1)
        if not sub.probe.wait(1.0):
            return None
        return (sub.probe_ns - t0) / 1e6

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class PtyProbe:
    """pty write -> pyserial chunked read in a separate process (the daemon's situation)."""

    def __init__(self, workdir: Path, payload: bytes) -> None:
        self.pty = bl.Pty.create(workdir / "probe-tty")
        self.payload = payload
        self.proc = subprocess.Popen(
            [sys.executable, "-c", READER, str(self.pty.link), str(len(payload))],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"READY":
            raise RuntimeError("pty probe reader did not start")
        self.writes: list[int] = []
        self.reads: list[int] = []
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            self.reads.append(int(line))

    def shot(self) -> None:
        write_all(self.pty.master, self.payload)
        self.writes.append(time.perf_counter_ns())

    def latencies_ms(self) -> list[float]:
        time.sleep(0.05)
        n = min(len(self.writes), len(self.reads))
        return [(r - w) / 1e6 for w, r in zip(self.writes[:n], self.reads[:n], strict=True)]

    def stop(self) -> None:
        bl.stop_pid(self.proc)
        self.pty.close()


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def make_epochs(base: datetime, n: int, rng: random.Random) -> list[tuple[str, bytes]]:
    """n consecutive 1 Hz epochs of a car in Gorontalo: (utc_iso time, bytes)."""
    lat, lon, course, speed = 0.5435, 123.0595, 40.0, 30.0
    out = []
    for i in range(n):
        t = base + timedelta(seconds=i)
        course = (course + rng.gauss(0, 5)) % 360
        speed = min(60.0, max(5.0, speed + rng.gauss(0, 2)))
        lat += speed / 3.6 / 111_320 * 0.7
        lon += speed / 3.6 / 111_320 * 0.7
        spec = EpochSpec(time=t, lat=lat, lon=lon, alt=22.0, speed_kmh=speed, course=course, hdop=0.9, sats=10)
        out.append((utc_iso(t), epoch(spec)))
    return out


def run_round(
    sync: str, n: int, round_no: int, broker_port: int, sub: Subscriber, pub: ProbePublisher,
    probe: PtyProbe, rng: random.Random, gap_s: tuple[float, float], workdir: Path, base: datetime,
) -> dict[str, object]:
    rdir = workdir / f"round{round_no:02d}-{sync}"
    rdir.mkdir()
    pty = bl.Pty.create(rdir / "gps0")
    cfg = bl.daemon_config(rdir / "alkomd.toml", rdir / "alkomd.db", broker_port, [(DEVICE, pty.link)], [(UNIT, DEVICE)], sync)
    daemon = bl.Daemon(cfg).start()
    epochs = make_epochs(base, n + WARMUP, rng)
    writes: dict[str, int] = {}
    walls: dict[str, int] = {}
    lat: list[float] = []
    read_part: list[float] = []
    rtt: list[float] = []
    lost = 0
    probe_from = len(probe.writes)
    try:
        ready_s = daemon.wait_ready()
        if not daemon.wait_line(r"mqtt: connected", 10) or not daemon.wait_line(rf"{DEVICE}: opened", 10):
            raise RuntimeError("daemon not connected/opened:\n" + daemon.log_tail())
        time.sleep(0.3)  # initial state/status messages
        for i, (key, data) in enumerate(epochs):
            gap = rng.uniform(*gap_s)
            t_start = time.perf_counter()
            sub.arrived.clear()
            sub.want = key
            write_all(pty.master, data)
            t_w = time.perf_counter_ns()
            walls[key] = time.time_ns()
            writes[key] = t_w
            got = sub.arrived.wait(ARRIVAL_TIMEOUT_S if i >= 2 else gap)
            if i < WARMUP:
                time.sleep(max(0.0, gap - (time.perf_counter() - t_start)))
                continue
            if got:
                lat.append((sub.received[key] - t_w) / 1e6)
                stamp = sub.stamped.get(key, "")
                if stamp:  # ms resolution, truncated: +0.5 ms makes the mean unbiased
                    rx = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
                    read_part.append(rx.timestamp() * 1e3 + 0.5 - walls[key] / 1e6)
            else:
                lost += 1
            # baselines in the idle gap, after the daemon's own work for this epoch settled
            time.sleep(min(0.02, gap_s[0] / 5))
            r = pub.round_trip(sub)
            if r is not None:
                rtt.append(r)
            probe.shot()
            time.sleep(max(0.0, gap - (time.perf_counter() - t_start)))
        time.sleep(0.2)
    finally:
        rc = daemon.stop()
        pty.close()
    late = [k for k, _ in epochs[WARMUP:] if k in sub.received and (sub.received[k] - writes[k]) / 1e6 > ARRIVAL_TIMEOUT_S * 1000]
    pty_lat = probe.latencies_ms()[probe_from:]
    return {
        "sync": sync,
        "round": round_no,
        "ready_s": ready_s,
        "latency_ms": lat,
        "read_part_ms": read_part,
        "broker_rtt_ms": rtt,
        "pty_ms": pty_lat,
        "lost": lost,
        "late": len(late),
        "daemon_exit": rc,
        "daemon_problems": daemon.problems(),
    }


def summary(xs: list[float]) -> dict[str, float]:
    return {"n": len(xs), "median": bl.median(xs), "p90": bl.pct(xs, 90), "p99": bl.pct(xs, 99), "max": max(xs) if xs else float("nan")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=300, help="measured epochs per configuration (default %(default)s)")
    p.add_argument("--rounds", type=int, default=5, help="daemon runs per configuration (default %(default)s)")
    p.add_argument("--sync", default="full,normal", help="store configurations, comma-separated")
    p.add_argument("--seed", type=int, default=110)
    p.add_argument("--gap-ms", default="100,200", help="pause between epochs, uniform in LO,HI ms (default %(default)s)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    syncs = [s.strip() for s in a.sync.split(",") if s.strip()]
    per_round = max(1, round(a.epochs / a.rounds))
    lo, hi = (float(x) / 1000 for x in a.gap_ms.split(","))
    rng = random.Random(a.seed)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    base0 = now - timedelta(hours=6)
    log = (lambda *x: None) if a.json else (lambda *x: print(*x, file=sys.stderr, flush=True))

    # one position payload, for the probe size
    fix = Fix(DEVICE, now, 0.5435, 123.0595, 3, now, 0.0, 22.0, 30.0, 40.0, 0.9, 10)
    size = len(contract.position_message(f"polri110/{NODE}", UnitPosition(UNIT, fix)).payload.encode())
    probe_bytes = make_epochs(base0, 1, random.Random(0))[0][1]

    rounds: list[dict[str, object]] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="alkomd-bench-e2e-", dir="/tmp") as tmp:
        workdir = Path(tmp)
        with bl.Mosquitto(workdir) as mosq:
            sub = Subscriber(mosq.port)
            pub = ProbePublisher(mosq.port, size)
            probe = PtyProbe(workdir, probe_bytes)
            try:
                k = 0
                for r in range(a.rounds):
                    order = syncs if r % 2 == 0 else syncs[::-1]
                    for sync in order:
                        base = base0 + timedelta(seconds=1000 * k)
                        res = run_round(sync, per_round, k, mosq.port, sub, pub, probe, rng, (lo, hi), workdir, base)
                        k += 1
                        rounds.append(res)
                        lm = res["latency_ms"]
                        log(
                            f"  round {k} ({sync}): n={len(lm)} median {bl.median(lm):.3f} ms, "
                            f"p99 {bl.pct(lm, 99):.3f} ms, lost {res['lost']}, broker rtt {bl.median(res['broker_rtt_ms']):.3f} ms, "
                            f"pty {bl.median(res['pty_ms']):.3f} ms"
                        )
            finally:
                probe.stop()
                pub.stop()
                sub.stop()
    elapsed = time.perf_counter() - t0

    configs: dict[str, dict[str, object]] = {}
    for sync in syncs:
        rs = [r for r in rounds if r["sync"] == sync]
        lat = [x for r in rs for x in r["latency_ms"]]
        rtt = [x for r in rs for x in r["broker_rtt_ms"]]
        ptyl = [x for r in rs for x in r["pty_ms"]]
        round_medians = [bl.median(r["latency_ms"]) for r in rs]
        ratio_broker = [bl.median(r["latency_ms"]) / bl.median(r["broker_rtt_ms"]) for r in rs]
        read_part = [x for r in rs for x in r["read_part_ms"]]
        ratio_sum = [bl.median(r["latency_ms"]) / (bl.median(r["broker_rtt_ms"]) + bl.median(r["pty_ms"])) for r in rs]
        s = summary(lat)
        configs[sync] = {
            "daemon_ms": s,
            "median_of_round_medians_ms": bl.median(round_medians),
            "split_mean_ms": {
                "write_to_daemon_read": sum(read_part) / len(read_part) if read_part else float("nan"),
                "daemon_read_to_subscriber": (sum(lat) / len(lat) - sum(read_part) / len(read_part)) if read_part and lat else float("nan"),
                "e2e_mean": sum(lat) / len(lat) if lat else float("nan"),
                "note": "from the payload's `received` stamp (wall clock, ms resolution; means only)",
            },
            "round_medians_ms": round_medians,
            "broker_rtt_ms": summary(rtt),
            "pty_read_ms": summary(ptyl),
            "ratio_daemon_to_broker_rtt": bl.median(ratio_broker),
            "ratio_daemon_to_broker_plus_pty": bl.median(ratio_sum),
            "lost": sum(int(r["lost"]) for r in rs),
            "ready_s_median": bl.median([float(r["ready_s"]) for r in rs]),
            "goal_median_met": s["median"] <= GOAL_MEDIAN_MS,
            "goal_p99_met": s["p99"] <= GOAL_P99_MS,
            "daemon_problems": sorted({x for r in rs for x in r["daemon_problems"]})[:10],
        }
    sizes = sorted(set(sub.payload_sizes))
    report = {
        "bench": "e2e",
        "machine": bl.machine(),
        "epochs_per_config": per_round * a.rounds,
        "rounds_per_config": a.rounds,
        "warmup_per_round": WARMUP,
        "gap_ms": a.gap_ms,
        "probe_payload_bytes": size,
        "position_payload_bytes": [sizes[0], sizes[-1]] if sizes else None,
        "elapsed_s": round(elapsed, 1),
        "configs": configs,
        "goals": {"median_ms": GOAL_MEDIAN_MS, "p99_ms": GOAL_P99_MS},
        "rounds": [
            {k: v for k, v in r.items() if k not in ("latency_ms", "broker_rtt_ms", "pty_ms", "read_part_ms")}
            | {"median_ms": bl.median(r["latency_ms"]), "p99_ms": bl.pct(r["latency_ms"], 99)}
            for r in rounds
        ],
    }
    if a.json:
        print(bl.dump_json(report))
        return 0

    print(f"\nEnd-to-end latency: last byte of an epoch on the pty -> position on {TOPIC}")
    print(f"{per_round * a.rounds} measured epochs per configuration in {a.rounds} daemon runs each (+{WARMUP} warm-up per run), "
          f"epochs {a.gap_ms.replace(',', '-')} ms apart; {elapsed:.0f} s total; "
          f"position payload {report['position_payload_bytes']} bytes\n")
    rows = []
    for sync, c in configs.items():
        for label, key in (("alkomd end to end", "daemon_ms"), ("baseline: broker RTT (paho QoS1 -> on_message)", "broker_rtt_ms"),
                           ("baseline: pty write -> pyserial chunked read", "pty_read_ms")):
            s = c[key]
            rows.append((f"[{sync}] {label}", s["n"], f"{s['median']:.3f}", f"{s['p90']:.3f}", f"{s['p99']:.3f}", f"{s['max']:.3f}"))
    print(bl.table(("synchronous / path", "n", "median ms", "p90 ms", "p99 ms", "max ms"), rows))
    print()
    rows = []
    for sync, c in configs.items():
        rows.append((
            sync, f"{c['median_of_round_medians_ms']:.3f}", " ".join(f"{x:.2f}" for x in c["round_medians_ms"]),
            f"{c['ratio_daemon_to_broker_rtt']:.2f}", f"{c['ratio_daemon_to_broker_plus_pty']:.2f}", c["lost"],
            f"{c['ready_s_median']:.2f}",
        ))
    heads = ("synchronous", "median of round medians ms", "round medians", "x broker RTT", "x (broker+pty)", "lost", "ready s")
    print(bl.table(heads, rows))
    print()
    rows = []
    for sync, c in configs.items():
        sp = c["split_mean_ms"]
        rows.append((sync, f"{sp['e2e_mean']:.3f}", f"{sp['write_to_daemon_read']:.3f}", f"{sp['daemon_read_to_subscriber']:.3f}"))
    print(bl.table(("synchronous", "mean e2e ms", "write -> daemon read ms", "daemon read -> subscriber ms"), rows))
    print("  (split from the position's `received` stamp: wall clock at ms resolution, so means only)\n")
    for sync, c in configs.items():
        s = c["daemon_ms"]
        m_ok = "MET" if c["goal_median_met"] else f"MISSED by {s['median'] - GOAL_MEDIAN_MS:.3f} ms ({s['median'] / GOAL_MEDIAN_MS:.2f}x)"
        p_ok = "MET" if c["goal_p99_met"] else f"MISSED by {s['p99'] - GOAL_P99_MS:.3f} ms ({s['p99'] / GOAL_P99_MS:.2f}x)"
        print(f"GOAL [{sync}] median <= {GOAL_MEDIAN_MS} ms: {s['median']:.3f} ms -> {m_ok}")
        print(f"GOAL [{sync}] p99 <= {GOAL_P99_MS} ms: {s['p99']:.3f} ms -> {p_ok}")
        if c["daemon_problems"]:
            print(f"  daemon log problems: {c['daemon_problems']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

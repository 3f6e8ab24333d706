"""nmea_udp driver: CPU per datagram and loss with many modems, against decoding the same bytes in-process.

A sender process (a separate interpreter, so it does not share the GIL) sends one epoch per
datagram (RMC, VTG, GGA, GSA, GSV, GLL: about 470 bytes) from `--senders` loopback addresses
(127.0.x.y, one per modem), paced at each `--rates` datagrams per second for `--seconds`. The
driver runs in this process, as in the daemon; its CPU time is this process's CPU time while the
sender runs (the driver's thread is the only busy one). Baseline, measured in the same repeat:
the same datagrams fed to one `Decoder` per sender directly (no socket, no bookkeeping).

    /work/venv/bin/python bench/bench_udp.py [--senders 400] [--rates 500,2000,5000] [--seconds 3] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

from benchlib import machine, median, table

from alkomd.daemon.records import Record, utc_now
from alkomd.drivers.nmea import Decoder
from alkomd.drivers.nmea_udp import NmeaUdp, NmeaUdpOptions
from alkomd.drivers.nmea_writer import EpochSpec, epoch

GOAL_CARS = 500  # a large Polres fleet, each modem at 1 Hz
GOAL_CORE_SHARE = 0.10  # ... should take under a tenth of one core

SENDER = r"""
import socket, sys, time
from datetime import UTC, datetime, timedelta
from alkomd.drivers.nmea_writer import EpochSpec, epoch
port, senders, rate, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
socks = []
for i in range(senders):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((f"127.0.{1 + i // 250}.{1 + i % 250}", 0))
    socks.append(s)
t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
total = int(rate * seconds)
print("ready", flush=True)
sys.stdin.readline()
start = time.perf_counter()
for n in range(total):
    i = n % senders
    t = t0 + timedelta(seconds=n // senders)
    socks[i].sendto(epoch(EpochSpec(t, 0.5 + i * 1e-4, 123.0, speed_kmh=30)), ("127.0.0.1", port))
    ahead = start + (n + 1) / rate - time.perf_counter()
    if ahead > 0:
        time.sleep(ahead)
print(total, time.perf_counter() - start, flush=True)
"""


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def baseline_us(senders: int, n: int) -> float:
    """Microseconds per datagram to decode the same epochs with one Decoder per sender, in-process."""
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    grams = [(n_ % senders, epoch(EpochSpec(t0 + timedelta(seconds=n_ // senders), 0.5, 123.0, speed_kmh=30))) for n_ in range(n)]
    decoders = [Decoder("b") for _ in range(senders)]
    now, mono = utc_now(), time.monotonic()
    start = time.process_time()
    for i, data in grams:
        decoders[i].feed(data, now, mono)
    return (time.process_time() - start) / n * 1e6


def idle_ms_per_s(seconds: float) -> float:
    """CPU milliseconds per second of a bound driver that receives nothing (its 0.1 s tick)."""
    drv = NmeaUdp("idle", NmeaUdpOptions(port=free_udp_port(), bind="127.0.0.1"))
    stop = threading.Event()
    th = threading.Thread(target=drv.run, args=(stop, lambda r: None), daemon=True)
    th.start()
    time.sleep(0.3)
    c0 = cpu_s()
    time.sleep(seconds)
    c1 = cpu_s()
    stop.set()
    th.join(5)
    return (c1 - c0) / seconds * 1000


def one_run(senders: int, rate: float, seconds: float) -> dict[str, float]:
    port = free_udp_port()
    records: list[Record] = []
    drv = NmeaUdp("bench", NmeaUdpOptions(port=port, bind="127.0.0.1", max_senders=max(senders, 1)))
    stop = threading.Event()
    th = threading.Thread(target=drv.run, args=(stop, records.append), daemon=True)
    th.start()
    while not records:  # the first status: bound
        time.sleep(0.01)
    proc = subprocess.Popen(
        [sys.executable, "-c", SENDER, str(port), str(senders), str(rate), str(seconds)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "ready"
    c0 = cpu_s()
    proc.stdin.write("go\n")
    proc.stdin.flush()
    sent_s, elapsed_s = proc.stdout.readline().split()
    time.sleep(0.5)  # the last datagrams, and the quiet-epoch close
    c1 = cpu_s()
    proc.wait(10)
    stop.set()
    th.join(5)
    sent = int(sent_s)
    got = drv.datagrams
    return {
        "sent": sent,
        "received": got,
        "loss_pct": 100.0 * (sent - got) / sent,
        "achieved_rate": sent / float(elapsed_s),
        "cpu_us_per_datagram": (c1 - c0) / max(got, 1) * 1e6,
        "fixes": drv.counters().fixes,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--senders", type=int, default=400)
    p.add_argument("--rates", default="500,2000,5000", help="datagrams per second, comma-separated")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    rates = [float(r) for r in a.rates.split(",")]
    runs: dict[float, list[dict[str, float]]] = {r: [] for r in rates}
    base: list[float] = []
    idle: list[float] = []
    for _ in range(a.repeats):  # interleaved: baseline, idle, then every rate, per repeat
        base.append(baseline_us(a.senders, 4000))
        idle.append(idle_ms_per_s(a.seconds))
        for r in rates:
            runs[r].append(one_run(a.senders, r, a.seconds))
    rows = []
    summary = []
    b = median(base)
    for r in rates:
        rs = runs[r]
        cpu = median([x["cpu_us_per_datagram"] for x in rs])
        ratio = median([x["cpu_us_per_datagram"] / bb for x, bb in zip(rs, base, strict=True)])
        s = {
            "rate": r,
            "achieved_rate": median([x["achieved_rate"] for x in rs]),
            "loss_pct": median([x["loss_pct"] for x in rs]),
            "loss_pct_max": max(x["loss_pct"] for x in rs),
            "cpu_us_per_datagram": cpu,
            "ratio_to_decode": ratio,
            "core_share_at_goal": cpu * GOAL_CARS / 1e6,
        }
        summary.append(s)
        rows.append(
            [f"{r:,.0f}", f"{s['achieved_rate']:,.0f}", f"{s['loss_pct']:.2f} (max {s['loss_pct_max']:.2f})", f"{cpu:.0f}", f"{ratio:.2f}"]
        )
    if a.json:
        print(
            json.dumps(
                {"machine": machine(), "senders": a.senders, "baseline_decode_us": b, "idle_cpu_ms_per_s": median(idle), "runs": summary},
                indent=1,
            )
        )
        return
    print(f"nmea_udp: {a.senders} senders, one epoch (~470 bytes) per datagram, {a.repeats} repeats, medians")
    print(f"baseline: Decoder.feed of the same datagrams in-process: {b:.0f} us per datagram")
    print(f"idle: the bound driver with no traffic takes {median(idle):.1f} ms CPU per second")
    print(table(["rate /s", "achieved /s", "loss %", "CPU us/datagram", "x decode"], rows))
    worst = max(s["core_share_at_goal"] for s in summary)
    ok = "MET" if worst <= GOAL_CORE_SHARE else f"MISSED ({worst / GOAL_CORE_SHARE:.2f}x)"
    print(f"GOAL {GOAL_CARS} modems at 1 Hz take <= {GOAL_CORE_SHARE:.0%} of a core: {worst:.1%} at the costliest rate -> {ok}")


if __name__ == "__main__":
    main()

"""lrrp driver: CPU per report against the decoder alone, and a fleet of MOTOTRBO radios reporting every 30 s through the simulator.

A simulated control station (`alkomd.drivers.sim_mototrbo`, in its own interpreter so it does not
share the GIL) puts `--radios` radios on loopback addresses (127.x.y.z); they register with ARS,
the driver (in this process, as in the daemon) acknowledges them and asks each for a report every
`report_interval_s`, and they answer with real LRRP reports along the demo's routes. Two runs:

- burst: the radios report every 1 s; the driver's CPU per report (this process's CPU over a
  window, divided by the fixes in it) against, in the same repeat, the decoder alone in a hot loop
  (`lrrp.decode` + `position()` + the gates, on the same report bytes, no socket);
- fleet: the radios report every `--interval` s (30); the driver's share of one core over windows
  of one interval each (every radio reports once per window).

    /work/venv/bin/python bench/bench_lrrp.py [--radios 1000] [--interval 30] [--windows 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

from benchlib import machine, median, table

from alkomd.drivers import lrrp
from alkomd.drivers.location_gate import to_records
from alkomd.drivers.lrrp import LocationReport, MessageType, Shape
from alkomd.drivers.lrrp_build import encode_report
from alkomd.drivers.lrrp_driver import LrrpDriver, LrrpOptions

GOAL_RADIOS = 1000
GOAL_INTERVAL_S = 30
GOAL_CORE_SHARE = 0.05

STATION = r"""
import sys
from alkomd.drivers.sim_mototrbo import MototrboSim, SimRadio
from alkomd.drivers.sim_routes import ROUTES
lrrp_port, ars_port, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
routes = sorted(ROUTES)
radios = [SimRadio(3000 + i, routes[i % len(routes)], 5.0 + i % 60, float(i)) for i in range(n)]
sim = MototrboSim(radios, lrrp_port=lrrp_port, ars_port=ars_port, register_retry_s=2.0)
print(sim.radio_port, flush=True)
sim.start()
sys.stdin.readline()
sent = sim.reports_sent
sim.close()
print(sent, flush=True)
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


def decode_us(n: int = 5000) -> float:
    """Microseconds per report to decode a triggered report and pass it through the gates, in a hot loop."""
    now = datetime.now(UTC).replace(microsecond=0)
    data = encode_report(
        LocationReport(MessageType.TRIGGERED_REPORT, b"T3001", shape=Shape.CIRCLE_2D, lat=0.54, lon=123.06, radius_m=5.0, time=now,
                       speed_kmh=40.0, course=90.0)
    )
    mono = time.monotonic()
    start = time.process_time()
    for _ in range(n):
        msg = lrrp.decode(data)
        assert isinstance(msg, LocationReport)
        to_records(msg.position(now), "b", "3001", now, mono)
    return (time.process_time() - start) / n * 1e6


class Fleet:
    """The driver here and the simulated station in a child process, radios registered and reporting."""

    def __init__(self, radios: int, interval_s: int) -> None:
        lrrp_port, ars_port = free_udp_port(), free_udp_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", STATION, str(lrrp_port), str(ars_port), str(radios)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        radio_port = int(self.proc.stdout.readline())
        opts = LrrpOptions(bind="127.0.0.1", lrrp_port=lrrp_port, ars_port=ars_port, radio_network=127, radio_lrrp_port=radio_port,
                           report_interval_s=interval_s, max_radios=radios + 10)
        self.driver = LrrpDriver("bench", opts)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.driver.run, args=(self.stop, lambda r: None), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while len(self.driver.radios) < radios and time.monotonic() < deadline:
            time.sleep(0.1)
        self.registered = len(self.driver.radios)

    def window(self, seconds: float) -> tuple[float, int]:
        """(CPU seconds of this process, fixes) over `seconds`."""
        f0, c0 = self.driver.tally.fixes, cpu_s()
        time.sleep(seconds)
        return cpu_s() - c0, self.driver.tally.fixes - f0

    def close(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        sent = int(self.proc.stdout.readline() or 0)
        self.proc.wait(20)
        self.stop.set()
        self.thread.join(5)
        return sent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--radios", type=int, default=GOAL_RADIOS)
    p.add_argument("--interval", type=int, default=GOAL_INTERVAL_S, help="seconds between a radio's reports in the fleet run")
    p.add_argument("--windows", type=int, default=5, help="measured windows (repeats) per run")
    p.add_argument("--burst-window", type=float, default=2.0, help="seconds of each burst window (radios every 1 s)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()

    burst = Fleet(a.radios, 1)
    time.sleep(1.5)  # past the immediate reports of the registrations
    per_report, ratios, base = [], [], []
    for _ in range(a.windows):
        b = decode_us()
        cpu, fixes = burst.window(a.burst_window)
        us = cpu / max(fixes, 1) * 1e6
        base.append(b)
        per_report.append(us)
        ratios.append(us / b)
    burst_sent = burst.close()
    burst_rate = burst_sent / max(1.0, a.windows * a.burst_window + 1.5)

    fleet = Fleet(a.radios, a.interval)
    time.sleep(2.0)
    shares, fleet_fixes = [], []
    for _ in range(a.windows):
        cpu, fixes = fleet.window(float(a.interval))
        shares.append(cpu / a.interval)
        fleet_fixes.append(fixes)
    fleet_sent = fleet.close()

    s = {
        "radios": a.radios, "registered": {"burst": burst.registered, "fleet": fleet.registered},
        "decode_us": median(base), "driver_us_per_report": median(per_report), "ratio_to_decode": median(ratios),
        "burst_reports_per_s": burst_rate, "fleet_interval_s": a.interval, "fleet_core_share": median(shares),
        "fleet_core_share_max": max(shares), "fleet_fixes_per_window": median(fleet_fixes), "fleet_reports_sent": fleet_sent,
    }
    if a.json:
        print(json.dumps({"machine": machine(), **s}, indent=1))
        return
    print(f"lrrp: {a.radios} simulated MOTOTRBO radios on loopback, {a.windows} windows per run, medians")
    print(table(
        ["measure", "value"],
        [
            ["radios registered (burst, fleet)", f"{burst.registered}, {fleet.registered}"],
            ["decoder + gates alone, hot loop", f"{s['decode_us']:.1f} us/report"],
            [f"driver, radios every 1 s (~{burst_rate:,.0f} reports/s)", f"{s['driver_us_per_report']:.1f} us/report"],
            ["driver / decoder alone", f"{s['ratio_to_decode']:.2f}x"],
            [f"fleet, every {a.interval} s: fixes per window", f"{s['fleet_fixes_per_window']:,.0f}"],
            [f"fleet, every {a.interval} s: share of a core", f"{s['fleet_core_share']:.2%} (max {s['fleet_core_share_max']:.2%})"],
        ],
    ))
    ok = "MET" if s["fleet_core_share"] <= GOAL_CORE_SHARE else f"MISSED ({s['fleet_core_share'] / GOAL_CORE_SHARE:.2f}x)"
    print(f"GOAL {GOAL_RADIOS} radios every {GOAL_INTERVAL_S} s take <= {GOAL_CORE_SHARE:.0%} of a core: "
          f"{s['fleet_core_share']:.2%} -> {ok}")


if __name__ == "__main__":
    main()

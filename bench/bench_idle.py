"""Idle daemon with 500 configured units: time to ready and resident memory.

What: `alkomd --config FILE` with 500 [[unit]] entries and 20 [[device]] nmea ports (each a
pty pair behind a symlink; the first 20 units own one device each, the other 480 have no
device, as UnitConfig.device defaults to ""). No data is written to the ports: the daemon idles.
Measured per run:
- start-to-ready: from just before Popen to the arrival of the daemon's "ready:" log line on
  its stderr (the daemon logs to stderr);
- VmRSS and VmHWM from /proc/PID/status, and the thread count, after `--idle` seconds (10);
- CPU time used during that idle window (utime + stime from /proc/PID/stat), as % of one core;
- stop time: SIGTERM to exit.
Two daemon configurations: a private mosquitto on a free loopback port (never 1883; stopped
by PID at the end), and the broker down (a port where nothing listens: ready must not wait
for the broker).

Baselines, measured interleaved: right before every daemon start, a fresh venv interpreter
running `python -c "import serial, pynmea2, paho.mqtt.client, sqlite_utils"` and bare
`python -c pass` (startup = median wall time of 3 runs; RSS/HWM read from /proc/self/status by
the same command with a print appended). This also gives every daemon start the same warm
preamble (a start right after the 10 s idle spell is ~0.1 s slower). Each daemon run is divided
by the import baseline measured just before it; ratios are medians of those per-run ratios.
The order broker up / broker down alternates from repeat to repeat.

Goals: RSS <= 64 MB, ready <= 1 s (both broker up and broker down).

    /work/venv/bin/python bench/bench_idle.py [--repeats 5] [--idle 10] [--json]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl

UNITS = 500
DEVICES = 20
GOAL_RSS_MB = 64.0
GOAL_READY_S = 1.0
IMPORTS = "import serial, pynmea2, paho.mqtt.client, sqlite_utils"
STATUS = ";print(open('/proc/self/status').read())"


def interpreter(code: str, runs: int = 3) -> dict[str, float]:
    """Median wall time of `python -c code`, and its VmRSS/VmHWM (MB) from /proc/self/status."""
    py = sys.executable
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([py, "-c", code], check=True)
        walls.append(time.perf_counter() - t0)
    text = subprocess.run([py, "-c", code + STATUS], check=True, capture_output=True, text=True).stdout
    vals = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            vals[k] = int(v.split()[0]) / 1024
    return {"startup_s": bl.median(walls), "rss_mb": vals["VmRSS"], "hwm_mb": vals["VmHWM"]}


def daemon_run(cfg: Path, idle_s: float, expected_errors: tuple[str, ...] = ()) -> dict[str, object]:
    d = bl.Daemon(cfg).start()
    try:
        ready = d.wait_ready()
        cpu0 = bl.proc_cpu_s(d.proc.pid)
        t0 = time.perf_counter()
        cpu_ready = cpu0
        time.sleep(idle_s)
        st = bl.proc_status(d.proc.pid)
        cpu1 = bl.proc_cpu_s(d.proc.pid)
        idle_cpu = (cpu1 - cpu0) / (time.perf_counter() - t0) * 100
        alive = d.proc.poll() is None
    finally:
        t_stop = time.perf_counter()
        rc = d.stop()
        stop_s = time.perf_counter() - t_stop
    return {
        "ready_s": ready,
        "cpu_to_ready_s": cpu_ready,
        "rss_mb": st["VmRSS"] / 1024,
        "hwm_mb": st["VmHWM"] / 1024,
        "threads": st["Threads"],
        "idle_cpu_pct": idle_cpu,
        "stop_s": stop_s,
        "exit": rc,
        "alive_after_idle": alive,
        "problems": [x for x in d.problems() if not any(e in x for e in expected_errors)],
        "expected_errors": sum(1 for x in d.problems() if any(e in x for e in expected_errors)),
        "mqtt_lines": [line for _, line in d.lines if "mqtt" in line][:3],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--idle", type=float, default=10.0, help="seconds idle before reading memory (default %(default)s)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    log = (lambda *x: None) if a.json else (lambda *x: print(*x, file=sys.stderr, flush=True))

    runs: dict[str, list[dict[str, object]]] = {
        "bare": [], "imports": [], "broker_up": [], "broker_down": [], "imports_before_broker_up": [], "imports_before_broker_down": [],
    }
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="alkomd-bench-idle-", dir="/tmp") as tmp:
        work = Path(tmp)
        ptys = [bl.Pty.create(work / f"tty{i:02d}") for i in range(DEVICES)]
        devices = [(f"gps-{i:02d}", pt.link) for i, pt in enumerate(ptys)]
        units = [(f"U-{i:03d}", devices[i][0] if i < DEVICES else "") for i in range(UNITS)]
        try:
            with bl.Mosquitto(work) as mosq:
                down_port = bl.free_port()
                for r in range(a.repeats):
                    order = ("broker_up", "broker_down") if r % 2 == 0 else ("broker_down", "broker_up")
                    for name in order:
                        # the same warm preamble before every daemon start (the first start after
                        # an idle spell is otherwise ~0.1 s slower); each daemon is paired with it
                        runs["bare"].append(interpreter("pass"))
                        runs["imports"].append(interpreter(IMPORTS))
                        runs[f"imports_before_{name}"].append(runs["imports"][-1])
                        port = mosq.port if name == "broker_up" else down_port
                        cfg = bl.daemon_config(work / f"{name}-{r}.toml", work / f"{name}-{r}.db", port, devices, units)
                        res = daemon_run(cfg, a.idle, expected_errors=("broker unreachable",) if name == "broker_down" else ())
                        runs[name].append(res)
                        log(f"  repeat {r + 1} {name}: ready {res['ready_s']:.3f} s, RSS {res['rss_mb']:.1f} MB, "
                            f"HWM {res['hwm_mb']:.1f} MB, idle CPU {res['idle_cpu_pct']:.1f}%, stop {res['stop_s']:.2f} s")
        finally:
            for pt in ptys:
                pt.close()
    elapsed = time.perf_counter() - t_all

    def med(name: str, key: str) -> float:
        return bl.median([float(x[key]) for x in runs[name]])

    def ratio(num: str, nkey: str, den: str, dkey: str) -> float:
        return bl.median([float(x[nkey]) / float(y[dkey]) for x, y in zip(runs[num], runs[den], strict=True)])

    summary: dict[str, dict[str, object]] = {}
    for name in ("broker_up", "broker_down"):
        summary[name] = {
            "ready_s": med(name, "ready_s"),
            "ready_s_max": max(float(x["ready_s"]) for x in runs[name]),
            "rss_mb": med(name, "rss_mb"),
            "hwm_mb": med(name, "hwm_mb"),
            "threads": med(name, "threads"),
            "idle_cpu_pct": med(name, "idle_cpu_pct"),
            "stop_s": med(name, "stop_s"),
            "rss_over_imports": ratio(name, "rss_mb", f"imports_before_{name}", "rss_mb"),
            "ready_over_imports_startup": ratio(name, "ready_s", f"imports_before_{name}", "startup_s"),
            "goal_rss_met": med(name, "rss_mb") <= GOAL_RSS_MB and med(name, "hwm_mb") <= GOAL_RSS_MB,
            "goal_ready_met": med(name, "ready_s") <= GOAL_READY_S,
            "problems": sorted({pr for x in runs[name] for pr in x["problems"]})[:5],
        }
    for name in ("bare", "imports"):
        summary[name] = {"startup_s": med(name, "startup_s"), "rss_mb": med(name, "rss_mb"), "hwm_mb": med(name, "hwm_mb")}
    summary["broker_down"]["ready_over_broker_up"] = ratio("broker_down", "ready_s", "broker_up", "ready_s")
    summary["broker_down"]["expected_broker_errors_logged"] = sum(int(x["expected_errors"]) for x in runs["broker_down"])
    report = {
        "bench": "idle",
        "machine": bl.machine(),
        "units": UNITS,
        "devices": DEVICES,
        "repeats": a.repeats,
        "idle_s": a.idle,
        "elapsed_s": round(elapsed, 1),
        "summary": summary,
        "runs": runs,
        "goals": {"rss_mb": GOAL_RSS_MB, "ready_s": GOAL_READY_S},
    }
    if a.json:
        print(bl.dump_json(report))
        return 0

    print(f"\nIdle daemon: {UNITS} units, {DEVICES} nmea devices on ptys; memory after {a.idle:g} s idle; "
          f"{a.repeats} interleaved repeats, {elapsed:.0f} s\n")
    rows = []
    for name, label in (("bare", "python -c pass"), ("imports", f'python -c "{IMPORTS}"')):
        s = summary[name]
        rows.append((label, f"{s['startup_s']:.3f}", f"{s['rss_mb']:.1f}", f"{s['hwm_mb']:.1f}", "", "", "", "", ""))
    for name, label in (("broker_up", "alkomd, broker up"), ("broker_down", "alkomd, broker down")):
        s = summary[name]
        rows.append((label, f"{s['ready_s']:.3f}", f"{s['rss_mb']:.1f}", f"{s['hwm_mb']:.1f}", f"{s['threads']:.0f}",
                     f"{s['idle_cpu_pct']:.2f}", f"{s['stop_s']:.2f}", f"{s['rss_over_imports']:.2f}",
                     f"{s['ready_over_imports_startup']:.2f}"))
    print(bl.table(("process", "startup/ready s", "VmRSS MB", "VmHWM MB", "threads", "idle CPU %", "stop s",
                    "RSS x imports", "ready x imports"), rows))
    print(f"\nbroker down / broker up ready time (median of per-repeat ratios): {summary['broker_down']['ready_over_broker_up']:.2f}")
    print()
    for name in ("broker_up", "broker_down"):
        s = summary[name]
        rss, hwm, ready = s["rss_mb"], s["hwm_mb"], s["ready_s"]
        worst = max(rss, hwm)
        r_ok = "MET" if s["goal_rss_met"] else f"MISSED by {worst - GOAL_RSS_MB:.1f} MB ({worst / GOAL_RSS_MB:.2f}x)"
        t_ok = "MET" if s["goal_ready_met"] else f"MISSED by {ready - GOAL_READY_S:.3f} s ({ready / GOAL_READY_S:.2f}x)"
        print(f"GOAL [{name}] RSS <= {GOAL_RSS_MB:.0f} MB: VmRSS {rss:.1f} MB, VmHWM {hwm:.1f} MB -> {r_ok}")
        print(f"GOAL [{name}] ready <= {GOAL_READY_S:.0f} s: {ready:.3f} s (max {s['ready_s_max']:.3f}) -> {t_ok}")
        if s["problems"]:
            print(f"  unexpected daemon log lines: {s['problems']}")
    print(
        f"(broker down: the daemon logged {summary['broker_down']['expected_broker_errors_logged']} 'broker unreachable' errors "
        "in all runs, as expected)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

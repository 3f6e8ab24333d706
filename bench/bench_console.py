"""The dispatcher console's liveness: an MQTT publish -> visible in the page's DOM, at a Polres and at a Polda.

Two scenarios, each against a private mosquitto and a real `alkomd-console` process, with the page
open in Debian's chromium driven by Playwright (headless; never `playwright install`):

- polres: a node of 8 units, each moving every 10 s;
- polda: a node of 5,000 units (under six Polres), each moving every 10 s (500 positions a second).

In each, --updates probe updates are published one at a time, alternately a probe unit's position
and a new call's state. A MutationObserver in the page stamps (Date.now()) the moment each is in
the DOM: the probe's marker moving on the map (the map is zoomed to a small jurisdiction around
the probe, so it is drawn unclustered; it jumps 55 m back and forth), the probe's row in the unit
list carrying the new latitude (the list is redrawn once a second), and the call's row in the
queue (redrawn four times a second). The delay is that stamp minus the wall-clock time of the
publish. Figures: median and p99 per
kind and over all, the console's CPU (its own process, over the measuring window) and its memory
(VmRSS at the end, VmHWM the peak). Baseline in the same run: the broker round trip of a
position-sized message (publish -> the same client receives it). Goals (issue 12): p99 <= 1 s,
console RSS <= 150 MB at 5,000 units. The console sends changes in batches of 0.25 s (console/live.py).

    python bench/bench_console.py [--updates 200] [--units 5000] [--json]
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
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
import playwright.sync_api as pw
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import Mosquitto, dump_json, free_port, machine, median, pct, proc_cpu_s, proc_status, stop_pid, table, wait_port

from alkomd.console import users
from alkomd.daemon.mqtt import contract

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = "polri110"
USER, PASSWORD = "bench", "bench password 1"
PERIOD_S = 10.0
PROBE = "PROBE-1"
PROBE_LAT, PROBE_LON, JUMP = 0.5, 123.0, 0.0005  # the probe unit jumps JUMP degrees (55 m) north and back
# Stamps, in the page, the moment each marker value appears: the probe unit's latitude, a call's row.
WATCH_JS = """() => {
  window.__seen = {};
  window.__moves = [];
  let last = null;
  const look = () => {
    const now = Date.now();
    const icon = document.querySelector(".leaflet-marker-icon[title='PROBE-1']");
    if (icon && icon.style.transform !== last) {
      if (last !== null) window.__moves.push(now);
      last = icon.style.transform;
    }
    const row = document.querySelector("#units tr[data-unit='PROBE-1']");
    if (row && !(row.dataset.lat in window.__seen)) window.__seen[row.dataset.lat] = now;
    for (const tr of document.querySelectorAll("#queue tr[data-call]")) {
      const k = "call:" + tr.dataset.call;
      if (!(k in window.__seen)) window.__seen[k] = now;
    }
  };
  new MutationObserver(look).observe(document.body, {subtree: true, childList: true, attributes: true});
  look();
}"""


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Publisher:
    """One MQTT client: publishes, and receives the other's round-trip probes on its own topic."""

    def __init__(self, port: int, name: str) -> None:
        self.got = threading.Event()
        self.topic = f"bench-console-rtt-{name}"
        self.c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"bench-console-{name}-{os.getpid()}",
                             protocol=MQTTProtocolVersion.MQTTv5)
        self.c.on_message = lambda c, u, m: self.got.set()
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.c.subscribe(self.topic, qos=1)

    def rtt_ms(self, n: int, payload: bytes, to: Publisher) -> list[float]:
        """QoS 1 publish here -> on_message at `to`, n times, in ms."""
        out = []
        for _ in range(n):
            to.got.clear()
            t0 = time.perf_counter()
            self.c.publish(to.topic, payload, qos=1)
            if to.got.wait(5):
                out.append((time.perf_counter() - t0) * 1000)
        return out

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def position(unit: str, lat: float, lon: float) -> bytes:
    now = _iso(datetime.now(UTC))
    return json.dumps({"unit": unit, "lat": lat, "lon": lon, "time": now, "received": now, "msg_id": contract.new_msg_id(),
                       "type": "car"}).encode()


def call_state(node: str, tier: str, call_id: str) -> bytes:
    body = {"call_id": call_id, "state": "offered", "tier": tier, "node": node, "jurisdiction": "75.71", "location_status": "ok",
            "candidates": [], "assigned_unit": None, "answer_deadline": _iso(datetime.now(UTC) + timedelta(minutes=10)),
            "escalated_to": None, "flags": [], "msg_id": contract.new_msg_id(), "priority": 3, "category": "pelaporan/pencurian",
            "lat": 0.55, "lon": 123.05, "accuracy_m": 30, "note": "bench", "version": 1}
    return json.dumps(body).encode()


class Fleet:
    """`units` units under `owners` (node paths), each moving every PERIOD_S, spread evenly over the period."""

    def __init__(self, pub: Publisher, owners: list[str], units: int) -> None:
        self.pub, self.units = pub, [(owners[i % len(owners)], f"U{i:04d}") for i in range(units)]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def seed(self) -> None:
        for i, (owner, unit) in enumerate(self.units):
            self.pub.c.publish(contract.position_topic(owner, unit), position(unit, 0.3 + (i % 100) * 0.005, 122.5 + (i // 100) * 0.02),
                               retain=True)
            status = {"unit": unit, "status": ("available", "assigned", "offline")[i % 3], "since": _iso(datetime.now(UTC)),
                      "call_id": None}
            info = self.pub.c.publish(contract.unit_status_topic(owner, unit), json.dumps(status), retain=True)
        info.wait_for_publish(60)

    def _run(self) -> None:
        tick, n, i = 0.1, len(self.units), 0
        per_tick = max(1, round(n * tick / PERIOD_S))
        next_t = time.monotonic()
        while not self.stop.is_set():
            for _ in range(per_tick if n >= PERIOD_S / tick else (1 if i % max(1, round(PERIOD_S / tick / n)) == 0 else 0)):
                owner, unit = self.units[i % n]
                k = i % n
                self.pub.c.publish(contract.position_topic(owner, unit),
                                   position(unit, 0.3 + (k % 100) * 0.005 + (i // n % 10) * 1e-4, 122.5 + (k // 100) * 0.02), retain=True)
                i += 1
            next_t += tick
            self.stop.wait(max(0.0, next_t - time.monotonic()))


def write_config(work: Path, node: str, tier: str, broker: int, port: int) -> Path:
    users.set_password(work / "users", USER, PASSWORD)
    cfg = work / "alkomd.toml"
    square = [[PROBE_LON + dx * 0.002, PROBE_LAT + dy * 0.002] for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1))]
    geo = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"code": "75.71", "name": "probe"},
                                                      "geometry": {"type": "Polygon", "coordinates": [square]}}]}
    (work / "probe.geojson").write_text(json.dumps(geo))
    cfg.write_text(
        f'[node]\npath = "{node}"\nroot = "{ROOT}"\ntier = "{tier}"\n[store]\npath = "{work}/alkomd.db"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker}\ntls = false\n[log]\nlevel = "warning"\n'
        f'[jurisdictions]\nfile = "{work}/probe.geojson"\n'
        f'[console]\nlisten_address = "127.0.0.1"\nlisten_port = {port}\nusers_file = "{work}/users"\n'
    )
    return cfg


def scenario(browser: pw.Browser, mq: Mosquitto, work: Path, tier: str, units: int, updates: int) -> dict[str, object]:
    node_path = "gorontalo/kota-gorontalo" if tier == "polres" else "gorontalo"
    node = f"{ROOT}/{node_path}"
    owners = [node] if tier == "polres" else [f"{node}/polres-{k}" for k in range(6)]
    port = free_port()
    cfg = write_config(work, node_path, tier, mq.port, port)
    pub, load = Publisher(mq.port, f"{tier}probe"), Publisher(mq.port, f"{tier}fleet")
    fleet = Fleet(load, owners, units)
    fleet.seed()
    proc = subprocess.Popen([sys.executable, "-m", "alkomd.console.main", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=open(work / "console.log", "wb"))  # noqa: SIM115
    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        if not wait_port(port, 30):
            raise SystemExit(f"bench_console: the console did not listen (log {work / 'console.log'})")
        page = ctx.new_page()
        page.set_default_timeout(120_000)
        page.goto(f"http://127.0.0.1:{port}/login")
        page.fill("#name", USER)
        page.fill("#password", PASSWORD)
        page.click("#login-button")
        page.wait_for_selector("#link-state[data-state=up]")
        try:
            page.wait_for_function(f"() => document.getElementById('unit-count').textContent === '{units} of {units}'", timeout=60_000)
        except pw.TimeoutError:
            raise SystemExit(f"bench_console: the page shows {page.inner_text('#unit-count')!r}, not {units} units") from None
        page.fill("#unit-search", PROBE)
        pub.c.publish(contract.position_topic(node, PROBE), position(PROBE, PROBE_LAT, PROBE_LON), retain=True)
        page.wait_for_selector(f"#units tr[data-unit='{PROBE}']")
        page.wait_for_selector(f".leaflet-marker-icon[title='{PROBE}']")
        page.evaluate(WATCH_JS)
        fleet.thread.start()
        time.sleep(PERIOD_S)  # the fleet's load settles in
        cpu0, wall0 = proc_cpu_s(proc.pid), time.monotonic()
        delays: dict[str, list[float]] = {"position, map marker": [], "position, unit list": [], "call state, queue": []}
        for i in range(updates):
            moves = page.evaluate("() => window.__moves.length")
            if i % 2 == 0:
                lat = round(PROBE_LAT + (JUMP if i % 4 == 0 else 0.0) + (i + 1) * 1e-7, 7)
                keys = {"position, unit list": repr(lat), "position, map marker": f"move:{moves}"}
                topic, body = contract.position_topic(node, PROBE), position(PROBE, lat, PROBE_LON)
            else:
                cid = f"B-{i:04d}"
                keys = {"call state, queue": f"call:{cid}"}
                topic, body = contract.call_topic(node, cid), call_state(node, tier, cid)
            sent = time.time() * 1000
            pub.c.publish(topic, body, qos=1)
            end = time.monotonic() + 10
            seen: dict[str, float] = {}
            while len(seen) < len(keys) and time.monotonic() < end:
                got = page.evaluate("ks => ks.map(k => k.startsWith('move:') ? (window.__moves[+k.slice(5)] ?? null) "
                                    ": (window.__seen[k] ?? null))", list(keys.values()))
                seen = {kind: float(t) for kind, t in zip(keys, got, strict=True) if t is not None}
                if len(seen) < len(keys):
                    time.sleep(0.005)
            if len(seen) < len(keys):
                raise SystemExit(f"bench_console: update {i} ({keys}) not in the page after 10 s")
            for kind, t in seen.items():
                delays[kind].append(t - sent)
            time.sleep(random.uniform(0.05, 0.3))  # not in step with the console's batches
        cpu_pct = (proc_cpu_s(proc.pid) - cpu0) / (time.monotonic() - wall0) * 100
        mem = proc_status(proc.pid)
        rtt = pub.rtt_ms(200, position(PROBE, PROBE_LAT, PROBE_LON), load)
    finally:
        fleet.stop.set()
        ctx.close()
        stop_pid(proc)
        pub.close()
        load.close()
    return {"tier": tier, "units": units, "delays_ms": delays, "rtt_ms": rtt, "cpu_pct": cpu_pct,
            "rss_mb": mem["VmRSS"] / 1024, "hwm_mb": mem["VmHWM"] / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=200)
    ap.add_argument("--units", type=int, default=5000, help="units at the Polda (default 5000)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="alkomd-bench-console-") as tmp, pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu",
                                                                    "--disable-background-networking", "--no-first-run"])
        try:
            for tier, units in (("polres", 8), ("polda", args.units)):
                work = Path(tmp) / tier
                work.mkdir()
                with Mosquitto(work) as mq:  # a broker of its own: no retained unit of the other scenario
                    results.append(scenario(browser, mq, work, tier, units, args.updates))
        finally:
            browser.close()
    if args.json:
        print(dump_json({"machine": machine(), "updates": args.updates, "results": results}))
        return 0
    rows: list[list[object]] = []
    for r in results:
        rtt = median(r["rtt_ms"])  # type: ignore[arg-type]
        d: dict[str, list[float]] = r["delays_ms"]  # type: ignore[assignment]
        shown = d["position, map marker"] + d["call state, queue"]
        for kind, xs in (*d.items(), ("marker and queue", shown)):
            rows.append([f"{r['tier']} ({r['units']} units): {kind}", len(xs), f"{median(xs):.0f}", f"{pct(xs, 99):.0f}",
                         f"{median(xs) / rtt:.0f}", f"{pct(xs, 99) / rtt:.0f}"])
        rows.append([f"{r['tier']}: baseline broker round trip", len(r["rtt_ms"]), f"{rtt:.2f}",  # type: ignore[arg-type]
                     f"{pct(r['rtt_ms'], 99):.2f}", "1", "-"])  # type: ignore[arg-type]
    print(f"Console: MQTT publish -> in the page's DOM ({machine()['cpu']})")
    print(table(["what", "n", "median ms", "p99 ms", "median x rtt", "p99 x rtt"], rows))
    print()
    print(table(["console process", "CPU %", "RSS MB", "peak RSS MB"],
                [[f"{r['tier']} ({r['units']} units)", f"{r['cpu_pct']:.1f}", f"{r['rss_mb']:.0f}", f"{r['hwm_mb']:.0f}"]
                 for r in results]))
    print()
    for r in results:
        d = r["delays_ms"]  # type: ignore[assignment]
        for kind in d:
            p99 = pct(d[kind], 99)
            print(f"GOAL p99 <= 1000 ms at the {r['tier']} ({r['units']} units), {kind}: {'met' if p99 <= 1000 else 'missed'} "
                  f"({p99:.0f} ms)")
    big = results[-1]
    print(f"GOAL console RSS <= 150 MB at {big['units']} units: {'met' if big['rss_mb'] <= 150 else 'missed'} "  # type: ignore[operator]
          f"({big['rss_mb']:.0f} MB; peak {big['hwm_mb']:.0f} MB, which includes the login's argon2 hash, 64 MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

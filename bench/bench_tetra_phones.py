"""CPU cost of the `tetra` and `owntracks` drivers: per report against their decoders, and 1,000 radios/phones every 30 s.

Goal (issue 14): 1,000 TETRA radios, or 1,000 phones, each reporting every 30 s (33.3 reports/s)
cost at most 5% of one core per driver.

Streams (seeded): 1,000 radios (ISSIs 2260000...) or phones (`bripka-0000/phone`...) around Kota
Gorontalo; TETRA: `+CTSDSR:` header and hex line per report, 75% short and 25% long (circle with
altitude, time of position) LIP reports, 1 in 500 an emergency; OwnTracks: the app's location
JSON (`acc`, `vel`, `cog`, `batt`, `tid`, `t`).

  (a) the decoder in a hot loop, the baseline: TETRA, `PeiReader.feed` on the two lines already
      split, `decode_sds`, `to_records`; OwnTracks, `owntracks.decode` (topic) and `to_fix`;
  (b) the driver's own path on the same reports, without I/O: `TetraPei.feed` on each report's
      bytes as a serial read gives them (line splitting, counting, emitting); the owntracks
      driver's `Phones.handle` per MQTT message (counting, state, emitting);
  (c) the whole driver in its thread at 33.3 reports/s for `--paced-s` seconds: `tetra` reading
      a pty; `owntracks` over MQTT (a private mosquitto; a paho publisher in another thread);
      `owntracks` over HTTP (a client posting each report on a new connection, as phones do).
      CPU is the driver thread's own (`time.thread_time`, read in its emit callback), so the
      writer, the broker and the posting client do not count; it includes the idle wake-ups.

(a) and (b) run interleaved in each of `--repeats` repeats; medians, and the ratio (b)/(a) is the
median of per-repeat ratios. Share at 33.3/s = 33.3 x CPU seconds per report.

    python bench/bench_tetra_phones.py [--reports 20000] [--repeats 5] [--paced-s 20] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as bl
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from alkomd.daemon.records import Fix, RadioStatus, Record
from alkomd.drivers import owntracks
from alkomd.drivers.owntracks_driver import OwnTracksHttp, OwnTracksMqtt, OwnTracksOptions, Phones
from alkomd.drivers.tetra_driver import TetraOptions, TetraPei
from alkomd.drivers.tetra_lip import decode_sds, to_records
from alkomd.drivers.tetra_lip_build import ctsdsr, long_report, short_report
from alkomd.drivers.tetra_pei import PeiReader, Sds

FLEET = 1000
PERIOD_S = 30.0
RATE = FLEET / PERIOD_S
GOAL_SHARE = 0.05
CENTRE = (0.5436, 123.0573)


def tetra_stream(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        lat, lon = CENTRE[0] + rng.uniform(-0.05, 0.05), CENTRE[1] + rng.uniform(-0.05, 0.05)
        reason = 2 if rng.random() < 0.002 else 129
        if rng.random() < 0.25:
            data, bits = long_report(lat, lon, speed_kmh=rng.uniform(0, 80), course=rng.uniform(0, 360), when=now,
                                     accuracy_code=10, altitude_m=20, reason=reason)
        else:
            data, bits = short_report(lat, lon, speed_kmh=rng.uniform(0, 80), course=rng.uniform(0, 360), reason=reason)
        out.append(ctsdsr(2260000 + i % FLEET, data, bits))
    return out


def phone_stream(n: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    tst = int(time.time()) - 60
    out = []
    for i in range(n):
        msg = {"_type": "location", "lat": round(CENTRE[0] + rng.uniform(-0.05, 0.05), 6),
               "lon": round(CENTRE[1] + rng.uniform(-0.05, 0.05), 6), "tst": tst + i // FLEET, "acc": rng.randint(3, 60),
               "vel": rng.randint(0, 60), "cog": rng.randint(0, 359), "batt": rng.randint(10, 100), "tid": "BR", "t": "p",
               "alt": rng.randint(5, 80), "vac": 8, "conn": "m", "BSSID": "", "SSID": ""}
        out.append((f"owntracks/bripka-{i % FLEET:04d}/phone", json.dumps(msg).encode()))
    return out


# -- (a) and (b): hot loops ----------------------------------------------------------------------


def tetra_decoder(reports: list[bytes]) -> tuple[float, int]:
    lines = [r.decode().split("\r\n")[1:3] for r in reports]  # split beforehand: not the decoder's work
    reader = PeiReader()
    received = datetime.now(UTC)
    fixes = 0
    c0 = time.process_time()
    for head, data in lines:
        reader.feed(head)
        sds = reader.feed(data)
        assert isinstance(sds, Sds)
        if to_records(decode_sds(sds.data, sds.bits), device="pei", radio=sds.radio, received=received, received_mono=0.0).fix:
            fixes += 1
    return time.process_time() - c0, fixes


def tetra_driver_feed(reports: list[bytes]) -> tuple[float, int]:
    drv = TetraPei("pei", TetraOptions(url="/dev/null"))
    sink: list[Record] = []
    c0 = time.process_time()
    for r in reports:
        drv.feed(r, sink.append, None, 0.0)
    return time.process_time() - c0, drv.counters().fixes


def phone_decoder(msgs: list[tuple[str, bytes]]) -> tuple[float, int]:
    received = datetime.now(UTC)
    fixes = 0
    c0 = time.process_time()
    for topic, payload in msgs:
        loc = owntracks.decode(payload, topic=topic)
        if isinstance(loc, owntracks.Location) and owntracks.to_fix(loc, device="phones", received=received, received_mono=0.0)[0]:
            fixes += 1
    return time.process_time() - c0, fixes


def phone_driver(msgs: list[tuple[str, bytes]]) -> tuple[float, int]:
    phones = Phones("phones", owntracks.BASE_TOPIC)
    sink: list[Record] = []
    c0 = time.process_time()
    for topic, payload in msgs:
        phones.handle(payload, sink.append, topic=topic)
    return time.process_time() - c0, phones.fixes


# -- (c): the drivers in their threads, paced ------------------------------------------------------


class Paced:
    """A driver in its thread; the CPU of that thread sampled in `emit` at every fix."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.stop = threading.Event()
        self.opened = threading.Event()
        self.marks: list[tuple[float, float]] = []
        self.thread = threading.Thread(target=driver.run, args=(self.stop, self._emit), daemon=True)

    def _emit(self, record: Record) -> None:
        if isinstance(record, Fix | RadioStatus):
            self.marks.append((time.thread_time(), time.perf_counter()))
        else:
            self.opened.set()

    def __enter__(self) -> Paced:
        self.thread.start()
        if not self.opened.wait(15):
            raise RuntimeError(f"{type(self.driver).__name__} did not open")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)

    def run(self, send: Callable[[int], None], seconds: float, expect: Callable[[], int]) -> dict[str, float]:
        n = int(seconds * RATE)
        start = time.perf_counter()
        for i in range(n):
            send(i)
            ahead = start + (i + 1) / RATE - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        end = time.monotonic() + 10
        while expect() < n and time.monotonic() < end:
            time.sleep(0.01)
        (c0, w0), (c1, w1) = self.marks[0], self.marks[-1]
        cpu, wall = c1 - c0, w1 - w0
        return {"reports": len(self.marks), "sent": n, "cpu_s": cpu, "wall_s": wall, "share": cpu / wall if wall else 0.0,
                "cpu_us_per_report": cpu / max(len(self.marks) - 1, 1) * 1e6}


def paced_tetra(reports: list[bytes], seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="alkomd-bench-tetra-") as tmp:
        pty = bl.Pty.create(Path(tmp) / "ttyTETRA")
        drv = TetraPei("pei", TetraOptions(url=str(pty.link), baud=115200))
        try:
            with Paced(drv) as p:
                os.set_blocking(pty.master, False)
                try:
                    os.read(pty.master, 4096)  # the registration the driver sent
                except BlockingIOError:
                    pass
                os.set_blocking(pty.master, True)
                return p.run(lambda i: os.write(pty.master, reports[i % len(reports)]) and None, seconds,
                             lambda: drv.counters().fixes)
        finally:
            pty.close()


def paced_mqtt(msgs: list[tuple[str, bytes]], seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="alkomd-bench-phones-") as tmp, bl.Mosquitto(Path(tmp)) as broker:
        drv = OwnTracksMqtt("phones", OwnTracksOptions(host="127.0.0.1", port=broker.port, tls=False, client_id="bench-driver"))
        pub = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-phones")
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        try:
            with Paced(drv) as p:
                time.sleep(0.5)  # the subscription is made right after the CONNACK
                return p.run(lambda i: pub.publish(*msgs[i % len(msgs)], qos=1) and None, seconds, lambda: drv.counters().fixes)
        finally:
            pub.disconnect()
            pub.loop_stop()


def paced_http(msgs: list[tuple[str, bytes]], seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="alkomd-bench-phones-") as tmp:
        secret = Path(tmp) / "secret"
        secret.write_text("bench")
        port = bl.free_port()
        drv = OwnTracksHttp("phones", OwnTracksOptions(transport="http", bind="127.0.0.1", listen_port=port, secret_file=secret))
        auth = "Basic YnJpcGthOmJlbmNo"  # bripka:bench

        def send(i: int) -> None:
            topic, body = msgs[i % len(msgs)]
            _, user, device = topic.split("/")
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/pub", body, {"Authorization": auth, "X-Limit-U": user, "X-Limit-D": device,
                                                "Content-Type": "application/json"})
            conn.getresponse().read()
            conn.close()

        with Paced(drv) as p:
            return p.run(send, seconds, lambda: drv.counters().fixes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reports", type=int, default=20_000, help="reports per hot loop (default %(default)s)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--paced-s", type=float, default=20.0, help="seconds of each paced driver run (default %(default)s)")
    ap.add_argument("--seed", type=int, default=110)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    reports, msgs = tetra_stream(a.reports, a.seed), phone_stream(a.reports, a.seed)
    loops: dict[str, Callable[[], tuple[float, int]]] = {
        "tetra decoder": lambda: tetra_decoder(reports), "tetra driver": lambda: tetra_driver_feed(reports),
        "owntracks decoder": lambda: phone_decoder(msgs), "owntracks driver": lambda: phone_driver(msgs),
    }
    cpu: dict[str, list[float]] = {k: [] for k in loops}
    keys = list(loops)
    t0 = time.perf_counter()
    for r in range(a.repeats):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
            c, fixes = loops[k]()
            if fixes != a.reports:
                raise SystemExit(f"sanity failed: {k} gave {fixes} fixes of {a.reports}")
            cpu[k].append(c)
        if not a.json:
            print(f"  repeat {r + 1}/{a.repeats}: " + "  ".join(f"{k} {cpu[k][-1] / a.reports * 1e6:.1f} us" for k in keys),
                  file=sys.stderr, flush=True)
    paced = {"tetra (pty)": paced_tetra(reports, a.paced_s), "owntracks (mqtt)": paced_mqtt(msgs, a.paced_s),
             "owntracks (http)": paced_http(msgs, a.paced_s)}
    elapsed = time.perf_counter() - t0
    us = {k: bl.median(v) / a.reports * 1e6 for k, v in cpu.items()}
    ratios = {d: bl.median([x / y for x, y in zip(cpu[f"{d} driver"], cpu[f"{d} decoder"], strict=True)])
              for d in ("tetra", "owntracks")}
    met = all(p["share"] <= GOAL_SHARE for p in paced.values())
    report = {"bench": "tetra_phones", "machine": bl.machine(), "reports": a.reports, "repeats": a.repeats,
              "elapsed_s": round(elapsed, 1), "us_per_report": us, "ratio_driver_over_decoder": ratios, "paced": paced,
              "goal": {"text": f"at most {GOAL_SHARE:.0%} of one core per driver, {FLEET} reporting every {PERIOD_S:g} s",
                       "met": met}}
    if a.json:
        print(bl.dump_json(report))
        return 0
    print(f"\n{a.reports:,} reports per loop, {a.repeats} interleaved repeats, {elapsed:.0f} s; load {os.getloadavg()[0]:.2f}\n")
    rows = [(k, f"{us[k]:.1f}", bl.fmt_int(1e6 / us[k]), f"{RATE * us[k] / 1e6:.3%}") for k in keys]
    print(bl.table(("hot loop", "CPU us/report", "reports/CPU-s", f"share at {RATE:.1f}/s"), rows))
    for d, r in ratios.items():
        print(f"{d}: the driver's path takes {r:.2f}x the CPU of its decoder (median of per-repeat ratios)")
    print()
    rows = [(k, f"{p['reports']:.0f}/{p['sent']:.0f}", f"{p['wall_s']:.1f}", f"{p['cpu_s'] * 1000:.0f}",
             f"{p['cpu_us_per_report']:.0f}", f"{p['share']:.3%}") for k, p in paced.items()]
    print(bl.table(("driver, 1,000 every 30 s", "fixes/sent", "wall s", "CPU ms", "CPU us/report", "share of a core"), rows))
    shares = ", ".join(f"{k} {p['share']:.2%}" for k, p in paced.items())
    print(f"\nGOAL {GOAL_SHARE:.0%} of one core per driver at {FLEET:,} reporting every {PERIOD_S:g} s: {shares} -> "
          + ("MET" if met else "MISSED"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

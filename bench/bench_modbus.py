"""Modbus: round-trip time of a whole-map poll of a Teltonika RUT, and the driver's CPU per poll.

What: a pymodbus server in a separate process serves a Teltonika RUT's registers (the test
suite's simulator, tests/helpers_modbus.py) over Modbus TCP on loopback and over Modbus RTU on a
pty pair; the client side is the driver's own transport (drivers/modbus_link.py). Contenders:

  (tcp-per-poll) the driver's TCP mode: connect, read the six blocks of the map, close;
  (tcp-open)     the same reads on a connection kept open (what the driver does NOT do);
  (pymodbus-tcp) baseline: pymodbus's own ModbusTcpClient, the same six reads, kept open;
  (tcp-1)        one 1-register read on an open connection (one request's round trip);
  (rtu)          the six blocks over RTU on a pty (a pty ignores the baud rate, so this is the
                 software path; the line time at 9600 baud is computed and printed beside it);
  (pymodbus-rtu) baseline: pymodbus's own ModbusSerialClient, the same six reads on the pty;
  (driver)       CPU (process time) of `ModbusModem.poll_once` per poll over TCP, everything
                 included: transport, pymodbus framing, decoding, word-order detection, gates, Fix;
  (digest)       CPU of decoding and gating one poll's registers (no I/O).

How: each repeat runs every contender for `--polls` polls in an order that rotates from repeat
to repeat; the median over repeats of the per-repeat median and p99 is reported, and the ratios
to the pymodbus baseline of the same transport are medians of per-repeat ratios. Default 5
repeats x 200 polls, about 90 s.

    /work/venv/bin/python bench/bench_modbus.py [--repeats 5] [--polls 200] [--json]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # helpers_modbus: the test suite's Teltonika simulator

import benchlib as bl  # noqa: E402
from helpers_modbus import ModbusSim, PtyLink, teltonika  # noqa: E402
from pymodbus.client import ModbusSerialClient, ModbusTcpClient  # noqa: E402

from alkomd.daemon.records import Record  # noqa: E402
from alkomd.drivers.modbus import ModbusModem, ModbusOptions, ModbusTracker  # noqa: E402
from alkomd.drivers.modbus_link import Bus, PollResult, parse_url, read_blocks  # noqa: E402
from alkomd.drivers.modbus_map import TELTONIKA_RUT, plan_reads  # noqa: E402

BLOCKS = plan_reads(TELTONIKA_RUT.fields)


def serve(kind: str, path: str) -> None:
    """Child process: serve the Teltonika registers until stdin closes; print the URL when ready."""
    sim = ModbusSim({1: teltonika(order="little-byteswap")}, serial_port=path if kind == "rtu" else "").start()
    print(sim.url, flush=True)
    sys.stdin.read()
    sim.stop()


def start_server(kind: str, path: str = "") -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--path", path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url:
        raise RuntimeError(f"the {kind} server did not start")
    return proc, url


def line_time_ms(baud: int) -> float:
    """Seconds on an RS-485 line for the map's six requests and replies (10 bits a byte with 8N1)."""
    request = 8  # unit, function, address, count, CRC
    replies = sum(5 + 2 * b.count for b in BLOCKS)  # unit, function, byte count, data, CRC
    return (len(BLOCKS) * request + replies) * 10 / baud * 1000


def timed_polls(poll: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        poll()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--polls", type=int, default=200)
    p.add_argument("--json", action="store_true")
    p.add_argument("--serve", choices=("tcp", "rtu"), help=argparse.SUPPRESS)
    p.add_argument("--path", default="", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.serve:
        serve(a.serve, a.path)
        return 0
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="alkomd-bench-modbus-"))
    link = PtyLink(tmp)
    tcp_proc, tcp_url = start_server("tcp")
    rtu_proc, _ = start_server("rtu", str(link.b))
    stop = threading.Event()
    try:
        target = parse_url(tcp_url)
        per_poll = Bus(target, timeout_s=2.0, keep_open=False)
        kept = Bus(target, timeout_s=2.0, keep_open=True)
        rtu = Bus(parse_url(str(link.a)), 9600, "8N1", 2.0)
        driver = ModbusModem("bench", ModbusOptions(url=tcp_url, poll_interval_s=1, timeout_s=2.0))
        driver_bus = Bus(target, timeout_s=2.0, keep_open=False)
        emitted: list[Record] = []
        tracker = ModbusTracker("bench", "modbus", emitted.append, 60, 60, driver.counters)

        def poll(bus: Bus) -> Callable[[], PollResult]:
            def once() -> PollResult:
                with bus.session(stop, 2.0) as s:
                    r = read_blocks(s, BLOCKS, 1)
                assert r.replies == len(BLOCKS) and not r.exceptions and r.no_reply is None
                return r

            return once

        plain_tcp = ModbusTcpClient(target.host, port=target.port, timeout=2.0, retries=0)
        plain_rtu = ModbusSerialClient(str(link.a), baudrate=9600, timeout=2.0, retries=0)

        def plain(client: ModbusTcpClient | ModbusSerialClient) -> Callable[[], None]:
            def once() -> None:
                client.connect()
                for b in BLOCKS:
                    rr = client.read_holding_registers(b.start, count=b.count, device_id=1)
                    assert not rr.isError() and len(rr.registers) == b.count

            return once

        def one_register() -> None:
            with kept.session(stop, 2.0) as s:
                s.read(1, 1, 1)

        sample = poll(kept)()

        def digest() -> None:
            driver._digest(sample, emitted.append, tracker)
            emitted.clear()

        contenders: list[tuple[str, Callable[[], object]]] = [
            ("tcp-per-poll", poll(per_poll)), ("tcp-open", poll(kept)), ("pymodbus-tcp", plain(plain_tcp)),
            ("tcp-1", one_register), ("rtu", poll(rtu)), ("pymodbus-rtu", plain(plain_rtu)),
        ]
        baseline = {"tcp-per-poll": "pymodbus-tcp", "tcp-open": "pymodbus-tcp", "tcp-1": "pymodbus-tcp", "rtu": "pymodbus-rtu"}
        rtt: dict[str, list[tuple[float, float]]] = {k: [] for k, _ in contenders}
        ratios: dict[str, list[float]] = {k: [] for k in baseline}
        cpu: dict[str, list[float]] = {"driver": [], "digest": []}
        for rep in range(a.repeats):
            k = rep % len(contenders)
            medians: dict[str, float] = {}
            for name, fn in contenders[k:] + contenders[:k]:
                fn()  # warm (connects the kept-open ones)
                xs = timed_polls(fn, a.polls)
                medians[name] = bl.median(xs)
                rtt[name].append((bl.median(xs), bl.pct(xs, 99)))
                rtu.close()  # the port is opened exclusively: free it for the other RTU contender
                plain_rtu.close()
            for name, base in baseline.items():
                ratios[name].append(medians[name] / medians[base])
            c0 = time.process_time()
            for _ in range(a.polls):
                driver.poll_once(driver_bus, stop, emitted.append, tracker)
            cpu["driver"].append((time.process_time() - c0) / a.polls * 1e6)
            emitted.clear()
            n = a.polls * 20
            c0 = time.process_time()
            for _ in range(n):
                digest()
            cpu["digest"].append((time.process_time() - c0) / n * 1e6)
        assert driver.counters().fixes >= a.polls * a.repeats, "the driver's polls did not all give a fix"
        for b in (per_poll, kept, rtu, driver_bus):
            b.close()
        plain_tcp.close()
        plain_rtu.close()
    finally:
        for proc in (tcp_proc, rtu_proc):
            if proc.stdin:
                proc.stdin.close()
            proc.wait(10)
        link.close()
        try:
            os.rmdir(tmp)
        except OSError:
            pass

    rows = []
    result: dict[str, object] = {"machine": bl.machine(), "repeats": a.repeats, "polls": a.polls, "requests_per_poll": len(BLOCKS)}
    for name in rtt:
        med = bl.median([m for m, _ in rtt[name]])
        p99 = bl.median([q for _, q in rtt[name]])
        ratio = bl.median(ratios[name]) if name in ratios else 1.0
        rows.append((name, f"{med:.3f}", f"{p99:.3f}", f"{ratio:.2f}x" if name in ratios else "baseline"))
        result[name] = {"median_ms": med, "p99_ms": p99, "ratio_to_pymodbus": ratio if name in ratios else None}
    for name in cpu:
        result[f"cpu_{name}_us"] = bl.median(cpu[name])
    result["line_time_9600_ms"] = line_time_ms(9600)
    result["line_time_115200_ms"] = line_time_ms(115200)
    result["elapsed_s"] = time.perf_counter() - started
    if a.json:
        print(bl.dump_json(result))
        return 0
    print(f"Modbus whole-map poll (Teltonika RUT map: {len(BLOCKS)} requests, "
          f"{sum(b.count for b in BLOCKS)} registers), {a.repeats} x {a.polls} polls")
    print(bl.table(("contender", "median ms", "p99 ms", "vs pymodbus"), rows))
    print()
    print(f"driver CPU per poll over TCP (transport + decode + gates + Fix): {result['cpu_driver_us']:.0f} us")
    print(f"decode and gates alone (one poll's registers):                   {result['cpu_digest_us']:.1f} us")
    print(f"RS-485 line time of one poll: {result['line_time_9600_ms']:.0f} ms at 9600 baud, "
          f"{result['line_time_115200_ms']:.1f} ms at 115200 (add it to the rtu row for a real line)")
    extra = bl.median([m for m, _ in rtt["tcp-per-poll"]]) - bl.median([m for m, _ in rtt["tcp-open"]])
    print(f"connect + close per poll costs {extra:.3f} ms on loopback (one extra round trip on a real link)")
    print(f"elapsed {result['elapsed_s']:.0f} s; loadavg {bl.machine()['loadavg']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Helpers shared by the bench scripts (not a benchmark itself): statistics, tables, machine
facts, a private mosquitto on a free loopback port, pty pairs, daemon configs and processes.

Everything started here is stopped by its own PID; nothing ever touches port 1883.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
BENCH_DATE = "2026-11-22"


# -- statistics and output -----------------------------------------------------------------------


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def pct(xs: Sequence[float], p: float) -> float:
    """Percentile by linear interpolation between closest ranks (p in 0..100)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def time_each(fn: Callable[[int], object], n: int) -> list[float]:
    """Microseconds per call of fn(i), for i in range(n)."""
    out = []
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        fn(i)
        out.append((clock() - t0) / 1000.0)
    return out


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """A plain-text table; `align` is one char per column, l or r (default: first l, rest r)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)
    out = []
    for n, r in enumerate(cells):
        out.append("  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def fmt_int(x: float) -> str:
    return "n/a" if x != x else f"{x:,.0f}"


def machine() -> dict[str, object]:
    """Facts that make absolute numbers interpretable (ratios are what carries over)."""
    model = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpus": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg": list(os.getloadavg()),
    }


def dump_json(obj: object) -> str:
    def default(o: object) -> object:
        if isinstance(o, Path):
            return str(o)
        raise TypeError(type(o).__name__)

    def clean(o: object) -> object:  # NaN is not JSON
        if isinstance(o, float) and o != o:
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o

    return json.dumps(clean(obj), default=default, indent=1)


# -- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (never 1883)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != 1883:
            return int(port)


def wait_port(port: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def stop_pid(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int | None:
    """SIGTERM this one process (by its PID), then SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


class Mosquitto:
    """A private mosquitto on a free loopback port, stopped by PID."""

    def __init__(self, workdir: Path, extra_conf: str = "") -> None:
        exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if exe is None:
            raise SystemExit("mosquitto not found: apt-get install -y mosquitto")
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n"
            f"max_queued_messages 0\nlog_dest file {workdir / 'mosquitto.log'}\n{extra_conf}"
        )
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(self.port):
            self.stop()
            raise SystemExit(f"mosquitto did not start on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        stop_pid(self.proc)

    def __enter__(self) -> Mosquitto:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Pty:
    """A pty pair; the daemon opens `link` (a symlink to the slave), the bench writes `master`."""

    master: int
    slave: int
    link: Path

    @classmethod
    def create(cls, link: Path) -> Pty:
        master, slave = os.openpty()
        tty.setraw(slave)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.ttyname(slave))
        return cls(master, slave, link)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self.link.unlink()
        except OSError:
            pass


def toml_str(s: str | Path) -> str:
    return json.dumps(str(s))  # a JSON string is a valid TOML basic string for these paths


def daemon_config(
    path: Path,
    db: Path,
    port: int,
    devices: Sequence[tuple[str, Path]],
    units: Sequence[tuple[str, str]],
    synchronous: str = "full",
    node: str = "gorontalo/bench",
    baud: int = 115200,
) -> Path:
    """Write an alkomd TOML config: devices are (id, pty link), units are (id, device id or "")."""
    out = [
        "[node]", f'path = "{node}"', "",
        "[store]", f"path = {toml_str(db)}", f'synchronous = "{synchronous}"', "",
        "[mqtt]", 'host = "127.0.0.1"', f"port = {port}", "tls = false", "",
        "[log]", 'level = "info"', "",
    ]
    for dev_id, link in devices:
        out += ["[[device]]", f'id = "{dev_id}"', 'driver = "nmea"', f"url = {toml_str(link)}", f"baud = {baud}", ""]
    for unit_id, dev_id in units:
        out += ["[[unit]]", f'id = "{unit_id}"']
        if dev_id:
            out.append(f'device = "{dev_id}"')
        out.append("")
    path.write_text("\n".join(out))
    return path


@dataclass
class Daemon:
    """`alkomd --config FILE` as a subprocess; stderr lines are timestamped as they arrive."""

    config: Path
    proc: subprocess.Popen[bytes] = field(init=False)
    started_ns: int = field(init=False)
    lines: list[tuple[int, str]] = field(default_factory=list)
    _ready: threading.Event = field(default_factory=threading.Event)
    ready_ns: int | None = None

    def start(self) -> Daemon:
        exe = VENV_BIN / "alkomd"
        self.started_ns = time.perf_counter_ns()
        self.proc = subprocess.Popen([str(exe), "--config", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        threading.Thread(target=self._reader, daemon=True).start()
        return self

    def _reader(self) -> None:
        assert self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            now = time.perf_counter_ns()
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append((now, line))
            if self.ready_ns is None and "ready:" in line:
                self.ready_ns = now
                self._ready.set()
        self._ready.set()  # the process ended: wake any waiter

    def wait_ready(self, timeout: float = 15.0) -> float:
        """Seconds from Popen to the "ready:" log line (raises if it never came)."""
        self._ready.wait(timeout)
        if self.ready_ns is None:
            self.stop()
            raise RuntimeError("daemon never logged ready:\n" + self.log_tail())
        return (self.ready_ns - self.started_ns) / 1e9

    def wait_line(self, pattern: str, timeout: float = 10.0) -> bool:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(rx.search(line) for _, line in list(self.lines)):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.01)
        return False

    def log_tail(self, n: int = 20) -> str:
        return "\n".join(line for _, line in self.lines[-n:])

    def problems(self) -> list[str]:
        return [line for _, line in self.lines if re.search(r"\b(ERROR|CRITICAL|Traceback)\b", line)]

    def stop(self) -> int | None:
        return stop_pid(self.proc, timeout=10.0)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (kB) and Threads from /proc/PID/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                out[k] = int(v.split()[0])
    return out


def thread_cpu_s(pid: int, tid: int) -> float:
    """utime + stime of one thread of a process, in seconds (the main thread's tid is the pid)."""
    with open(f"/proc/{pid}/task/{tid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """The live child processes of a process (of all its threads)."""
    out: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(k) for k in fh.read().split()]
        except OSError:
            continue
    return out


def pin(pid: int, cpus: set[int], children: bool = False) -> None:
    """Pin every thread of a process (and, with `children`, of its child processes) to these CPUs."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(task), cpus)
        except OSError:  # the thread ended meanwhile
            pass
    if children:
        for kid in child_pids(pid):
            pin(kid, cpus, children=True)


def children_cpu_s(pid: int) -> float:
    """utime + stime of the live child processes of a process, and theirs (the daemon's below link child)."""
    total = 0.0
    for kid in child_pids(pid):
        try:
            total += proc_cpu_s(kid) + children_cpu_s(kid)
        except OSError:  # it ended meanwhile
            pass
    return total


# -- a raw MQTT 3.1.1 publisher: pre-encoded packets written to a socket ------------------------


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def publish_packet(topic: str, payload: bytes, pid: int, qos: int = 1, retain: bool = True) -> bytes:
    body = _utf8(topic) + (struct.pack("!H", pid) if qos else b"") + payload
    return bytes([0x30 | (qos << 1) | int(retain)]) + _remaining(len(body)) + body


class RawPublisher:
    """One MQTT 3.1.1 connection that writes pre-encoded PUBLISH packets; a thread reads (and counts) the PUBACKs."""

    def __init__(self, port: int, cid: str = "bench-flood") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        body = _utf8("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 600) + _utf8(cid)
        self.sock.sendall(bytes([0x10]) + _remaining(len(body)) + body)
        ack = self.sock.recv(4)
        if ack[:1] != b"\x20":
            raise RuntimeError(f"no CONNACK: {ack!r}")
        self.acked_bytes = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            self.acked_bytes += len(chunk)

    def acked(self) -> int:
        return self.acked_bytes // 4  # each PUBACK is 4 bytes

    def send(self, packets: list[bytes], rate: float) -> float:
        """Write the packets at `rate` a second (10 ms slices; 0: at once); returns the seconds it took."""
        t0 = time.monotonic()
        if rate <= 0:
            for i in range(0, len(packets), 1000):
                self.sock.sendall(b"".join(packets[i : i + 1000]))
        else:
            per_slice = max(1, round(rate / 100))
            for k, i in enumerate(range(0, len(packets), per_slice)):
                due = t0 + k * 0.01
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.sock.sendall(b"".join(packets[i : i + per_slice]))
        return time.monotonic() - t0

    def wait_acked(self, n: int, timeout: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.acked() < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.acked() >= n

    def close(self) -> None:
        try:
            self.sock.sendall(b"\xe0\x00")
        except OSError:
            pass
        self.sock.close()

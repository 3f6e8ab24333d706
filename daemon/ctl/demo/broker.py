"""Starts a private MQTT broker for the demo and tests: mosquitto when installed, else an embedded amqtt.

The broker listens on 127.0.0.1 and a free port (never 1883, so a station's real broker is never
touched), allows anonymous clients and keeps nothing on disk. mosquitto runs as a child process
in its own session (a Ctrl-C in the terminal does not reach it; `stop()` ends it by PID);
`kill()` sends SIGKILL for fault-injection tests and `restart()` starts it again on the same port.

The embedded fallback is amqtt's broker in a background thread with its own asyncio loop.
amqtt 0.12 speaks MQTT 3.1.1 only: it refuses MQTT 5 clients (CONNACK "unsupported protocol
version"), so it serves 3.1.1 clients and tests, not the daemon's MQTT 5 link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

KINDS = ("mosquitto", "amqtt")
RESERVED_PORTS = frozenset((1883, 8883))  # the standard MQTT ports: a real broker may be there
START_TIMEOUT_S = 5.0
STOP_GRACE_S = 2.0
MOSQUITTO_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin", "/opt/homebrew/sbin")


class BrokerError(RuntimeError):
    """The broker could not be started (the message holds the end of its log)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that is free now (the OS picks it; never a standard MQTT port)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary (also in sbin directories that a user's PATH may lack)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for d in MOSQUITTO_DIRS:
        path = Path(d) / "mosquitto"
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def amqtt_available() -> bool:
    try:
        import amqtt.broker  # noqa: F401
    except ImportError:
        return False
    return True


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Broker:
    """A private, anonymous MQTT broker on 127.0.0.1:<free port>.

    `kind` is "mosquitto", "amqtt", or None to prefer mosquitto when it is installed.
    Use as a context manager, or call `start()` and `close()`.
    """

    def __init__(
        self,
        kind: str | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        workdir: Path | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
        extra_conf: str = "",
    ) -> None:
        """`extra_conf`: lines added to mosquitto's configuration (e.g. the flow control of a shipped config)."""
        if kind is None:
            kind = "mosquitto" if find_mosquitto() else "amqtt"
        if kind not in KINDS:
            raise ValueError(f"broker kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if port is not None and port in RESERVED_PORTS:
            raise ValueError(f"refusing port {port}: a station's real broker may listen there")
        self.kind = kind
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.start_timeout_s = start_timeout_s
        self.extra_conf = extra_conf
        self._own_dir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="alkomd-broker-")) if workdir is None else Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{kind}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_serving: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._log_handler: logging.Handler | None = None

    # --- common -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the mosquitto process (None for the embedded broker or when stopped)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        if self.kind == "mosquitto":
            return self._proc is not None and self._proc.poll() is None
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        """Start serving; returns once the port accepts connections (raises BrokerError)."""
        if self.running:
            return self
        if port_open(self.host, self.port):  # else the readiness probe would see the other program
            raise BrokerError(f"{self.kind}: port {self.host}:{self.port} is already in use by another program")
        if self.kind == "mosquitto":
            self._start_mosquitto()
        else:
            self._start_amqtt()
        return self

    def stop(self) -> None:
        """Stop gracefully (SIGTERM, SIGKILL after 2 s for mosquitto). Files are kept."""
        if self.kind == "mosquitto":
            self._stop_mosquitto(signal.SIGTERM)
        else:
            self._stop_amqtt()

    def kill(self) -> None:
        """Stop abruptly: SIGKILL for mosquitto (clients see a dead TCP peer, no DISCONNECT).

        The embedded broker cannot be killed apart from this process; it stops as in `stop()`.
        """
        if self.kind == "mosquitto":
            self._stop_mosquitto(signal.SIGKILL)
        else:
            self._stop_amqtt()

    def restart(self) -> None:
        """Stop if running, then start again on the same port."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop, and remove the temporary directory this broker made."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Broker(kind={self.kind!r}, {self.host}:{self.port}, running={self.running})"

    # --- mosquitto ----------------------------------------------------------------------------

    def _start_mosquitto(self) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise BrokerError("mosquitto is not installed (Debian/Ubuntu: apt-get install mosquitto)")
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            "# written by alkomd.daemon.ctl.demo.broker: a private broker for the demo and tests\n"
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "set_tcp_nodelay true\n"  # no Nagle delay on small messages (see README, broker settings)
            # stderr goes to our log file: mosquitto started as root drops privileges and could
            # no longer open a log file in our private directory itself.
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "connection_messages true\n"
            "log_timestamp true\n"
            + self.extra_conf
        )
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [binary, "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal is for us, not for the broker
                close_fds=True,
            )
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if port_open(self.host, self.port):
                return
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise BrokerError(f"mosquitto exited with code {code} on start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self._stop_mosquitto(signal.SIGKILL)
                raise BrokerError(
                    f"mosquitto did not accept connections on {self.host}:{self.port} within "
                    f"{self.start_timeout_s:g} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _stop_mosquitto(self, sig: signal.Signals) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        self._proc = None

    # --- embedded amqtt -----------------------------------------------------------------------

    def _amqtt_config(self) -> dict[str, Any]:  # amqtt's own configuration format
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

    def _start_amqtt(self) -> None:
        if not amqtt_available():
            raise BrokerError("neither mosquitto nor amqtt is installed (pip install 'alkomd[demo]' or apt-get install mosquitto)")
        handler = logging.FileHandler(self.log_path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        amqtt_log = logging.getLogger("amqtt")
        amqtt_log.addHandler(handler)
        amqtt_log.setLevel(logging.INFO)
        amqtt_log.propagate = False  # its chatter goes to the broker log, not the demo's screen
        logging.getLogger("transitions").setLevel(logging.WARNING)
        self._log_handler = handler
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._amqtt_thread, name="amqtt-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.start_timeout_s):
            raise BrokerError(f"amqtt did not start within {self.start_timeout_s:g} s:\n{self.log_tail()}")
        if self._error is not None:
            self._thread.join(self.start_timeout_s)
            self._thread = None
            raise BrokerError(f"amqtt could not start on {self.host}:{self.port}: {self._error}")

    def _amqtt_thread(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._amqtt_serve())
        finally:
            with contextlib.suppress(Exception):
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None

    async def _amqtt_serve(self) -> None:
        from amqtt.broker import Broker as AmqttBroker

        self._stop_serving = asyncio.Event()
        try:
            broker = AmqttBroker(self._amqtt_config(), loop=asyncio.get_running_loop())
            await broker.start()
        except Exception as exc:  # amqtt's BrokerError; OSError when the port is taken; ...
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop_serving.wait()
        finally:
            await broker.shutdown()

    def _stop_amqtt(self) -> None:
        thread, loop, ev = self._thread, self._loop, self._stop_serving
        if thread is None:
            return
        if loop is not None and ev is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed in the meantime
                loop.call_soon_threadsafe(ev.set)
        thread.join(10)
        self._thread = None
        if self._log_handler is not None:
            logging.getLogger("amqtt").removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None

"""One demo session: start the broker, the viewer and the daemon, show what arrives, then stop all of it."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import paho.mqtt.client as paho
from rich.console import Console
from rich.live import Live

from alkomd.daemon.ctl.demo import console as demo_console
from alkomd.daemon.ctl.demo.broker import Broker, BrokerError
from alkomd.daemon.ctl.demo.calls import CallScript
from alkomd.daemon.ctl.demo.polda import POLDA_PATH, polres_sections, start_polda
from alkomd.daemon.ctl.demo.station import NODE_PATH, ROOT, TRBO_EMERGENCY_S, UnitPlan, demo_config, plan_units
from alkomd.daemon.ctl.demo.view import LiveState, render, subscriber
from alkomd.drivers.sim_mototrbo import MototrboSim, SimRadio

DAEMON_STOP_S = 10.0
REFRESH_PER_S = 4


def _stop_process(proc: subprocess.Popen[bytes], grace_s: float) -> int:
    """SIGTERM, then SIGKILL after `grace_s`; returns the exit code."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            return proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _trbo_station(plans: tuple[UnitPlan, ...]) -> MototrboSim:
    """The simulated MOTOTRBO control station's radios (not started), on free loopback ports."""
    radios = [SimRadio(int(p.radio), p.route, p.speed_kmh, p.start_offset_s) for p in plans if p.driver == "lrrp"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        lrrp_port, ars_port = a.getsockname()[1], b.getsockname()[1]
    return MototrboSim(radios, lrrp_port=lrrp_port, ars_port=ars_port)


def run_demo(
    duration_s: float | None = None,
    units: int = 6,
    embedded_broker: bool = False,
    workdir: Path | None = None,
) -> int:
    """Run the demo until Ctrl-C/SIGTERM or `duration_s`; leaves no process running. Exit code 0 if clean."""
    plans = plan_units(units)
    console = Console()
    out = sys.stdout
    live_view = out.isatty()

    def say(line: str) -> None:  # one write per line: the call script says its lines from its own thread
        out.write(line + "\n")
        out.flush()

    keep = workdir is not None
    work = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="alkomd-demo-"))
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    (work / "dev").mkdir(exist_ok=True)

    stop = threading.Event()
    old_handlers: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            old_handlers[sig] = signal.signal(sig, on_signal)

    broker: Broker | None = None
    daemon: subprocess.Popen[bytes] | None = None
    client: paho.Client | None = None
    state: LiveState | None = None
    trbo: MototrboSim | None = None
    helpers: list[subprocess.Popen[bytes]] = []  # the Polda node and the console
    calls: CallScript | None = None
    code = 0
    try:
        broker = Broker("amqtt" if embedded_broker else None, workdir=work / "broker")
        try:
            broker.start()
        except BrokerError as exc:
            say(f"alkomctl demo: cannot start the broker: {exc}")
            return 1
        protocol = "5"
        if broker.kind != "mosquitto":
            protocol = "3.1.1"
            say(
                "alkomctl demo: mosquitto is not installed: using the embedded broker (amqtt), which speaks "
                "MQTT 3.1.1 only, so the daemon uses 3.1.1 too. Install mosquitto for MQTT 5."
            )
        config = work / "alkomd.toml"
        trbo = _trbo_station(plans)
        desk, console_section = demo_console.prepare(work)
        config.write_text(demo_config(plans, broker.port, work, protocol, (trbo.lrrp_port, trbo.ars_port, trbo.radio_port))
                          + polres_sections() + console_section)
        log_path = work / "alkomd.log"
        node_topic = f"{ROOT}/{NODE_PATH}"
        state = LiveState(node_topic)
        client = subscriber(state, broker)
        with log_path.open("ab") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "alkomd.daemon.main", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the demo, which stops the daemon in order
                close_fds=True,
            )
        say(f"alkomctl demo: broker {broker.kind} on {broker.host}:{broker.port} (log {broker.log_path})")
        say(f"alkomctl demo: daemon pid {daemon.pid}, config {config}")
        say(f"alkomctl demo: database {work / 'alkomd.db'}, daemon log {log_path}")
        say(f"alkomctl demo: {len(plans)} simulated units; topics {node_topic}/#")
        trbo.start()
        helpers.append(start_polda(broker.port, work, protocol, NODE_PATH))
        say(f"alkomctl demo: Polda node {ROOT}/{POLDA_PATH} pid {helpers[-1].pid} (log {work / 'polda' / 'alkomd.log'}): "
            "it takes the calls nobody answers")
        try:
            helpers.append(demo_console.start_console(desk, config, work))
        except demo_console.ConsoleStartError as exc:
            say(f"alkomctl demo: {exc}")
            return 1
        say(desk.line())
        calls = CallScript(broker.host, broker.port, protocol == "5", node_topic, f"{ROOT}/{POLDA_PATH}",
                           (lambda line: sys.stdout.write(line + "\n")) if live_view else say)
        calls.start()
        say(f"alkomctl demo: MOTOTRBO control station: {len(trbo.radios)} radios at 127.x.y.z, ARS udp {trbo.ars_port}, "
            f"LRRP udp {trbo.lrrp_port}")
        started = time.monotonic()
        deadline = None if duration_s is None else started + duration_s
        pressed = False

        def finished() -> bool:
            nonlocal pressed
            if not pressed and trbo is not None and len(trbo.radios) > 1 and time.monotonic() - started >= TRBO_EMERGENCY_S:
                pressed = True
                trbo.emergency(sorted(trbo.radios)[1])
            return stop.is_set() or (deadline is not None and time.monotonic() >= deadline)

        def daemon_died() -> bool:
            return daemon is not None and daemon.poll() is not None

        if live_view:
            with Live(render(state, plans, broker, work, 0.0), console=console, refresh_per_second=REFRESH_PER_S,
                      transient=False) as live:
                while not finished() and not daemon_died():
                    stop.wait(1 / REFRESH_PER_S)
                    live.update(render(state, plans, broker, work, time.monotonic() - started))
        else:
            while not finished() and not daemon_died():
                stop.wait(0.2)
                for line in state.take_events():
                    say(line)
            for line in state.take_events():
                say(line)
        if daemon_died():
            assert daemon is not None
            code = daemon.returncode or 1
            say(f"alkomctl demo: the daemon exited early with code {daemon.returncode}; its log ends with:")
            say(_tail(log_path))
        _, _, _, (total, npos, nstat, nhealth, _) = state.snapshot()
        say(f"alkomctl demo: stopping ({total} messages: {npos} positions, {nstat} device status, {nhealth} health)")
    finally:
        if calls is not None:
            calls.close()
        for helper in reversed(helpers):
            _stop_process(helper, DAEMON_STOP_S)
        if daemon is not None:
            rc = _stop_process(daemon, DAEMON_STOP_S)
            if rc not in (0, -signal.SIGTERM) and code == 0:
                say(f"alkomctl demo: the daemon exited with code {rc}")
                code = rc if rc > 0 else 1
            if state is not None and client is not None and state.connected:
                # The daemon's last words: its retained "offline" state.
                end = time.monotonic() + 1.0
                while time.monotonic() < end and not (state.node is not None and state.node.state == "offline"):
                    time.sleep(0.05)
                if not live_view:
                    for line in state.take_events():
                        say(line)
        if trbo is not None:
            trbo.close()
        if client is not None:
            client.disconnect()
            client.loop_stop()
        if broker is not None:
            broker.close()
        for signum, handler in old_handlers.items():
            signal.signal(signum, handler)
        if keep:
            say(f"alkomctl demo: kept {work} (config, database, logs)")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return code

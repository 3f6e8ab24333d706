"""`alkomctl demo`: a whole station on simulated radios, a broker, the daemon, and a live view.

What runs: a private broker (`alkomd.daemon.ctl.demo.broker`: mosquitto if installed, else amqtt), the
real daemon (`python -m alkomd.daemon.main`) as a child process with a generated config whose
`[[device]]` tables use the `simulator` driver (real NMEA through real pseudo-terminals), and an
MQTT subscriber here that shows what the daemon publishes. One simulated radio has scripted
faults (unplugged, line noise, no fix) so the device states visibly change. A simulated Kenwood
base radio relays three officers' handheld radios (FleetSync `$PKLDS`) on one port, and one
officer presses the emergency button after 40 s.

On a terminal the view is a live table; otherwise (a pipe, a log, a test) one plain line is
printed per new position, device state and node state. Ctrl-C, SIGTERM or the end of
`duration_s` stops everything: the daemon (SIGTERM, SIGKILL after 10 s), then the broker; the
work directory is removed unless it was given.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from alkomd.daemon.ctl.demo.broker import Broker, BrokerError
from alkomd.daemon.records import Counters

ROOT = "polri110"
NODE_PATH = "gorontalo/kota-gorontalo"
NODE_NAME = "Polres Gorontalo Kota (demo)"
FAULTY_DEVICE_FAULTS = ("20+10:unplug", "45+10:noise", "70+15:no_fix")
BASE_RADIO = "base-radio"
BASE_RADIO_FAULTS = ("40+10:emergency",)
HANDHELDS = (("HT-01", "Rajawali 01", "100-1001"), ("HT-02", "Rajawali 02", "100-1002"), ("HT-03", "Rajawali 03", "100-1003"))
DAEMON_STOP_S = 10.0
MAX_UNITS = 99
REFRESH_PER_S = 4

STATE_STYLE = {
    "connected": "green",
    "no_fix": "yellow",
    "silent": "yellow",
    "degraded": "magenta",
    "disconnected": "red",
    "online": "green",
    "offline": "red",
}


@dataclass(frozen=True)
class UnitPlan:
    """One simulated unit of the demo: its [[unit]] and its [[device]]."""

    unit: str
    callsign: str
    type: str
    device: str
    route: str
    speed_kmh: float
    talker: str
    start_offset_s: float
    faults: tuple[str, ...] = ()
    radio: str = ""  # set for a handheld heard through the base radio `device`


# (route, unit type, speed km/h, talker): cycled through for --units.
_TEMPLATES = (
    ("kota-gorontalo-loop", "car", 40.0, "GP"),
    ("limboto-gorontalo", "motorcycle", 55.0, "GN"),
    ("bone-bolango-coast", "car", 60.0, "GP"),
    ("gorontalo-kwandang", "car", 70.0, "GN"),
    ("kota-gorontalo-loop", "foot", 5.0, "GL"),
    ("tilamuta-town", "motorcycle", 30.0, "GA"),
    ("marisa-town", "car", 35.0, "BD"),
    ("limboto-gorontalo", "car", 45.0, "GB"),
)


def plan_units(n: int) -> tuple[UnitPlan, ...]:
    """The demo's units: different routes, start offsets and talkers; the second one has faults."""
    if not 1 <= n <= MAX_UNITS:
        raise ValueError(f"units must be between 1 and {MAX_UNITS}, got {n}")
    faulty = 1 if n > 1 else 0
    plans = []
    for i in range(n):
        route, kind, speed, talker = _TEMPLATES[i % len(_TEMPLATES)]
        plans.append(
            UnitPlan(
                unit=f"R2-{i + 1:02d}",
                callsign=f"Macan {i + 1:02d}",
                type=kind,
                device=f"sim-{i + 1:02d}",
                route=route,
                speed_kmh=speed,
                talker=talker,
                start_offset_s=float((i * 137) % 900),
                faults=FAULTY_DEVICE_FAULTS if i == faulty else (),
            )
        )
    for unit, callsign, radio in HANDHELDS:  # officers on foot, heard through one base radio
        plans.append(UnitPlan(unit, callsign, "foot", BASE_RADIO, "kota-gorontalo-loop", 5.0, "GP", 300.0, BASE_RADIO_FAULTS, radio))
    return tuple(plans)


def _q(value: str | Path) -> str:
    """A TOML basic string (JSON string escapes are valid TOML for these values)."""
    return json.dumps(str(value), ensure_ascii=False)


def demo_config(plans: Sequence[UnitPlan], broker_port: int, workdir: Path, protocol: str = "5") -> str:
    """The daemon's config for the demo (TOML text)."""
    out = [
        "# alkomd demo station, written by `alkomctl demo`: simulated radios, private broker.",
        "[node]",
        f"path = {_q(NODE_PATH)}",
        f"root = {_q(ROOT)}",
        f"name = {_q(NODE_NAME)}",
        'tier = "polres"',
        "",
        "[store]",
        f"path = {_q(workdir / 'alkomd.db')}",
        'synchronous = "normal"',
        "",
        "[mqtt]",
        'host = "127.0.0.1"',
        f"port = {broker_port}",
        "tls = false",
        f"protocol = {_q(protocol)}",
        "health_interval_s = 2",
        "",
        "[log]",
        'level = "info"',
    ]
    devices: dict[str, list[UnitPlan]] = {}
    for p in plans:
        devices.setdefault(p.device, []).append(p)
    for device, group in devices.items():
        p = group[0]
        faults = ", ".join(_q(f) for f in p.faults)
        radios = ", ".join(_q(g.radio) for g in group if g.radio)
        out += [
            "",
            "[[device]]",
            f"id = {_q(device)}",
            'driver = "simulator"',
            f"route = {_q(p.route)}",
            f"speed_kmh = {p.speed_kmh}",
            f"interval_s = {5.0 if radios else 1.0}",
            f"talker = {_q(p.talker)}",
            f"start_offset_s = {p.start_offset_s}",
            f"link = {_q(workdir / 'dev' / device)}",
            f"faults = [{faults}]",
        ] + ([f"radios = [{radios}]", "silent_after_s = 30", "no_fix_after_s = 60"] if radios else [])
    for p in plans:
        out += [
            "",
            "[[unit]]",
            f"id = {_q(p.unit)}",
            f"callsign = {_q(p.callsign)}",
            f"type = {_q(p.type)}",
            f"device = {_q(p.device)}",
        ] + ([f"radio = {_q(p.radio)}", "report_interval_s = 5"] if p.radio else [])
    return "\n".join(out) + "\n"


# --- what the subscriber sees -----------------------------------------------------------------


@dataclass(frozen=True)
class PositionView:
    unit: str
    lat: float
    lon: float
    time: datetime | None
    speed_kmh: float | None
    course: float | None
    sats: int | None
    hdop: float | None
    fix: str
    source: str


@dataclass(frozen=True)
class DeviceView:
    device: str
    driver: str
    state: str
    since: datetime | None
    detail: str
    counters: Counters


@dataclass(frozen=True)
class NodeView:
    state: str
    version: str
    since: datetime | None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _counters(value: Any) -> Counters:
    if not isinstance(value, dict):
        return Counters()
    names = [f.name for f in dataclasses.fields(Counters)]
    return Counters(**{n: v for n, v in value.items() if n in names and _int(v) is not None})


class LiveState:
    """What the demo's subscriber has seen (fed from paho's thread, read by the display)."""

    def __init__(self, node_topic: str) -> None:
        self.node_topic = node_topic
        self._lock = threading.Lock()
        self.positions: dict[str, PositionView] = {}
        self.devices: dict[str, DeviceView] = {}
        self.node: NodeView | None = None
        self.messages = 0
        self.position_messages = 0
        self.status_messages = 0
        self.health_messages = 0
        self.bad_messages = 0
        self.emergencies: list[str] = []
        self.connected = False
        self._events: list[str] = []

    def take_events(self) -> list[str]:
        """Plain-text lines for what changed since the last call (the non-TTY view)."""
        with self._lock:
            events, self._events = self._events, []
        return events

    def handle(self, topic: str, payload: bytes) -> None:
        prefix = self.node_topic + "/"
        if not topic.startswith(prefix):
            return
        parts = topic[len(prefix):].split("/")
        try:
            data = json.loads(payload.decode("utf-8")) if payload else None
        except (UnicodeDecodeError, ValueError):
            data = None
        with self._lock:
            self.messages += 1
            if not isinstance(data, dict):
                if payload:  # an empty retained payload clears a topic: not an error
                    self.bad_messages += 1
                return
            if len(parts) == 3 and parts[0] == "unit" and parts[2] == "position":
                self._position(parts[1], data)
            elif len(parts) == 3 and parts[0] == "unit" and parts[2] == "emergency":
                line = f"EMERGENCY {parts[1]} from {data.get('source', '?')} at {_clock(_time(data.get('time')))}"
                self.emergencies.append(line)
                self._events.append(line)
            elif len(parts) == 3 and parts[0] == "device" and parts[2] == "status":
                self._device(parts[1], data)
            elif parts == ["state"]:
                self.node = NodeView(str(data.get("state", "?")), str(data.get("version", "")), _time(data.get("since")))
                self._events.append(f"node {self.node_topic} {self.node.state} (alkomd {self.node.version})")
            elif parts == ["health"]:
                self.health_messages += 1
                self._health(data)

    def _position(self, unit: str, d: dict[str, Any]) -> None:
        lat, lon = _num(d.get("lat")), _num(d.get("lon"))
        if lat is None or lon is None:
            self.bad_messages += 1
            return
        self.position_messages += 1
        p = PositionView(
            unit=str(d.get("unit", unit)),
            lat=lat,
            lon=lon,
            time=_time(d.get("time")),
            speed_kmh=_num(d.get("speed_kmh")),
            course=_num(d.get("course")),
            sats=_int(d.get("sats")),
            hdop=_num(d.get("hdop")),
            fix=str(d.get("fix", "")),
            source=str(d.get("source", "")),
        )
        self.positions[unit] = p
        self._events.append(
            f"position {p.unit} {p.lat:.6f} {p.lon:.6f} {_fmt(p.speed_kmh, '.1f')} km/h course {_fmt(p.course, '.0f')} "
            f"sats {_fmt(p.sats, 'd')} hdop {_fmt(p.hdop, '.2f')} fix {p.fix} time {_clock(p.time)} source {p.source}"
        )

    def _device(self, device: str, d: dict[str, Any]) -> None:
        self.status_messages += 1
        v = DeviceView(
            device=str(d.get("device", device)),
            driver=str(d.get("driver", "")),
            state=str(d.get("state", "?")),
            since=_time(d.get("since")),
            detail=str(d.get("detail", "") or ""),
            counters=_counters(d.get("counters")),
        )
        self.devices[device] = v
        self._events.append(f"device {v.device} {v.state}" + (f" ({v.detail})" if v.detail else ""))

    def _health(self, d: dict[str, Any]) -> None:
        # Status messages come on change only; health brings fresh counters every health_interval_s.
        devices = d.get("devices")
        if not isinstance(devices, dict):
            return
        for device, h in devices.items():
            if not isinstance(h, dict):
                continue
            old = self.devices.get(device)
            if old is None:
                self.devices[device] = DeviceView(device, str(h.get("driver", "")), str(h.get("state", "?")), None, "", _counters(h))
            else:
                self.devices[device] = dataclasses.replace(old, counters=_counters(h))

    def snapshot(self) -> tuple[list[PositionView], list[DeviceView], NodeView | None, tuple[int, int, int, int, int]]:
        with self._lock:
            return (
                sorted(self.positions.values(), key=lambda p: p.unit),
                sorted(self.devices.values(), key=lambda d: d.device),
                self.node,
                (self.messages, self.position_messages, self.status_messages, self.health_messages, self.bad_messages),
            )


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _clock(t: datetime | None) -> str:
    return "-" if t is None else t.strftime("%H:%M:%S")


def _age(t: datetime | None, now: datetime) -> str:
    return "-" if t is None else f"{max(0.0, (now - t).total_seconds()):.1f}"


def render(state: LiveState, plans: Sequence[UnitPlan], broker: Broker, workdir: Path, elapsed_s: float) -> Group:
    """The live view: a header, the units' positions, the devices' states, where files are."""
    positions, devices, node, (total, npos, nstat, nhealth, nbad) = state.snapshot()
    now = datetime.now(UTC)
    header = Text()
    header.append(f"{NODE_NAME}  ", style="bold")
    header.append(f"{state.node_topic}  node ")
    node_state = node.state if node else "waiting"
    header.append(node_state, style=STATE_STYLE.get(node_state, "yellow"))
    if node and node.version:
        header.append(f" (alkomd {node.version})")
    header.append(f"  broker {broker.kind} {broker.host}:{broker.port}")
    header.append("" if state.connected else " [viewer not connected]", style="red")
    header.append(f"\nmessages {total}: positions {npos}, device status {nstat}, health {nhealth}")
    if nbad:
        header.append(f", unreadable {nbad}", style="red")
    for line in state.emergencies[-3:]:
        header.append(f"\n{line}", style="bold white on red")
    header.append(f"   running {elapsed_s:.0f} s   Ctrl-C stops")

    callsigns = {p.unit: p.callsign for p in plans}
    units = Table(title="Units (retained <node>/unit/<unit>/position)", expand=True)
    for col in ("unit", "callsign", "lat", "lon", "km/h", "course", "sats", "hdop", "fix time", "age s"):
        units.add_column(col, justify="right" if col not in ("unit", "callsign") else "left")
    seen = {p.unit for p in positions}
    for p in positions:
        units.add_row(
            p.unit, callsigns.get(p.unit, ""), f"{p.lat:.6f}", f"{p.lon:.6f}", _fmt(p.speed_kmh, ".1f"),
            _fmt(p.course, ".0f"), _fmt(p.sats, "d"), _fmt(p.hdop, ".2f"), _clock(p.time), _age(p.time, now),
        )  # fmt: skip
    for plan in plans:
        if plan.unit not in seen:
            units.add_row(plan.unit, plan.callsign, "-", "-", "-", "-", "-", "-", "-", "waiting", style="dim")

    devs = Table(title="Devices (retained <node>/device/<device>/status)", expand=True)
    for col in ("device", "driver", "state", "since", "sentences", "checksum err", "fixes", "rejected", "reconnects", "detail"):
        devs.add_column(col, justify="right" if col in ("sentences", "checksum err", "fixes", "rejected", "reconnects") else "left")
    for d in devices:
        c = d.counters
        devs.add_row(
            d.device, d.driver, Text(d.state, style=STATE_STYLE.get(d.state, "")), _clock(d.since),
            str(c.sentences), str(c.checksum_errors), str(c.fixes), str(c.rejected_fixes), str(c.reconnects), d.detail,
        )  # fmt: skip
    faulty = [p for p in plans if p.faults]
    footer = Text(
        f"database {workdir / 'alkomd.db'}   daemon log {workdir / 'alkomd.log'}   broker log {broker.log_path}",
        style="dim",
    )
    if faulty:
        footer.append(
            f"\n{faulty[0].device} ({faulty[0].unit}) has scripted faults: {', '.join(faulty[0].faults)} "
            "(START+SECONDS:KIND after it starts)",
            style="dim",
        )
    return Group(header, units, devs, footer)


# --- running it -------------------------------------------------------------------------------


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


def _subscriber(state: LiveState, broker: Broker) -> paho.Client:
    # The daemon always speaks MQTT 5; the viewer too, except against amqtt, which knows only 3.1.1.
    proto = MQTTProtocolVersion.MQTTv5 if broker.kind == "mosquitto" else MQTTProtocolVersion.MQTTv311
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"alkomd-demo-view-{os.getpid()}", protocol=proto
    )

    def on_connect(c: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        if not reason.is_failure:
            state.connected = True
            c.subscribe(state.node_topic + "/#", qos=1)

    def on_disconnect(c: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        state.connected = False

    def on_message(c: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        state.handle(msg.topic, bytes(msg.payload))

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    client.reconnect_delay_set(1, 5)
    client.connect_async(broker.host, broker.port, keepalive=30)
    client.loop_start()
    return client


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

    def say(line: str) -> None:
        print(line, file=out, flush=True)

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
        config.write_text(demo_config(plans, broker.port, work, protocol))
        log_path = work / "alkomd.log"
        node_topic = f"{ROOT}/{NODE_PATH}"
        state = LiveState(node_topic)
        client = _subscriber(state, broker)
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
        started = time.monotonic()
        deadline = None if duration_s is None else started + duration_s

        def finished() -> bool:
            return stop.is_set() or (deadline is not None and time.monotonic() >= deadline)

        def daemon_died() -> bool:
            return daemon is not None and daemon.poll() is not None

        if live_view:
            with Live(render(state, plans, broker, work, 0.0), console=console, refresh_per_second=REFRESH_PER_S,
                      transient=False) as live:  # fmt: skip
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

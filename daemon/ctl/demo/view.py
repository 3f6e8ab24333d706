"""What the demo shows: the station's MQTT messages as the viewer sees them, and the live table of them."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from rich.console import Group
from rich.table import Table
from rich.text import Text

from alkomd.daemon.ctl.demo.broker import Broker
from alkomd.daemon.ctl.demo.station import FAULT_SHOWS, NODE_NAME, UnitPlan
from alkomd.daemon.records import Counters

STATE_STYLE = {
    "waiting": "cyan",
    "connected": "green",
    "no_fix": "yellow",
    "silent": "yellow",
    "degraded": "magenta",
    "disconnected": "red",
    "online": "green",
    "offline": "red",
}


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
                new = _counters(h)
                if new.garbage_bytes > old.counters.garbage_bytes:  # no status for it: the plain view says it here
                    more = new.garbage_bytes - old.counters.garbage_bytes
                    self._events.append(f"device {device} garbage bytes {new.garbage_bytes} (+{more})")
                self.devices[device] = dataclasses.replace(old, counters=new)

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


def fault_lines(faults: Sequence[str]) -> list[str]:
    """One line per scripted fault: when, how long, and what it shows in the view."""
    out = []
    for f in faults:
        when, kind = f.split(":", 1)
        start, length = when.split("+", 1)
        out.append(f"at {start} s for {length} s: {kind}: {FAULT_SHOWS.get(kind, '')}")
    return out


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
        )
    for plan in plans:
        if plan.unit not in seen:
            units.add_row(plan.unit, plan.callsign, "-", "-", "-", "-", "-", "-", "-", "waiting", style="dim")

    devs = Table(title="Devices (retained <node>/device/<device>/status)", expand=True)
    numbers = ("sentences", "checksum err", "garbage bytes", "fixes", "rejected", "reconnects")
    for col in ("device", "driver", "state", "since", *numbers, "detail"):
        devs.add_column(col, justify="right" if col in numbers else "left")
    for d in devices:
        c = d.counters
        devs.add_row(
            d.device, d.driver, Text(d.state, style=STATE_STYLE.get(d.state, "")), _clock(d.since),
            str(c.sentences), str(c.checksum_errors), str(c.garbage_bytes), str(c.fixes), str(c.rejected_fixes), str(c.reconnects),
            d.detail,
        )
    faulty = [p for p in plans if p.faults]
    footer = Text(
        f"database {workdir / 'alkomd.db'}   daemon log {workdir / 'alkomd.log'}   broker log {broker.log_path}",
        style="dim",
    )
    if faulty:
        footer.append(f"\n{faulty[0].device} ({faulty[0].unit}) has scripted faults, counted from its start:", style="dim")
        for line in fault_lines(faulty[0].faults):
            footer.append(f"\n  {line}", style="dim")
    return Group(header, units, devs, footer)


def subscriber(state: LiveState, broker: Broker) -> paho.Client:
    """The viewer's MQTT client: every topic of the node, fed into `state` from paho's own thread."""
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

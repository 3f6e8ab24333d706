"""The demo's 110 calls: a script of callers published on the Polres's `call/new`, and a line per call state that follows."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from alkomd.daemon.mqtt import contract

FIRST_S = 15.0  # the first call, this long after the start
EVERY_S = 60.0  # then one call this often, the script over and over


@dataclass(frozen=True)
class ScriptedCall:
    """One caller of the script: what they report, from where, and how well their phone knows it."""

    category: str
    caller: str
    lat: float
    lon: float
    accuracy_m: float
    note: str


REPEAT_CALLER = "+6281340001001"
SCRIPT = (
    ScriptedCall("pelaporan/kecelakaan", REPEAT_CALLER, 0.5430, 123.0590, 30, "Tabrakan motor dan mobil di Jl. Sudirman"),
    ScriptedCall("pengaduan/kekerasan", "+6285240002002", 0.5560, 123.0680, 60, "Keributan di rumah tetangga, ada yang dipukul"),
    ScriptedCall("informasi", "+6282190003003", 0.5380, 123.0520, 400, "Tanya jam buka pelayanan SKCK"),
    ScriptedCall("pelaporan/pencurian", REPEAT_CALLER, 0.5435, 123.0600, 25, "Penelepon yang sama: motor korban dibawa lari"),
    ScriptedCall("pelaporan/kebakaran", "+6281350005005", 0.6190, 122.9840, 80, "Kebakaran rumah di Limboto (di luar Kota Gorontalo)"),
    ScriptedCall("pelaporan/orang-hilang", "+6285340006006", 0.5490, 123.0450, 150, "Anak umur 7 tahun belum pulang sejak siang"),
)
OUTSIDE = 4  # the index of the call placed outside the Polres's jurisdiction


def call_payload(call_id: str, call: ScriptedCall, now: datetime) -> bytes:
    """The `call/new` message of a scripted call (what a 110 call-taking system would publish)."""
    body = {"call_id": call_id, "caller": call.caller, "lat": call.lat, "lon": call.lon, "accuracy_m": call.accuracy_m,
            "received_at": now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", "category": call.category, "note": call.note,
            "msg_id": contract.new_msg_id()}
    return json.dumps(body, ensure_ascii=False).encode()


def call_filters(nodes: tuple[str, ...]) -> list[str]:
    """The topic filters of the call states of these nodes (what their consoles follow)."""
    return [f for node in nodes for f in contract.console_subscriptions(node, "polres") if f.endswith("/call/+")]


class CallScript:
    """Publishes the script's calls on the Polres's `call/new` from a thread; says each call state seen at either tier."""

    def __init__(self, host: str, port: int, mqtt5: bool, node: str, parent: str, say: Callable[[str], object]) -> None:
        self.node, self.parent, self.say = node, parent, say
        self.sent = 0
        self._stop = threading.Event()
        self._seen: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        proto = MQTTProtocolVersion.MQTTv5 if mqtt5 else MQTTProtocolVersion.MQTTv311
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"alkomd-demo-110-{os.getpid()}",
                                  protocol=proto)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 5)
        self.client.connect_async(host, port, keepalive=30)
        self._thread = threading.Thread(target=self._run, name="demo-110", daemon=True)

    def start(self) -> None:
        self.client.loop_start()
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, c: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        if not reason.is_failure:
            for f in call_filters((self.node, self.parent)):
                c.subscribe(f, qos=1)

    def _on_message(self, c: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        node = self.node if msg.topic.startswith(self.node + "/") else self.parent
        parsed = contract.parse_console_topic(node, msg.topic)
        if parsed is None or parsed.kind != "call" or not msg.payload:
            return
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        state = str(body.get("state"))
        key = (node, parsed.key)
        with self._lock:
            if self._seen.get(key) == state:
                return
            self._seen[key] = state
        extra = [str(body.get("category_code") or body.get("category") or ""), f"location {body.get('location_status')}",
                 f"priority {body.get('priority')}"]
        extra += [f"to {body['escalated_to']}" for _ in (1,) if body.get("escalated_to")]
        extra += [str(f) for f in body.get("flags") or () if f]
        self.say(f"call {parsed.key} {state} at {body.get('tier')} {node} ({', '.join(e for e in extra if e)})")

    def _run(self) -> None:
        wait = FIRST_S
        while not self._stop.wait(wait):
            n = self.sent
            call = SCRIPT[n % len(SCRIPT)]
            call_id = f"110-{n + 1:04d}"
            self.client.publish(contract.call_new_topic(self.node), call_payload(call_id, call, datetime.now(UTC)), qos=1)
            self.sent += 1
            self.say(f"110 call {call_id} from {call.caller}: {call.category}, {call.note}")
            wait = EVERY_S

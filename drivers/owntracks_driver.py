"""The `owntracks` driver: officers' phones running OwnTracks (or anything speaking its JSON), over MQTT or HTTP.

`transport = "mqtt"`: the driver's own paho client (not the daemon's link: its own broker, account
and client id) subscribes to `<prefix>/+/+` and reads each phone's `owntracks/<user>/<device>`
messages. `transport = "http"`: the driver serves an endpoint (drivers/owntracks_http.py) that
phones in the app's HTTP mode POST to, with HTTP Basic authentication. Either way a location
report (drivers/owntracks.py) becomes a `Fix` of the radio `<user>/<device>`, which `[[unit]]
radio` maps to a unit, with the phone's `acc` as `accuracy_m`. Both run on the shared reconnect
loop: a broker that is away or refuses the account, or a port that cannot be bound, is
`disconnected` with the reason, retried with backoff. The driver knows nothing of the daemon's
MQTT contract.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from alkomd.daemon.records import Counters, utc_now
from alkomd.daemon.schema import ID_PATTERN, spec
from alkomd.drivers.base import DriverSpec, Emit, LinkError, Reconnecting, StateTracker
from alkomd.drivers.owntracks import BASE_TOPIC, Location, OwnTracksError, decode, to_fix
from alkomd.drivers.owntracks_http import Credentials, PhoneServer, tls_context

log = logging.getLogger(__name__)

LOOP_S = 0.25  # one paho network loop or one accept wait; bounds how long a stop request waits
EVALUATE_S = 0.5
CONNECT_TIMEOUT_S = 10.0
NAME = r"[A-Za-z0-9_.-]{1,64}"
MAX_WARNED = 256  # sources (topics, users) whose unreadable message was logged as a warning, once each


@dataclass(frozen=True)
class OwnTracksOptions:
    transport: str = spec("mqtt", choices=("mqtt", "http"), doc="mqtt: subscribe on a broker; http: serve an endpoint phones POST to.")
    # mqtt
    host: str = spec("localhost", doc="mqtt: the broker the phones publish to.")
    port: int = spec(8883, min=1, max=65535, doc="mqtt: broker port (8883 for TLS, 1883 for plain).")
    tls: bool = spec(True, doc="mqtt: use TLS. Turn off only on a trusted loopback or test broker.")
    ca_file: Path | None = spec(None, must_exist=True, doc="mqtt: CA certificate(s) to verify the broker; default: the system store.")
    username: str = spec("", doc="mqtt: the driver's MQTT user name.")
    password_file: Path | None = spec(None, must_exist=True, doc="mqtt: file holding the driver's MQTT password.")
    client_id: str = spec("", pattern=f"({ID_PATTERN})?", doc="mqtt: client id (its session keeps the phones' reports while "
                          "the station is away); default alkomd-owntracks-<host name>-<device id>.")
    prefix: str = spec(BASE_TOPIC, pattern=f"{NAME}(/{NAME})*", doc="mqtt: the phones publish to <prefix>/<user>/<device>.")
    keepalive_s: int = spec(60, min=5, max=3600, doc="mqtt: keepalive; a dead broker is noticed after about twice this.")
    # http
    bind: str = spec("0.0.0.0", doc="http: local address to listen on (0.0.0.0, ::, or one interface's address).")
    listen_port: int = spec(8083, min=1, max=65535, doc="http: TCP port to listen on.")
    path: str = spec("/pub", pattern=r"/[A-Za-z0-9_./-]{0,64}", doc="http: the URL path phones POST to.")
    users_file: Path | None = spec(None, must_exist=True, doc="http: user:password lines; a phone may report only as its user.")
    secret_file: Path | None = spec(None, must_exist=True, doc="http: one password for every user (instead of users_file).")
    cert_file: Path | None = spec(None, must_exist=True, doc="http: TLS certificate (chain): serve https.")
    key_file: Path | None = spec(None, must_exist=True, doc="http: the TLS certificate's private key.")
    # both
    silent_after_s: float = spec(900.0, min=1, max=86400, doc="No message from any phone for this long: state silent.")
    no_fix_after_s: float = spec(1800.0, min=1, max=86400, doc="No valid fix from any phone for this long: state no_fix.")
    reconnect_max_s: float = spec(30.0, min=0.5, max=600, doc="Upper bound of the reconnect (or re-bind) backoff.")

    def __post_init__(self) -> None:
        if self.transport == "http":
            if (self.users_file is None) == (self.secret_file is None):
                raise ValueError("transport http needs exactly one of users_file and secret_file (phones must authenticate)")
            if (self.cert_file is None) != (self.key_file is None):
                raise ValueError("cert_file and key_file go together")


class Phones:
    """What both transports share: decode one message, count it, emit its fix (driver thread only)."""

    def __init__(self, device: str, prefix: str) -> None:
        self.device = device
        self.prefix = prefix
        self.bytes = self.messages = self.errors = self.fixes = self.rejected = 0
        self.tracker: StateTracker | None = None
        self._warned: set[str] = set()

    def handle(self, payload: bytes, emit: Emit, *, topic: str | None = None, headers: dict[str, str] | None = None,
               user: str | None = None) -> None:
        """One message; with `user`, a report naming another user (in its body's `topic`) is refused."""
        self.bytes += len(payload)
        try:
            msg = decode(payload, topic=topic, headers=headers, base=self.prefix)
            if user is not None and msg.radio.split("/", 1)[0] != user:
                raise OwnTracksError(f"reports as {msg.radio!r}, not as its own user {user!r}")
        except OwnTracksError as exc:
            self.errors += 1
            source = topic or f"a post as {(headers or {}).get('X-Limit-U', '?')!r}"
            if source not in self._warned and len(self._warned) < MAX_WARNED:
                self._warned.add(source)  # a misconfigured phone is logged once, not at every report
                log.warning("%s: %s not read: %s", self.device, source, exc)
            else:
                log.debug("%s: %s not read: %s", self.device, source, exc)
            return
        self.messages += 1
        tracker = self.tracker
        if tracker is not None:
            tracker.saw_sentence()
        if not isinstance(msg, Location):
            return
        fix, reject = to_fix(msg, device=self.device, received=utc_now(), received_mono=time.monotonic())
        if fix is None:
            self.rejected += 1
            log.debug("%s: %s: no fix: %s", self.device, msg.radio, reject)
            return
        self.fixes += 1
        if tracker is not None:
            tracker.saw_fix()
        emit(fix)

    def counters(self, reconnects: int) -> Counters:
        return Counters(bytes=self.bytes, sentences=self.messages, parse_errors=self.errors, fixes=self.fixes,
                        rejected_fixes=self.rejected, reconnects=reconnects)


class OwnTracksMqtt(Reconnecting[paho.Client]):
    """Phones on a broker: one paho client per connection, its network loop run in the driver's thread."""

    driver_name = "owntracks"

    def __init__(self, device: str, opts: OwnTracksOptions) -> None:
        super().__init__(device, opts, log)
        self.opts = opts
        self.phones = Phones(device, opts.prefix)
        self.client_id = opts.client_id or f"alkomd-owntracks-{socket.gethostname()}-{device}"[:64]
        self.topic = f"{opts.prefix}/+/+"
        self._emit: Emit | None = None
        self._state: dict[str, Any] = {}
        self._sub_refused = False

    def counters(self) -> Counters:
        return self.phones.counters(self.link.reconnects)

    def _client(self) -> paho.Client:
        o = self.opts
        c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        protocol=MQTTProtocolVersion.MQTTv311, clean_session=False)
        if o.username:
            try:
                password = o.password_file.read_text(encoding="utf-8").rstrip("\r\n") if o.password_file else None
            except OSError as exc:
                raise LinkError(f"cannot read password_file: {exc}") from exc
            c.username_pw_set(o.username, password)
        if o.tls:
            try:
                c.tls_set(ca_certs=str(o.ca_file) if o.ca_file else None, cert_reqs=ssl.CERT_REQUIRED)
            except (OSError, ssl.SSLError) as exc:
                raise LinkError(f"cannot use ca_file: {exc}") from exc
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        return c

    def _on_subscribe(self, client: paho.Client, userdata: object, mid: int, codes: list[ReasonCode], props: Any) -> None:
        refused = any(rc.is_failure for rc in codes)
        if refused and not self._sub_refused:
            log.warning("%s: the broker refused the subscription to %s: the account %r needs read access to it (ACL)",
                        self.device, self.topic, self.opts.username)
        elif self._sub_refused and not refused:
            log.info("%s: subscribed to %s", self.device, self.topic)
        self._sub_refused = refused

    def _on_connect(self, client: paho.Client, userdata: object, flags: Any, rc: ReasonCode, props: Any) -> None:
        self._state["connack"] = rc
        if not rc.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        if self._emit is not None:
            self.phones.handle(bytes(msg.payload), self._emit, topic=msg.topic)

    def open(self, stop: threading.Event) -> paho.Client | None:
        o = self.opts
        where = f"broker {o.host}:{o.port}"
        c = self._client()
        self._state = {}
        try:
            c.connect(o.host, o.port, keepalive=o.keepalive_s)
        except (OSError, ValueError) as exc:
            raise LinkError(f"{where}: {exc}", f"cannot connect to {where}: {exc}") from exc
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while "connack" not in self._state:
            if stop.is_set():
                c.disconnect()
                return None
            rc = c.loop(LOOP_S)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or time.monotonic() > deadline:
                c.disconnect()
                why = "no CONNACK in time" if rc == MQTTErrorCode.MQTT_ERR_SUCCESS else paho.error_string(rc)
                raise LinkError(f"{where}: {why}", f"cannot connect to {where}: {why}")
        connack: ReasonCode = self._state["connack"]
        if connack.is_failure:
            c.disconnect()
            raise LinkError(f"{where} refused the connection: {connack}", f"{where} refused the connection: {connack} "
                            "(check username and password_file)")
        return c

    def opened_text(self) -> str:
        return f"connected to broker {self.opts.host}:{self.opts.port}, subscribed to {self.topic}"

    def read(self, conn: paho.Client, stop: threading.Event, emit: Emit, tracker: StateTracker) -> None:
        self._emit = emit
        self.phones.tracker = tracker
        last_eval = time.monotonic()
        while not stop.is_set():
            rc = conn.loop(LOOP_S)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                why = paho.error_string(rc)
                raise LinkError(f"lost broker {self.opts.host}:{self.opts.port}: {why}")
            now = time.monotonic()
            if now - last_eval >= EVALUATE_S:
                tracker.evaluate()
                last_eval = now

    def close(self, conn: paho.Client) -> None:
        try:
            conn.disconnect()
        except (OSError, ValueError):
            pass


class OwnTracksHttp(Reconnecting[PhoneServer]):
    """Phones posting to an endpoint the driver serves."""

    driver_name = "owntracks"

    def __init__(self, device: str, opts: OwnTracksOptions) -> None:
        super().__init__(device, opts, log)
        self.opts = opts
        self.phones = Phones(device, opts.prefix)
        self._emit: Emit | None = None
        self.server: PhoneServer | None = None
        self._stamp: float | None = None  # mtime of the credentials file as last read

    def counters(self) -> Counters:
        return self.phones.counters(self.link.reconnects)

    def _handle(self, body: bytes, headers: dict[str, str], user: str | None) -> None:
        if self._emit is not None:
            self.phones.handle(body, self._emit, headers=headers, user=user)

    def open(self, stop: threading.Event) -> PhoneServer:
        o = self.opts
        self._stamp = self._credentials_stamp()
        try:
            creds = Credentials.load(o.users_file, o.secret_file)
        except (OSError, ValueError) as exc:
            raise LinkError(f"cannot read the phones' credentials: {exc}") from exc
        ctx = tls_context(o.cert_file, o.key_file)
        try:
            self.server = PhoneServer(o.bind, o.listen_port, o.path, creds, self._handle, ctx)
        except OSError as exc:
            raise LinkError(f"cannot listen on {o.bind}:{o.listen_port}: {exc}") from exc
        return self.server

    def opened_text(self) -> str:
        o = self.opts
        scheme = "https" if o.cert_file else "http"
        host = f"[{o.bind}]" if ":" in o.bind else o.bind
        return f"listening for OwnTracks posts on {scheme}://{host}:{o.listen_port}{o.path}"

    def read(self, conn: PhoneServer, stop: threading.Event, emit: Emit, tracker: StateTracker) -> None:
        self._emit = emit
        self.phones.tracker = tracker
        last_eval = time.monotonic()
        while not stop.is_set():
            conn.handle_request()
            now = time.monotonic()
            if now - last_eval >= EVALUATE_S:
                tracker.evaluate()
                self._reread(conn)
                last_eval = now

    def _credentials_stamp(self) -> float | None:
        path = self.opts.users_file or self.opts.secret_file
        try:
            return path.stat().st_mtime if path is not None else None
        except OSError:
            return None

    def _reread(self, conn: PhoneServer) -> None:
        """Take a changed users or secret file (an officer's phone added) without a restart; keep the old one if it is bad."""
        stamp = self._credentials_stamp()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            conn.creds = Credentials.load(self.opts.users_file, self.opts.secret_file)
        except (OSError, ValueError) as exc:
            log.warning("%s: the phones' credentials file changed but cannot be read (%s): keeping the previous one", self.device, exc)
            return
        log.info("%s: re-read the phones' credentials", self.device)

    def close(self, conn: PhoneServer) -> None:
        try:
            conn.server_close()
        except OSError:
            pass


def create(device: str, opts: OwnTracksOptions) -> OwnTracksMqtt | OwnTracksHttp:
    return OwnTracksHttp(device, opts) if opts.transport == "http" else OwnTracksMqtt(device, opts)


DRIVER = DriverSpec(
    name="owntracks",
    options=OwnTracksOptions,
    create=create,
    summary="officers' phones running OwnTracks, over MQTT (a broker) or HTTP (an endpoint served here); radio = user/device",
)

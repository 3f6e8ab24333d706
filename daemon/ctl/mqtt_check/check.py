"""The MQTT check itself: log in with the daemon's settings, send a probe to itself and receive it back, each step timed."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from alkomd.daemon import __version__
from alkomd.daemon.config import Config
from alkomd.daemon.ctl.mqtt_check.diagnose import (
    Diagnosis,
    ca_name,
    closed_before_connack,
    no_answer,
    refused_login,
    tls_problem,
    untrusted,
)
from alkomd.daemon.exit_codes import EX_CONFIG, EX_NOPERM, EX_OK, EX_TEMPFAIL, EX_UNAVAILABLE
from alkomd.daemon.mqtt import contract
from alkomd.daemon.mqtt.link import LinkEvents, MqttLink
from alkomd.daemon.records import utc_iso, utc_now

CHECK_PREFIX = "alkomctl-check-"  # the check's own client id: this + the node path with - for /
TAKEN_OVER = 0x8E  # DISCONNECT "Session taken over": another connection with our client id
STEPS = ("resolve", "connect", "login", "subscribe", "publish", "receive")


@dataclass(frozen=True)
class Step:
    """One step of the check; `ms` is how long it took (None when it did not finish)."""

    name: str
    ok: bool
    ms: float | None
    detail: str


@dataclass(frozen=True)
class Report:
    """The whole check: what was tried with which settings, each step, and the verdict."""

    ok: bool
    exit_code: int
    broker: str
    tls: bool
    ca: str
    client_cert: str
    username: str
    client_id: str
    protocol: str
    probe_topic: str
    steps: tuple[Step, ...]
    rtt_ms: float | None
    session: str
    problem: str
    hint: str


class Failed(Exception):
    """A step failed: what happened in plain words, what to do, and the exit code."""

    def __init__(self, why: Diagnosis) -> None:
        super().__init__(why.problem)
        self.why = why


@dataclass
class _Seen:
    """What paho's callbacks reported (all on this thread: the check drives paho's loop itself)."""

    connack: ReasonCode | None = None
    session_present: bool = False
    disconnect: ReasonCode | None = None
    disconnected: bool = False
    subacks: dict[int, list[ReasonCode]] = field(default_factory=dict)
    unsubacks: set[int] = field(default_factory=set)
    pubacks: dict[int, ReasonCode] = field(default_factory=dict)
    probe_at: float | None = None
    held: int = 0  # messages of the daemon's session left unacknowledged for it
    errors: list[str] = field(default_factory=list)


class Check:
    """One run of the check against `cfg`'s broker, as `cfg`'s node."""

    def __init__(self, cfg: Config, timeout_s: float = 10.0) -> None:
        self.cfg = cfg
        self.m = cfg.mqtt
        self.timeout_s = timeout_s
        self.node = cfg.node.topic
        self.token = os.urandom(8).hex()
        self.probe_topic = contract.probe_topic(self.node, self.token)
        self.steps: list[Step] = []
        self.seen = _Seen()
        self.rtt_ms: float | None = None
        self.session = ""
        self.client_id = ""
        self._client: paho.Client | None = None
        self._current = "resolve"

    # -- the steps -------------------------------------------------------------------------------

    def run(self) -> Report:
        problem, hint, code = "", "", EX_OK
        try:
            self._resolve()
            client = self._client_for_check()
            self._connect(client)
            self._login(client)
            self._subscribe(client)
            mid, sent_at = self._publish(client)
            self._receive(client, mid, sent_at)
        except Failed as exc:
            problem, hint, code = exc.why.problem, exc.why.hint, exc.why.code
            if all(s.ok for s in self.steps):  # the connection ended under a step (see _wait)
                self.steps.append(Step(self._current, False, None, problem))
        finally:
            self._leave()
        return Report(
            ok=code == EX_OK, exit_code=code, broker=f"{self.m.host}:{self.m.port}", tls=self.m.tls, ca=ca_name(self.m),
            client_cert=str(self.m.cert_file or ""), username=self.m.username, client_id=self.client_id,
            protocol=self.m.protocol, probe_topic=self.probe_topic, steps=tuple(self.steps), rtt_ms=self.rtt_ms,
            session=self.session, problem=problem, hint=hint,
        )

    def _step(self, name: str, t0: float, detail: str) -> None:
        self.steps.append(Step(name, True, round((time.monotonic() - t0) * 1000, 1), detail))
        self._current = STEPS[min(STEPS.index(name) + 1, len(STEPS) - 1)]

    def _fail(self, name: str, t0: float | None, detail: str, why: Diagnosis) -> Failed:
        ms = None if t0 is None else round((time.monotonic() - t0) * 1000, 1)
        self.steps.append(Step(name, False, ms, detail))
        return Failed(why)

    def _resolve(self) -> None:
        t0 = time.monotonic()
        try:
            infos = socket.getaddrinfo(self.m.host, self.m.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            why = Diagnosis(
                f"DNS: the broker's name {self.m.host!r} cannot be resolved ({exc.strerror or exc})",
                f"check mqtt.host in {self.cfg.source} and this machine's DNS (/etc/resolv.conf, `getent hosts "
                f"{self.m.host}`); an IP address works too if the broker's certificate names it",
                EX_UNAVAILABLE,
            )
            raise self._fail("resolve", t0, exc.strerror or str(exc), why) from None
        addresses = list(dict.fromkeys(str(i[4][0]) for i in infos))
        self._step("resolve", t0, f"{self.m.host} -> {', '.join(addresses[:3])}")

    def _client_for_check(self) -> paho.Client:
        """A paho client built as the daemon's (MqttLink: TLS, CA, certificate, login) but with the check's own client id
        (`check_client_id`), without the daemon's will, acknowledging by hand."""
        loop = asyncio.new_event_loop()  # MqttLink posts events to a loop; the check replaces every callback
        try:
            link = MqttLink(replace(self.m, client_id=check_client_id(self.node)), self.node, __version__, loop, LinkEvents())
        except PermissionError as exc:
            why = Diagnosis(
                f"cannot read {exc.filename}: permission denied",
                "run the check as root, or as the alkomd user: sudo -u alkomd alkomctl mqtt-check",
                EX_NOPERM,
            )
            raise self._fail("setup", None, str(exc), why) from None
        except (OSError, ssl.SSLError) as exc:
            why = Diagnosis(
                f"cannot load the TLS files or the password file: {exc}",
                f"check mqtt.ca_file, mqtt.cert_file, mqtt.key_file and mqtt.password_file in {self.cfg.source}",
                EX_CONFIG,
            )
            raise self._fail("setup", None, str(exc), why) from None
        finally:
            loop.close()
        self.client_id = link.client_id
        c = link.client
        c.will_clear()  # the daemon's will says "<node>/state offline": never on the check's behalf
        c.manual_ack_set(True)  # acknowledge our probe only; the daemon's queued messages stay its own
        c.connect_timeout = self.timeout_s
        s = self.seen

        def on_connect(cl: paho.Client, ud: object, flags: paho.ConnectFlags, rc: ReasonCode, props: Properties | None) -> None:
            s.connack, s.session_present = rc, bool(flags.session_present)

        def on_disconnect(cl: paho.Client, ud: object, fl: paho.DisconnectFlags, rc: ReasonCode, props: Properties | None) -> None:
            s.disconnected, s.disconnect = True, rc

        def on_message(cl: paho.Client, ud: object, msg: paho.MQTTMessage) -> None:
            if msg.topic == self.probe_topic and self.token.encode() in msg.payload:
                if s.probe_at is None:
                    s.probe_at = time.monotonic()
                cl.ack(msg.mid, msg.qos)
            else:
                s.held += 1

        c.on_connect = on_connect
        c.on_disconnect = on_disconnect
        c.on_message = on_message
        c.on_subscribe = lambda cl, ud, mid, rcs, props: s.subacks.__setitem__(mid, list(rcs))
        c.on_unsubscribe = lambda cl, ud, mid, rcs, props: s.unsubacks.add(mid)
        c.on_publish = lambda cl, ud, mid, rc, props: s.pubacks.__setitem__(mid, rc)
        c.on_connect_fail = None
        c.on_log = lambda cl, ud, level, text: s.errors.append(text) if level <= paho.MQTT_LOG_ERR else None
        self._client = c
        return c

    def _connect(self, c: paho.Client) -> None:
        t0 = time.monotonic()
        where = f"{self.m.host}:{self.m.port}"
        try:
            if self.m.protocol == "5":
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = self.m.session_expiry_s
                c.connect(self.m.host, self.m.port, keepalive=self.m.keepalive_s, clean_start=False, properties=props)
            else:  # 3.1.1: MqttLink made the client with clean_session=False, as the daemon's
                c.connect(self.m.host, self.m.port, keepalive=self.m.keepalive_s)
        except ssl.SSLCertVerificationError as exc:
            raise self._fail("connect", t0, f"TLS: {exc.verify_message}", untrusted(self.m, exc)) from None
        except ssl.SSLError as exc:
            raise self._fail("connect", t0, f"TLS: {exc.reason or exc}", tls_problem(self.m, str(exc))) from None
        except ConnectionRefusedError:
            why = Diagnosis(
                f"connection refused: nothing accepts connections on {where}",
                f"is the broker running, and is mqtt.port ({self.m.port}) its port? A firewall can also refuse",
                EX_UNAVAILABLE,
            )
            raise self._fail("connect", t0, "connection refused", why) from None
        except TimeoutError:
            why = Diagnosis(
                f"no answer from {where} within {self.timeout_s:g} s",
                "the address may be wrong, the link down, or a firewall dropping the packets",
                EX_UNAVAILABLE,
            )
            raise self._fail("connect", t0, "timed out", why) from None
        except ConnectionResetError:
            if self.m.tls:
                why = tls_problem(self.m, "wrong version number")
                raise self._fail("connect", t0, "reset during the TLS handshake", why) from None
            raise self._fail("connect", t0, "connection reset", Diagnosis(f"{where} reset the connection", "", EX_UNAVAILABLE)) from None
        except OSError as exc:
            why = Diagnosis(
                f"cannot connect to {where}: {exc.strerror or exc}",
                "check the network path to the broker (ip route, the modem link)",
                EX_UNAVAILABLE,
            )
            raise self._fail("connect", t0, exc.strerror or str(exc), why) from None
        self._step("connect", t0, f"TCP and TLS (CA: {ca_name(self.m)})" if self.m.tls else "TCP, no TLS")

    def _login(self, c: paho.Client) -> None:
        t0 = time.monotonic()
        self._wait(c, lambda: self.seen.connack is not None, t0)
        rc = self.seen.connack
        who = f"user {self.m.username!r}" if self.m.username else "no user name"
        if rc is None:
            why = closed_before_connack(self.m, self.seen.errors, self.seen.disconnected, self.timeout_s)
            raise self._fail("login", t0, "no CONNACK", why)
        if rc.is_failure:
            raise self._fail("login", t0, f"CONNACK 0x{rc.value:02X} {rc.getName()}", refused_login(self.m, self.client_id, rc))
        if self.seen.session_present:  # the check removes its own session: this one is alkomd's (an imposed client id)
            self.session = (
                "the broker handed an existing session to the check: it imposes the client id (use_username_as_clientid), "
                "so the check took alkomd's place (alkomd reconnects by itself); its session left intact"
            )
        elif self.m.protocol == "5":
            self.session = "the check's own session (its own client id), removed on leaving"
        else:
            self.session = "the check's own session (its own client id; MQTT 3.1.1 keeps it, empty, until it connects again)"
        self._step("login", t0, f"{who}, client id {self.client_id!r}")

    def _subscribe(self, c: paho.Client) -> None:
        t0 = time.monotonic()
        _, mid = c.subscribe(self.probe_topic, qos=1)
        self._wait(c, lambda: mid in self.seen.subacks, t0)
        codes = self.seen.subacks.get(mid) if mid is not None else None
        if codes is None:
            raise self._fail("subscribe", t0, "no SUBACK", no_answer("SUBACK", self.timeout_s))
        if codes[0].is_failure:
            text = f"SUBACK 0x{codes[0].value:02X} {codes[0].getName()}"
            why = Diagnosis(
                f"not authorised to subscribe to {self.probe_topic} ({text})",
                f"the broker's ACL must let {self._user()} read {self.node}/# (config/mosquitto/acl)",
                EX_NOPERM,
            )
            raise self._fail("subscribe", t0, text, why)
        self._step("subscribe", t0, f"{self.probe_topic}, granted QoS {codes[0].value}")

    def _publish(self, c: paho.Client) -> tuple[int, float]:
        t0 = time.monotonic()
        probe = {"probe": self.token, "sent": utc_iso(utc_now()), "by": "alkomctl mqtt-check", "version": __version__}
        payload = json.dumps(probe, separators=(",", ":"))
        mid = c.publish(self.probe_topic, payload.encode(), qos=1, retain=False).mid
        self._wait(c, lambda: mid in self.seen.pubacks, t0)
        rc = self.seen.pubacks.get(mid)
        if rc is None:
            raise self._fail("publish", t0, "no PUBACK", no_answer("PUBACK", self.timeout_s))
        if rc.is_failure:
            text = f"PUBACK 0x{rc.value:02X} {rc.getName()}"
            if rc.value == 0x87:
                problem = f"not authorised to publish to {self.probe_topic} ({text})"
                hint = f"the broker's ACL must let {self._user()} write {self.node}/# (config/mosquitto/acl), then reload it"
            else:
                problem, hint = f"the broker refused the probe ({text})", "see the broker's log for this client"
            raise self._fail("publish", t0, text, Diagnosis(problem, hint, EX_NOPERM))
        detail = f"QoS 1, PUBACK 0x{rc.value:02X} {rc.getName()}" if self.m.protocol == "5" else "QoS 1, PUBACK"
        self._step("publish", t0, detail)
        return mid, t0

    def _receive(self, c: paho.Client, mid: int, sent_at: float) -> None:
        t0 = time.monotonic()
        self._wait(c, lambda: self.seen.probe_at is not None, t0)
        if self.seen.probe_at is None:
            if self.m.protocol == "5":
                problem = f"no message back: the broker accepted the probe but did not deliver it to {self.probe_topic}"
                hint = (
                    f"the broker's ACL lets {self._user()} write but not read {self.node}/#: add read access "
                    "(`topic readwrite <node>/#` in config/mosquitto/acl) and reload the broker"
                )
            else:
                problem = "no message back, and under MQTT 3.1.1 the broker does not say why"
                hint = (
                    f"the broker's ACL probably refuses {self._user()} writing or reading {self.node}/#; "
                    'mqtt.protocol = "5" makes refusals visible'
                )
            raise self._fail("receive", t0, f"nothing within {self.timeout_s:g} s", Diagnosis(problem, hint, EX_NOPERM))
        self.rtt_ms = round((self.seen.probe_at - sent_at) * 1000, 1)
        self.steps.append(Step("receive", True, self.rtt_ms, "the probe came back (time since it was published)"))

    def _leave(self) -> None:
        """Unsubscribe the probe, then disconnect; delete the session only if the check created it."""
        c = self._client
        if c is None or self.seen.connack is None or self.seen.connack.is_failure or self.seen.disconnected:
            if c is not None:
                c.loop_stop()
            return
        t0 = time.monotonic()
        _, mid = c.unsubscribe(self.probe_topic)
        self._wait(c, lambda: mid in self.seen.unsubacks, t0, limit_s=min(self.timeout_s, 3.0), quiet=True)
        props = None
        if self.m.protocol == "5" and not self.seen.session_present:
            props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
        c.disconnect(properties=props)
        end = time.monotonic() + 2
        while not self.seen.disconnected and time.monotonic() < end and c.loop(0.05) == paho.MQTT_ERR_SUCCESS:
            pass
        if self.seen.held:
            self.session += f"; {self.seen.held} message(s) for the daemon were left unacknowledged for it"

    # -- waiting (what a failure means is in `diagnose`) ----------------------------------------

    def _wait(self, c: paho.Client, done: Callable[[], bool], t0: float, limit_s: float | None = None, quiet: bool = False) -> None:
        end = t0 + (self.timeout_s if limit_s is None else limit_s)
        while not done() and time.monotonic() < end:
            rc = c.loop(0.05)
            if self.seen.disconnected or rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_AGAIN):
                break
        if quiet or done() or self.seen.connack is None or self.seen.connack.is_failure:
            return
        if self.seen.disconnect is not None and self.seen.disconnect.value == TAKEN_OVER:
            raise Failed(
                Diagnosis(
                    "another connection with this client id took the session back before the check finished (most "
                    "likely the running alkomd reconnecting)",
                    "run the check again; it takes a fraction of a second, alkomd waits mqtt.reconnect_min_s before reconnecting",
                    EX_TEMPFAIL,
                )
            )
        if self.seen.disconnected:
            rc_text = f"0x{self.seen.disconnect.value:02X} {self.seen.disconnect.getName()}" if self.seen.disconnect else "?"
            errors = "; ".join(self.seen.errors[-2:])
            problem = f"the broker closed the connection ({rc_text}{'; ' + errors if errors else ''})"
            raise Failed(Diagnosis(problem, "see the broker's log for this client", EX_UNAVAILABLE))

    def _user(self) -> str:
        return f"user {self.m.username!r}" if self.m.username else "this client (no user name)"


def check_client_id(node_topic: str) -> str:
    """The check's own client id: never the daemon's, so a running alkomd keeps its connection (ID_PATTERN-safe)."""
    return CHECK_PREFIX + node_topic.replace("/", "-")

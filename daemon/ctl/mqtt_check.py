"""`alkomctl mqtt-check`: log in to the broker exactly as the daemon does, send a probe to itself, explain failures.

The client is the daemon's own (`MqttLink` builds it from `[mqtt]`: protocol, TLS, CA,
client certificate, user name, password file, client id), minus the daemon's will. Steps, each
timed: resolve the host, connect (TCP and TLS), log in (CONNACK), subscribe to
`<node>/probe/<random>`, publish one QoS 1 message there (PUBACK), and receive it back. The
round trip is publish -> message back.

Sharing the daemon's identity safely. The check uses the daemon's client id (a broker with
`use_username_as_clientid`, like the shipped central.conf, would impose it anyway), so on a
station where alkomd is connected the broker hands the daemon's session to the check for the
moment it runs, and alkomd reconnects by itself (`mqtt.reconnect_min_s`). To give the session
back intact the check connects with clean start off and the daemon's session expiry, and
acknowledges nothing but its own probe: messages queued for the daemon (a 110 call, say) stay
unacknowledged in the session and the broker delivers them to alkomd when it is back. The
probe subscription is removed before leaving. A session that did not exist before the check
is deleted on the way out (MQTT 5: DISCONNECT with session expiry 0).

Exit codes: 0 the probe came back; 69 no trusted connection (DNS, refused, timeout, TLS
verification, not an MQTT port); 75 the session was taken back (by the running daemon) before
the check finished: run it again; 77 refused (login, client certificate, ACL for publish,
subscribe or read-back, an unreadable secret); 78 configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import ssl
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from alkomd.daemon import __version__
from alkomd.daemon import config as cfgmod
from alkomd.daemon.config import Config
from alkomd.daemon.exit_codes import EX_CONFIG, EX_NOPERM, EX_OK, EX_TEMPFAIL, EX_UNAVAILABLE
from alkomd.daemon.mqtt.link import LinkEvents, MqttLink
from alkomd.daemon.records import utc_iso, utc_now
from alkomd.daemon.schema import ConfigError

TAKEN_OVER = 0x8E  # DISCONNECT "Session taken over": another connection with our client id
STEPS = ("resolve", "connect", "login", "subscribe", "publish", "receive")
TLS_CLIENT_CERT_REFUSED = ("unknown ca", "bad certificate", "certificate unknown", "certificate expired",
                           "certificate revoked", "unsupported certificate", "access denied")  # fmt: skip
TLS_CLIENT_CERT_MISSING = ("certificate required", "eof occurred in violation of protocol", "handshake failure")
TLS_NOT_TLS = ("wrong version number", "record layer failure", "packet length too long", "unknown protocol", "http request")


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

    def __init__(self, problem: str, hint: str, code: int) -> None:
        super().__init__(problem)
        self.problem = problem
        self.hint = hint
        self.code = code


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


def load_config(path: Path, password_file: Path | None) -> Config:
    """The daemon's configuration, with `mqtt.password_file` replaced when --password-file is given."""
    if password_file is None:
        return cfgmod.load(path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(path, "", exc.strerror or str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from None
    mqtt = raw.setdefault("mqtt", {})
    if isinstance(mqtt, dict):
        mqtt["password_file"] = str(password_file.resolve())
    return cfgmod.parse(raw, path)


class Check:
    """One run of the check against `cfg`'s broker, as `cfg`'s node."""

    def __init__(self, cfg: Config, timeout_s: float = 10.0) -> None:
        self.cfg = cfg
        self.m = cfg.mqtt
        self.timeout_s = timeout_s
        self.node = cfg.node.topic
        self.token = os.urandom(8).hex()
        self.probe_topic = f"{self.node}/probe/{self.token}"
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
            problem, hint, code = exc.problem, exc.hint, exc.code
            if all(s.ok for s in self.steps):  # the connection ended under a step (see _wait)
                self.steps.append(Step(self._current, False, None, problem))
        finally:
            self._leave()
        return Report(
            ok=code == EX_OK, exit_code=code, broker=f"{self.m.host}:{self.m.port}", tls=self.m.tls, ca=self._ca_name(),
            client_cert=str(self.m.cert_file or ""), username=self.m.username, client_id=self.client_id,
            protocol=self.m.protocol, probe_topic=self.probe_topic, steps=tuple(self.steps), rtt_ms=self.rtt_ms,
            session=self.session, problem=problem, hint=hint,
        )  # fmt: skip

    def _step(self, name: str, t0: float, detail: str) -> None:
        self.steps.append(Step(name, True, round((time.monotonic() - t0) * 1000, 1), detail))
        self._current = STEPS[min(STEPS.index(name) + 1, len(STEPS) - 1)]

    def _fail(self, name: str, t0: float | None, detail: str, problem: str, hint: str, code: int) -> Failed:
        ms = None if t0 is None else round((time.monotonic() - t0) * 1000, 1)
        self.steps.append(Step(name, False, ms, detail))
        return Failed(problem, hint, code)

    def _resolve(self) -> None:
        t0 = time.monotonic()
        try:
            infos = socket.getaddrinfo(self.m.host, self.m.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise self._fail(
                "resolve", t0, exc.strerror or str(exc),
                f"DNS: the broker's name {self.m.host!r} cannot be resolved ({exc.strerror or exc})",
                f"check mqtt.host in {self.cfg.source} and this machine's DNS (/etc/resolv.conf, `getent hosts "
                f"{self.m.host}`); an IP address works too if the broker's certificate names it", EX_UNAVAILABLE,
            ) from None  # fmt: skip
        addresses = list(dict.fromkeys(str(i[4][0]) for i in infos))
        self._step("resolve", t0, f"{self.m.host} -> {', '.join(addresses[:3])}")

    def _client_for_check(self) -> paho.Client:
        """The daemon's own paho client (MqttLink builds it), without its will, acknowledging by hand."""
        loop = asyncio.new_event_loop()  # MqttLink posts events to a loop; the check replaces every callback
        try:
            link = MqttLink(self.m, self.node, __version__, loop, LinkEvents())
        except PermissionError as exc:
            raise self._fail(
                "setup", None, str(exc), f"cannot read {exc.filename}: permission denied",
                "run the check as root, or as the alkomd user: sudo -u alkomd alkomctl mqtt-check", EX_NOPERM,
            ) from None  # fmt: skip
        except (OSError, ssl.SSLError) as exc:
            raise self._fail(
                "setup", None, str(exc), f"cannot load the TLS files or the password file: {exc}",
                f"check mqtt.ca_file, mqtt.cert_file, mqtt.key_file and mqtt.password_file in {self.cfg.source}",
                EX_CONFIG,
            ) from None  # fmt: skip
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
            raise self._fail("connect", t0, f"TLS: {exc.verify_message}", *self._untrusted(exc)) from None
        except ssl.SSLError as exc:
            raise self._fail("connect", t0, f"TLS: {exc.reason or exc}", *self._tls_problem(str(exc))) from None
        except ConnectionRefusedError:
            raise self._fail(
                "connect", t0, "connection refused", f"connection refused: nothing accepts connections on {where}",
                f"is the broker running, and is mqtt.port ({self.m.port}) its port? A firewall can also refuse",
                EX_UNAVAILABLE,
            ) from None  # fmt: skip
        except TimeoutError:
            raise self._fail(
                "connect", t0, "timed out", f"no answer from {where} within {self.timeout_s:g} s",
                "the address may be wrong, the link down, or a firewall dropping the packets", EX_UNAVAILABLE,
            ) from None  # fmt: skip
        except ConnectionResetError:
            if self.m.tls:
                raise self._fail("connect", t0, "reset during the TLS handshake", *self._tls_problem("wrong version number")) from None
            raise self._fail("connect", t0, "connection reset", f"{where} reset the connection", "", EX_UNAVAILABLE) from None
        except OSError as exc:
            raise self._fail(
                "connect", t0, exc.strerror or str(exc), f"cannot connect to {where}: {exc.strerror or exc}",
                "check the network path to the broker (ip route, the modem link)", EX_UNAVAILABLE,
            ) from None  # fmt: skip
        self._step("connect", t0, f"TCP and TLS (CA: {self._ca_name()})" if self.m.tls else "TCP, no TLS")

    def _login(self, c: paho.Client) -> None:
        t0 = time.monotonic()
        self._wait(c, lambda: self.seen.connack is not None, t0)
        rc = self.seen.connack
        who = f"user {self.m.username!r}" if self.m.username else "no user name"
        if rc is None:
            raise self._fail("login", t0, "no CONNACK", *self._closed_before_connack())
        if rc.is_failure:
            raise self._fail("login", t0, f"CONNACK 0x{rc.value:02X} {rc.getName()}", *self._refused_login(rc))
        if self.seen.session_present:
            self.session = (
                "the broker handed this client id's existing session to the check (alkomd's, if it runs: it reconnects "
                "by itself); left intact"
            )
        else:
            self.session = "no session existed for this client id; the check's own was removed on leaving"
        self._step("login", t0, f"{who}, client id {self.client_id!r}")

    def _subscribe(self, c: paho.Client) -> None:
        t0 = time.monotonic()
        _, mid = c.subscribe(self.probe_topic, qos=1)
        self._wait(c, lambda: mid in self.seen.subacks, t0)
        codes = self.seen.subacks.get(mid) if mid is not None else None
        if codes is None:
            raise self._fail("subscribe", t0, "no SUBACK", *self._no_answer("SUBACK"))
        if codes[0].is_failure:
            raise self._fail(
                "subscribe", t0, f"SUBACK 0x{codes[0].value:02X} {codes[0].getName()}",
                f"not authorised to subscribe to {self.probe_topic} (SUBACK 0x{codes[0].value:02X} {codes[0].getName()})",
                f"the broker's ACL must let {self._user()} read {self.node}/# (config/mosquitto/acl)", EX_NOPERM,
            )  # fmt: skip
        self._step("subscribe", t0, f"{self.probe_topic}, granted QoS {codes[0].value}")

    def _publish(self, c: paho.Client) -> tuple[int, float]:
        t0 = time.monotonic()
        payload = json.dumps({"probe": self.token, "sent": utc_iso(utc_now()), "by": "alkomctl mqtt-check", "version": __version__},
                             separators=(",", ":"))  # fmt: skip
        mid = c.publish(self.probe_topic, payload.encode(), qos=1, retain=False).mid
        self._wait(c, lambda: mid in self.seen.pubacks, t0)
        rc = self.seen.pubacks.get(mid)
        if rc is None:
            raise self._fail("publish", t0, "no PUBACK", *self._no_answer("PUBACK"))
        if rc.is_failure:
            text = f"PUBACK 0x{rc.value:02X} {rc.getName()}"
            if rc.value == 0x87:
                problem = f"not authorised to publish to {self.probe_topic} ({text})"
                hint = f"the broker's ACL must let {self._user()} write {self.node}/# (config/mosquitto/acl), then reload it"
            else:
                problem, hint = f"the broker refused the probe ({text})", "see the broker's log for this client"
            raise self._fail("publish", t0, text, problem, hint, EX_NOPERM)
        detail = f"QoS 1, PUBACK 0x{rc.value:02X} {rc.getName()}" if self.m.protocol == "5" else "QoS 1, PUBACK"
        self._step("publish", t0, detail)
        return mid, t0

    def _receive(self, c: paho.Client, mid: int, sent_at: float) -> None:
        t0 = time.monotonic()
        self._wait(c, lambda: self.seen.probe_at is not None, t0)
        if self.seen.probe_at is None:
            if self.m.protocol == "5":
                problem = f"no message back: the broker accepted the probe but did not deliver it to {self.probe_topic}"
                hint = (f"the broker's ACL lets {self._user()} write but not read {self.node}/#: add read access "
                        "(`topic readwrite <node>/#` in config/mosquitto/acl) and reload the broker")  # fmt: skip
            else:
                problem = "no message back, and under MQTT 3.1.1 the broker does not say why"
                hint = (f"the broker's ACL probably refuses {self._user()} writing or reading {self.node}/#; "
                        'mqtt.protocol = "5" makes refusals visible')  # fmt: skip
            raise self._fail("receive", t0, f"nothing within {self.timeout_s:g} s", problem, hint, EX_NOPERM)
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

    # -- waiting and explaining ---------------------------------------------------------------

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
                "another connection with this client id took the session back before the check finished (most likely "
                "the running alkomd reconnecting)",
                "run the check again; it takes a fraction of a second, alkomd waits mqtt.reconnect_min_s before reconnecting",
                EX_TEMPFAIL,
            )  # fmt: skip
        if self.seen.disconnected:
            rc_text = f"0x{self.seen.disconnect.value:02X} {self.seen.disconnect.getName()}" if self.seen.disconnect else "?"
            errors = "; ".join(self.seen.errors[-2:])
            raise Failed(f"the broker closed the connection ({rc_text}{'; ' + errors if errors else ''})",
                         "see the broker's log for this client", EX_UNAVAILABLE)  # fmt: skip

    def _ca_name(self) -> str:
        if not self.m.tls:
            return ""
        if self.m.ca_file:
            return str(self.m.ca_file)
        return f"the system CA store ({ssl.get_default_verify_paths().cafile or '/etc/ssl/certs'})"

    def _user(self) -> str:
        return f"user {self.m.username!r}" if self.m.username else "this client (no user name)"

    def _untrusted(self, exc: ssl.SSLCertVerificationError) -> tuple[str, str, int]:
        msg = str(exc.verify_message or exc)
        if "hostname" in msg.lower() or "ip address mismatch" in msg.lower():
            return (f"TLS: the broker's certificate does not name {self.m.host!r} ({msg})",
                    "set mqtt.host to a name (or address) in the certificate's subjectAltName", EX_UNAVAILABLE)  # fmt: skip
        return (
            f"TLS: the broker's certificate is not trusted: {msg}; it was checked against {self._ca_name()}",
            "mqtt.ca_file must be the CA certificate that signed the broker's certificate (config/mosquitto/README.md); "
            "an expired certificate must be renewed on the broker",
            EX_UNAVAILABLE,
        )

    def _tls_problem(self, text: str) -> tuple[str, str, int]:
        low = text.lower()
        if any(k in low for k in TLS_NOT_TLS):
            return (f"TLS handshake failed: {self.m.host}:{self.m.port} does not speak TLS ({text})",
                    "is this the broker's TLS port (8883)? With a plain-text broker set mqtt.tls = false", EX_UNAVAILABLE)  # fmt: skip
        return self._client_cert_problem(low) or (f"TLS handshake failed: {text}", "see the broker's log", EX_UNAVAILABLE)

    def _client_cert_problem(self, low: str) -> tuple[str, str, int] | None:
        if any(k in low for k in TLS_CLIENT_CERT_REFUSED):
            return (f"the broker refused this station's client certificate {self.m.cert_file or '(none)'}: {low.strip()}",
                    "the certificate must be signed by the CA the broker trusts (its cafile), be valid today and "
                    "carry extendedKeyUsage clientAuth", EX_NOPERM)  # fmt: skip
        if any(k in low for k in TLS_CLIENT_CERT_MISSING) and self.m.tls:
            if self.m.cert_file is None:
                return ("the broker closed the TLS connection without answering: it requires a client certificate, "
                        "and none is configured", "set mqtt.cert_file and mqtt.key_file (config/mosquitto/README.md)",
                        EX_NOPERM)  # fmt: skip
            return (f"the broker closed the TLS connection without answering: it did not accept {self.m.cert_file}",
                    "check that the broker's cafile signed it and that it is still valid", EX_NOPERM)  # fmt: skip
        return None

    def _closed_before_connack(self) -> tuple[str, str, int]:
        errors = " ".join(self.seen.errors).lower()
        cert = self._client_cert_problem(errors)
        if cert is not None:
            return cert
        if not self.seen.disconnected:
            return (f"no MQTT answer from {self.m.host}:{self.m.port} within {self.timeout_s:g} s",
                    "is this an MQTT broker's port?", EX_UNAVAILABLE)  # fmt: skip
        if not self.m.tls:
            return (f"{self.m.host}:{self.m.port} closed the connection without an MQTT answer",
                    "a TLS port reached without TLS? set mqtt.tls = true (and mqtt.ca_file)", EX_UNAVAILABLE)  # fmt: skip
        return (f"{self.m.host}:{self.m.port} closed the connection without an MQTT answer ({'; '.join(self.seen.errors[-1:])})",
                "see the broker's log (journalctl -u mosquitto, /var/log/mosquitto/mosquitto.log)", EX_UNAVAILABLE)  # fmt: skip

    def _refused_login(self, rc: ReasonCode) -> tuple[str, str, int]:
        text = f"CONNACK 0x{rc.value:02X} {rc.getName()}"
        creds = (f"check mqtt.username ({self.m.username!r}) and the password in {self.m.password_file or '(no password_file)'} "
                 "against the broker's password file (mosquitto_passwd; config/mosquitto/README.md)")  # fmt: skip
        if rc.value in (0x86, 0x87, 0x8C):
            return (f"the broker refused the login ({text}): a wrong password, an unknown user or no user name "
                    "(mosquitto gives the same answer for all three)", creds, EX_NOPERM)  # fmt: skip
        if rc.value == 0x84:
            return (f"the broker does not speak MQTT {self.m.protocol} ({text})", 'set mqtt.protocol = "3.1.1"', EX_UNAVAILABLE)
        if rc.value in (0x88, 0x89):
            return f"the broker is not serving clients now ({text})", "try again later; see the broker's log", EX_UNAVAILABLE
        if rc.value == 0x85:
            return (f"the broker refused the client id {self.client_id!r} ({text})",
                    "set mqtt.client_id to what the broker expects", EX_NOPERM)  # fmt: skip
        return f"the broker refused the login ({text})", "see the broker's log for this client", EX_NOPERM

    def _no_answer(self, packet: str) -> tuple[str, str, int]:
        return (f"no {packet} from the broker within {self.timeout_s:g} s", "the link may be very slow or the broker overloaded; "
                "try --timeout 30", EX_UNAVAILABLE)  # fmt: skip


# -- output -------------------------------------------------------------------------------------


def render(report: Report, cfg: Config, out: TextIO) -> None:
    """The report for people: one line per step, then the verdict and, if any, the problem and what to do."""
    from rich.console import Console  # imported late: --json stays fast
    from rich.text import Text

    console = Console(file=out, width=None if out.isatty() else 120, highlight=False, markup=False)
    how = ("TLS" if report.tls else "plain TCP, no TLS") + f", MQTT {report.protocol}"
    console.print(Text(f"MQTT check of {cfg.node.topic} -> {report.broker} ({how})", style="bold"))
    for s in report.steps:
        line = Text("  ")
        line.append("ok  " if s.ok else "FAIL", style="green" if s.ok else "bold red")
        line.append(f" {s.name:<10} {'' if s.ms is None else f'{s.ms:>8.1f} ms'}  {s.detail}")
        console.print(line)
    if report.session:
        console.print(Text(f"  session: {report.session}", style="dim"))
    if report.ok:
        console.print(Text(f"OK: the probe came back, round trip {report.rtt_ms:g} ms", style="bold green"))
        return
    console.print(Text(f"PROBLEM: {report.problem}", style="bold red"))
    if report.hint:
        console.print(Text(f"what to do: {report.hint}"))


def run(config: Path, password_file: Path | None, timeout_s: float, as_json: bool,
        out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:  # fmt: skip
    try:
        cfg = load_config(config, password_file)
    except ConfigError as exc:
        print(f"alkomctl: config error: {exc}", file=err)
        if exc.key == "mqtt.password_file" and "/run/credentials/" in str(exc):
            print("hint: that is a systemd credential, present only while alkomd runs; "
                  "pass its source instead: --password-file /etc/alkomd/mqtt-password", file=err)  # fmt: skip
        return EX_CONFIG
    report = Check(cfg, timeout_s).run()
    if as_json:
        print(json.dumps(asdict(report), ensure_ascii=False), file=out)
    else:
        render(report, cfg, out)
    return report.exit_code


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `alkomctl mqtt-check` (ctl.py calls this with its subparsers)."""
    p = sub.add_parser(
        "mqtt-check",
        help="log in to the broker as the daemon does and send a probe to itself",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Connect to the broker with the daemon's own [mqtt] settings (TLS, CA, client certificate, user name,\n"
            "password file, client id), subscribe to <node>/probe/<random>, publish one QoS 1 message there and\n"
            "receive it back; print each step with its time, the round trip, and what is wrong in plain words:\n"
            "DNS, connection refused, TLS verification (against which CA), login refused, client certificate\n"
            "refused, not authorised to publish or subscribe, no message back (the ACL does not let it read).\n\n"
            "Safe while alkomd runs: the broker lends the daemon's session to the check for a moment; the check\n"
            "acknowledges only its own probe, so nothing queued for the daemon is lost, and alkomd reconnects.\n\n"
            "Exit codes: 0 the probe came back; 69 no trusted connection (DNS, refused, timeout, TLS, not MQTT);\n"
            "75 alkomd took its session back first: run it again; 77 refused (login, certificate, ACL, an\n"
            "unreadable secret); 78 configuration error."
        ),
        epilog=(
            "examples:\n"
            "  sudo alkomctl mqtt-check\n"
            "  sudo alkomctl mqtt-check --config /etc/alkomd/alkomd.toml --password-file /etc/alkomd/mqtt-password\n"
            "  alkomctl mqtt-check --json | jq .rtt_ms"
        ),
    )
    p.add_argument("--config", type=Path, default=cfgmod.DEFAULT_PATH, metavar="FILE",
                   help=f"the daemon's configuration (default {cfgmod.DEFAULT_PATH})")  # fmt: skip
    p.add_argument("--password-file", type=Path, default=None, metavar="FILE",
                   help="read the password here instead of mqtt.password_file (a systemd credential exists only while "
                   "alkomd runs: give its source, e.g. /etc/alkomd/mqtt-password)")  # fmt: skip
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="per step (default 10)")
    p.add_argument("--json", action="store_true", help="the report as one JSON object, for scripts")

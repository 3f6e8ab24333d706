"""What a failed step of `alkomctl mqtt-check` means, in plain words: the problem, what to do, and the exit code."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from paho.mqtt.reasoncodes import ReasonCode

from alkomd.daemon.config import MqttConfig
from alkomd.daemon.exit_codes import EX_NOPERM, EX_UNAVAILABLE

TLS_CLIENT_CERT_REFUSED = (
    "unknown ca",
    "bad certificate",
    "certificate unknown",
    "certificate expired",
    "certificate revoked",
    "unsupported certificate",
    "access denied",
)
TLS_CLIENT_CERT_MISSING = ("certificate required", "eof occurred in violation of protocol", "handshake failure")
TLS_NOT_TLS = ("wrong version number", "record layer failure", "packet length too long", "unknown protocol", "http request")


@dataclass(frozen=True)
class Diagnosis:
    """What went wrong in plain words, what to do about it, and the exit code that says so."""

    problem: str
    hint: str
    code: int


def ca_name(m: MqttConfig) -> str:
    """What the broker's certificate is checked against ('' without TLS)."""
    if not m.tls:
        return ""
    if m.ca_file:
        return str(m.ca_file)
    return f"the system CA store ({ssl.get_default_verify_paths().cafile or '/etc/ssl/certs'})"


def untrusted(m: MqttConfig, exc: ssl.SSLCertVerificationError) -> Diagnosis:
    msg = str(exc.verify_message or exc)
    if "hostname" in msg.lower() or "ip address mismatch" in msg.lower():
        return Diagnosis(
            f"TLS: the broker's certificate does not name {m.host!r} ({msg})",
            "set mqtt.host to a name (or address) in the certificate's subjectAltName",
            EX_UNAVAILABLE,
        )
    return Diagnosis(
        f"TLS: the broker's certificate is not trusted: {msg}; it was checked against {ca_name(m)}",
        "mqtt.ca_file must be the CA certificate that signed the broker's certificate (config/mosquitto/README.md); "
        "an expired certificate must be renewed on the broker",
        EX_UNAVAILABLE,
    )


def tls_problem(m: MqttConfig, text: str) -> Diagnosis:
    low = text.lower()
    if any(k in low for k in TLS_NOT_TLS):
        return Diagnosis(
            f"TLS handshake failed: {m.host}:{m.port} does not speak TLS ({text})",
            "is this the broker's TLS port (8883)? With a plain-text broker set mqtt.tls = false",
            EX_UNAVAILABLE,
        )
    return client_cert_problem(m, low) or Diagnosis(f"TLS handshake failed: {text}", "see the broker's log", EX_UNAVAILABLE)


def client_cert_problem(m: MqttConfig, low: str) -> Diagnosis | None:
    """The broker's refusal of this station's client certificate, if `low` (lowercase TLS errors) says so."""
    if any(k in low for k in TLS_CLIENT_CERT_REFUSED):
        return Diagnosis(
            f"the broker refused this station's client certificate {m.cert_file or '(none)'}: {low.strip()}",
            "the certificate must be signed by the CA the broker trusts (its cafile), be valid today and "
            "carry extendedKeyUsage clientAuth",
            EX_NOPERM,
        )
    if any(k in low for k in TLS_CLIENT_CERT_MISSING) and m.tls:
        if m.cert_file is None:
            return Diagnosis(
                "the broker closed the TLS connection without answering: it requires a client certificate, "
                "and none is configured",
                "set mqtt.cert_file and mqtt.key_file (config/mosquitto/README.md)",
                EX_NOPERM,
            )
        return Diagnosis(
            f"the broker closed the TLS connection without answering: it did not accept {m.cert_file}",
            "check that the broker's cafile signed it and that it is still valid",
            EX_NOPERM,
        )
    return None


def closed_before_connack(m: MqttConfig, errors: Sequence[str], disconnected: bool, timeout_s: float) -> Diagnosis:
    """No CONNACK: `errors` are paho's error log lines, `disconnected` whether the broker closed the connection."""
    cert = client_cert_problem(m, " ".join(errors).lower())
    if cert is not None:
        return cert
    if not disconnected:
        return Diagnosis(
            f"no MQTT answer from {m.host}:{m.port} within {timeout_s:g} s", "is this an MQTT broker's port?", EX_UNAVAILABLE
        )
    if not m.tls:
        return Diagnosis(
            f"{m.host}:{m.port} closed the connection without an MQTT answer",
            "a TLS port reached without TLS? set mqtt.tls = true (and mqtt.ca_file)",
            EX_UNAVAILABLE,
        )
    return Diagnosis(
        f"{m.host}:{m.port} closed the connection without an MQTT answer ({'; '.join(errors[-1:])})",
        "see the broker's log (journalctl -u mosquitto, /var/log/mosquitto/mosquitto.log)",
        EX_UNAVAILABLE,
    )


def refused_login(m: MqttConfig, client_id: str, rc: ReasonCode) -> Diagnosis:
    text = f"CONNACK 0x{rc.value:02X} {rc.getName()}"
    creds = (
        f"check mqtt.username ({m.username!r}) and the password in {m.password_file or '(no password_file)'} "
        "against the broker's password file (mosquitto_passwd; config/mosquitto/README.md)"
    )
    if rc.value in (0x86, 0x87, 0x8C):
        return Diagnosis(
            f"the broker refused the login ({text}): a wrong password, an unknown user or no user name "
            "(mosquitto gives the same answer for all three)",
            creds,
            EX_NOPERM,
        )
    if rc.value == 0x84:
        return Diagnosis(f"the broker does not speak MQTT {m.protocol} ({text})", 'set mqtt.protocol = "3.1.1"', EX_UNAVAILABLE)
    if rc.value in (0x88, 0x89):
        return Diagnosis(f"the broker is not serving clients now ({text})", "try again later; see the broker's log", EX_UNAVAILABLE)
    if rc.value == 0x85:
        return Diagnosis(
            f"the broker refused the client id {client_id!r} ({text})", "set mqtt.client_id to what the broker expects", EX_NOPERM
        )
    return Diagnosis(f"the broker refused the login ({text})", "see the broker's log for this client", EX_NOPERM)


def no_answer(packet: str, timeout_s: float) -> Diagnosis:
    return Diagnosis(
        f"no {packet} from the broker within {timeout_s:g} s",
        "the link may be very slow or the broker overloaded; try --timeout 30",
        EX_UNAVAILABLE,
    )

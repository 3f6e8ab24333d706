"""`alkomctl mqtt-check`: log in to the broker exactly as the daemon does, send a probe to itself, explain failures.

The client is built as the daemon's (`MqttLink` from `[mqtt]`: protocol, TLS, CA, client
certificate, user name, password file) with its own client id, `alkomctl-check-<node path with -
for />`, and without the daemon's will. Steps, each timed: resolve the host, connect (TCP and
TLS), log in (CONNACK), subscribe to `<node>/probe/<random>`, publish one QoS 1 message there
(PUBACK), and receive it back. The round trip is publish -> message back.

Safe while alkomd runs (issue 13 item 3: it used to take the daemon's client id and the broker
dropped the daemon). With its own client id the broker keeps the daemon's connection. The
check's session is removed on leaving (MQTT 5: DISCONNECT with session expiry 0; 3.1.1 keeps
an empty one under the same id). A broker that imposes the user name as client id
(`use_username_as_clientid`, the shipped central.conf) still hands the check the daemon's
session when both log in as the same user: so the check connects with clean start off and the
daemon's session expiry, acknowledges nothing but its own probe, and leaves a session it found
intact; messages queued for the daemon (a 110 call) reach alkomd when it reconnects.

Exit codes: 0 the probe came back; 69 no trusted connection (DNS, refused, timeout, TLS
verification, not an MQTT port); 75 the session was taken back (by the running daemon) before
the check finished: run it again; 77 refused (login, client certificate, ACL for publish,
subscribe or read-back, an unreadable secret); 78 configuration error.

The parts: `check` (the steps), `diagnose` (what a failure means, in plain words) and `report`
(the configuration it runs with, and its output).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alkomd.daemon.ctl.common import DEFAULT_PATH, RAW, Subparsers


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "mqtt-check",
        help="log in to the broker as the daemon does and send a probe to itself",
        formatter_class=RAW,
        description=(
            "Connect to the broker with the daemon's own [mqtt] settings (TLS, CA, client certificate, user name,\n"
            "password file), subscribe to <node>/probe/<random>, publish one QoS 1 message there and\n"
            "receive it back; print each step with its time, the round trip, and what is wrong in plain words:\n"
            "DNS, connection refused, TLS verification (against which CA), login refused, client certificate\n"
            "refused, not authorised to publish or subscribe, no message back (the ACL does not let it read).\n\n"
            "Safe while alkomd runs: the check has its own client id (alkomctl-check-<node>) and no will. A broker\n"
            "that imposes the user name as client id lends it the daemon's session for a moment instead; the check\n"
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
    p.add_argument(
        "--config", type=Path, default=DEFAULT_PATH, metavar="FILE", help=f"the daemon's configuration (default {DEFAULT_PATH})"
    )
    p.add_argument(
        "--password-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="read the password here instead of mqtt.password_file (a systemd credential exists only while "
        "alkomd runs: give its source, e.g. /etc/alkomd/mqtt-password)",
    )
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="per step (default 10)")
    p.add_argument("--json", action="store_true", help="the report as one JSON object, for scripts")


def run(args: argparse.Namespace) -> int:
    from alkomd.daemon.ctl.mqtt_check.report import check_cmd

    return check_cmd(args.config, args.password_file, args.timeout, args.json)

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

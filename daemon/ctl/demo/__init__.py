"""`alkomctl demo`: a whole station on simulated radios, a broker, the daemon, and a live view.

What runs: a private broker (`broker`: mosquitto if installed, else amqtt), the
real daemon (`python -m alkomd.daemon.main`) as a child process with a generated config whose
`[[device]]` tables use the `simulator` driver (real NMEA through real pseudo-terminals), and an
MQTT subscriber here that shows what the daemon publishes. One simulated radio has scripted
faults (unplugged, line noise, bad checksums, no fix; each long enough to cross its threshold) so the
device states and the garbage bytes column visibly change. A simulated Kenwood
base radio relays three officers' handheld radios (FleetSync `$PKLDS`) on one port, and one
officer presses the emergency button after 40 s. A simulated MOTOTRBO control station (in this
process, radios on loopback UDP) has three more officers' radios register with ARS and answer the
`lrrp` driver's location requests; one of them presses its emergency button after 70 s.

On a terminal the view is a live table; otherwise (a pipe, a log, a test) one plain line is
printed per new position, device state and node state. Ctrl-C, SIGTERM or the end of
`duration_s` stops everything: the daemon (SIGTERM, SIGKILL after 10 s), then the broker; the
work directory is removed unless it was given.

The dispatchers' console (`alkomd-console`, a child process like the daemon) serves the station
with a fresh demo account; the line `console: http://127.0.0.1:PORT/login/once?token=...` logs it
in with one click, once (and names the account's password for a second browser). Scripted 110
calls arrive on the Polres's `call/new` (the first after 15 s, then one a minute: different
categories, a repeat caller, one outside the Polres's area), and a simulated Polda node (a second
daemon, tier polda) takes each call nobody answers within 60 s; radio emergencies become
priority-0 calls. A line is printed per call state at either node.

The parts: `session` (starting, watching and stopping all of it), `station` (the simulated
units and the daemon's configuration), `view` (what the viewer sees, and the live table),
`broker`, `console` (the console process and its one-time login), `calls` (the 110 script),
`polda` (the Polda node and the Polres's jurisdiction).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alkomd.daemon.ctl.common import RAW, Subparsers, epilog, wrap


def add_parser(sub: Subparsers) -> None:
    m = sub.add_parser(
        "demo",
        help="run a whole simulated station with a live view",
        formatter_class=RAW,
        description=wrap(
            "Start a private broker (mosquitto if installed, else an embedded one), simulated radios writing real NMEA "
            "into pseudo-terminals, and the daemon; show the positions arriving over MQTT. Also the dispatchers' console "
            "(its one-time login link is printed), scripted 110 calls and a Polda node that takes the calls nobody answers. "
            "Ctrl-C stops all of it and leaves nothing running."
        ),
        epilog=epilog(
            "0 stopped cleanly, 1 the broker could not start or the daemon failed (its log's end is shown)",
            "alkomctl demo",
            "alkomctl demo --units 10 --duration 60",
            "alkomctl demo --embedded-broker --workdir /tmp/demo    keep its config, database and logs",
        ),
    )
    m.add_argument("--units", type=int, default=6, choices=range(1, 100), metavar="N", help="simulated units, 1 to 99 (default 6)")
    m.add_argument("--duration", type=float, default=None, metavar="SECONDS", help="stop after this long")
    m.add_argument("--embedded-broker", action="store_true", help="use the embedded broker even if mosquitto exists")
    m.add_argument("--workdir", type=Path, default=None, help="keep the demo's config, database and logs here")


def run(args: argparse.Namespace) -> int:
    from alkomd.daemon.ctl.demo.session import run_demo

    return run_demo(duration_s=args.duration, units=args.units, embedded_broker=args.embedded_broker, workdir=args.workdir)

"""Simulated officers' phones running OwnTracks: location reports along a route, published over MQTT or POSTed over HTTP.

`location` builds the JSON the app sends (`_type`, `lat`, `lon`, `tst`, `acc`, `vel`, `cog`,
`batt`, `tid`, `t`); `MqttPhones` publishes it to `<prefix>/<user>/<device>` (QoS 1, retained,
as the app does); `post` sends it as the app's HTTP mode does (Basic authentication, `X-Limit-U`,
`X-Limit-D`) and returns the status and body. Standalone, for technicians and the demo::

    python -m alkomd.drivers.sim_owntracks --mqtt 127.0.0.1:1883 --phones bripka-andi/pixel7 briptu-sari/a52
    python -m alkomd.drivers.sim_owntracks --http http://127.0.0.1:8083/pub --password-file pw --phones bripka-andi/pixel7
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from alkomd.drivers.owntracks import BASE_TOPIC
from alkomd.drivers.sim_routes import ROUTES, position_at


def location(lat: float, lon: float, *, tst: float | None = None, acc: float | None = 12, vel: float | None = None,
             cog: float | None = None, batt: int = 80, tid: str = "PH", trigger: str = "p") -> dict[str, Any]:
    """One `_type=location` report as the app writes it (zeros and unknowns left out)."""
    msg: dict[str, Any] = {"_type": "location", "lat": round(lat, 6), "lon": round(lon, 6),
                           "tst": int(tst if tst is not None else time.time()), "batt": batt, "tid": tid, "t": trigger}
    for key, value in (("acc", acc), ("vel", vel), ("cog", cog)):
        if value:
            msg[key] = round(value)
    return msg


def along(route: str, speed_kmh: float, t_s: float, **kw: Any) -> dict[str, Any]:
    """A phone's report `t_s` seconds along a route of drivers/sim_routes.py."""
    p = position_at(ROUTES[route], speed_kmh, t_s)
    return location(p.lat, p.lon, vel=speed_kmh, cog=p.course, **kw)


class MqttPhones:
    """Phones publishing to a broker through one client (connected on creation)."""

    def __init__(self, host: str, port: int, *, prefix: str = BASE_TOPIC, username: str = "", password: str | None = None,
                 client_id: str = "sim-owntracks") -> None:
        self.prefix = prefix
        c = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id)
        if username:
            c.username_pw_set(username, password)
        c.connect(host, port, keepalive=30)
        c.loop_start()
        self.client = c

    def publish(self, radio: str, payload: dict[str, Any] | bytes, retain: bool = True) -> None:
        """Publish to `<prefix>/<user>/<device>` and wait until the broker has it (QoS 1)."""
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.publish_raw(f"{self.prefix}/{radio}", data, retain)

    def publish_raw(self, topic: str, data: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, data, qos=1, retain=retain)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def post(url: str, radio: str, payload: dict[str, Any] | bytes, *, password: str | None = None, user: str | None = None,
         timeout: float = 10.0, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """POST a report as the app's HTTP mode does; (status, body). `user` overrides the Basic user (default: radio's)."""
    name, _, device = radio.partition("/")
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json", "X-Limit-U": name, "X-Limit-D": device})
    if password is not None:
        token = base64.b64encode(f"{user or name}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as err:
        return int(err.code), bytes(err.read())


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alkomd.drivers.sim_owntracks", description=__doc__.splitlines()[0])
    to = ap.add_mutually_exclusive_group(required=True)
    to.add_argument("--mqtt", metavar="HOST:PORT", help="publish to this broker (plain MQTT)")
    to.add_argument("--http", metavar="URL", help="POST to this endpoint")
    ap.add_argument("--phones", nargs="+", default=["bripka-andi/pixel7"], help="user/device of each simulated phone")
    ap.add_argument("--password-file", type=Path, help="the password (HTTP: Basic; MQTT: of the user --username)")
    ap.add_argument("--username", default="", help="MQTT user name")
    ap.add_argument("--route", choices=sorted(ROUTES), default="kota-gorontalo-loop")
    ap.add_argument("--speed", type=float, default=5.0, help="km/h along the route (an officer on foot: 5)")
    ap.add_argument("--interval", type=float, default=30.0, help="seconds between each phone's reports")
    args = ap.parse_args(argv)
    password = args.password_file.read_text().strip() if args.password_file else None
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    phones: MqttPhones | None = None
    if args.mqtt:
        host, _, port = args.mqtt.rpartition(":")
        phones = MqttPhones(host, int(port), username=args.username, password=password)
    start = time.monotonic()
    while not stop.is_set():
        t = time.monotonic() - start
        for i, radio in enumerate(args.phones):
            report = along(args.route, args.speed, t + i * 300.0, tid=radio[:2].upper())
            if phones is not None:
                phones.publish(radio, report)
            else:
                try:
                    status, _ = post(args.http, radio, report, password=password)
                except OSError as exc:
                    status = 0
                    print(f"{radio}: {exc}", file=sys.stderr)
                if status != 200:
                    print(f"{radio}: HTTP {status}", file=sys.stderr)
        stop.wait(args.interval)
    if phones is not None:
        phones.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

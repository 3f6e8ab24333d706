"""`alkomd-console`: run the dispatchers' web console, or add a dispatcher account (`adduser NAME`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import signal
import ssl
import sys
from pathlib import Path

from aiohttp import web

from alkomd.console import users
from alkomd.console.auth import Sessions
from alkomd.console.link import ConsoleLink
from alkomd.console.live import Hub
from alkomd.console.model import Model
from alkomd.console.once import OneTime, OneTimeLoginError, from_environment
from alkomd.console.web import ConsoleWeb, Site, load_jurisdictions
from alkomd.daemon.config import DEFAULT_PATH, Config, ConsoleConfig, load
from alkomd.daemon.exit_codes import EX_CONFIG
from alkomd.daemon.logsetup import setup_logging
from alkomd.daemon.mqtt import contract
from alkomd.daemon.schema import ConfigError
from alkomd.daemon.sdnotify import Notifier

log = logging.getLogger("alkomd.console")
EX_USAGE, EX_CANTCREAT, EX_SOFTWARE = 64, 73, 70

DESCRIPTION = """\
The dispatchers' web console of an alkomd node: a live map of the node's jurisdictions, units and
open calls, the call queue, actions on calls and the emergency alarm, for logged-in duty officers.
It reads [node], [mqtt], [jurisdictions] and [console] of the daemon's configuration file and is a
client of the MQTT contract (it never opens the daemon's database).

examples:
  alkomd-console --config /etc/alkomd/alkomd.toml          # serve the console
  alkomd-console adduser piket-01                            # add an account (asks for the password)
  echo 'a long password' | alkomd-console adduser piket-02   # from a script (password on stdin)

exit codes: 0 stopped, 64 usage, 70 internal error, 73 cannot write the users file, 78 configuration error
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alkomd-console", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=DEFAULT_PATH, help=f"configuration file (default {DEFAULT_PATH})")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="overrides [log] level")
    sub = p.add_subparsers(dest="command")
    add = sub.add_parser("adduser", help="add a dispatcher account or change its password")
    add.add_argument("name", help="the officer's account name (it is the `by` of the officer's actions)")
    add.add_argument("--users-file", type=Path, help="users file (default: [console] users_file of the configuration)")
    return p


def _console(cfg: Config) -> ConsoleConfig:
    if cfg.console is None:
        raise ConfigError(cfg.source, "console", "missing: alkomd-console needs a [console] section")
    return cfg.console


def adduser(args: argparse.Namespace) -> int:
    if args.users_file is None:
        try:
            path = _console(load(args.config)).users_file
        except ConfigError as exc:
            print(f"alkomd-console: config error: {exc}", file=sys.stderr)
            return EX_CONFIG
    else:
        path = args.users_file
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("alkomd-console: the passwords differ", file=sys.stderr)
            return EX_USAGE
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        new = users.set_password(path, args.name, password)
    except users.UsersFileError as exc:
        print(f"alkomd-console: {exc}", file=sys.stderr)
        return EX_USAGE if "password" in str(exc) or "name" in str(exc) else EX_CANTCREAT
    print(f"{'added' if new else 'changed the password of'} {args.name} in {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "adduser":
        return adduser(args)
    try:
        cfg = load(args.config)
        console = _console(cfg)
        juris = cfg.jurisdictions
        geojson = load_jurisdictions(juris.file, juris.include_property, juris.include_values) if juris else "{}"
    except ConfigError as exc:
        print(f"alkomd-console: config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except (OSError, ValueError) as exc:
        print(f"alkomd-console: config error: {args.config}: jurisdictions.file: {exc}", file=sys.stderr)
        return EX_CONFIG
    setup_logging(args.log_level or cfg.log.level)
    ssl_ctx = None
    if console.tls_cert_file:
        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ssl_ctx.load_cert_chain(console.tls_cert_file, console.tls_key_file)
        except (OSError, ssl.SSLError) as exc:
            print(f"alkomd-console: config error: {args.config}: console.tls_cert_file: {exc}", file=sys.stderr)
            return EX_CONFIG
    try:
        once = OneTime(from_environment())
    except OneTimeLoginError as exc:
        print(f"alkomd-console: {exc}", file=sys.stderr)
        return EX_USAGE
    props = (juris.name_property, juris.id_property) if juris else ("name", "code")
    site = Site(cfg.node, console, ssl_ctx is not None, geojson, *props)
    try:
        asyncio.run(serve(cfg, site, ssl_ctx, once))
    except KeyboardInterrupt:
        pass
    except Exception:  # the supervision boundary: log the traceback, exit non-zero so systemd restarts us
        log.exception("internal error")
        return EX_SOFTWARE
    return 0


async def serve(cfg: Config, site: Site, ssl_ctx: ssl.SSLContext | None, once: OneTime | None = None) -> None:
    console = site.console
    loop = asyncio.get_running_loop()
    known = {u.id: (u.type, u.callsign) for u in cfg.units}
    model = Model(cfg.node.topic, known)
    client_id = console.client_id or "alkomd-console-" + cfg.node.topic.replace("/", "-")
    subs = contract.console_subscriptions(cfg.node.topic, cfg.node.tier)
    link = ConsoleLink(cfg.mqtt, console, client_id, subs, loop, model.message, model.link_up, model.link_down)
    sessions = Sessions(console.session_hours * 3600)
    hub = Hub(model, lambda token: sessions.get(token) is not None)
    runner = web.AppRunner(ConsoleWeb(site, model, link, sessions, hub, once).app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, console.listen_address, console.listen_port, ssl_context=ssl_ctx).start()
    link.start()
    flusher = asyncio.create_task(hub.run())
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    scheme = "https" if ssl_ctx else "http"
    log.info("console: serving %s on %s://%s:%d/", cfg.node.topic, scheme, console.listen_address, console.listen_port)
    notifier = Notifier()
    notifier.ready(f"serving on {console.listen_address}:{console.listen_port}")
    try:
        await stop.wait()
    finally:
        notifier.stopping()
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        await hub.close_all()
        await runner.cleanup()
        link.stop()


if __name__ == "__main__":
    sys.exit(main())

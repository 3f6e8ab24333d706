"""The demo's dispatcher console: a one-time demo account, the `alkomd-console` process, and the line that opens it."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from alkomd.console import users
from alkomd.console.once import ENV, PATH
from alkomd.daemon.ctl.demo.broker import free_port, port_open

DEMO_USER = "demo"
START_TIMEOUT_S = 30.0


class ConsoleStartError(Exception):
    """The console process exited or did not listen in time."""


@dataclass(frozen=True)
class DemoConsole:
    """What the demo prints about its console: where it listens and how to log in."""

    port: int
    token: str
    password: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}?token={self.token}"

    def line(self) -> str:
        """`console: URL ...`: the link logs in once; the account and its password serve a second browser or tab."""
        return f"console: {self.url}  (one-time login; afterwards user {DEMO_USER}, password {self.password})"


def console_section(port: int, users_file: Path) -> str:
    """The [console] section of the demo Polres's config."""
    return f'\n[console]\nlisten_address = "127.0.0.1"\nlisten_port = {port}\nusers_file = "{users_file}"\n'


def prepare(work: Path) -> tuple[DemoConsole, str]:
    """A fresh demo account in `work`/console-users and a one-time token; returns it with the [console] section."""
    users_file = work / "console-users"
    password = secrets.token_urlsafe(12)
    users.set_password(users_file, DEMO_USER, password)
    demo = DemoConsole(free_port(), secrets.token_urlsafe(24), password)
    return demo, console_section(demo.port, users_file)


def start_console(demo: DemoConsole, config: Path, work: Path) -> subprocess.Popen[bytes]:
    """`alkomd-console --config` as a child process (log in `work`/console.log); returns once it listens."""
    token_file = work / "console-login"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"{DEMO_USER} {demo.token}\n")
    with (work / "console.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "alkomd.console.main", "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            env=dict(os.environ, **{ENV: str(token_file)}),
        )
    end = time.monotonic() + START_TIMEOUT_S
    while not port_open("127.0.0.1", demo.port):
        if proc.poll() is not None:
            raise ConsoleStartError(f"the console exited with code {proc.returncode} (log {work / 'console.log'})")
        if time.monotonic() > end:
            proc.kill()
            proc.wait()
            raise ConsoleStartError(f"the console does not listen on port {demo.port} after {START_TIMEOUT_S:.0f} s")
        time.sleep(0.1)
    return proc

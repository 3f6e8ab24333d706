"""A one-time login link (`/login/once?token=...`): how `alkomctl demo` opens the console in one click; off unless asked."""

from __future__ import annotations

import hmac
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
# The path of a file holding "NAME TOKEN": read once at start and deleted, so the token lives only in memory (and in the
# line the demo printed). Set by `alkomctl demo` only; a station's console never has it.
ENV = "ALKOMD_CONSOLE_ONE_TIME_LOGIN"
PATH = "/login/once"


class OneTimeLoginError(Exception):
    """The one-time login file named by the environment cannot be read or is not `NAME TOKEN`."""


@dataclass(frozen=True, slots=True)
class OneTimeLogin:
    user: str
    token: str


def from_environment() -> OneTimeLogin | None:
    """The one-time login the environment names (its file is deleted), or None when the variable is unset."""
    name = os.environ.get(ENV)
    if not name:
        return None
    path = Path(name)
    try:
        text = path.read_text(encoding="utf-8")
        path.unlink()
    except OSError as exc:
        raise OneTimeLoginError(f"{ENV}: {path}: {exc.strerror}") from None
    user, _, token = text.strip().partition(" ")
    if not user or len(token) < 16:
        raise OneTimeLoginError(f"{ENV}: {path}: not `NAME TOKEN` (a token of 16 characters or more)")
    return OneTimeLogin(user, token)


class OneTime:
    """Hands out its login once: the first request with the right token gets the user, every later one nothing."""

    def __init__(self, login: OneTimeLogin | None) -> None:
        self._login = login

    def take(self, given: str | None) -> str | None:
        login = self._login
        if login is None or not given or not hmac.compare_digest(login.token.encode(), given.encode()):
            return None
        self._login = None
        return login.user

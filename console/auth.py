"""Sessions (random tokens in an HttpOnly SameSite=Strict cookie, each with its CSRF token) and the login rate limit."""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass

COOKIE = "alkomd_console"


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    user: str
    csrf: str
    created: float  # monotonic


class Sessions:
    """Logged-in officers, in memory (a restart of the console logs everybody out)."""

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self._by_token: dict[str, Session] = {}
        self._seen: dict[str, float] = {}

    def create(self, user: str) -> Session:
        s = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(32), time.monotonic())
        self._by_token[s.token] = s
        self._seen[s.token] = s.created
        return s

    def get(self, token: str | None) -> Session | None:
        """The live session of this cookie value (its idle timer restarts), or None."""
        if not token:
            return None
        s = self._by_token.get(token)
        now = time.monotonic()
        if s is None:
            return None
        if now - self._seen[token] > self.idle_s:
            self.drop(token)
            return None
        self._seen[token] = now
        return s

    def drop(self, token: str) -> None:
        self._by_token.pop(token, None)
        self._seen.pop(token, None)

    @staticmethod
    def csrf_ok(session: Session, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(session.csrf.encode(), given.encode())


class LoginLimiter:
    """At most `max_failures` failed logins per account name and per address within `window_s`; then refused."""

    def __init__(self, max_failures: int, window_s: float) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and now - q[0] > self.window_s:
            q.popleft()
        return q

    def locked(self, name: str, address: str) -> bool:
        now = time.monotonic()
        return any(len(self._recent(k, now)) >= self.max_failures for k in (f"name:{name}", f"addr:{address}"))

    def failed(self, name: str, address: str) -> None:
        now = time.monotonic()
        for k in (f"name:{name}", f"addr:{address}"):
            self._recent(k, now).append(now)
        if len(self._failures) > 10_000:  # a spray of names: forget the stale ones
            for k in [k for k, q in self._failures.items() if not q or now - q[-1] > self.window_s]:
                del self._failures[k]

    def succeeded(self, name: str) -> None:
        self._failures.pop(f"name:{name}", None)

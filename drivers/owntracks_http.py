"""The `owntracks` driver's HTTP transport: a small endpoint phones POST their OwnTracks JSON to.

One `HTTPServer` (stdlib), served in the driver's own thread one request at a time (HTTP/1.0:
the connection closes after each answer, so a phone cannot hold the endpoint), optionally over
TLS. Every POST needs HTTP Basic authentication: against a users file (`user:password` lines;
a phone may then report only as its own user) or a shared secret file (any user name, the one
password). A location report becomes a fix of the radio `<user>/<device>` (the `X-Limit-U` /
`X-Limit-D` headers the app sends). The answer is `[]` (no friends' locations, no commands), also
to a body that cannot be read: a phone re-sends a refused message forever.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import socket
import ssl
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from alkomd.drivers.base import LinkError
from alkomd.drivers.owntracks import MAX_NAME, MAX_PAYLOAD

log = logging.getLogger(__name__)

HANDLER_TIMEOUT_S = 10.0  # a client that sends nothing for this long is dropped
ACCEPT_POLL_S = 0.25  # bounds how long a stop request waits for the next request
MAX_REFUSED_LOGGED = 64  # user names whose refusal was logged (each once)

# (body, identity headers, the user the phone must report as or None) -> counted and emitted by the driver
Handle = Callable[[bytes, dict[str, str], str | None], None]


class Credentials:
    """Who may post: `users` (name -> password) or one shared `secret` for any name."""

    def __init__(self, users: dict[str, str] | None = None, secret: str | None = None) -> None:
        self.users = users
        self.secret = secret

    @classmethod
    def load(cls, users_file: Path | None, secret_file: Path | None) -> Credentials:
        """Read the users file (`user:password` per line, `#` comments) or the secret file; OSError/ValueError if unreadable."""
        if users_file is not None:
            users: dict[str, str] = {}
            for n, line in enumerate(users_file.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                name, sep, password = line.partition(":")
                if not sep or not name.strip() or not password:
                    raise ValueError(f"{users_file}:{n}: not a user:password line")
                users[name.strip()] = password.rstrip("\r\n")
            return cls(users=users)
        if secret_file is not None:
            secret = secret_file.read_text(encoding="utf-8").rstrip("\r\n")
            if not secret:
                raise ValueError(f"{secret_file} is empty")
            return cls(secret=secret)
        raise ValueError("no users_file and no secret_file")

    def check(self, authorization: str | None) -> str | None:
        """The authenticated user name of an `Authorization: Basic ...` header, or None."""
        if not authorization or authorization[:6].lower() != "basic ":
            return None
        try:
            user, sep, password = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, ValueError):
            return None
        if not sep or not user or len(user) > MAX_NAME:
            return None
        if self.users is not None:
            wanted = self.users.get(user)
            ok = wanted is not None and hmac.compare_digest(wanted.encode(), password.encode())
        else:
            ok = self.secret is not None and hmac.compare_digest(self.secret.encode(), password.encode())
        return user if ok else None

    @property
    def per_user(self) -> bool:
        return self.users is not None


class PhoneServer(HTTPServer):
    """The endpoint: `handle` gets each authenticated body; refusals are counted in `refused`."""

    allow_reuse_address = True
    timeout = ACCEPT_POLL_S

    def __init__(self, bind: str, port: int, path: str, creds: Credentials, handle: Handle, tls: ssl.SSLContext | None) -> None:
        self.address_family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        self.path = path
        self.creds = creds
        self.handle = handle
        self.tls = tls
        self.refused = 0
        self.requests = 0
        self._refused_users: set[str] = set()
        super().__init__((bind, port), PhoneHandler)

    def get_request(self) -> tuple[Any, Any]:
        conn, addr = self.socket.accept()
        conn.settimeout(HANDLER_TIMEOUT_S)
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except OSError:
                conn.close()
                raise
        return conn, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A request that failed mid-way (a client gone, a TLS error): logged at debug, never fatal."""
        log.debug("owntracks http: request from %s failed", client_address, exc_info=True)

    def refuse(self, user: str, why: str) -> None:
        self.refused += 1
        if user not in self._refused_users and len(self._refused_users) < MAX_REFUSED_LOGGED:
            self._refused_users.add(user)
            log.warning("owntracks http: refused a post %s: %s", f"as {user!r}" if user else "without credentials", why)


class PhoneHandler(BaseHTTPRequestHandler):
    """One request: POST to the configured path with Basic authentication, answered `[]`."""

    server: PhoneServer
    timeout = HANDLER_TIMEOUT_S
    server_version = "alkomd-owntracks"
    error_content_type = "text/plain"
    error_message_format = "%(code)d %(message)s\n"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("owntracks http: %s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._plain(405, "POST OwnTracks JSON here", {"Allow": "POST"})

    def do_POST(self) -> None:
        srv = self.server
        srv.requests += 1
        if self.path.split("?", 1)[0] != srv.path:
            self._plain(404, f"not here: POST to {srv.path}")
            return
        user = srv.creds.check(self.headers.get("Authorization"))
        if user is None:
            srv.refuse(_claimed(self.headers.get("Authorization")), "no or wrong credentials")
            self._plain(401, "authentication required", {"WWW-Authenticate": 'Basic realm="alkomd owntracks"'})
            return
        limit_u = self.headers.get("X-Limit-U") or user
        if srv.creds.per_user and limit_u != user:
            srv.refuse(user, f"posts as user {limit_u[:MAX_NAME]!r}")
            self._plain(403, "a phone may report only as its own user")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._plain(411, "Content-Length required")
            return
        if not 0 <= length <= MAX_PAYLOAD:
            self._plain(413, f"at most {MAX_PAYLOAD} bytes")
            return
        body = self.rfile.read(length)
        identity = {"X-Limit-U": limit_u}
        device = self.headers.get("X-Limit-D")
        if device is not None:
            identity["X-Limit-D"] = device
        srv.handle(body, identity, user if srv.creds.per_user else None)
        self._send(200, b"[]", "application/json")

    def _plain(self, code: int, text: str, headers: dict[str, str] | None = None) -> None:
        self._send(code, (text + "\n").encode(), "text/plain; charset=utf-8", headers)

    def _send(self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


def _claimed(authorization: str | None) -> str:
    """The user name a refused Basic header claims (for the log), '' when none can be read."""
    if not authorization or authorization[:6].lower() != "basic ":
        return ""
    try:
        return base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8", "replace").partition(":")[0][:MAX_NAME]
    except (binascii.Error, ValueError):
        return ""


def tls_context(cert_file: Path | None, key_file: Path | None) -> ssl.SSLContext | None:
    """A server TLS context for the endpoint, or None for plain HTTP; LinkError when the files cannot be used."""
    if cert_file is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise LinkError(f"cannot use the TLS certificate: {exc}") from exc
    return ctx

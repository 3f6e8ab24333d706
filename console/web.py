"""The console's HTTP side (aiohttp): login and logout, the page and its files, the officers' actions, the WebSocket."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import xstatic.pkg.leaflet as xleaflet
import xstatic.pkg.leaflet_markercluster as xcluster
from aiohttp import web

from alkomd.console import users
from alkomd.console.auth import COOKIE, LoginLimiter, Session, Sessions
from alkomd.console.link import ConsoleLink, LinkError
from alkomd.console.live import Hub
from alkomd.console.model import Model, now_iso
from alkomd.console.once import PATH as ONCE_PATH
from alkomd.console.once import OneTime
from alkomd.daemon.config import ConsoleConfig, NodeConfig
from alkomd.daemon.mqtt import contract

log = logging.getLogger(__name__)
STATIC = Path(str(resources.files("alkomd.console") / "static"))
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PATHS = ("/login", ONCE_PATH, "/static/login.css", "/favicon.ico")


@dataclass(frozen=True)
class Site:
    """What the handlers need, built once by the server."""

    node: NodeConfig
    console: ConsoleConfig
    secure: bool  # served over HTTPS: the cookie gets Secure
    jurisdictions: str  # the GeoJSON drawn on the map (already filtered), as text
    name_property: str  # the feature property the map labels polygons with
    id_property: str  # the feature property holding the jurisdiction id a call state names


class ConsoleWeb:
    def __init__(
        self, site: Site, model: Model, link: ConsoleLink, sessions: Sessions, hub: Hub, once: OneTime | None = None
    ) -> None:
        self.site = site
        self.once = once or OneTime(None)
        self.model = model
        self.link = link
        self.hub = hub
        self.sessions = sessions
        self.limiter = LoginLimiter(site.console.login_max_failures, site.console.login_lockout_s)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers, self._guard], client_max_size=64 * 1024)
        app.router.add_get("/", self.index)
        app.router.add_get("/login", self.login_page)
        app.router.add_post("/login", self.login)
        app.router.add_get(ONCE_PATH, self.login_once)
        app.router.add_post("/logout", self.logout)
        app.router.add_get("/api/session", self.session_info)
        app.router.add_get("/api/jurisdictions", self.jurisdictions)
        app.router.add_post("/api/event", self.event)
        app.router.add_post("/api/ack", self.ack)
        app.router.add_get("/ws", self.websocket)
        app.router.add_static("/static/", STATIC)
        app.router.add_static("/vendor/leaflet/", xleaflet.BASE_DIR)
        app.router.add_static("/vendor/markercluster/", xcluster.BASE_DIR)
        return app

    # -- middleware ----------------------------------------------------------------------------

    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resp = await handler(request)
        tiles = ""
        if self.site.console.tile_url:
            u = urlsplit(self.site.console.tile_url.replace("{s}", "a"))
            tiles = f" {u.scheme}://{u.netloc}"
        resp.headers.setdefault(
            "Content-Security-Policy",
            f"default-src 'self'; img-src 'self' data:{tiles}; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        )
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")  # "no-referrer" would make form posts say Origin: null
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Everything but the login page needs a session; every POST but the login needs its CSRF token and our origin."""
        if request.path in OPEN_PATHS or request.path.startswith(("/vendor/", "/static/")):
            return await handler(request)
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None:
            if request.method == "GET" and request.path == "/":
                raise web.HTTPSeeOther("/login")
            raise web.HTTPUnauthorized(text="not logged in")
        if request.method != "GET" or request.path == "/ws":
            if not self._same_origin(request):
                log.warning("console: %s %s from another origin (%s) refused", request.method, request.path, request.headers.get("Origin"))
                raise web.HTTPForbidden(text="wrong origin")
            if request.method != "GET" and not Sessions.csrf_ok(session, request.headers.get("X-CSRF-Token")):
                log.warning("console: %s %s by %s without a valid CSRF token refused", request.method, request.path, session.user)
                raise web.HTTPForbidden(text="missing or wrong CSRF token")
        return await handler(request)

    def _session(self, request: web.Request) -> Session:
        """The session the guard let through (it checked the cookie a moment ago)."""
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None:
            raise web.HTTPUnauthorized(text="not logged in")
        return session

    @staticmethod
    def _same_origin(request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            return request.method == "GET" and request.path != "/ws"
        u = urlsplit(origin)
        return u.netloc == request.host

    # -- login ---------------------------------------------------------------------------------

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "login.html")

    async def login(self, request: web.Request) -> web.StreamResponse:
        if "Origin" in request.headers and not self._same_origin(request):  # a login forced from another site
            raise web.HTTPForbidden(text="wrong origin")
        form = await request.post()
        name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
        address = request.remote or "?"
        if self.limiter.locked(name, address):
            log.warning("console: login for %r from %s refused: too many failures", name[:64], address)
            raise web.HTTPSeeOther("/login?error=locked")
        path = self.site.console.users_file
        try:
            ok = users.valid_name(name) and await asyncio.get_running_loop().run_in_executor(None, users.verify, path, name, password)
        except users.UsersFileError as exc:
            log.error("console: %s", exc)
            ok = False
        if not ok:
            self.limiter.failed(name, address)
            log.warning("console: failed login for %r from %s", name[:64], address)
            raise web.HTTPSeeOther("/login?error=failed")
        self.limiter.succeeded(name)
        return self._logged_in(name, address, "", web.Response(status=303, headers={"Location": "/"}))

    async def login_once(self, request: web.Request) -> web.StreamResponse:
        """The demo's one-click link: its token logs its account in once; a used or wrong token goes to the login page."""
        name = self.once.take(request.query.get("token"))
        address = request.remote or "?"
        try:
            known = name is not None and name in await asyncio.get_running_loop().run_in_executor(
                None, users.read, self.site.console.users_file
            )
        except users.UsersFileError as exc:
            log.error("console: %s", exc)
            known = False
        if name is None or not known:
            log.warning("console: one-time login from %s refused (used, wrong or unknown)", address)
            raise web.HTTPSeeOther("/login?error=failed")
        # A page that moves on to "/" itself (not a redirect): a link clicked in another site's page would make a
        # redirect's request cross-site, and the SameSite=Strict cookie would not go with it.
        page = '<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=/"><a href="/">alkomd console</a>'
        return self._logged_in(name, address, " with the one-time link", web.Response(text=page, content_type="text/html"))

    def _logged_in(self, name: str, address: str, how: str, resp: web.Response) -> web.Response:
        session = self.sessions.create(name)
        log.info("console: %s logged in from %s%s", name, address, how)
        resp.set_cookie(COOKIE, session.token, httponly=True, samesite="Strict", secure=self.site.secure, path="/")
        return resp

    async def logout(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        self.sessions.drop(session.token)
        log.info("console: %s logged out", session.user)
        resp = web.json_response({"ok": True})
        resp.del_cookie(COOKIE, path="/")
        return resp

    # -- the page ------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def session_info(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        node = self.site.node
        return web.json_response(
            {"user": session.user, "csrf": session.csrf, "node": node.topic, "name": node.name, "tier": node.tier,
             "tile_url": self.site.console.tile_url, "name_property": self.site.name_property,
             "id_property": self.site.id_property, "actions": list(contract.EVENT_ACTIONS)}
        )

    async def jurisdictions(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=self.site.jurisdictions, content_type="application/geo+json")

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=20, max_msg_size=4096)
        session = self._session(request)
        await ws.prepare(request)
        await self.hub.serve(ws, session.token)
        return ws

    # -- actions -------------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> dict[str, object]:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text="not JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="not a JSON object")
        return body

    async def event(self, request: web.Request) -> web.StreamResponse:
        """An officer's action on a call: published on `call/<id>/event` with a fresh msg_id and the officer as `by`."""
        session = self._session(request)
        body = await self._body(request)
        call_id, action, unit, note = body.get("call_id"), body.get("action"), body.get("unit"), body.get("note")
        if not isinstance(call_id, str) or not call_id or len(call_id) > 128:
            raise web.HTTPBadRequest(text="call_id missing")
        if action not in contract.EVENT_ACTIONS:
            raise web.HTTPBadRequest(text=f"action must be one of {', '.join(contract.EVENT_ACTIONS)}")
        event: dict[str, object] = {"action": action, "by": session.user, "msg_id": contract.new_msg_id()}
        if isinstance(unit, str) and unit:
            event["unit"] = unit[:64]
        elif action == "assign":
            raise web.HTTPBadRequest(text="assign needs a unit")
        if isinstance(note, str) and note.strip():
            event["note"] = note.strip()[:500]
        try:
            topic = contract.call_event_topic(self.site.node.topic, call_id)
        except ValueError:
            raise web.HTTPBadRequest(text="not a valid call id") from None
        try:
            self.link.publish(topic, contract.dumps(event))
        except LinkError as exc:
            raise web.HTTPServiceUnavailable(text=str(exc)) from None
        unit_text = f" {event['unit']}" if "unit" in event else ""
        self.model.note(call_id, now_iso(), "event", f"{action}{unit_text} sent by {session.user}")
        log.info("console: %s sent %s%s on call %s (msg_id %s)", session.user, action, unit_text, call_id, event["msg_id"])
        return web.json_response({"msg_id": event["msg_id"], "call_id": call_id, "action": action})

    async def ack(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        alarm_id = (await self._body(request)).get("alarm_id")
        if not isinstance(alarm_id, str):
            raise web.HTTPBadRequest(text="alarm_id missing")
        return web.json_response({"acknowledged": self.model.acknowledge(alarm_id, session.user)})


def load_jurisdictions(file: Path, include_property: str, include_values: tuple[str, ...]) -> str:
    """The configured GeoJSON, kept to this node's features, as text for the page (an empty collection when none)."""
    with file.open(encoding="utf-8") as fh:
        doc = json.load(fh)
    feats = doc.get("features", []) if isinstance(doc, dict) else []
    if include_property:
        feats = [f for f in feats if str((f.get("properties") or {}).get(include_property)) in include_values]
    return json.dumps({"type": "FeatureCollection", "features": feats}, separators=(",", ":"))

"""The dispatcher console's parts without a browser: accounts, sessions, the login limit, its topics, its picture of
the node, its configuration section, its unit file and its place in the tree."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from alkomd.console import model as modelmod
from alkomd.console import timeline as timelinemod
from alkomd.console import users
from alkomd.console.auth import LoginLimiter, Sessions
from alkomd.console.model import Model, is_priority, parse_call
from alkomd.daemon import config as cfgmod
from alkomd.daemon.mqtt import contract
from alkomd.daemon.schema import ConfigError

ROOT = Path(__file__).resolve().parents[1]
NODE = "polri110/gorontalo/kota-gorontalo"


def test_accounts_are_argon2_hashes_and_only_the_right_password_passes(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "console-users"
    assert users.set_password(path, "piket-01", "kata sandi satu") is True
    assert users.set_password(path, "piket-02", "kata sandi dua!") is True
    assert users.set_password(path, "piket-01", "sandi baru 123") is False  # a change, not a new account
    text = path.read_text()
    assert "$argon2id$" in text and "sandi" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert users.verify(path, "piket-01", "sandi baru 123")
    assert not users.verify(path, "piket-01", "kata sandi satu")
    assert not users.verify(path, "nobody", "sandi baru 123")
    with pytest.raises(users.UsersFileError, match="at least 8"):
        users.set_password(path, "piket-03", "short")
    with pytest.raises(users.UsersFileError, match="account name"):
        users.set_password(path, "no spaces", "long enough password")
    path.write_text(text + "garbage line\n")
    with pytest.raises(users.UsersFileError, match=":4:"):
        users.read(path)


def test_adduser_takes_the_password_from_stdin_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "console-users"
    cmd = [sys.executable, "-m", "alkomd.console.main", "adduser", "piket-09", "--users-file", str(path)]
    r = subprocess.run(cmd, input="a good password\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and f"added piket-09 in {path}" in r.stdout, r.stderr
    assert users.verify(path, "piket-09", "a good password")
    r = subprocess.run(cmd, input="short\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 64 and "at least 8" in r.stderr


def test_sessions_check_the_csrf_token_and_logins_are_limited() -> None:
    sessions = Sessions(idle_s=3600)
    s = sessions.create("piket-01")
    assert sessions.get(s.token) == s and sessions.get("forged") is None and sessions.get(None) is None
    assert Sessions.csrf_ok(s, s.csrf) and not Sessions.csrf_ok(s, "x") and not Sessions.csrf_ok(s, None)
    sessions.drop(s.token)
    assert sessions.get(s.token) is None

    limit = LoginLimiter(max_failures=3, window_s=300)
    for _ in range(3):
        assert not limit.locked("piket-01", "10.0.0.5")
        limit.failed("piket-01", "10.0.0.5")
    assert limit.locked("piket-01", "10.0.0.9")  # the name is locked from any address
    assert limit.locked("piket-02", "10.0.0.5")  # and the address for any name
    assert not limit.locked("piket-02", "10.0.0.9")


def test_the_console_topics_come_from_the_contract() -> None:
    assert contract.call_event_result_topic(NODE, "C-1") == f"{NODE}/call/C-1/event/result"
    subs = contract.console_subscriptions(NODE, "polres")
    assert contract.state_topic(NODE) in subs and f"{NODE}/call/+" in subs and f"{NODE}/call/+/event/result" in subs
    assert any(s.endswith("/+/unit/+/position") for s in contract.console_subscriptions("polri110/gorontalo", "polda"))
    parse = contract.parse_console_topic
    assert parse(NODE, f"{NODE}/state") == contract.ConsoleTopic("state", "")
    assert parse(NODE, f"{NODE}/unit/R2-12/position") == contract.ConsoleTopic("position", "R2-12")
    assert parse(NODE, f"{NODE}/unit/R2-12/emergency") == contract.ConsoleTopic("emergency", "R2-12")
    assert parse(NODE, f"{NODE}/call/C-1") == contract.ConsoleTopic("call", "C-1")
    assert parse(NODE, f"{NODE}/call/C-1/event/result") == contract.ConsoleTopic("result", "C-1")
    for other in (f"{NODE}/call/new", f"{NODE}/call/aml", f"{NODE}/call/C-1/event", f"{NODE}/unit/R2-12/alert", "other/state"):
        assert parse(NODE, other) is None, other


def _msg(model: Model, topic: str, body: dict[str, object]) -> None:
    model.message(topic, json.dumps(body).encode())


def test_the_picture_degrades_when_new_fields_are_absent_and_uses_them_when_present() -> None:
    example = json.loads((ROOT / "docs/contract/examples/call-state.json").read_text())
    for added in ("priority", "dispatch", "note", "category_code", "category_label"):  # what an older daemon does not send
        example.pop(added, None)
    old = parse_call("C-1", example)
    assert old is not None and old.priority is None and old.note is None and not is_priority(old)
    new = parse_call("C-1", {**example, "priority": 0, "dispatch": True, "note": "kebakaran", "unknown_category": True})
    assert new is not None and new.priority == 0 and new.note == "kebakaran" and new.unknown_category and is_priority(new)
    assert parse_call("C-1", {"no": "state"}) is None

    model = Model(NODE, {"R2-12": ("car", "Macan 12")})
    _msg(model, f"{NODE}/unit/R2-12/position", {"unit": "R2-12", "lat": 0.54, "lon": 123.06, "time": "2025-03-14T02:00:00.000Z"})
    _msg(model, f"{NODE}/unit/R2-12/status", {"unit": "R2-12", "status": "available", "since": "x", "call_id": None})
    _msg(model, f"{NODE}/unit/R3-01/status", {"unit": "R3-01", "status": "offline", "type": "boat", "callsign": "Hiu 1"})
    assert model.units["R2-12"].callsign == "Macan 12" and model.units["R2-12"].status == "available"
    assert model.units["R3-01"].type == "boat" and model.units["R3-01"].callsign == "Hiu 1"
    _msg(model, f"{NODE}/unit/R2-12/position", {"unit": "R2-12", "lat": float("nan"), "lon": 1})  # ignored, not a crash
    model.message(f"{NODE}/unit/R2-12/position", b"not json")
    assert model.units["R2-12"].lat == 0.54

    _msg(model, f"{NODE}/call/C-1", {**example, "version": 3, "state": "assigned"})
    _msg(model, f"{NODE}/call/C-1", {**example, "version": 2, "state": "offered"})  # late: an older version
    assert model.calls["C-1"].state == "assigned"
    emergency = {"unit": "R2-12", "lat": 0.5, "lon": 123.0, "time": "2025-03-14T02:00:00.000Z", "msg_id": "e1"}
    _msg(model, f"{NODE}/unit/R2-12/emergency", emergency)
    _msg(model, f"{NODE}/unit/R2-12/emergency", emergency)  # a QoS 1 resend
    assert len(model.alarms) == 1 and "Macan 12" in next(iter(model.alarms.values())).text
    alarm = next(iter(model.alarms))
    assert model.acknowledge(alarm, "piket-01") and not model.acknowledge(alarm, "piket-02")
    _msg(model, f"{NODE}/state", {"state": "offline", "since": "2025-03-14T02:00:00.000Z"})
    assert model.link.node == "offline"
    changes = model.take_changes()
    assert changes.units == {"R2-12", "R3-01"} and changes.calls == {"C-1"} and changes.alarms and changes.link
    assert model.take_changes().empty()


def test_finished_calls_are_forgotten_oldest_first_and_open_ones_never() -> None:
    model = Model(NODE)
    _msg(model, f"{NODE}/call/OPEN", {"state": "offered", "version": 1})
    for i in range(modelmod.MAX_FINISHED + 10):
        _msg(model, f"{NODE}/call/F-{i}", {"state": "closed", "version": 1})
    assert "OPEN" in model.calls and "F-0" not in model.calls and f"F-{modelmod.MAX_FINISHED + 9}" in model.calls
    assert len(model.calls) == modelmod.MAX_FINISHED + 1 and "F-0" not in model.timelines


def _step(seq: int, second: int, action: str, unit: str | None = None, by: str | None = None, count: int = 1) -> dict[str, object]:
    return {"seq": seq, "time": f"2026-11-22T02:17:{second:02d}.250Z", "action": action, "state": "x", "by": by, "unit": unit,
            "note": "", "detail": f"{action} in words", "count": count}


def test_the_timeline_is_the_daemons_history_merged_with_what_the_console_saw() -> None:
    model = Model(NODE)
    base = {"state": "offered", "call_id": "C-1"}
    history = [_step(1, 0, "received"), _step(2, 0, "offered"), _step(3, 5, "answered", by="piket-01"),
               _step(4, 5, "assigned", "R2-01", "piket-01")]
    # a console started after the call began: its first message has the whole history
    _msg(model, f"{NODE}/call/C-1", {**base, "version": 2, "state": "assigned", "history": history})
    tl = model.timeline("C-1")
    assert [(t.what, t.action, t.seq) for t in tl] == [("step", "received", 1), ("step", "offered", 2), ("step", "answered", 3),
                                                       ("step", "assigned", 4)]
    assert tl[3].text == "assigned (R2-01) by piket-01" and tl[3].detail == "assigned in words"
    # the same state again (a retained re-delivery) adds nothing; what the console sends and hears comes in time order
    model.take_changes()
    _msg(model, f"{NODE}/call/C-1", {**base, "version": 2, "state": "assigned", "history": history})
    model.note("C-1", "2026-11-22T02:17:07.000Z", "event", "accept R2-01 sent by piket-01")
    history += [_step(5, 8, "accepted", "R2-01", "piket-01"), _step(6, 9, "realerted"), _step(7, 10, "recandidated")]
    _msg(model, f"{NODE}/call/C-1", {**base, "version": 5, "state": "enroute", "history": history})
    history[-1] = _step(7, 30, "recandidated", count=4)  # folded: the same step, counted on
    # the daemon's bounded history dropped its first steps: the console keeps those it saw
    _msg(model, f"{NODE}/call/C-1", {**base, "version": 6, "state": "enroute", "history": history[3:]})
    tl = model.timeline("C-1")
    assert [t.action or t.what for t in tl] == ["received", "offered", "answered", "assigned", "event", "accepted", "realerted",
                                                "recandidated"]
    assert tl[-1].text == "recandidated ×4" and tl[-1].time == "2026-11-22T02:17:30.250Z"
    assert "C-1" in model.take_changes().calls
    for i in range(timelinemod.MAX_TIMELINE + 10):
        model.note("C-1", "2026-11-22T03:00:00.000Z", "reply", f"reply {i}")
    assert len(model.timeline("C-1")) == timelinemod.MAX_TIMELINE

    # an older daemon sends no history: the console notes the states it sees, as before
    _msg(model, f"{NODE}/call/C-2", {**base, "call_id": "C-2", "version": 1, "updated": "2026-11-22T02:17:00.000Z"})
    _msg(model, f"{NODE}/call/C-2", {**base, "call_id": "C-2", "version": 2, "state": "answered", "answered_by": "piket-01",
                                     "updated": "2026-11-22T02:17:04.000Z"})
    assert [(t.what, t.text) for t in model.timeline("C-2")] == [("state", "offered"), ("state", "answered by piket-01")]


def test_the_console_section_is_optional_strict_and_documented(tmp_path: Path) -> None:
    base = {"node": {"path": "gorontalo/kota-gorontalo"}}
    assert cfgmod.parse(base, tmp_path / "a.toml").console is None
    cfg = cfgmod.parse({**base, "console": {"listen_port": 8443, "users_file": "users"}}, tmp_path / "a.toml")
    assert cfg.console is not None and cfg.console.listen_port == 8443 and cfg.console.users_file == tmp_path / "users"
    with pytest.raises(ConfigError, match=r"console\.listen_prot"):
        cfgmod.parse({**base, "console": {"listen_prot": 1}}, tmp_path / "a.toml")
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", readme.split("### `[console]`", 1)[1].split("\n## ", 1)[0]))
    missing = [f.name for f in dataclasses.fields(cfgmod.ConsoleConfig) if f.name not in documented]
    assert not missing, f"README's [console] reference lacks {missing}"


CONSOLE_MODULES = sorted((ROOT / "console").glob("*.py"))
TOPIC_LITERAL = re.compile(r"""f["'][^"']*\{[^}]*\}/(unit|call|device|state|health|probe)\b""")


@pytest.mark.parametrize("path", CONSOLE_MODULES, ids=lambda p: p.name)
def test_every_console_module_says_its_job_and_builds_no_topic(path: Path) -> None:
    text = path.read_text()
    tree = ast.parse(text)
    doc = ast.get_docstring(tree)
    assert doc and len(doc.strip().splitlines()[0]) > 10, f"{path.name}: no one-line docstring"
    assert len(text.splitlines()) <= 400, f"{path.name}: too long"
    assert not TOPIC_LITERAL.search(text), f"{path.name} builds a topic: use alkomd.daemon.mqtt.contract"
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m.startswith(("alkomd.daemon.store", "sqlite"))}, "the console never opens the database"


def test_the_console_unit_is_hardened(tmp_path: Path) -> None:
    assert shutil.which("systemd-analyze"), "systemd-analyze is not installed (./run-tests installs it: apt-get install systemd)"
    exe = Path(sys.executable).parent / "alkomd-console"
    assert exe.is_file(), "the test environment has the alkomd-console script"
    unit = tmp_path / "alkomd-console.service"
    unit.write_text((ROOT / "systemd/alkomd-console.service").read_text().replace("/opt/alkomd/venv/bin/alkomd-console", str(exe)))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20", str(unit)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for alkomd-console.service: ([0-9.]+)", r.stdout)
    assert m is not None and float(m.group(1)) <= 2.0 and r.returncode == 0, r.stdout[-300:]


def test_without_a_console_section_the_console_says_so_and_exits_78(tmp_path: Path) -> None:
    conf = tmp_path / "alkomd.toml"
    conf.write_text('[node]\npath = "gorontalo/kota-gorontalo"\n')
    r = subprocess.run([sys.executable, "-m", "alkomd.console.main", "--config", str(conf)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 78 and "console: missing" in r.stderr and str(conf) in r.stderr


def test_a_change_taken_while_a_pages_snapshot_is_on_its_way_follows_the_snapshot() -> None:
    """The hub's batch turn may run while a joining page's snapshot is still being sent (a big snapshot, a loaded
    machine): what that batch carries must reach the joining page too, after the snapshot. (It did not: the page was
    registered only once its snapshot was out, and under load the console test's units never changed status.)"""
    import asyncio

    from alkomd.console.live import Hub

    class SlowSocket:
        """A page whose first send (the snapshot) waits until the test lets it go."""

        def __init__(self) -> None:
            self.sent: list[dict[str, object]] = []
            self.release = asyncio.Event()
            self.closed = False

        async def send_str(self, text: str) -> None:
            if not self.sent:
                await self.release.wait()
            self.sent.append(json.loads(text))

        def __aiter__(self) -> SlowSocket:
            return self

        async def __anext__(self) -> object:
            await asyncio.Event().wait()  # the page sends nothing
            raise StopAsyncIteration

        async def close(self) -> None:
            self.closed = True

    async def scenario() -> list[dict[str, object]]:
        model = Model(NODE)
        _msg(model, f"{NODE}/unit/U1/status", {"unit": "U1", "status": "available", "since": "x", "call_id": None})
        model.take_changes()  # already in the snapshot
        hub = Hub(model, lambda token: True)
        page = SlowSocket()
        serving = asyncio.create_task(hub.serve(page, "t"))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the snapshot is taken and on its way
        _msg(model, f"{NODE}/unit/U1/status", {"unit": "U1", "status": "offline", "since": "y", "call_id": None})
        await hub._turn()  # the batch with U1 offline is taken while the snapshot is still on its way
        page.release.set()
        for _ in range(20):
            await asyncio.sleep(0)
        serving.cancel()
        return page.sent

    sent = asyncio.run(scenario())
    assert [m["type"] for m in sent] == ["snapshot", "batch"]
    assert [u["status"] for u in sent[0]["units"]] == ["available"]  # type: ignore[union-attr, index]
    assert [u["status"] for u in sent[1]["units"]] == ["offline"]  # type: ignore[union-attr, index]

"""alkomctl as a whole: one table of exit codes, and the database found from a configuration only the service can validate."""

from __future__ import annotations

import ast
import json
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alkomd.daemon import ctl, exit_codes
from alkomd.daemon.audit import AuditEntry
from alkomd.daemon.store import Store

ROOT = Path(__file__).resolve().parents[1]


def test_the_exit_codes_are_the_sysexits_values() -> None:
    names = [n for n in vars(exit_codes) if n.startswith("EX_")]
    assert len(names) >= 14
    for name in names:
        if hasattr(os, name) and name != "EX_USAGE":  # ours is argparse's 2, not sysexits' 64 (said in exit_codes.py)
            assert getattr(exit_codes, name) == getattr(os, name), name
    assert exit_codes.EX_USAGE == 2


def test_no_module_defines_its_own_exit_codes() -> None:
    """Every command takes its codes from daemon/exit_codes.py (config.py re-exports EX_CONFIG by import)."""
    own = []
    for path in sorted([*(ROOT / "daemon").glob("*.py"), *(ROOT / "drivers").glob("*.py")]):
        if path.name == "exit_codes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name) and n.id.startswith("EX_"):
                        own.append(f"{path.relative_to(ROOT)}:{node.lineno} {n.id}")
    assert not own, own


def test_audit_and_call_find_the_database_of_a_config_naming_a_service_credential(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The [store] path is all they need: a password file that only exists for the running service is no error."""
    (tmp_path / "data").mkdir()
    store = Store(tmp_path / "data" / "alkomd.db")
    now = datetime.now(UTC)
    store.record([], [], now, [AuditEntry(now, "call.received", "C-0001", "", "{}")])
    store.close()
    cfg = tmp_path / "alkomd.toml"
    cfg.write_text(
        '[node]\npath = "gorontalo/bone-bolango"\n[store]\npath = "data/alkomd.db"\n'
        '[mqtt]\nusername = "gorontalo/bone-bolango"\npassword_file = "/run/credentials/alkomd.service/mqtt-password"\n'
    )
    capsys.readouterr()
    assert ctl.main(["audit", "verify", "--config", str(cfg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 1
    assert ctl.main(["call", "show", "C-0001", "--config", str(cfg), "--json"]) == 0
    assert [e["kind"] for e in json.loads(capsys.readouterr().out)["timeline"]] == ["call.received"]
    assert ctl.main(["call", "show", "C-0404", "--config", str(cfg)]) == exit_codes.EX_PROBLEM
    assert ctl.main(["audit", "verify", "--config", str(tmp_path / "missing.toml")]) == exit_codes.EX_CONFIG
    assert "missing.toml" in capsys.readouterr().err


def test_ctrl_c_while_a_daemon_does_not_answer_is_130_without_a_traceback(tmp_path: Path) -> None:
    """A control socket that takes the request and never answers; the technician presses Ctrl-C."""
    path = tmp_path / "control.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)
        server.settimeout(30)
        proc = subprocess.Popen([sys.executable, "-m", "alkomd.daemon.ctl", "status", "--socket", str(path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(30)
                assert conn.recv(4096).endswith(b"\n")  # the request: alkomctl now waits for the reply
                proc.send_signal(signal.SIGINT)
                _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert proc.returncode == exit_codes.EX_INTERRUPTED and "Traceback" not in err and "interrupted" in err

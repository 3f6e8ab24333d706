"""alkomctl as a whole: one table of exit codes, and the database found from a configuration only the service can validate."""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alkomd.daemon import ctl, exit_codes
from alkomd.daemon.store.audit import AuditEntry
from alkomd.daemon.store.database import Store

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
    for path in sorted([*(ROOT / "daemon").rglob("*.py"), *(ROOT / "drivers").rglob("*.py")]):
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
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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


# Imported as root (this interpreter or the checkout may live in a private folder), then the
# process becomes nobody and runs the command line given.
_AS_NOBODY = """
import os, sys
from pathlib import Path
import email.parser, encodings.idna, gzip, serial.tools.list_ports, serial.tools.list_ports_linux, termios  # noqa: F401 (lazy elsewhere)
from alkomd.daemon import ctl  # noqa: F401
from alkomd.daemon.ctl import audit as cmd_audit
from alkomd.daemon.ctl import backup as cmd_backup
from alkomd.daemon.ctl import ports as cmd_ports
from alkomd.daemon.ctl import status as cmd_status
from alkomd.daemon.ctl import support as cmd_support
from alkomd.daemon.ctl.audit import record  # noqa: F401 (run imports the parts)
from alkomd.daemon.ctl.backup import snapshot  # noqa: F401
from alkomd.daemon.ctl.ports import report, view  # noqa: F401
from alkomd.daemon.ctl.support import bundle  # noqa: F401
from alkomd.drivers import nmea_serial  # noqa: F401
ctl.parser()
cmd_ports.DEFAULT_PATH = Path(sys.argv[1])
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
sys.exit(ctl.main(sys.argv[2:]))
"""


def test_a_database_in_a_folder_the_user_may_not_enter_is_permission_denied_not_a_traceback() -> None:
    """/var/lib/alkomd is 0700 and /etc/alkomd 0750: a technician who forgets sudo gets 77 and the fix."""
    base = Path(tempfile.mkdtemp(prefix="alkomd-perm-", dir="/tmp"))
    private = base / "private"
    public = base / "public"
    try:
        os.chmod(base, 0o755)
        private.mkdir(mode=0o700)
        public.mkdir()
        os.chmod(public, 0o777)
        Store(private / "alkomd.db").close()
        cfg = public / "alkomd.toml"
        cfg.write_text(f'[node]\npath = "gorontalo/bone-bolango"\n[store]\npath = "{private / "alkomd.db"}"\n')
        if os.geteuid() != 0:
            os.chmod(private, 0)

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-c", _AS_NOBODY, str(private / "alkomd.toml"), *args],
                                  capture_output=True, text=True, timeout=120)

        for args in (["backup", str(public / "copy.db"), "--db", str(private / "alkomd.db")],
                     ["audit", "verify", "--config", str(cfg)], ["call", "show", "C-1", "--config", str(cfg)]):
            r = run(*args)
            assert r.returncode == exit_codes.EX_NOPERM and "permission denied" in r.stderr, (args, r.stderr)
            assert "Traceback" not in r.stderr and "as the alkomd user" in r.stderr
        r = run("ports", "--json")  # the default config's folder may not be entered: ports are listed all the same
        assert r.returncode in (exit_codes.EX_OK, exit_codes.EX_PROBLEM) and "Traceback" not in r.stderr, r.stderr
        assert isinstance(json.loads(r.stdout)["ports"], list)
        r = run("support-bundle", str(public / "b.tar.gz"), "--config", str(cfg), "--socket", str(public / "none.sock"))
        assert r.returncode == exit_codes.EX_OK and "Traceback" not in r.stderr, r.stderr
        with tarfile.open(public / "b.tar.gz") as tar:
            readme = next(m for m in tar.getmembers() if m.name.endswith("README.txt"))
            text = tar.extractfile(readme).read().decode()  # type: ignore[union-attr]
        assert f"no database.json: {private} may not be entered by this user (run as root)" in text
    finally:
        os.chmod(private, 0o700)
        shutil.rmtree(base, ignore_errors=True)


def test_every_command_registers_its_parsers_and_its_run() -> None:
    """One convention: each module in ctl.COMMANDS adds its parser(s), and each parser runs that module's `run`."""
    sub = next(a for a in ctl.parser()._actions if isinstance(a, argparse._SubParsersAction))
    runs = {name: p.get_default("run") for name, p in sub.choices.items()}
    assert all(callable(r) for r in runs.values()), runs
    assert {sys.modules[r.__module__] for r in runs.values()} == set(ctl.COMMANDS)


def test_help_imports_none_of_the_heavy_libraries() -> None:
    """`alkomctl --help` and every command's --help stay fast: the parser needs no daemon internals or big libraries."""
    code = "import sys; from alkomd.daemon import ctl; ctl.parser(); print('\\n'.join(sorted(sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    heavy = ("shapely", "numpy", "rich", "serial", "paho", "pymodbus", "sqlite_utils", "pynmea2", "amqtt", "alkomd.drivers")
    core = ("alkomd.daemon.config", "alkomd.daemon.control", "alkomd.daemon.records", "alkomd.daemon.store")
    found = sorted(m for m in loaded if m.split(".")[0] in heavy or m.startswith(heavy + core))
    assert not found, found


def test_the_constants_written_out_for_a_fast_help_agree_with_their_sources() -> None:
    from alkomd.daemon.config import DEFAULT_PATH
    from alkomd.daemon.ctl import common, modbus
    from alkomd.drivers import modbus_map, nmea_serial

    assert DEFAULT_PATH == common.DEFAULT_PATH
    assert nmea_serial.FRAMINGS == common.FRAMINGS
    assert tuple(modbus_map.TYPES) == modbus.TYPES
    assert modbus_map.WORD_ORDERS == modbus.WORD_ORDERS

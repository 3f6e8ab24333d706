"""`./run-demo` and `./run-tests` install into the venv once, say so in one line, keep pip quiet and start offline after."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "venv"


def _fake_venv(tmp: Path) -> tuple[Path, Path]:
    """A venv whose python records pip calls (and answers them like a quiet pip) and imports with the real one."""
    venv = tmp / "venv"
    (venv / "bin").mkdir(parents=True)
    calls = tmp / "calls"
    shim = venv / "bin" / "python"
    shim.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-m" ]; then echo "$@" >> {calls}; echo "some pip output"; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    shim.chmod(0o755)
    return venv, calls


def _run(venv: Path, extras: str = "demo") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VENV": str(venv)}
    return subprocess.run([str(SCRIPT), "run-demo", extras], capture_output=True, text=True, env=env, timeout=60, check=True)


def test_the_first_start_installs_with_one_line_and_the_second_start_calls_no_pip(tmp_path: Path) -> None:
    venv, calls = _fake_venv(tmp_path)
    first = _run(venv)
    assert first.stdout.startswith("run-demo: installing alkomd") and first.stdout.count("\n") == 1
    assert "some pip output" not in first.stdout + first.stderr  # pip's output went to the venv's pip.log
    assert "some pip output" in (venv / "pip.log").read_text()
    pip_calls = calls.read_text().splitlines()
    assert len(pip_calls) == 1 and "install" in pip_calls[0] and "--upgrade" not in pip_calls[0]
    second = _run(venv)  # no pip at all: works without the network
    assert second.stdout == "" and len(calls.read_text().splitlines()) == 1
    _run(venv, "test")  # other extras are installed once too
    _run(venv, "test")
    _run(venv, "demo")
    assert len(calls.read_text().splitlines()) == 2


def test_a_changed_setup_cfg_installs_again(tmp_path: Path) -> None:
    venv, calls = _fake_venv(tmp_path)
    _run(venv)
    stamp = venv / ".alkomd-installed"
    stamp.write_text("demo a-hash-of-an-older-setup.cfg\n")
    assert _run(venv).stdout.startswith("run-demo: installing")
    assert len(calls.read_text().splitlines()) == 2


def test_both_scripts_install_through_it_and_never_upgrade_pip() -> None:
    for name, extras in (("run-demo", "demo"), ("run-tests", "test")):
        text = (ROOT / name).read_text()
        assert f".ci/venv {name} {extras}" in text
        assert "--upgrade pip" not in text and "pip install" not in text

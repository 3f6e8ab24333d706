"""The README's install recipe, followed line by line in a temporary root, ends with check-config passing.

What runs: the fenced `sh` block under "## Install on a station" is read from README.md; `sudo` is
dropped and `/opt/alkomd`, `/etc/alkomd` are moved under a temporary root. These steps run as
written: `python3 -m venv` (the release's virtual environment), its `pip install` of this checkout
(with `--no-deps`: the dependencies come from the test's own environment through a `.pth` file;
pip builds the wheel in isolation as on a station, so its index must offer setuptools; what is
checked is that the built package carries its data files),
`ln -sfn` (the venv symlink), `install -d` (/etc/alkomd), `alkomctl init-config` and
`alkomctl check-config`, which must exit 0.

What does not run, and is only asserted to be in the block (they need root, apt or a running
systemd): `apt-get install python3-venv`, `systemd-sysusers`, `systemd-tmpfiles --create`, the udev
rule copy with `udevadm control --reload` / `udevadm trigger`, the unit copy with
`systemctl daemon-reload` / `systemctl enable --now alkomd` (the files those steps copy from
`systemd/` are asserted to be in the release), `systemctl status alkomd` and
`journalctl -u alkomd -f`. A line of the block that is neither run nor in that list fails the test.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# (what identifies the line, why it cannot run here): each must be in the block.
NOT_RUN = (
    ("apt-get install", "apt, root"),
    ("systemd-sysusers", "creates the alkomd user: root"),
    ("systemd-tmpfiles --create", "root"),
    ("udevadm control --reload", "udev, root"),
    ("/etc/udev/rules.d/", "udev, root"),
    ("/etc/systemd/system/", "root"),
    ("systemctl daemon-reload", "a running systemd"),
    ("systemctl status alkomd", "a running systemd"),
    ("journalctl -u alkomd", "a running systemd"),
)
RUN = ("python3 -m venv", "/bin/pip install", "ln -sfn", "install -d", "alkomctl init-config", "alkomctl check-config")


def install_block(readme: str) -> list[str]:
    """The command lines of the first sh block after '## Install on a station' (comments dropped)."""
    section = readme.split("\n## Install on a station\n", 1)[1]
    m = re.search(r"```sh\n(.*?)```", section, re.S)
    assert m, "no ```sh block in the install section"
    lines = [line.split("  #", 1)[0].strip() for line in m.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_the_install_block_has_every_step_the_test_knows_of() -> None:
    lines = install_block((ROOT / "README.md").read_text())
    for needle, _ in NOT_RUN:
        assert any(needle in line for line in lines), f"the install block no longer has {needle!r}: update this test"
    for line in lines:
        known = [n for n in RUN if n in line] + [n for n, _ in NOT_RUN if n in line]
        assert known, f"a step this test neither runs nor knows: {line!r}"
        for word in shlex.split(line):  # what the steps that need root copy is in the release
            if word.startswith("systemd/"):
                assert (ROOT / word).is_file(), f"{line!r}: no {word} in the release"


def _mapped(line: str, root: Path) -> str:
    line = re.sub(r"\bsudo\s+", "", line)
    for path in ("/opt/alkomd", "/etc/alkomd"):
        line = line.replace(path, f"{root}{path}")
    return line


@pytest.mark.timeout(300)
def test_the_readme_install_recipe_ends_with_check_config_passing(tmp_path: Path) -> None:
    lines = install_block((ROOT / "README.md").read_text())
    root = tmp_path / "root"
    ran: list[str] = []
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)
    for line in lines:
        if not any(n in line for n in RUN):
            continue
        cmd = shlex.split(_mapped(line, root))
        if cmd[:3] == ["python3", "-m", "venv"]:
            cmd[0] = getattr(sys, "_base_executable", sys.executable)  # the python3 this test's venv was made from
            subprocess.run(cmd, check=True, env=env)
            venv = Path(cmd[-1])
            # The dependencies from this test's environment (the install itself stays offline).
            site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
            (site / "zz-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        elif cmd[0].endswith("/bin/pip") and cmd[1] == "install":
            assert cmd[2:3] == ["/path/to/alkomd-0.1.0.tar.gz"], "the recipe installs a release tarball or a checkout"
            # pip builds in isolation as on a station (setuptools from pyproject.toml, from pip's index).
            cmd = [cmd[0], "install", "-q", "--no-deps", str(ROOT)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
            assert proc.returncode == 0, proc.stdout + proc.stderr
        else:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
            assert proc.returncode == 0, f"{line}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
        ran.append(line)
    assert [n for n in RUN if not any(n in line for line in ran)] == [], "a step of the recipe did not run"
    etc = root / "etc/alkomd"
    assert (etc / "jurisdictions/gorontalo-adm2.geojson").is_file()
    assert "MIT License" in (etc / "jurisdictions/README.md").read_text()  # the polygons' licence notice goes with them
    # The installed package, not the checkout, answered: its alkomctl lives in the release's venv.
    venv_alkomctl = root / "opt/alkomd/venv/bin/alkomctl"
    proc = subprocess.run([str(venv_alkomctl), "check-config", str(etc / "alkomd.toml")], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout + proc.stderr
    where = subprocess.run(
        [str(root / "opt/alkomd/venv/bin/python"), "-c", "import alkomd.config, sys; print(alkomd.config.__file__)"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout
    assert str(root) in where, f"alkomd.config came from {where}, not from the installed release"

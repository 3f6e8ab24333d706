"""alkomctl's own words (issue 13 item 8): its error lines say `alkomctl:`, and the README's config-error example is
the real message."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _broken_example(tmp_path: Path) -> Path:
    """config/alkomd.toml with device[1].baud written as a string, as the README's example says."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    cfg = tmp_path / "config" / "alkomd.toml"
    text = cfg.read_text()
    devices = [m.start() for m in re.finditer(r"^\[\[device\]\]$", text, re.M)]
    head, tail = text[: devices[1]], text[devices[1] :]
    baud = re.search(r"^baud = (\d+)$", tail[: devices[2] - devices[1]], re.M)
    assert baud is not None, "device[1] of config/alkomd.toml has no baud"
    cfg.write_text(head + tail[: baud.start()] + 'baud = "9600"' + tail[baud.end() :])
    return cfg


def test_the_readme_config_error_is_the_real_one_and_alkomctl_says_alkomctl(tmp_path: Path) -> None:
    """Pass: `alkomd --check-config` on the example with device[1].baud = "9600" prints exactly the README's line
    (its path read as /etc/alkomd/alkomd.toml), exit 78; `alkomctl check-config` prints the same after `alkomctl:`."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"\$ alkomd --check-config /etc/alkomd/alkomd.toml\n(alkomd: config error: [^\n]+)\n", readme)
    assert block is not None, "the README's config-error example"
    cfg = _broken_example(tmp_path)
    p = subprocess.run([sys.executable, "-m", "alkomd.daemon.main", "--check-config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 78
    assert p.stderr.strip().replace(str(cfg), "/etc/alkomd/alkomd.toml") == block.group(1)
    p = subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", "check-config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 78
    assert p.stderr.strip() == block.group(1).replace("alkomd:", "alkomctl:", 1).replace("/etc/alkomd/alkomd.toml", str(cfg))


def test_alkomctl_error_lines_never_say_alkomd(tmp_path: Path) -> None:
    """Pass: every alkomctl command's error line starts with `alkomctl` (a broken config, a missing database, no daemon)."""
    cfg = _broken_example(tmp_path)
    missing = tmp_path / "none.db"
    for args in (
        ["check-config", str(cfg)],
        ["mqtt-check", "--config", str(cfg)],
        ["status", "--config", str(cfg)],
        ["audit", "verify", "--db", str(missing)],
        ["call", "show", "C-1", "--db", str(missing)],
        ["calls", "--db", str(missing)],
    ):
        p = subprocess.run([sys.executable, "-m", "alkomd.daemon.ctl", *args], capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and p.stderr.startswith("alkomctl"), (args, p.stderr)
        assert "alkomd:" not in p.stderr, (args, p.stderr)

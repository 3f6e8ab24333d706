"""Every alkomctl command sub-package is in setup.cfg's package list (an installed alkomctl would lack a new one)."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_ctl_sub_package_is_installed() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    found = {f"alkomd.daemon.ctl.{p.parent.name}" for p in (ROOT / "daemon" / "ctl").glob("*/__init__.py")}
    assert found - listed == set(), f"setup.cfg [options] packages lacks {sorted(found - listed)}"

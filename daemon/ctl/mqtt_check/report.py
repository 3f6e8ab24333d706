"""`alkomctl mqtt-check`'s run: the daemon's configuration (with another password file if given), the check, its report."""

from __future__ import annotations

import json
import sys
import tomllib
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from alkomd.daemon import config as cfgmod
from alkomd.daemon.config import Config
from alkomd.daemon.ctl.mqtt_check.check import Check, Report
from alkomd.daemon.exit_codes import EX_CONFIG
from alkomd.daemon.schema import ConfigError


def load_config(path: Path, password_file: Path | None) -> Config:
    """The daemon's configuration, with `mqtt.password_file` replaced when --password-file is given."""
    if password_file is None:
        return cfgmod.load(path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(path, "", exc.strerror or str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from None
    mqtt = raw.setdefault("mqtt", {})
    if isinstance(mqtt, dict):
        mqtt["password_file"] = str(password_file.resolve())
    return cfgmod.parse(raw, path)


def render(report: Report, cfg: Config, out: TextIO) -> None:
    """The report for people: one line per step, then the verdict and, if any, the problem and what to do."""
    from rich.console import Console  # imported late: --json stays fast
    from rich.text import Text

    console = Console(file=out, width=None if out.isatty() else 120, highlight=False, markup=False)
    how = ("TLS" if report.tls else "plain TCP, no TLS") + f", MQTT {report.protocol}"
    console.print(Text(f"MQTT check of {cfg.node.topic} -> {report.broker} ({how})", style="bold"))
    for s in report.steps:
        line = Text("  ")
        line.append("ok  " if s.ok else "FAIL", style="green" if s.ok else "bold red")
        line.append(f" {s.name:<10} {'' if s.ms is None else f'{s.ms:>8.1f} ms'}  {s.detail}")
        console.print(line)
    if report.session:
        console.print(Text(f"  session: {report.session}", style="dim"))
    if report.ok:
        console.print(Text(f"OK: the probe came back, round trip {report.rtt_ms:g} ms", style="bold green"))
        return
    console.print(Text(f"PROBLEM: {report.problem}", style="bold red"))
    if report.hint:
        console.print(Text(f"what to do: {report.hint}"))


def check_cmd(
    config: Path, password_file: Path | None, timeout_s: float, as_json: bool, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    """`alkomctl mqtt-check`: the report on `out` (text or JSON); the exit code says what failed."""
    try:
        cfg = load_config(config, password_file)
    except ConfigError as exc:
        print(f"alkomctl: config error: {exc}", file=err)
        if exc.key == "mqtt.password_file" and "/run/credentials/" in str(exc):
            print(
                "hint: that is a systemd credential, present only while alkomd runs; "
                "pass its source instead: --password-file /etc/alkomd/mqtt-password",
                file=err,
            )
        return EX_CONFIG
    report = Check(cfg, timeout_s).run()
    if as_json:
        print(json.dumps(asdict(report), ensure_ascii=False), file=out)
    else:
        render(report, cfg, out)
    return report.exit_code

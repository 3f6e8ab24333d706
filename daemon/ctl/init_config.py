"""`alkomctl init-config DIR`: copy the shipped example configuration and the files it names into DIR."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from alkomd.daemon.ctl.common import RAW, Subparsers, epilog, wrap
from alkomd.daemon.exit_codes import EX_CANTCREAT, EX_OK, EX_SOFTWARE

# What a station's configuration folder gets: the example and what it references (the polygons with
# their licence notice, the Modbus maps). The mosquitto files are for the central broker: only shown.
COPIED = ("alkomd.toml", "jurisdictions", "modbus")
BROKER_FILES = "mosquitto"


def add_parser(sub: Subparsers) -> None:
    c = sub.add_parser(
        "init-config",
        help="copy the example configuration and its polygons into a folder (e.g. /etc/alkomd)",
        formatter_class=RAW,
        description=wrap(
            "Copy the example configuration shipped with this release (alkomd.toml for Polres Bone Bolango), the "
            "jurisdiction polygons it names (with their licence notice) and the Modbus maps into DIR. A file that "
            "exists with other content is never overwritten without --force; identical files are left alone. Then edit "
            "DIR/alkomd.toml (node, broker, ports, units) and run alkomctl check-config on it."
        ),
        epilog=epilog(
            "0 copied (or already there), 73 a file exists with other content (without --force) or cannot be written",
            "sudo alkomctl init-config /etc/alkomd",
            "alkomctl init-config /tmp/try && alkomctl check-config /tmp/try/alkomd.toml",
            "sudo alkomctl init-config --force /etc/alkomd    put the shipped polygons and maps back",
        ),
    )
    c.add_argument("dir", type=Path, metavar="DIR", help="the configuration folder, e.g. /etc/alkomd (created if missing)")
    c.add_argument("--force", action="store_true", help="overwrite files that differ from the shipped ones")


def shipped() -> Path:
    """The folder of the example configuration installed with this release (package data of alkomd.config)."""
    from importlib.resources import files

    return Path(str(files("alkomd.config")))


def plan(source: Path, target: Path) -> list[tuple[Path, Path]]:
    """(shipped file, file in `target`) for every file init-config copies, in order."""
    out: list[tuple[Path, Path]] = []
    for name in COPIED:
        src = source / name
        if src.is_dir():
            out += [(f, target / name / f.name) for f in sorted(src.iterdir()) if f.is_file()]
        else:
            out.append((src, target / name))
    return out


def init_config(target: Path, force: bool = False, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Copy the shipped files into `target`; the exit code (see the epilog)."""
    import shutil

    out = out or sys.stdout
    err = err or sys.stderr
    source = shipped()
    files = plan(source, target)
    missing = [str(src) for src, _ in files if not src.is_file()]
    if missing or not files:
        print(f"alkomctl: this installation lacks its example configuration ({', '.join(missing) or source}): reinstall alkomd",
              file=err)
        return EX_SOFTWARE
    differ = [dst for src, dst in files if dst.exists() and (not dst.is_file() or dst.read_bytes() != src.read_bytes())]
    if differ and not force:
        print(f"alkomctl: not overwriting {len(differ)} file(s) that differ from the shipped ones (--force overwrites): "
              + ", ".join(map(str, differ)), file=err)
        return EX_CANTCREAT
    try:
        target.mkdir(mode=0o750, parents=True, exist_ok=True)
        for src, dst in files:
            if dst.is_file() and dst.read_bytes() == src.read_bytes():
                print(f"kept    {dst} (identical)", file=out)
                continue
            dst.parent.mkdir(mode=0o750, exist_ok=True)
            shutil.copyfile(src, dst)
            print(f"{'replaced' if dst in differ else 'copied'}  {dst}", file=out)
    except OSError as exc:
        print(f"alkomctl: cannot write into {target}: {exc}", file=err)
        return EX_CANTCREAT
    print(f"next: edit {target / 'alkomd.toml'} (node, broker, ports, units), then alkomctl check-config {target / 'alkomd.toml'}",
          file=out)
    print(f"the central broker's mosquitto files (not for a station): {source / BROKER_FILES}", file=out)
    return EX_OK


def run(args: argparse.Namespace) -> int:
    return init_config(args.dir, args.force)

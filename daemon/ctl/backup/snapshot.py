"""The online backup: one consistent snapshot copied with SQLite's backup API, checked, then renamed into place."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from alkomd.daemon.exit_codes import EX_CANTCREAT, EX_DATAERR, EX_NOINPUT, EX_NOPERM, EX_OK
from alkomd.daemon.store import readonly
from alkomd.daemon.store.audit import verify

STEP_PAGES = 256  # pages copied per step (1 MiB with SQLite's default 4 KiB pages)


class BackupError(Exception):
    """The backup could not be made; `code` is the exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class BackupReport:
    source: str
    target: str
    bytes: int
    pages: int
    steps: int
    seconds: float
    integrity: str  # "ok", or the first problems integrity_check found
    schema_version: int
    positions: int
    newest_position: str | None
    units: int
    calls: int
    open_calls: int
    outbox_unsent: int
    audit_entries: int
    audit_ok: bool
    audit_first_bad_id: int | None
    audit_reason: str


def backup(source: Path, target: Path, force: bool = False, step_pages: int = STEP_PAGES) -> BackupReport:
    """Copy `source` to `target` and verify the copy. Raises BackupError."""
    denied = f"cannot read {source}: permission denied (run as root or as the alkomd user)"
    try:  # pathlib raises PermissionError, not False, for a file in a folder we may not enter (/var/lib/alkomd is 0700)
        if not source.is_file():
            raise BackupError(EX_NOINPUT, f"no database at {source} (see [store] path in the configuration, or --db)")
    except PermissionError:
        raise BackupError(EX_NOPERM, denied) from None
    try:
        if target.exists() and target.resolve() == source.resolve():
            raise BackupError(EX_CANTCREAT, f"{target} is the database itself")
        if target.is_dir():
            raise BackupError(EX_CANTCREAT, f"{target} is a folder: name the file to write, e.g. {target / 'alkomd.db'}")
        if target.exists() and not force:
            raise BackupError(EX_CANTCREAT, f"{target} exists (--force replaces it)")
        if not target.parent.is_dir():
            raise BackupError(EX_CANTCREAT, f"no folder {target.parent}")
    except PermissionError:
        raise BackupError(EX_CANTCREAT, f"cannot create {target}: permission denied") from None
    if not os.access(source, os.R_OK):
        raise BackupError(EX_NOPERM, denied)
    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    except OSError as exc:
        raise BackupError(EX_CANTCREAT, f"cannot create a file in {target.parent}: {exc.strerror}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        started = time.monotonic()
        pages, steps = _copy(source, tmp, step_pages)
        seconds = time.monotonic() - started
        report = _verify(source, target, tmp, pages, steps, seconds)
        if report.integrity != "ok":
            raise BackupError(EX_DATAERR, f"the copy fails integrity_check ({report.integrity}); nothing written to {target}")
        try:
            _sync(tmp)
            os.replace(tmp, target)
            _sync(target.parent)
        except OSError as exc:
            raise BackupError(EX_CANTCREAT, f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return report


def _copy(source: Path, tmp: Path, step_pages: int) -> tuple[int, int]:
    """Copy every page of one snapshot of `source`; returns (pages, steps)."""
    progress: list[int] = []
    try:
        src = readonly.connect(source, timeout_s=10, autocommit=True)
    except sqlite3.Error as exc:
        raise BackupError(EX_NOINPUT, f"cannot open {source}: {exc}") from None
    try:
        dst = sqlite3.connect(tmp, isolation_level=None)
        try:
            readonly.copy_snapshot(src, dst, step_pages, lambda status, remaining, total: progress.append(total))
        finally:
            dst.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(EX_DATAERR, f"cannot copy {source}: {exc}") from None
    finally:
        src.close()
    return (progress[-1] if progress else 0), len(progress)


def _verify(source: Path, target: Path, tmp: Path, pages: int, steps: int, seconds: float) -> BackupReport:
    con = readonly.connect(tmp)
    try:
        problems = readonly.integrity_problems(con)
        integrity = "ok" if problems == ["ok"] else "; ".join(problems[:3])
        version = readonly.schema_version(con)
        tables = readonly.tables(con)
        if integrity == "ok" and not {"positions", "units", "outbox"} <= tables:
            integrity = f"not an alkomd database (tables: {', '.join(sorted(tables)) or 'none'})"
        sound = integrity == "ok"
        has_calls = "calls" in tables and sound
        if "audit" in tables and sound:
            v = verify(readonly.audit_rows(con))
            audit = (v.checked, v.ok, v.first_bad_id, v.reason)
        else:
            audit = (0, True, None, "")
        return BackupReport(
            source=str(source), target=str(target), bytes=tmp.stat().st_size, pages=pages, steps=steps,
            seconds=round(seconds, 3), integrity=integrity, schema_version=version,
            positions=readonly.count_positions(con) if sound else 0,
            newest_position=readonly.newest_position(con) if sound else None,
            units=readonly.count_units(con) if sound else 0,
            calls=readonly.count_calls(con) if has_calls else 0,
            open_calls=readonly.count_calls(con, only_open=True) if has_calls else 0,
            outbox_unsent=sum(readonly.unsent_by_kind(con).values()) if sound else 0,
            audit_entries=audit[0], audit_ok=audit[1], audit_first_bad_id=audit[2], audit_reason=audit[3],
        )
    finally:
        con.close()


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def backup_cmd(source: Path, target: Path, force: bool, as_json: bool, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Exit 0 when the copy is written and sound; 65 when it is not (or its audit chain is broken); 66, 73, 77."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        r = backup(source, target, force)
    except BackupError as exc:
        print(f"alkomctl: backup: {exc}", file=err)
        return exc.code
    code = EX_OK if r.audit_ok else EX_DATAERR
    if as_json:
        print(json.dumps(asdict(r)), file=out)
        return code
    steps = f"{r.steps} step{'s' if r.steps != 1 else ''}"
    print(f"backup of {r.source} written to {r.target}: {_mb(r.bytes)}, {r.pages} pages in {steps}, {r.seconds:g} s", file=out)
    print(f"  integrity_check ok; schema version {r.schema_version}", file=out)
    newest = f" (newest {r.newest_position})" if r.newest_position else ""
    print(f"  {r.positions} positions{newest}; {r.units} units; {r.calls} calls ({r.open_calls} open); "
          f"{r.outbox_unsent} outbox messages not yet sent", file=out)
    if r.audit_ok:
        print(f"  audit record: {r.audit_entries} entries, hash chain verified", file=out)
    else:
        print(f"  AUDIT RECORD BROKEN at entry {r.audit_first_bad_id}: {r.audit_reason} (the copy is faithful: "
              f"check the station with alkomctl audit verify)", file=out)
    return code

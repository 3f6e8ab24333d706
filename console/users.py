"""Dispatcher accounts: a users file of `name:argon2-hash` lines, read at each login, written atomically."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_HASHER = PasswordHasher()
# Verified when the name is unknown, so that a login for a missing account costs the same time.
_DUMMY = _HASHER.hash("not a password of anybody")


class UsersFileError(Exception):
    """The users file cannot be read or written, or a name or password is not acceptable."""


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    hash: str


def valid_name(name: str) -> bool:
    return NAME_PATTERN.fullmatch(name) is not None


def read(path: Path) -> dict[str, Account]:
    """Every account of the users file (an empty file or a missing one: none). Malformed lines are errors."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsersFileError(f"{path}: cannot read: {exc.strerror}") from None
    accounts: dict[str, Account] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, digest = line.partition(":")
        if not sep or not valid_name(name) or not digest.startswith("$argon2"):
            raise UsersFileError(f"{path}:{n}: not a `name:$argon2...` line")
        accounts[name] = Account(name, digest)
    return accounts


def verify(path: Path, name: str, password: str) -> bool:
    """True when `name` exists in the users file and `password` is its password (constant work either way)."""
    account = read(path).get(name)
    try:
        return _HASHER.verify(account.hash if account else _DUMMY, password) and account is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def set_password(path: Path, name: str, password: str) -> bool:
    """Add `name` or change its password; returns True when the account is new.

    The file is replaced atomically, mode 0640, in the group of the file it replaces (or of its folder: /etc/alkomd is
    the alkomd group's), so that the console's service reads it and nobody else does.
    """
    if not valid_name(name):
        raise UsersFileError(f"not a valid account name: {name!r} (letters, digits, . _ @ -, at most 64)")
    if len(password) < 8:
        raise UsersFileError("the password must have at least 8 characters")
    accounts = read(path)
    new = name not in accounts
    accounts[name] = Account(name, _HASHER.hash(password))
    body = "# alkomd-console accounts: name:argon2 hash (alkomd-console adduser NAME)\n"
    body += "".join(f"{a.name}:{a.hash}\n" for a in accounts.values())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".users-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        _share_with_group(tmp, path)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UsersFileError(f"{path}: cannot write: {exc.strerror}") from None
    return new


def _share_with_group(tmp: str, path: Path) -> None:
    os.chmod(tmp, 0o640)
    try:
        gid = path.stat().st_gid if path.exists() else path.parent.stat().st_gid
        os.chown(tmp, -1, gid)
    except PermissionError:  # not root and not in that group: the file keeps the caller's group
        pass

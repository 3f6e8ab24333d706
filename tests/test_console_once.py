"""The console's one-time login (the demo's one-click link): read from the environment's file, good for one use only."""

from __future__ import annotations

from pathlib import Path

import pytest

from alkomd.console.once import ENV, OneTime, OneTimeLogin, OneTimeLoginError, from_environment


def test_the_token_file_is_read_once_and_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "login"
    f.write_text("demo abcdefghijklmnopqrstuvwxyz\n")
    monkeypatch.setenv(ENV, str(f))
    assert from_environment() == OneTimeLogin("demo", "abcdefghijklmnopqrstuvwxyz")
    assert not f.exists()
    with pytest.raises(OneTimeLoginError):
        from_environment()  # gone
    monkeypatch.delenv(ENV)
    assert from_environment() is None


def test_a_short_token_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "login"
    f.write_text("demo short\n")
    monkeypatch.setenv(ENV, str(f))
    with pytest.raises(OneTimeLoginError):
        from_environment()


def test_the_login_is_given_once_and_only_for_its_token() -> None:
    once = OneTime(OneTimeLogin("demo", "t" * 20))
    assert once.take(None) is None and once.take("x" * 20) is None
    assert once.take("t" * 20) == "demo"
    assert once.take("t" * 20) is None
    assert OneTime(None).take("t" * 20) is None

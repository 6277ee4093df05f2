"""Where the signing keys come from: the environment or files, and nothing is no key."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from streamcart.errors import ConfigurationError
from streamcart.workers.users import signing_keys
from streamcart.workers.users.signing_keys import (
    DEPRECATED_SECRET_ENV,
    PREVIOUS_ENV,
    PREVIOUS_FILE_ENV,
    SECRET_ENV,
    SECRET_FILE_ENV,
    from_environment,
)
from streamcart.workers.users.tokens import SigningKey

CURRENT = "c" * 40
PREVIOUS = "p" * 40


def test_the_secret_comes_from_the_environment() -> None:
    keys = from_environment({SECRET_ENV: CURRENT})
    assert keys.current == SigningKey(CURRENT.encode())
    assert keys.previous is None


def test_the_secret_comes_from_a_file_without_its_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "token-secret"
    path.write_bytes(CURRENT.encode() + b"\n")
    assert from_environment({SECRET_FILE_ENV: str(path)}).current == SigningKey(CURRENT.encode())
    path.write_bytes(b"  spaced secret kept whole  " + b"x" * 8 + b"\r\n")
    current = from_environment({SECRET_FILE_ENV: str(path)}).current
    assert current.secret == b"  spaced secret kept whole  " + b"x" * 8


def test_the_old_name_still_works_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "streamcart.users"):
        keys = from_environment({DEPRECATED_SECRET_ENV: CURRENT})
    assert keys.current == SigningKey(CURRENT.encode())
    assert f"{DEPRECATED_SECRET_ENV} is deprecated: set {SECRET_ENV}" in caplog.text


def test_the_new_name_wins_over_the_old_one() -> None:
    keys = from_environment({SECRET_ENV: CURRENT, DEPRECATED_SECRET_ENV: PREVIOUS})
    assert keys.current == SigningKey(CURRENT.encode())


@pytest.mark.parametrize("environ", [{}, {SECRET_ENV: ""}, {SECRET_FILE_ENV: ""}])
def test_no_secret_fails_closed_naming_both_variables(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        from_environment(environ)
    assert SECRET_ENV in str(caught.value) and SECRET_FILE_ENV in str(caught.value)


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=f"{SECRET_FILE_ENV}: no file"):
        from_environment({SECRET_FILE_ENV: str(tmp_path / "absent")})


@pytest.mark.parametrize("content", [b"", b"\n", b"\r\n\n"])
def test_an_empty_file_is_an_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "token-secret"
    path.write_bytes(content)
    with pytest.raises(ConfigurationError, match="is empty"):
        from_environment({SECRET_FILE_ENV: str(path)})


def test_an_unreadable_file_is_an_error(tmp_path: Path) -> None:
    # A directory: unreadable as a file even for root, who reads any mode.
    with pytest.raises(ConfigurationError, match=f"{SECRET_FILE_ENV}: cannot read"):
        from_environment({SECRET_FILE_ENV: str(tmp_path)})


def test_a_short_secret_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=f"{SECRET_ENV}: .*at least 32 bytes"):
        from_environment({SECRET_ENV: "short"})
    path = tmp_path / "token-secret"
    path.write_text("short\n")
    with pytest.raises(ConfigurationError, match=f"{SECRET_FILE_ENV} .*at least 32 bytes"):
        from_environment({SECRET_FILE_ENV: str(path)})


def test_a_secret_and_a_file_for_one_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "token-secret"
    path.write_text(CURRENT)
    with pytest.raises(ConfigurationError, match="not both"):
        from_environment({SECRET_ENV: CURRENT, SECRET_FILE_ENV: str(path)})


def test_the_previous_key_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    keys = from_environment({SECRET_ENV: CURRENT, PREVIOUS_ENV: PREVIOUS})
    assert keys.previous == SigningKey(PREVIOUS.encode())
    assert keys.find(SigningKey(PREVIOUS.encode()).kid) == keys.previous
    path = tmp_path / "previous"
    path.write_text(PREVIOUS + "\n")
    keys = from_environment({SECRET_ENV: CURRENT, PREVIOUS_FILE_ENV: str(path)})
    assert keys.previous == SigningKey(PREVIOUS.encode())


def test_a_previous_file_that_is_not_there_is_no_previous_key(tmp_path: Path) -> None:
    """A Kubernetes Secret without its ``previous`` entry mounts no such file."""
    keys = from_environment({SECRET_ENV: CURRENT, PREVIOUS_FILE_ENV: str(tmp_path / "previous")})
    assert keys.previous is None


def test_an_emptied_previous_file_is_no_previous_key(tmp_path: Path) -> None:
    """A previous key retired by emptying its Secret entry must not stop every gateway."""
    empty = tmp_path / "previous"
    empty.write_text("\n")
    keys = from_environment({SECRET_ENV: CURRENT, PREVIOUS_FILE_ENV: str(empty)})
    assert keys.previous is None and keys.current == SigningKey(CURRENT.encode())


def test_configured_tells_whether_a_current_secret_is_named(tmp_path: Path) -> None:
    assert not signing_keys.configured({PREVIOUS_ENV: PREVIOUS})
    assert signing_keys.configured({SECRET_FILE_ENV: str(tmp_path / "x")})
    assert signing_keys.configured({DEPRECATED_SECRET_ENV: CURRENT})

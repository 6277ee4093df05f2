"""Fixtures of the integration tier: every error body a test receives is checked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.error_bodies import ErrorBodies


@pytest.fixture(autouse=True)
def error_bodies(monkeypatch: pytest.MonkeyPatch) -> Iterator[ErrorBodies]:
    """The 4xx and 5xx bodies the test's HTTP clients receive; the test fails
    if one tells internals. A test that must see error bodies asserts it on
    ``seen``, so the check cannot pass by seeing nothing."""
    bodies = ErrorBodies()
    bodies.watch(monkeypatch)
    yield bodies
    leaks = bodies.leaks()
    if leaks:
        pytest.fail("error bodies tell internals:\n" + "\n".join(leaks), pytrace=False)

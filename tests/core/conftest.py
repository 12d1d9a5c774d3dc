"""Fixtures for the store-contract tests that run once per backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .pgserver import fresh_schema


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def backend_db_url(backend: str, home: Path) -> Iterator[str]:
    """A real SQLite file or a fresh schema on the real PostgreSQL server. A module
    whose every store test runs once per backend overrides `db_url` with this."""
    if backend == "sqlite":
        yield f"sqlite:///{home / 'qqtui.db'}"
        return
    with fresh_schema() as url:
        yield url

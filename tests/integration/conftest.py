"""Fixtures of the integration tests against the real Postgres."""

from __future__ import annotations

import pytest

from candlewick.storage.postgres import PostgresStore


@pytest.fixture
async def store(pg_url, aio):
    """A ``PostgresStore`` on the test's own fresh database, opened (so migrated), closed afterwards."""
    s = PostgresStore(pg_url)
    await s.open()
    yield s
    await s.close()

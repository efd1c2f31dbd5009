"""A flood of guessed keys is refused before any lookup, and a real key keeps working (an
API process in this test, real Postgres and Redis)."""

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from api.core import auth
from tests.helpers import AUTH
from vqueue.settings import Settings

LIMIT = 5


@pytest.fixture
def api(settings: Settings, db: Engine) -> Iterator[TestClient]:
    limited = settings.model_copy(update={"auth_failures_per_minute": LIMIT, "key_cache_s": 60})
    with TestClient(create_app(limited)) as client:
        yield client


def guessed() -> dict[str, str]:
    return {"Authorization": f"Bearer vq-{secrets.token_urlsafe(24)}"}


def test_an_address_that_keeps_guessing_is_refused_before_any_lookup(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert api.get("/jobs", headers=AUTH).status_code == 200  # a real key, now known
    lookups = []
    real_query = auth._query

    async def counted(resources: Any, key_hash: str) -> Any:
        lookups.append(key_hash)
        return await real_query(resources, key_hash)

    monkeypatch.setattr(auth, "_query", counted)
    statuses = [api.get("/jobs", headers=guessed()).status_code for _ in range(LIMIT + 20)]
    assert statuses[:LIMIT] == [401] * LIMIT
    assert set(statuses[LIMIT:]) == {429}
    assert len(lookups) == LIMIT  # the other 20 cost no query
    refused = api.get("/jobs", headers=guessed())
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limited"
    # A key this process already knows is still served from the same address.
    assert api.get("/jobs", headers=AUTH).status_code == 200

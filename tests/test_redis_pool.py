"""An API process whose Redis connections are all busy makes requests wait for one, rather
than failing them while Redis is healthy (an API process in this test, real Redis)."""

from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from tests.helpers import http
from vqueue.settings import Settings


def test_more_requests_than_connections_all_succeed(
    settings: Settings, db: Engine, base_url: str
) -> None:
    # Three connections: the event hub holds one for its subscription; every /ready below
    # needs another for each of its round trips.
    small = settings.model_copy(update={"redis_max_connections": 3, "redis_pool_timeout_s": 30})
    with TestClient(create_app(small), headers=http.headers) as api, ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(lambda _: api.get("/ready").status_code, range(200)))
    assert statuses == [200] * 200

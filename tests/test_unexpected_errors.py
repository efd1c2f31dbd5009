"""A bug answers the documented JSON error (OpenAI's shape on /v1), not plain text, and
leaks none of its internals (an API process in this test, real Postgres and Redis)."""

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from tests.helpers import http
from vqueue.settings import Settings


def boom() -> None:
    raise RuntimeError("secret internals: password=hunter2")


@pytest.mark.parametrize("path", ["/boom", "/v1/boom"])
def test_an_unhandled_error_is_a_json_500(settings: Settings, db: Engine, path: str) -> None:
    app = create_app(settings)
    app.add_api_route(path, boom)
    with TestClient(app, headers=http.headers, raise_server_exceptions=False) as api:
        response = api.get(path)
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["message"].startswith("internal error (reference ")
    assert "hunter2" not in response.text
    if path.startswith("/v1"):
        assert error["type"]
        assert "param" in error
    else:
        assert error["code"] == "internal_error"

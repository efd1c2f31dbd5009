"""A bug answers the documented JSON error (OpenAI's shape on /v1), not plain text, and
leaks none of its internals (an API process in this test, real Postgres and Redis)."""

import threading

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from tests.durability import wait_until
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


def test_a_keep_alive_client_goes_on_after_a_500(settings: Settings, db: Engine) -> None:
    """uvicorn drops the connection after an error the app re-raised; a client that reuses its
    pooled connection must not have its next request reset."""
    app = create_app(settings)
    app.add_api_route("/boom", boom)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, http="httptools", log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=60)
        port = server.servers[0].sockets[0].getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=http.headers) as client:
            failed = client.get("/boom")
            assert failed.status_code == 500
            assert failed.headers["connection"] == "close"
            assert [client.get("/health").status_code for _ in range(3)] == [200] * 3
    finally:
        server.should_exit = True
        thread.join(timeout=30)

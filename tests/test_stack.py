"""`make up` on a running stack changes nothing; `/ready` reports the loaded worker."""

import time
from http.client import HTTPConnection

import httpx
from sqlalchemy import Engine

from db.keys import SHOWN_CHARS, revoke_key
from tests.helpers import http
from vqueue.dev import stack
from vqueue.settings import Settings


def test_up_twice_keeps_the_running_processes(base_url: str, settings: Settings) -> None:
    before = {name: stack.running_pid(settings, name) for name in stack.COMMANDS}
    assert all(before.values())
    stack.up(settings)
    after = {name: stack.running_pid(settings, name) for name in stack.COMMANDS}
    assert after == before


def test_ready_lists_the_worker_and_its_engine(base_url: str, settings: Settings) -> None:
    response = http.get(f"{base_url}/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["postgres"] == body["redis"] == "ok"
    (worker,) = body["workers"]
    assert worker["name"].endswith(f":{stack.running_pid(settings, 'worker')}")
    assert worker["model"] == settings.model_name
    assert worker["max_num_seqs"] == settings.max_num_seqs == 32
    assert worker["max_model_len"] == 2048
    assert http.get(f"{base_url}/health").json() == {"status": "ok"}


def test_make_run_key_is_made_once_and_remade_when_revoked(
    base_url: str, settings: Settings, db: Engine
) -> None:
    key = stack.local_key(settings)
    assert key is not None
    assert (settings.run_dir / "api-key").read_text().strip() == key
    auth = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{base_url}/jobs", headers=auth).status_code == 200
    assert stack.local_key(settings) == key  # kept while it works
    with db.begin() as conn:
        conn.execute(revoke_key(key[:SHOWN_CHARS]))
    fresh = stack.local_key(settings)
    assert fresh not in (None, key)
    assert stack.local_key(settings.model_copy(update={"auth": False})) is None


def test_an_idle_connection_outlives_the_clients_own_idle_limit(base_url: str) -> None:
    # httpx drops a pooled connection after 5 s idle. Had the API closed it at that same
    # instant (uvicorn's default), a request sent on it at 5 s would get no response at all.
    url = httpx.URL(base_url)
    conn = HTTPConnection(url.host, url.port, timeout=10)
    try:
        for pause in (0.0, 6.0):
            time.sleep(pause)
            # On a connection the server closed this raises RemoteDisconnected.
            conn.request("GET", "/health")
            response = conn.getresponse()
            assert response.status == 200, f"after {pause} s idle"
            response.read()
            if pause == 0.0:
                first_socket = conn.sock
        assert conn.sock is first_socket  # the same connection, not a new one
    finally:
        conn.close()

"""`make up` on a running stack changes nothing; `/ready` reports the loaded worker."""

import httpx
from sqlalchemy import Engine

from db.keys import SHOWN_CHARS, revoke_key
from tests.helpers import http
from vqueue import stack
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

"""No client's request can fail another's: a row Postgres refuses fails its own request
alone, never the others it was grouped with in one INSERT; and text that Postgres cannot hold
as it is (NUL) is stored, not refused (real Postgres and Redis; the stack for the second)."""

import asyncio
from typing import Any

import httpx
from redis.asyncio import Redis as AsyncRedis
from sqlalchemy import Engine, text

from api.core.errors import BadRequestError
from api.jobs.submitter import Submitter
from api.ops.live_workers import LiveWorkers
from db.engine import make_async_engine
from tests.test_auth import bearer, new_key
from tests.test_submitter import new_row
from vqueue.settings import Settings

QUEUE = "vqueue.isolation-check"


def test_a_row_postgres_refuses_fails_alone_in_its_group(settings: Settings, db: Engine) -> None:
    # Every field a client sends is checked before it reaches a group, so no request can
    # make such a row any more; one is made here (a priority the table's CHECK refuses).
    rows = [new_row() for _ in range(40)]
    for poisoned in rows[::8]:
        poisoned["priority"] = 10

    async def submit_together() -> list[Any]:
        engine = make_async_engine(settings.database_url, pool_size=2)
        broker = AsyncRedis.from_url(settings.effective_broker_url)
        submitter = Submitter(engine, broker, QUEUE, per_message=16, workers=LiveWorkers(broker))
        submitter.start()
        try:
            # One loop turn, as a burst of requests: one group.
            return await asyncio.gather(
                *(submitter.submit(row) for row in rows), return_exceptions=True
            )
        finally:
            await submitter.close()
            await broker.aclose()
            await engine.dispose()

    ids = [str(row["id"]) for row in rows]
    try:
        outcomes = asyncio.run(submit_together())
        for row, outcome in zip(rows, outcomes, strict=True):
            if row["priority"] == 10:
                assert isinstance(outcome, BadRequestError)
                assert "cannot be stored" in str(outcome)
            else:
                assert not isinstance(outcome, BaseException), outcome
                assert outcome["id"] == row["id"]
        with db.connect() as conn:
            stored = conn.execute(
                text("SELECT count(*) FROM jobs WHERE id = ANY(:ids)"), {"ids": ids}
            ).scalar_one()
        assert stored == 35
    finally:
        with db.begin() as conn:
            conn.execute(text("DELETE FROM jobs WHERE id = ANY(:ids)"), {"ids": ids})


async def send_together(base_url: str, alice: dict[str, str], mallory: dict[str, str]) -> Any:
    async with (
        httpx.AsyncClient(base_url=base_url, headers=alice, timeout=60) as first,
        httpx.AsyncClient(base_url=base_url, headers=mallory, timeout=60) as second,
    ):
        nul = {
            "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "messages": [{"role": "user", "content": "hi\x00"}],
            "max_tokens": 1,
            "user": "nul\x00here",
        }
        requests = []
        for i in range(60):
            requests.append(first.post("/jobs", json={"prompt": f"Say {i}.", "max_tokens": 1}))
            if i % 6 == 0:
                requests.append(second.post("/v1/chat/completions", json=nul))
        return await asyncio.gather(*requests)


def test_text_with_nul_is_kept_and_fails_nobody(base_url: str) -> None:
    alice, mallory = bearer(new_key("alice")), bearer(new_key("mallory"))
    responses = asyncio.run(send_together(base_url, alice, mallory))
    assert [r.status_code for r in responses if r.request.url.path == "/jobs"] == [202] * 60
    chats = [r for r in responses if r.request.url.path != "/jobs"]
    assert [r.status_code for r in chats] == [200] * len(chats), chats[0].text
    job = httpx.get(
        f"{base_url}/jobs/{chats[0].headers['x-job-id']}", headers=mallory, timeout=30
    ).json()
    assert job["metadata"] == {"user": "nul\x00here"}
    assert job["messages"][0]["content"] == "hi\x00"

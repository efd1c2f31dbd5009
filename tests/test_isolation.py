"""No client's request can fail another's: a row Postgres refuses fails its own request
alone, never the others it was grouped with in one INSERT (real stack, two keys)."""

import asyncio
from typing import Any

import httpx

from tests.test_auth import bearer, new_key


async def send_together(base_url: str, innocent: dict[str, str], hostile: dict[str, str]) -> Any:
    async with (
        httpx.AsyncClient(base_url=base_url, headers=innocent, timeout=60) as alice,
        httpx.AsyncClient(base_url=base_url, headers=hostile, timeout=60) as mallory,
    ):
        poison = {
            "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 1,
            "user": "nul\x00here",
        }
        requests = []
        for i in range(60):
            requests.append(alice.post("/jobs", json={"prompt": f"Say {i}.", "max_tokens": 1}))
            if i % 6 == 0:
                requests.append(mallory.post("/v1/chat/completions", json=poison))
        return await asyncio.gather(*requests)


def test_a_poisoned_request_fails_alone(base_url: str) -> None:
    alice, mallory = bearer(new_key("alice")), bearer(new_key("mallory"))
    responses = asyncio.run(send_together(base_url, alice, mallory))
    innocent = [r for r in responses if r.request.url.path == "/jobs"]
    poisoned = [r for r in responses if r.request.url.path != "/jobs"]
    assert [r.status_code for r in innocent] == [202] * len(innocent), [
        r.text for r in innocent if r.status_code != 202
    ][:3]
    assert {r.status_code for r in poisoned} == {400}
    # In OpenAI's error shape on /v1, saying what Postgres could not take.
    message = poisoned[0].json()["error"]["message"]
    assert "cannot be stored" in message

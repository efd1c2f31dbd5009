"""A /v1 chat stream as clients time it: its first chunk is its first token."""

import threading
import time
from datetime import datetime

import openai

from tests.durability import wait_until
from vqueue.client.api_client import VQueueClient
from vqueue.settings import Settings


def test_the_role_chunk_comes_with_the_first_token_not_before(
    oai: openai.OpenAI, client: VQueueClient, settings: Settings
) -> None:
    # Every engine slot is held by a long job, so this request waits on the engine for longer
    # than the stream's keep-alive interval before its first token; the slots are freed
    # after that.
    blockers = [
        client.submit(prompt=f"Blocker {i}:", max_tokens=1500, ignore_eos=True)["id"]
        for i in range(settings.max_num_seqs)
    ]

    def free_the_slots() -> None:
        for job_id in blockers:
            client.cancel(job_id)

    release = threading.Timer(3 * settings.sse_keepalive_s, free_the_slots)
    try:
        wait_until(lambda: all(client.get(job_id)["text"] for job_id in blockers), timeout=300)
        release.start()
        stream = oai.chat.completions.create(
            model=settings.model_name,
            messages=[{"role": "user", "content": "Name a colour."}],
            max_tokens=4,
            stream=True,
        )
        chunks = iter(stream)
        first = next(chunks)
        received = time.time()
        rest = list(chunks)
    finally:
        release.cancel()
        free_the_slots()
    job = client.wait(first.id.removeprefix("chatcmpl-"))
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == ""
    # Timestamps of one machine: the job's first token was made before the client got a chunk.
    assert received >= datetime.fromisoformat(job["first_token_at"]).timestamp()
    assert (
        "".join(chunk.choices[0].delta.content or "" for chunk in rest if chunk.choices)
        == (job["text"])
    )

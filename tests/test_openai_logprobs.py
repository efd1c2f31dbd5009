"""Log probabilities on the running stack: asked for through the official openai SDK (whole
and streamed, completion and chat) and through the jobs API, every output token has its
entry, in the same place vLLM's server puts it."""

import openai

from vqueue.client.api_client import VQueueClient
from vqueue.settings import Settings


def test_a_completion_has_each_tokens_logprob_and_its_alternatives(
    oai: openai.OpenAI, settings: Settings
) -> None:
    reply = oai.completions.create(
        model=settings.model_name,
        prompt="The three primary colours are",
        max_tokens=12,
        temperature=0,
        logprobs=3,
    )
    (choice,) = reply.choices
    assert reply.usage is not None
    assert choice.logprobs is not None
    given = choice.logprobs
    assert given.tokens is not None
    assert given.token_logprobs is not None
    assert given.top_logprobs is not None
    assert given.text_offset is not None
    assert len(given.tokens) == reply.usage.completion_tokens == 12
    assert "".join(given.tokens) == choice.text
    assert all(logprob is not None and logprob <= 0 for logprob in given.token_logprobs)
    # The offsets add up the tokens' lengths, as vLLM's do.
    assert given.text_offset == [len("".join(given.tokens[:i])) for i in range(12)]
    for token, logprob, top in zip(
        given.tokens, given.token_logprobs, given.top_logprobs, strict=True
    ):
        # The sampled token and up to 3 alternatives; greedy: the sampled one is the likeliest.
        assert top[token] == logprob
        assert 3 <= len(top) <= 4
        assert logprob == max(top.values())


def test_a_chat_stream_carries_every_tokens_logprob_to_the_last(
    oai: openai.OpenAI, settings: Settings
) -> None:
    stream = oai.chat.completions.create(
        model=settings.model_name,
        messages=[{"role": "user", "content": "Is the sky blue?"}],
        max_tokens=40,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
        stream=True,
        stream_options={"include_usage": True},
        # The constraint ends the answer after its word, at the end-of-sequence token.
        extra_body={"structured_outputs": {"choice": ["yes", "no"]}},
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert usage is not None
    content = [
        token
        for chunk in chunks
        if chunk.choices and chunk.choices[0].logprobs is not None
        for token in chunk.choices[0].logprobs.content or []
    ]
    finish = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]
    assert finish[-1] == "stop"  # it ended at its end-of-sequence token...
    # ...whose log probability comes too, on the finishing chunk: one entry per token.
    assert len(content) == usage.completion_tokens
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert "".join(token.token for token in content).startswith(text)
    for token in content:
        assert token.bytes == list(token.token.encode())
        assert len(token.top_logprobs) == 2


def test_a_job_keeps_its_logprobs_and_its_stream_sends_them(client: VQueueClient) -> None:
    job = client.submit(
        prompt="Count: one, two,", max_tokens=8, temperature=0, logprobs=1, ignore_eos=True
    )
    streamed = [
        entry
        for event in client.stream(job["id"])
        if event.event == "delta"
        for entry in event.data["logprobs"]
    ]
    done = client.get(job["id"])
    assert done["status"] == "succeeded"
    assert len(done["logprobs"]) == done["usage"]["completion_tokens"] == 8
    assert streamed == done["logprobs"]  # 8 tokens of text: nothing after the last delta
    for entry in done["logprobs"]:
        assert entry["top_logprobs"][0] == {"token": entry["token"], "logprob": entry["logprob"]}
        assert 1 <= len(entry["top_logprobs"]) <= 2
    # A job that did not ask has none.
    plain = client.wait(client.submit(prompt="Count: one, two,", max_tokens=2)["id"])
    assert plain["logprobs"] is None

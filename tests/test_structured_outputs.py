"""Structured outputs on the real engine: OpenAI's response_format (through the official SDK's
own parse helper), vLLM's structured_outputs field, and a constraint the engine refuses."""

import json
import re
from typing import Any, Literal

import openai
import pytest
from pydantic import BaseModel

from vqueue.client.api_client import VQueueClient
from vqueue.contract.sampling import ENGINE_REFUSED
from vqueue.settings import Settings

# A grammar no backend of the engine can parse: refused when the request reaches the engine.
BROKEN_GRAMMAR = 'root ::= "unclosed'


class Capital(BaseModel):
    country: Literal["France", "Italy", "Spain"]
    capital: Literal["Paris", "Rome", "Madrid"]


def test_the_sdks_parse_helper_gets_an_object_of_its_schema(
    oai: openai.OpenAI, settings: Settings
) -> None:
    completion = oai.chat.completions.parse(
        model=settings.model_name,
        messages=[{"role": "user", "content": "What is the capital of France? Answer in JSON."}],
        response_format=Capital,
        max_tokens=64,
        temperature=0,
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Capital)
    assert completion.choices[0].finish_reason == "stop"


COLOUR = {
    "type": "object",
    "properties": {"colour": {"enum": ["black", "white", "ginger"]}},
    "required": ["colour"],
    "additionalProperties": False,
}


def test_a_schema_constrained_answer_is_streamed(oai: openai.OpenAI, settings: Settings) -> None:
    stream = oai.chat.completions.create(
        model=settings.model_name,
        messages=[{"role": "user", "content": "What colour is a cat? Answer in JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "cat", "schema": COLOUR}},
        # Without it a small model may spend its tokens on whitespace the grammar allows.
        extra_body={"structured_outputs": {"disable_any_whitespace": True}},
        max_tokens=32,
        stream=True,
    )
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert chunks[-1].choices[0].finish_reason == "stop", text
    assert json.loads(text)["colour"] in {"black", "white", "ginger"}


def test_json_object_mode_makes_a_haiku_an_object(oai: openai.OpenAI, settings: Settings) -> None:
    # A small model may not close its object within a few tokens; the grammar still makes it
    # open one where the same request unconstrained writes verse.
    def answer(**constraint: Any) -> tuple[str, str | None]:
        completion = oai.chat.completions.create(
            model=settings.model_name,
            messages=[{"role": "user", "content": "Write a haiku about the sea."}],
            max_tokens=24,
            temperature=0,
            **constraint,
        )
        return completion.choices[0].message.content or "", completion.choices[0].finish_reason

    free, _ = answer()
    assert not free.lstrip().startswith("{"), free
    constrained, finish = answer(response_format={"type": "json_object"})
    assert constrained.lstrip().startswith("{"), constrained
    if finish == "stop":
        assert isinstance(json.loads(constrained), dict)


def test_a_completion_is_one_of_the_choices(oai: openai.OpenAI, settings: Settings) -> None:
    completion = oai.completions.create(
        model=settings.model_name,
        prompt="Is the sky green? Answer:",
        max_tokens=8,
        extra_body={"structured_outputs": {"choice": ["yes", "no"]}},
    )
    assert completion.choices[0].text in {"yes", "no"}


def test_a_job_matches_its_regex(client: VQueueClient) -> None:
    job = client.submit(
        prompt="My phone number is",
        max_tokens=20,
        structured_outputs={"regex": r"\d{3}-\d{4}"},
    )
    done = client.wait(job["id"])
    assert done["status"] == "succeeded"
    assert re.fullmatch(r"\d{3}-\d{4}", done["text"])
    assert done["params"]["structured_outputs"] == {"regex": r"\d{3}-\d{4}"}


def test_a_batch_default_constrains_every_line(client: VQueueClient) -> None:
    lines = b'{"prompt": "Is water wet?"}\n{"prompt": "Is fire cold?"}\n'
    batch = client.upload_batch(
        lines,
        filename="questions.jsonl",
        max_tokens=4,
        structured_outputs='{"choice": ["yes", "no"]}',
    )
    assert client.wait_batch(batch["id"])["status"] == "completed"
    results = client.batch_results(batch["id"])
    assert [result["text"] in {"yes", "no"} for result in results] == [True, True]


def test_a_constraint_the_engine_refuses_is_a_400_and_a_failed_job(
    oai: openai.OpenAI, client: VQueueClient, settings: Settings
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        oai.completions.create(
            model=settings.model_name,
            prompt="x",
            max_tokens=4,
            extra_body={"structured_outputs": {"grammar": BROKEN_GRAMMAR}},
        )
    assert ENGINE_REFUSED in refused.value.message

    job = client.submit(prompt="x", max_tokens=4, structured_outputs={"grammar": BROKEN_GRAMMAR})
    failed = client.wait(job["id"])
    assert failed["status"] == "failed"
    assert failed["error"].startswith(ENGINE_REFUSED)
    # The worker goes on: the next job runs.
    assert client.wait(client.submit(prompt="Hi", max_tokens=2)["id"])["status"] == "succeeded"

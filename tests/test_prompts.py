"""Claimed rows become engine input in the task thread: typed token ids from the default model's
real tokenizer and the job's own sampling parameters, or the error that keeps a job from
running (the engine is not the subject: a stand-in host gives the tokenizer and context)."""

from types import SimpleNamespace
from typing import Any

import pytest
from transformers import AutoTokenizer

from vqueue.settings import Settings
from worker.default_model import prepared_path
from worker.prompts import EngineInput, PromptMaker

CONTEXT = 64


@pytest.fixture(scope="module")
def maker(settings: Settings) -> PromptMaker:
    tokenizer = AutoTokenizer.from_pretrained(prepared_path(settings.model_cache_dir))
    host = SimpleNamespace(tokenizer=lambda: tokenizer, max_model_len=CONTEXT)
    return PromptMaker(host)  # type: ignore[arg-type]


def row(**given: Any) -> dict[str, Any]:
    return {"prompt": None, "messages": None, "params": {"max_tokens": 4}} | given


def test_each_job_gets_typed_token_ids_and_its_own_parameters(maker: PromptMaker) -> None:
    made = maker.make(
        {
            "a": row(prompt="Hello there", params={"max_tokens": 4, "temperature": 0.5}),
            "b": row(messages=[{"role": "user", "content": "Hi"}]),
        }
    )
    first, second = made["a"], made["b"]
    assert isinstance(first, EngineInput)
    assert isinstance(second, EngineInput)
    tokenizer = maker.host.tokenizer()
    assert first.prompt == {"type": "token", "prompt_token_ids": tokenizer("Hello there").input_ids}
    assert first.sampling.temperature == 0.5
    assert first.sampling.skip_clone is True
    assert first.sampling is not second.sampling
    # A chat job goes through the model's chat template.
    assert tokenizer.decode(second.prompt["prompt_token_ids"]).count("<|im_start|>") >= 2


def test_a_job_that_cannot_run_gets_its_reason_and_the_others_still_run(
    maker: PromptMaker,
) -> None:
    made = maker.make(
        {
            "long": row(prompt="word " * (CONTEXT + 10)),
            "fits": row(prompt="word " * (CONTEXT - 10)),
            "bad": row(prompt="ok", params={"max_tokens": 0}),
        }
    )
    assert made["long"] == (
        f"the prompt is longer than the model's maximum context length of {CONTEXT} tokens"
    )
    assert isinstance(made["fits"], EngineInput)
    assert len(made["fits"].prompt["prompt_token_ids"]) <= CONTEXT
    assert isinstance(made["bad"], str)
    assert "max_tokens" in made["bad"]

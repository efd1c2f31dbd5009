"""Claimed rows become engine input in the task thread: typed token ids from the default model's
real tokenizer and the job's own sampling parameters, or the error that keeps a job from
running (the engine is not the subject: a stand-in host gives the tokenizer and context)."""

from typing import Any

import pytest

from db.attempts import ClaimedJob
from tests.stand_ins import claimed_job, prompt_maker
from vqueue.settings import Settings
from worker.prompts import EngineInput, PromptMaker

CONTEXT = 64


@pytest.fixture(scope="module")
def maker(settings: Settings) -> PromptMaker:
    return prompt_maker(settings, CONTEXT)


def row(**given: Any) -> ClaimedJob:
    return claimed_job(**given)


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


def test_a_prompt_and_max_tokens_over_the_context_are_refused_naming_both(
    maker: PromptMaker,
) -> None:
    made = maker.make(
        {
            "over": row(prompt="word " * (CONTEXT - 10), params={"max_tokens": 20}),
            "just": row(prompt="word " * (CONTEXT - 10), params={"max_tokens": 4}),
        }
    )
    prompt_tokens = len(maker.host.tokenizer()("word " * (CONTEXT - 10)).input_ids)
    assert made["over"] == (
        f"the prompt ({prompt_tokens} tokens) and max_tokens (20) come to "
        f"{prompt_tokens + 20} tokens, over the model's maximum context length of {CONTEXT} "
        "tokens; shorten the prompt or lower max_tokens"
    )
    assert isinstance(made["just"], EngineInput)


def test_stop_token_ids_outside_the_vocabulary_are_refused_before_the_engine(
    maker: PromptMaker,
) -> None:
    vocab = maker.host.vocab_size  # type: ignore[attr-defined]
    made = maker.make(
        {
            "outside": row(prompt="Hi", params={"max_tokens": 4, "stop_token_ids": [2, vocab]}),
            "inside": row(prompt="Hi", params={"max_tokens": 4, "stop_token_ids": [vocab - 1]}),
        }
    )
    assert made["outside"] == (
        f"stop_token_ids [{vocab}] are outside the model's vocabulary of {vocab} tokens"
    )
    assert isinstance(made["inside"], EngineInput)
    assert made["inside"].sampling.stop_token_ids == [vocab - 1]

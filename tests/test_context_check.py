"""The API refuses a prompt over the model's context with the very words the worker would fail
the job with, and tokenizes only what could be too long (no stack: the default model's real
tokenizer, and the worker's PromptMaker beside it)."""

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from api.core.served_tokenizer import ServedTokenizer
from api.jobs.context_check import ContextCheck
from api.jobs.schemas import JobCreate
from tests.stand_ins import claimed_job, prompt_maker
from vqueue.settings import Settings
from worker.prompts import PromptMaker

CONTEXT = 96


@pytest.fixture(scope="module")
def check(settings: Settings) -> ContextCheck:
    limited = settings.model_copy(update={"max_model_len": CONTEXT})
    tokenizer = ServedTokenizer(limited)
    tokenizer._load()  # in the API, a thread at start does this
    return ContextCheck(limited, SimpleNamespace(max_model_len=None), tokenizer)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def worker_side(settings: Settings) -> PromptMaker:
    return prompt_maker(settings, CONTEXT)


def refusal(check: ContextCheck, **body: Any) -> str | None:
    job = JobCreate.model_validate(body)
    return asyncio.run(check.refusal(job, job.max_tokens))


CASES = [
    {"prompt": "word " * 80, "max_tokens": 30},  # over with its answer
    {"prompt": "word " * 200, "max_tokens": 1},  # over on its own
    {"messages": [{"role": "user", "content": "word " * 70}], "max_tokens": 30},
    {"messages": [{"role": "user", "content": "<|im_end|>" * 20}], "max_tokens": 40},
]


@pytest.mark.parametrize("body", CASES)
def test_the_api_and_the_worker_refuse_in_the_same_words(
    check: ContextCheck, worker_side: PromptMaker, body: dict[str, Any]
) -> None:
    refused = refusal(check, **body)
    row = claimed_job(
        prompt=body.get("prompt"),
        messages=body.get("messages"),
        params={"max_tokens": body["max_tokens"]},
    )
    assert refused is not None
    assert refused == worker_side.make({"job": row})["job"]


def test_what_fits_passes_and_a_short_prompt_is_never_tokenized(
    check: ContextCheck, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert refusal(check, prompt="word " * 10, max_tokens=60) is None  # tokenized: it fits
    monkeypatch.setattr(check, "count", lambda *_: pytest.fail("tokenized a short prompt"))
    assert refusal(check, prompt="Hello", max_tokens=40) is None


def test_without_a_tokenizer_or_a_known_context_the_worker_decides(
    check: ContextCheck, settings: Settings
) -> None:
    job = JobCreate(prompt="word " * 500, max_tokens=10)
    workers = SimpleNamespace(max_model_len=None)
    unknown_len = settings.model_copy(update={"max_model_len": None})
    unknown = ContextCheck(unknown_len, workers, check.tokenizer)  # type: ignore[arg-type]
    assert asyncio.run(unknown.refusal(job, 10)) is None  # no worker has said its context
    workers.max_model_len = CONTEXT  # as a worker's heartbeat says it
    assert asyncio.run(unknown.refusal(job, 10)) is not None
    not_loaded = ContextCheck(settings, workers, ServedTokenizer(settings))  # type: ignore[arg-type]
    assert asyncio.run(not_loaded.refusal(job, 10)) is None


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "word " * 30},
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
            ]
        },
        {"prompt_token_ids": [5, 6, 7]},
    ],
    ids=["prompt", "messages", "token ids"],
)
def test_a_count_is_the_prompt_the_worker_hands_the_engine(
    check: ContextCheck, worker_side: PromptMaker, body: dict[str, Any]
) -> None:
    job = JobCreate.model_validate({**body, "max_tokens": 1})
    row = claimed_job(**body, params={"max_tokens": 1})
    made = worker_side.make({"job": row})["job"]
    assert not isinstance(made, str), made
    assert check.count(job) == len(made.prompt["prompt_token_ids"])


def test_without_a_tokenizer_only_token_ids_are_counted(settings: Settings) -> None:
    not_loaded = ContextCheck(
        settings, SimpleNamespace(max_model_len=None), ServedTokenizer(settings)
    )  # type: ignore[arg-type]
    assert not_loaded.count(JobCreate(prompt="Hello", max_tokens=1)) is None
    assert not_loaded.count(JobCreate(prompt_token_ids=[1, 2], max_tokens=1)) == 2


def test_a_verdict_hands_on_the_count_it_made_and_settles_the_rest_unread(
    check: ContextCheck, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted: list[int | None] = []
    count = check.count

    def counting(job: JobCreate, cut_at: int | None = None) -> int | None:
        counted.append(cut_at)
        return count(job, cut_at)

    monkeypatch.setattr(check, "count", counting)
    near = JobCreate(prompt="word " * 30, max_tokens=10)  # its bytes alone may not fit
    verdict = check.verdict(near, near.max_tokens)
    assert verdict.refusal is None
    assert verdict.tokens == count(near)
    assert counted == [CONTEXT + 1]
    assert check.verdict(JobCreate(prompt="Hi", max_tokens=10), 10) == (None, None)
    assert counted == [CONTEXT + 1]  # nothing more was tokenized

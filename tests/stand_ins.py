"""A worker's PromptMaker without its engine: the default model's real tokenizer and a stand-in
host that gives it and a context length."""

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from transformers import AutoTokenizer

from db.attempts import ClaimedJob
from vqueue.models.default_model import prepared_path
from vqueue.settings import Settings
from worker.prompts import PromptMaker


def prompt_maker(settings: Settings, context: int) -> PromptMaker:
    tokenizer = AutoTokenizer.from_pretrained(prepared_path(settings.model_cache_dir))
    host = SimpleNamespace(
        tokenizer=lambda: tokenizer, max_model_len=context, vocab_size=len(tokenizer)
    )
    return PromptMaker(host)  # type: ignore[arg-type]


def claimed_job(**given: Any) -> ClaimedJob:
    """A claimed job as the claimer hands it over, with a prompt of `given`'s choosing."""
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "attempt": 1,
        "prompt": None,
        "messages": None,
        "prompt_token_ids": None,
        "params": {"max_tokens": 4},
        "priority": 5,
        "timeout_s": 60,
        "created_at": datetime.now(UTC),
        "started_at": datetime.now(UTC),
        "tools": None,
        "deadline_at": None,
        "continues": False,
    }
    return ClaimedJob(**(values | given))

"""A worker's PromptMaker without its engine: the default model's real tokenizer and a stand-in
host that gives it and a context length."""

from types import SimpleNamespace

from transformers import AutoTokenizer

from vqueue.models.default_model import prepared_path
from vqueue.settings import Settings
from worker.prompts import PromptMaker


def prompt_maker(settings: Settings, context: int) -> PromptMaker:
    tokenizer = AutoTokenizer.from_pretrained(prepared_path(settings.model_cache_dir))
    host = SimpleNamespace(
        tokenizer=lambda: tokenizer, max_model_len=context, vocab_size=len(tokenizer)
    )
    return PromptMaker(host)  # type: ignore[arg-type]

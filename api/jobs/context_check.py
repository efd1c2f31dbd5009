"""A job whose prompt tokens plus max_tokens are over the model's context is refused with 400
before anything is written, as vLLM's server refuses it: POST /jobs and /v1 alike.

The API reads the model's tokenizer, not its weights: a local model folder, the prepared
default model, or a hub model's tokenizer files. Most requests are decided without it: a
tokenizer makes at most one token per byte, so a prompt whose bytes and max_tokens fit is
never tokenized. Until the tokenizer is loaded (or where there is none), and until a worker
has announced its context length, the check passes and the worker's own check fails such a
job instead, with the same message.
"""

import logging
import threading
from pathlib import Path
from typing import Any

import anyio

from api.jobs.schemas import JobInput
from api.ops.live_workers import LiveWorkers
from vqueue.models import default_model
from vqueue.models.chat_prompt import ChatRenderer
from vqueue.models.context import over_context, surely_fits
from vqueue.settings import DEFAULT_MODEL, Settings

log = logging.getLogger(__name__)

# What a chat template may add around each message and at the end (roles, markers).
TEMPLATE_BYTES_PER_MESSAGE = 64
TEMPLATE_BYTES = 1024


def tokenizer_source(settings: Settings) -> str | None:
    """Where the tokenizer is, without downloading weights: a folder, or a hub id (whose
    tokenizer files alone are fetched); None for the default model until `make model` has
    prepared it (the API never converts it)."""
    if settings.tokenizer:
        return settings.tokenizer
    local = Path(settings.model).expanduser()
    if local.is_dir():
        return str(local)
    if settings.model == DEFAULT_MODEL and settings.model_revision is None:
        cache = settings.model_cache_dir
        ready = default_model.is_prepared(cache)
        return str(default_model.prepared_path(cache)) if ready else None
    return settings.model


class ContextCheck:
    def __init__(self, settings: Settings, workers: LiveWorkers) -> None:
        self._settings = settings
        self._workers = workers
        self._tokenizer: Any = None
        self._chat: ChatRenderer | None = None
        self._loader = threading.Thread(target=self._load, name="tokenizer", daemon=True)
        # A fast tokenizer refuses calls from two threads at once ("Already borrowed").
        self._lock = threading.Lock()

    def start(self) -> None:
        self._loader.start()

    def _load(self) -> None:
        source = tokenizer_source(self._settings)
        if source is None:
            log.info("no tokenizer here yet: the workers check prompts against the context")
            return
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(
                source,
                revision=self._settings.model_revision,
                cache_dir=self._settings.model_cache_dir / "hub",
            )
        except Exception as exc:  # offline, gated, no tokenizer files: the workers check
            log.warning("no tokenizer from %s (%s); the workers check prompts", source, exc)
            return
        self._chat = ChatRenderer(tokenizer) if getattr(tokenizer, "chat_template", None) else None
        self._tokenizer = tokenizer

    def limit(self) -> int | None:
        return self._settings.max_model_len or self._workers.max_model_len

    async def refusal(self, job: JobInput, max_tokens: int) -> str | None:
        """Why the job cannot fit the context; None when it fits or cannot be told here."""
        limit = self.limit()
        if limit is None or self._tokenizer is None:
            return None
        if job.prompt is not None:
            size = len(job.prompt.encode())
        else:
            messages = job.messages or []
            size = TEMPLATE_BYTES + sum(
                len(m.content.encode()) + TEMPLATE_BYTES_PER_MESSAGE for m in messages
            )
        if surely_fits(size, max_tokens, limit):
            return None
        tokens = await anyio.to_thread.run_sync(self._count, job, limit)
        return None if tokens is None else over_context(tokens, max_tokens, limit)

    def _count(self, job: JobInput, limit: int) -> int | None:
        if job.prompt is not None:
            text = job.prompt
        elif self._chat is None:
            return None  # the worker says why a chat job cannot run on this model
        else:
            text = self._chat.render(job.messages_json() or [])
        # Cut one token past the context, as the worker does: an over-long prompt is known
        # as one without tokenizing all of it.
        with self._lock:
            ids = self._tokenizer(text, truncation=True, max_length=limit + 1)["input_ids"]
        return len(ids)

"""A job whose prompt tokens plus max_tokens are over the model's context is refused with 400
before anything is written, as vLLM's server refuses it: POST /jobs and /v1 alike.

The API reads the model's tokenizer, not its weights: a local model folder, the prepared
default model, or a hub model's tokenizer files. Most requests are decided without it: a
tokenizer makes at most one token per byte, so a prompt whose bytes and max_tokens fit is
never tokenized. Until the tokenizer is loaded (or where there is none), and until a worker
has announced its context length, the check passes and the worker's own check fails such a
job instead, with the same message.
"""

from typing import NamedTuple

import anyio
import orjson

from api.core.served_tokenizer import ServedTokenizer
from api.jobs.schemas import JobInput
from api.ops.live_workers import LiveWorkers
from vqueue.models.context import over_context, surely_fits
from vqueue.settings import Settings

# What a chat template may add around each message and at the end (roles, markers).
TEMPLATE_BYTES_PER_MESSAGE = 64
TEMPLATE_BYTES = 1024


class Verdict(NamedTuple):
    refusal: str | None
    # The prompt's tokens where they were counted on the way (exact below the context).
    tokens: int | None


class ContextCheck:
    def __init__(
        self, settings: Settings, workers: LiveWorkers, tokenizer: ServedTokenizer
    ) -> None:
        self._settings = settings
        self._workers = workers
        self.tokenizer = tokenizer

    def limit(self) -> int | None:
        return self._settings.max_model_len or self._workers.max_model_len

    async def refusal(self, job: JobInput, max_tokens: int) -> str | None:
        """Why the job cannot fit the context; None when it fits or cannot be told here.
        What must be tokenized is, off the event loop."""
        limit = self.limit()
        if limit is None:
            return None
        if (settled := self._settled(job, max_tokens, limit)) is not None:
            return settled.refusal
        return (await anyio.to_thread.run_sync(self._counted, job, max_tokens, limit)).refusal

    def verdict(self, job: JobInput, max_tokens: int) -> Verdict:
        """As `refusal`, blocking while it tokenizes (for a thread that checks many)."""
        limit = self.limit()
        if limit is None:
            return Verdict(None, None)
        if (settled := self._settled(job, max_tokens, limit)) is not None:
            return settled
        return self._counted(job, max_tokens, limit)

    def _settled(self, job: JobInput, max_tokens: int, limit: int) -> Verdict | None:
        """The verdict where no tokenizing is needed; None where only the tokenizer can tell
        (a text prompt that may not fit, with a tokenizer here)."""
        if job.prompt_token_ids is not None:
            # Already tokens: the count is exact, with or without a tokenizer here.
            tokens = len(job.prompt_token_ids)
            return Verdict(over_context(tokens, max_tokens, limit), tokens)
        if not self.tokenizer.ready:
            return Verdict(None, None)
        if job.prompt is not None:
            size = len(job.prompt.encode())
        else:
            # Tools and calls are rendered as JSON, at most a token per byte like the rest.
            size = TEMPLATE_BYTES + sum(
                len(orjson.dumps(m.model_dump(exclude_none=True))) + TEMPLATE_BYTES_PER_MESSAGE
                for m in job.messages or []
            )
            if job.tools:
                size += len(orjson.dumps([tool.model_dump() for tool in job.tools]))
        return Verdict(None, None) if surely_fits(size, max_tokens, limit) else None

    def _counted(self, job: JobInput, max_tokens: int, limit: int) -> Verdict:
        tokens = self.count(job, limit + 1)
        return Verdict(None if tokens is None else over_context(tokens, max_tokens, limit), tokens)

    def count(self, job: JobInput, cut_at: int | None = None) -> int | None:
        """The job's prompt tokens as the engine will see them (blocking: call it in a
        thread); None where this process cannot tell (no tokenizer yet, or a chat job on a
        model without a chat template). With `cut_at`, counted no further than that."""
        if job.prompt_token_ids is not None:
            return len(job.prompt_token_ids)
        if not self.tokenizer.ready:
            return None
        if job.prompt is not None:
            text = job.prompt
        elif not self.tokenizer.has_chat_template:
            return None  # the worker says why a chat job cannot run on this model
        else:
            tools = job.tools_json()
            text = self.tokenizer.render(
                job.messages_json() or [], tools=tools["tools"] if tools else None
            )
        # Cut one token past the context, as the worker does: an over-long prompt is known
        # as one without tokenizing all of it.
        return len(self.tokenizer.encode(text, max_length=cut_at))

"""A message's claimed rows made into what the engine takes, in the task thread, off the engine
loop: each job's prompt as token ids and its sampling parameters, or why it cannot run.

The prompt goes to the engine as typed token input, as vLLM's own front end passes rendered
prompts: the engine loop only checks it, where an untyped prompt is rendered again (since vLLM
0.32 on the renderer's thread pool, a hop there and back for each request).
"""

import logging
import threading
from dataclasses import dataclass
from typing import Any

from db.attempts import ClaimedJob
from vqueue.contract.carry import NOTHING, Carried
from vqueue.logs import job_context
from vqueue.models.chat_prompt import ChatRenderer
from vqueue.models.context import over_context
from worker.engine import EngineHost
from worker.sampling import to_sampling_params

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EngineInput:
    prompt: dict[str, Any]  # typed token input for AsyncLLM.generate
    sampling: Any  # vllm.SamplingParams, the job's own
    # The text a lost attempt made, which this one goes on from (vqueue/contract/carry.py).
    carry: Carried = NOTHING


class PromptMaker:
    def __init__(self, host: EngineHost) -> None:
        self.host = host
        self._chat: ChatRenderer | None = None  # made on the first chat job
        self._tokenizer: Any = None  # the engine's, fetched on the first job
        self._tokenizer_lock = threading.Lock()

    def make(
        self, rows: dict[str, ClaimedJob], carries: dict[str, Carried] | None = None
    ) -> dict[str, EngineInput | str]:
        """By job: its engine input, or the error that keeps it from becoming a request.
        A job in `carries` goes on from that text: it follows the prompt, and the tokens
        that made it count against the job's max_tokens."""
        carries = carries or {}
        made: dict[str, EngineInput | str] = {}
        ready: dict[str, tuple[str, Any]] = {}  # job id -> (prompt text, sampling parameters)
        given: dict[str, tuple[list[int], Any]] = {}  # prompts that came as token ids
        for job_id, row in rows.items():
            try:
                sampling = to_sampling_params(row.params)
                if (token_ids := row.prompt_token_ids) is not None:
                    given[job_id] = (list(token_ids), sampling)
                else:
                    carry = carries.get(job_id, NOTHING)
                    if carry.text:
                        _less(sampling, carry.tokens)
                    ready[job_id] = (self._prompt_text(row) + carry.text, sampling)
            except Exception as exc:
                # The input could not be made into a request (e.g. no chat template).
                made[job_id] = _failed(job_id, f"{type(exc).__name__}: {exc}")
        tokenized = self._tokenize([text for text, _ in ready.values()])
        inputs = {
            job_id: (ids, sampling)
            for (job_id, (_, sampling)), ids in zip(ready.items(), tokenized, strict=True)
        }
        limit, vocab = self.host.max_model_len, self.host.vocab_size
        for job_id, (ids, sampling) in {**inputs, **given}.items():
            # The engine would refuse such ids on its loop; said here, plainly.
            outside = [i for i in sampling.stop_token_ids or () if i >= vocab]
            outside_prompt = [i for i in ids if i >= vocab] if job_id in given else []
            if outside:
                made[job_id] = _failed(
                    job_id,
                    f"stop_token_ids {outside[:5]} are outside the model's vocabulary of "
                    f"{vocab} tokens",
                )
            elif outside_prompt:
                made[job_id] = _failed(
                    job_id,
                    f"prompt token ids {outside_prompt[:5]} are outside the model's vocabulary "
                    f"of {vocab} tokens",
                )
            elif (error := over_context(len(ids), sampling.max_tokens, limit)) is not None:
                # Checked here, with the API's message, which does not change with vLLM's
                # release (the engine's own check stays behind it).
                made[job_id] = _failed(job_id, error)
            else:
                prompt = {"type": "token", "prompt_token_ids": ids}
                made[job_id] = EngineInput(prompt, sampling, carries.get(job_id, NOTHING))
        return made

    def _prompt_text(self, row: ClaimedJob) -> str:
        if row.messages is None:
            assert row.prompt is not None  # the table holds exactly one input
            return row.prompt
        if self._chat is None:
            self._chat = ChatRenderer(self.host.tokenizer())
        tools = row.tools["tools"] if row.tools else None
        return self._chat.render(row.messages, tools=tools)

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        """Prompts as token ids, all of a message in one call. Given text, the engine would
        tokenize on the engine loop, one prompt after another, each call giving up the GIL and
        then waiting for it (up to the 5 ms switch interval) behind the threads taking in the
        rest of the burst, many times slower than one call for all. One call at a time:
        vLLM's tokenizer keeps only a couple of copies for concurrent callers and deep-copies
        another for each extra one. As vLLM does, a text is cut one token past the context, so
        an over-long prompt is still known as one."""
        if not texts:
            return []
        with self._tokenizer_lock:
            if self._tokenizer is None:
                self._tokenizer = self.host.tokenizer()
            limit = self.host.max_model_len + 1
            ids: list[list[int]] = self._tokenizer(texts, truncation=True, max_length=limit)[
                "input_ids"
            ]
        return ids


def _less(sampling: Any, tokens: int) -> None:
    """What is left of a job's token budget once `tokens` of it were spent (at least one
    token: the engine takes no request for none)."""
    if sampling.max_tokens is not None:
        sampling.max_tokens = max(1, sampling.max_tokens - tokens)
    sampling.min_tokens = max(0, sampling.min_tokens - tokens)


def _failed(job_id: str, error: str) -> str:
    with job_context(job_id):
        log.warning("job %s: failed before generating: %s", job_id, error)
    return error

"""OpenAI's response shapes (completions, chunks, batch output lines) for a job's row."""

from collections.abc import AsyncIterator, Mapping
from typing import Any

from api.core.errors import log_with_reference
from api.core.wire_json import line_safe_json
from api.jobs.follower import Final, Revoked
from api.jobs.schemas import JobSummary
from api.jobs.stream_cursor import Delta, Restart
from api.openai.errors import OpenAIError, invalid_request
from api.openai.logprobs import chat_logprobs, completion_logprobs
from api.openai.requests import CHAT_COMPLETIONS
from api.openai.tool_views import ToolReply
from api.openai.usage import usage_of_choices
from db.states import JobStatus
from vqueue.contract import logprobs
from vqueue.contract.sampling import ENGINE_REFUSED
from vqueue.contract.tools import ToolUse

# The parts of OpenAI's chat message this service never fills, as vLLM's server sends them.
_NO_EXTRAS: dict[str, Any] = {
    "refusal": None,
    "annotations": None,
    "audio": None,
    "function_call": None,
}


def failure(end: JobSummary) -> OpenAIError:
    """Why a job that did not succeed has no completion, as OpenAI's error object."""
    message = end.error or f"the job {end.status}"
    if "context length" in message or "maximum model length" in message:
        return invalid_request(message, "messages")
    if message.startswith("stop_token_ids "):
        return invalid_request(message, "stop_token_ids")
    if message.startswith("prompt token ids "):
        return invalid_request(message, "prompt")
    if message.startswith(ENGINE_REFUSED):
        return invalid_request(message)
    if end.status == JobStatus.CANCELLED:
        return OpenAIError(409, message, "invalid_request_error", code="cancelled")
    if end.status == JobStatus.EXPIRED:
        # Never run: the queue could not start it in time; another try may fare better.
        return OpenAIError(503, message, "server_error", code="expired")
    return OpenAIError(500, message, "server_error")


def _error_chunk(error: OpenAIError) -> bytes:
    return b"data: " + line_safe_json(error.body()) + b"\n\n"


class Reply:
    """OpenAI's response shapes for one job."""

    def __init__(
        self,
        endpoint: str,
        row: Mapping[str, Any],
        model: str,
        echo: str = "",
        job_ids: list[str] | None = None,
    ) -> None:
        self.chat = endpoint == CHAT_COMPLETIONS
        self.job_ids = job_ids or [str(row["id"])]  # each choice's
        use = ToolUse.from_stored(row.get("tools")) if self.chat else None
        # Where the job's output is read as tool calls.
        self.tools = ToolReply(use) if use is not None and use.reads_calls else None
        self.echo = echo  # put before each choice's text (see echo_text)
        self.id = f"{'chatcmpl' if self.chat else 'cmpl'}-{row['id']}"
        self.job_path = f"/jobs/{row['id']}"
        self.created = int(row["created_at"].timestamp())
        self.model = model
        # Alternatives per token, where the request asked for log probabilities.
        self.top: int | None = row["params"].get("logprobs")
        # In a stream: each chunk's usage, where asked for (see chunks()).
        self.usage_key = False
        self.continuous = False

    def _logprobs(self, token_logprobs: str) -> dict[str, Any] | None:
        if self.top is None:
            return None
        tokens = logprobs.decode(token_logprobs)
        return (
            chat_logprobs(tokens, self.top) if self.chat else completion_logprobs(tokens, self.top)
        )

    def _usage(self, prompt: int, completion: int) -> dict[str, Any] | None:
        """A chunk's usage: null, or with `continuous_usage_stats` the counts so far."""
        if not self.continuous:
            return None
        counts: dict[str, int | None] = {
            "prompt_tokens": prompt,
            "total_tokens": prompt + completion,
            "completion_tokens": completion,
        }
        if self.chat:
            counts["completion_tokens_details"] = None  # as vLLM's chat stream sends it
        return counts

    def _lost_chunk(self, what: str) -> bytes:
        """An error chunk for a stream that cannot carry the job's text to its end."""
        return _error_chunk(
            OpenAIError(500, f"{what}; its result will be at {self.job_path}", "server_error")
        )

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def whole_choices(self, ends: list[Final]) -> dict[str, Any]:
        """The answer of a request whose `n` choices are these jobs, in order (each with its
        text: read from Postgres)."""
        for end in ends:
            if end.summary.status != JobStatus.SUCCEEDED:
                raise failure(end.summary)
        choices = []
        for index, end in enumerate(ends):
            text, reason = self.echo + (end.text or ""), end.summary.finish_reason
            if self.chat:
                message = {"role": "assistant", "content": text, **_NO_EXTRAS}
                if self.tools is not None:
                    fields, reason = self.tools.message(end.text or "", end.tool_calls, reason)
                    message |= fields
                choices.append(
                    {
                        "index": index,
                        "message": message,
                        "logprobs": self._logprobs(end.logprobs),
                        "finish_reason": reason,
                    }
                )
            else:
                choices.append(
                    {
                        "index": index,
                        "text": text,
                        "logprobs": self._logprobs(end.logprobs),
                        "finish_reason": reason,
                    }
                )
        kind = "chat.completion" if self.chat else "text_completion"
        summaries = [end.summary for end in ends]
        return {**self._head(kind), "choices": choices, "usage": usage_of_choices(summaries)}

    def _chunk(
        self,
        index: int,
        text: str | None,
        reason: str | None,
        token_logprobs: str = "",
        counts: tuple[int, int] = (0, 0),
        cursor: str = "",
        delta: dict[str, Any] | None = None,
    ) -> bytes:
        """One choice's chunk; `counts`: its prompt and output tokens so far; `cursor`: where
        its job's text stands after it (see chunks()); a chat chunk's `delta`, where it is
        not the text."""
        lp = self._logprobs(token_logprobs) if token_logprobs else None
        if self.chat:
            if delta is None:
                delta = {} if text is None else {"content": text}
            choice: dict[str, Any] = {
                "index": index,
                "delta": delta,
                "logprobs": lp,
                "finish_reason": reason,
            }
            data = {**self._head("chat.completion.chunk"), "choices": [choice]}
        else:
            choice = {"index": index, "text": text or "", "logprobs": lp, "finish_reason": reason}
            data = {**self._head("text_completion"), "choices": [choice]}
        if self.usage_key:
            data["usage"] = self._usage(*counts)
        if cursor:
            data["cursor"] = cursor
        return b"data: " + line_safe_json(data) + b"\n\n"

    def _role_chunk(self, index: int, prompt_tokens: int) -> bytes:
        data: dict[str, Any] = {
            **self._head("chat.completion.chunk"),
            "choices": [
                {
                    "index": index,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
        }
        if self.usage_key:
            data["usage"] = self._usage(prompt_tokens, 0)
        return b"data: " + line_safe_json(data) + b"\n\n"

    async def chunks(
        self,
        events: AsyncIterator[tuple[int, Any]],
        choices: int,
        include_usage: bool,
        continuous: bool = False,
        resumed: bool = False,
    ) -> AsyncIterator[bytes]:
        """The stream of a request whose `choices` jobs' events come tagged with their index:
        with `include_usage` a last chunk of usage, and with `continuous` (vLLM's
        `continuous_usage_stats`) each chunk's counts so far. Each chunk of text carries its
        job's `cursor` (`<attempt>-<offset>`, as the jobs stream's event ids), from which a
        client that lost the connection takes the stream up again (api/openai/resume_routes.py);
        a `resumed` stream has no role chunk."""
        self.usage_key, self.continuous = include_usage, include_usage and continuous
        # As from vLLM's server, a chat stream's role chunk goes out with its first token, not
        # before the engine has made one: clients time the first chunk as the first token.
        role_due = set(range(choices)) if self.chat and not resumed else set()
        echo_due = set(range(choices)) if self.echo else set()
        # Choices whose named tool call was opened (in the stream a resumed one takes up).
        calling: set[int] = set(range(choices)) if resumed else set()
        ended: dict[int, JobSummary] = {}
        try:
            async for index, event in events:
                opening = isinstance(event, Delta) or (
                    isinstance(event, Final) and event.summary.status == JobStatus.SUCCEEDED
                )
                counts = (0, 0)
                if isinstance(event, Delta):
                    counts = (event.prompt_tokens, event.tokens)
                elif isinstance(event, Final):
                    usage_now = event.summary.usage
                    counts = (usage_now.prompt_tokens or 0, usage_now.completion_tokens or 0)
                if index in role_due and opening:
                    yield self._role_chunk(index, counts[0])
                if index in echo_due and opening and (self.chat or not isinstance(event, Delta)):
                    # vLLM's chat stream echoes after the role; a completion's echo goes out
                    # with its first text (below).
                    yield self._chunk(index, self.echo, None, counts=(counts[0], 0))
                    echo_due.discard(index)
                if isinstance(event, Delta | Final):
                    role_due.discard(index)
                if isinstance(event, Delta) and self.tools is not None:
                    if not self.tools.waits_for_end:
                        first = index not in calling
                        calling.add(index)
                        delta = self.tools.argument_delta(
                            self.job_ids[index], event.attempt, event.text, first
                        )
                        yield self._chunk(
                            index, None, None, "", counts, event.event_id, delta=delta
                        )
                elif isinstance(event, Delta):
                    text = self.echo + event.text if index in echo_due else event.text
                    echo_due.discard(index)
                    yield self._chunk(index, text, None, event.logprobs, counts, event.event_id)
                elif isinstance(event, Revoked):
                    error = OpenAIError(401, "the API key was revoked", "authentication_error")
                    yield _error_chunk(error)
                    break
                elif isinstance(event, Restart):
                    # Text already sent cannot be taken back: end with an error, the job goes on.
                    yield self._lost_chunk(
                        "the worker running this request was lost and the job restarted"
                    )
                    break
                elif isinstance(event, Final):
                    end = event.summary
                    if end.status != JobStatus.SUCCEEDED:
                        yield _error_chunk(failure(end))
                        break
                    reason = end.finish_reason
                    if self.tools is not None:
                        delta, reason = self.tools.stream_end(
                            event.text or "", event.tool_calls, reason
                        )
                        if delta:
                            yield self._chunk(index, None, None, counts=counts, delta=delta)
                    yield self._chunk(index, None, reason, event.tail, counts)
                    ended[index] = end
                    if len(ended) == choices:
                        if include_usage:
                            ends = [ended[i] for i in range(choices)]
                            kind = "chat.completion.chunk" if self.chat else "text_completion"
                            data = {
                                **self._head(kind),
                                "choices": [],
                                "usage": usage_of_choices(ends, details=False),
                            }
                            yield b"data: " + line_safe_json(data) + b"\n\n"
                        break
        except Exception as exc:
            # The status line is out: an error chunk and [DONE], not a connection cut mid-chunk.
            reference = log_with_reference(f"stream of {self.id} broke off", exc)
            yield self._lost_chunk(f"the stream broke off (reference {reference}); the job goes on")
        yield b"data: [DONE]\n\n"

"""A chat job's tool calls in OpenAI's chat shapes, as vLLM's server shows them.

A whole answer's message carries the calls the worker read (vqueue/contract/tools.py), with
the text outside them as its content. In a stream, a named function's arguments go out as
the engine makes them, as deltas of one call; the calls of `auto` and `required` are read
from the whole text, so such a stream sends its message when the job ends.
"""

from typing import Any

from vqueue.contract.tools import (
    AUTO,
    NAMED,
    REQUIRED,
    ToolCall,
    ToolCalls,
    ToolUse,
    call_id,
    calls_json,
)


class ToolReply:
    def __init__(self, use: ToolUse) -> None:
        self.use = use

    @property
    def waits_for_end(self) -> bool:
        """A stream whose message is read from the whole text."""
        return self.use.mode in (AUTO, REQUIRED)

    def message(
        self, text: str, tool_calls: str | None, reason: str | None
    ) -> tuple[dict[str, Any], str | None]:
        """The message's content and calls, and the finish reason: `tool_calls` where `auto`
        made calls or `required` ended of itself (a named call ends with `stop`, as in
        OpenAI's API)."""
        content, calls = self.read(text, tool_calls)
        fields: dict[str, Any] = {"content": content}
        if calls:
            fields["tool_calls"] = calls_json(calls)
        return fields, self._reason(calls, reason)

    def stream_end(
        self, text: str, tool_calls: str | None, reason: str | None
    ) -> tuple[dict[str, Any], str | None]:
        """A stream's last delta (empty but for a waiting stream's content and calls) and
        its finish reason."""
        content, calls = self.read(text, tool_calls)
        delta: dict[str, Any] = {}
        if self.waits_for_end:
            if content:
                delta["content"] = content
            if calls:
                delta["tool_calls"] = calls_json(calls, indexed=True)
        return delta, self._reason(calls, reason)

    def read(self, text: str, tool_calls: str | None) -> tuple[str | None, list[ToolCall]]:
        """The content outside the calls, and the calls (the stored text decoded once)."""
        read = ToolCalls.decode(tool_calls) if tool_calls else None
        if read is None:
            return (text if self.use.mode == AUTO else ""), []
        return (read.content if self.use.mode == AUTO else read.content or ""), read.calls

    def _reason(self, calls: list[ToolCall], reason: str | None) -> str | None:
        if (self.use.mode == AUTO and calls) or (self.use.mode == REQUIRED and reason == "stop"):
            return "tool_calls"
        return reason

    def argument_delta(self, job_id: str, attempt: int, text: str, first: bool) -> dict[str, Any]:
        """A named call's arguments as they come; the first delta names the call."""
        assert self.use.mode == NAMED
        call: dict[str, Any] = {"index": 0, "function": {"arguments": text}}
        if first:
            call = {
                "id": call_id(job_id, attempt, 0),
                "type": "function",
                "index": 0,
                "function": {"name": self.use.choice, "arguments": text},
            }
        return {"tool_calls": [call]}

"""A chat job's tool calls in OpenAI's chat shapes, as vLLM's server shows them.

A whole answer's message carries the calls the worker read (vqueue/contract/tools.py), with
the text outside them as its content. In a stream, a named function's arguments go out as
the engine makes them, as deltas of one call; the calls of `auto` and `required` are read
from the whole text, so such a stream sends its message when the job ends.
"""

from typing import Any

from vqueue.contract.tools import AUTO, NAMED, REQUIRED, ToolCalls, ToolUse, call_id, calls_json


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
        read = ToolCalls.decode(tool_calls) if tool_calls else None
        calls = read.calls if read is not None else []
        if self.use.mode == AUTO:
            content = read.content if read is not None else text
        else:
            content = (read.content if read is not None else None) or ""
        fields: dict[str, Any] = {"content": content}
        if calls:
            fields["tool_calls"] = calls_json(calls)
        if (self.use.mode == AUTO and calls) or (self.use.mode == REQUIRED and reason == "stop"):
            reason = "tool_calls"
        return fields, reason

    def end_delta(self, text: str, tool_calls: str | None) -> dict[str, Any]:
        """A waiting stream's one delta: its content (if any) and all its calls."""
        fields, _ = self.message(text, tool_calls, None)
        delta: dict[str, Any] = {}
        if fields["content"]:
            delta["content"] = fields["content"]
        if "tool_calls" in fields:
            read = ToolCalls.decode(tool_calls) if tool_calls else ToolCalls([], None)
            delta["tool_calls"] = calls_json(read.calls, indexed=True)
        return delta

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

    def finish_reason(self, reason: str | None, tool_calls: str | None) -> str | None:
        return self.message("", tool_calls, reason)[1]

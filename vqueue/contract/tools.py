"""Function tools of a chat job, as the API stores them for the worker (`jobs.tools`), and the
tool calls the worker reads in the job's output (`jobs.tool_calls`).

A job that offers tools names how the model may use them, as OpenAI's `tool_choice` does:
`none` (the tools are shown to the model, its output stays text), `auto` (the output is read
by the served model's tool parser, vLLM's own, chosen in the settings), `required` (the output
is constrained to a JSON list of calls) or one function by name (constrained to that
function's arguments). The worker writes what it read once, with the result, so a poll, a
whole answer and the end of a stream give the same calls with the same ids.
"""

from dataclasses import dataclass
from typing import Any

import orjson

NONE, AUTO, REQUIRED, NAMED = "none", "auto", "required", "named"


@dataclass(frozen=True, slots=True)
class ToolUse:
    """What a job offers (`tools`, OpenAI's function tools as sent) and how they may be used:
    `choice` is none, auto, required or the name of the one function to call."""

    tools: list[dict[str, Any]]
    choice: str
    named: bool = False  # `choice` is a function's name
    parallel: bool = True  # more than one call per answer (OpenAI's parallel_tool_calls)

    def stored(self) -> dict[str, Any]:
        return {
            "tools": self.tools,
            "choice": self.choice,
            "named": self.named,
            "parallel": self.parallel,
        }

    @classmethod
    def from_stored(cls, stored: dict[str, Any] | None) -> "ToolUse | None":
        if not stored:
            return None
        return cls(stored["tools"], stored["choice"], stored["named"], stored["parallel"])

    @property
    def mode(self) -> str:
        """none, auto, required, or named."""
        return NAMED if self.named else self.choice

    @property
    def reads_calls(self) -> bool:
        """Whether the output is read as tool calls at all."""
        return self.mode != NONE


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it (auto, named) or re-encoded (required)


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """The calls read in a job's output, and the text outside them (None: none left)."""

    calls: list[ToolCall]
    content: str | None

    def encode(self) -> str:
        # JSON escapes every NUL, which a Postgres text column cannot hold.
        calls = [[call.id, call.name, call.arguments] for call in self.calls]
        return orjson.dumps({"calls": calls, "content": self.content}).decode()

    @classmethod
    def decode(cls, text: str) -> "ToolCalls":
        data = orjson.loads(text)
        return cls([ToolCall(*call) for call in data["calls"]], data["content"])


def call_id(job_id: str, attempt: int, index: int) -> str:
    """A call's id: the same on every read of the job's result, and new for a new attempt."""
    return f"chatcmpl-tool-{job_id.replace('-', '')[:24]}{attempt:02d}{index:02d}"


def calls_json(calls: list[ToolCall], *, indexed: bool = False) -> list[dict[str, Any]]:
    """OpenAI's shape of the calls: a message's, or with `indexed` a stream delta's."""
    return [
        {
            "id": call.id,
            "type": "function",
            **({"index": index} if indexed else {}),
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for index, call in enumerate(calls)
    ]

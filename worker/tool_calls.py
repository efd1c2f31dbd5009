"""The tool calls in a finished chat job's output, read once by its worker and stored with the
result (vqueue/contract/tools.py), as vLLM's server reads them for a response.

A named function's output is that function's arguments; `required` output is a JSON list of
calls (the engine constrained both); `auto` output is read by vLLM's own tool parser for the
served model's call format (the `tool_call_parser` setting), which needs the engine's
tokenizer, and vLLM, both of which only the worker has.
"""

import json
import logging
from collections.abc import Callable
from typing import Any

from vqueue.contract.tools import NAMED, REQUIRED, ToolCall, ToolCalls, ToolUse, call_id

log = logging.getLogger(__name__)


def tool_parser_class(name: str) -> Any:
    """vLLM's tool parser of that name; a name vLLM does not know is refused at start."""
    from vllm.tool_parsers import ToolParserManager

    try:
        return ToolParserManager.get_tool_parser(name)
    except KeyError:
        known = sorted({*ToolParserManager.tool_parsers, *ToolParserManager.lazy_parsers})
        raise ValueError(
            f"tool_call_parser {name!r} is not one of vLLM's: {', '.join(known)}"
        ) from None


class ToolCallReader:
    def __init__(self, parser_name: str | None, tokenizer: Callable[[], Any]) -> None:
        self._parser = tool_parser_class(parser_name) if parser_name else None
        self._tokenizer = tokenizer  # the engine's, fetched on the first `auto` job

    def read(self, job_id: str, attempt: int, text: str, use: ToolUse) -> ToolCalls | None:
        """The calls in a job's text, and the text outside them; None where the job offered
        no tools or chose none."""
        if not use.reads_calls:
            return None
        content: str | None = None
        if use.mode == NAMED:
            found = [(use.choice, text)] if text.strip() else []
        elif use.mode == REQUIRED:
            found = _listed_calls(text)
        else:
            found, content = self._parsed(job_id, text, use)
        if not use.parallel:
            found = found[:1]  # as vLLM keeps only the first
        calls = [
            ToolCall(call_id(job_id, attempt, index), name, arguments)
            for index, (name, arguments) in enumerate(found)
        ]
        return ToolCalls(calls, content)

    def _parsed(
        self, job_id: str, text: str, use: ToolUse
    ) -> tuple[list[tuple[str, str]], str | None]:
        if self._parser is None:
            # The API refuses `auto` without a parser; a job queued by an API with other
            # settings keeps its text.
            return [], text
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

        try:
            request = ChatCompletionRequest(
                model="", messages=[], tools=use.tools, tool_choice="auto"
            )
            parser = self._parser(self._tokenizer(), request.tools)  # stateful: one per job
            info = parser.extract_tool_calls(text, request)
        except Exception as exc:
            log.warning("job %s: its tool calls could not be read: %r", job_id, exc)
            return [], text
        if not info.tools_called:
            return [], text
        found = [(call.function.name, call.function.arguments) for call in info.tool_calls]
        content = info.content if info.content and info.content.strip() else None
        return found, content


def _listed_calls(text: str) -> list[tuple[str, str]]:
    """`required` output: a JSON list of {name, parameters}; output cut short (max_tokens)
    holds none."""
    try:
        listed = json.loads(text)
    except ValueError:
        return []
    if not isinstance(listed, list) or not all(
        isinstance(item, dict) and isinstance(item.get("name"), str) for item in listed
    ):
        return []
    # Re-encoded as vLLM's server encodes them.
    return [
        (item["name"], json.dumps(item.get("parameters"), ensure_ascii=False)) for item in listed
    ]

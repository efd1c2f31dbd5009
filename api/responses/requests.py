"""A Responses API request body (`POST /v1/responses`) read as a chat job.

A response is a chat job: `instructions` become its system message, `input` its turns (a
string is one user turn), an earlier response named by `previous_response_id` lends its turns
and its output before them, and `text.format` is chat's `response_format`. The chat request
this makes goes through the same checks as `/v1/chat/completions` (api/openai/requests.py).

As there, an explicit null means the default, a field OpenAI's API does not define is refused
by name, and so is one this service cannot honour unless its value is the default. Fields
that only steer OpenAI's hosted features (`include`, `truncation`, `service_tier`,
`prompt_cache_key`...) are taken and echoed back, as vLLM's server takes them.
"""

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from api.openai.requests import OpenAIFieldError
from api.responses.tools import (
    call_turn,
    chat_tool_choice,
    chat_tools,
    echoed_tools,
    output_turn,
)
from api.webhooks.schemas import ResponseWebhook

# Honoured: how the job samples, as chat takes it; then vLLM's extensions of this body.
_SAMPLING = ("temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty")
_VLLM_EXTRAS = (
    "repetition_penalty",
    "seed",
    "logit_bias",
    "stop",
    "stop_token_ids",
    "ignore_eos",
    "skip_special_tokens",
    "include_stop_str_in_output",
    "structured_outputs",
)
_OWN = (
    "model",
    "input",
    "instructions",
    "max_output_tokens",
    "previous_response_id",
    "text",
    "stream",
    "background",
    "store",
    "metadata",
    "user",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    # This service's own: where the response's end is announced (api/webhooks/).
    "webhook",
)
# Taken as they are and echoed back: they steer what this service has no counterpart for.
_ECHOED = (
    "include",
    "truncation",
    "service_tier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
    "max_tool_calls",
    "stream_options",
    "reasoning",
)
# Accepted only as their defaults: what each means when left out.
_DEFAULT_ONLY: dict[str, tuple[Any, ...]] = {
    "top_logprobs": (0,),
}
ALLOWED = {*_SAMPLING, *_VLLM_EXTRAS, *_OWN, *_ECHOED, *_DEFAULT_ONLY}
# OpenAI's roles of an input message; "developer" is its newer name for the system role.
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_TEXT_PARTS = ("input_text", "output_text", "text")
MAX_METADATA_PAIRS = 16  # as OpenAI's API


@dataclass
class ResponseRequest:
    chat: dict[str, Any]  # a /v1/chat/completions body, less its messages
    instructions: list[dict[str, str]]  # the system message they make, if any
    messages: list[dict[str, Any]]  # the input's turns
    stream: bool
    background: bool
    store: bool
    previous_response_id: str | None
    webhook: dict[str, Any] | None
    # What the response object echoes back (api/responses/views.py), stored with the job.
    echoed: dict[str, Any] = field(default_factory=dict)


def _content(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise OpenAIFieldError(where, "must be a string or a list of input_text parts")
    texts = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in _TEXT_PARTS:
            raise OpenAIFieldError(
                f"{where}[{i}].type",
                f"{kind!r} is not supported: this model reads text parts (input_text) only",
            )
        if not isinstance(part.get("text"), str):
            raise OpenAIFieldError(f"{where}[{i}].text", "must be a string")
        texts.append(part["text"])
    return "".join(texts)


def input_messages(value: Any) -> list[dict[str, Any]]:
    """`input` as chat messages: a string is one user turn; a list holds messages (OpenAI's
    easy form, or items of type "message")."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise OpenAIFieldError("input", "must be a string or a non-empty list of messages")
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise OpenAIFieldError(where, "must be an object")
        kind = item.get("type", "message")
        if kind == "function_call":
            call_turn(item, where, messages)
            continue
        if kind == "function_call_output":
            messages.append(
                output_turn(item, where, _content(item.get("output"), f"{where}.output"))
            )
            continue
        if kind != "message":
            raise OpenAIFieldError(
                f"{where}.type",
                f"{kind!r} is not supported: input items are messages, function calls and "
                "their outputs",
            )
        extra = set(item) - {"type", "role", "content", "id", "status"}
        if extra:
            raise OpenAIFieldError(f"{where}.{sorted(extra)[0]}", "is not supported")
        role = _ROLES.get(item.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise OpenAIFieldError(f"{where}.role", f"must be one of {', '.join(sorted(_ROLES))}")
        content = _content(item.get("content"), f"{where}.content")
        messages.append({"role": role, "content": content})
    return messages


def _format(text: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """`text.format` as chat's response_format, and the text config echoed back."""
    if not isinstance(text, dict) or set(text) - {"format", "verbosity"}:
        raise OpenAIFieldError("text", "must be an object with a format")
    shape = text.get("format") or {"type": "text"}
    kind = shape.get("type") if isinstance(shape, dict) else None
    if kind == "text":
        return None, {"format": {"type": "text"}}
    if kind == "json_object":
        return {"type": "json_object"}, {"format": {"type": "json_object"}}
    if kind == "json_schema":
        if not isinstance(shape.get("schema"), dict):
            raise OpenAIFieldError("text.format.schema", "must be a JSON schema object")
        name = shape.get("name")
        if not isinstance(name, str) or not name:
            raise OpenAIFieldError("text.format.name", "must be a non-empty string")
        spec = {"name": name, "schema": shape["schema"], "strict": bool(shape.get("strict"))}
        echoed = {"type": "json_schema", **spec}
        if isinstance(shape.get("description"), str):
            echoed["description"] = shape["description"]
        return {"type": "json_schema", "json_schema": spec}, {"format": echoed}
    raise OpenAIFieldError("text.format.type", "must be text, json_object or json_schema")


def _flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise OpenAIFieldError(name, "must be true or false")
    return value


def read_request(body: dict[str, Any]) -> ResponseRequest:
    unknown = sorted(set(body) - ALLOWED)
    if unknown:
        raise OpenAIFieldError(unknown[0], "is not a field of this endpoint")
    body = {key: value for key, value in body.items() if value is not None}
    for key, defaults in _DEFAULT_ONLY.items():
        if key in body and body[key] not in defaults:
            raise OpenAIFieldError(key, "is not supported by this service's Responses API")
    if "input" not in body:
        raise OpenAIFieldError("input", "is required")
    stream, background = _flag(body, "stream", False), _flag(body, "background", False)
    store = _flag(body, "store", True)
    if background and not store:
        raise OpenAIFieldError("background", "a background response must be stored (store=true)")
    previous = body.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise OpenAIFieldError("previous_response_id", "must be a response id")
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise OpenAIFieldError("instructions", "must be a string")
    max_output = body.get("max_output_tokens")
    if max_output is not None and (
        isinstance(max_output, bool) or not isinstance(max_output, int) or max_output < 1
    ):
        raise OpenAIFieldError("max_output_tokens", "must be a positive integer")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise OpenAIFieldError("metadata", "must map strings to strings")
    if len(metadata) > MAX_METADATA_PAIRS:
        raise OpenAIFieldError("metadata", f"holds at most {MAX_METADATA_PAIRS} pairs")
    response_format, text = _format(body.get("text", {}))
    messages = input_messages(body["input"])
    system = [] if instructions is None else [{"role": "system", "content": instructions}]
    chat: dict[str, Any] = {
        key: body[key] for key in ("model", *_SAMPLING, *_VLLM_EXTRAS, "user") if key in body
    }
    if max_output is not None:
        chat["max_tokens"] = max_output
    tools = body.get("tools") or []
    if tools:
        chat["tools"] = chat_tools(tools)
        chat["parallel_tool_calls"] = body.get("parallel_tool_calls", True)
    if "tool_choice" in body:
        choice = chat_tool_choice(body["tool_choice"])
        if tools:
            chat["tool_choice"] = choice
        elif choice not in ("auto", "none"):
            raise OpenAIFieldError("tool_choice", "names a use of tools, and none are given")
    if response_format is not None:
        chat["response_format"] = response_format
    echoed = {key: body[key] for key in _ECHOED if key in body}
    echoed |= {
        "instructions": instructions,
        "max_output_tokens": max_output,
        "text": text,
        "metadata": metadata,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "user": body.get("user"),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": echoed_tools(tools),
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
    }
    webhook = _webhook(body.get("webhook"))
    return ResponseRequest(
        chat, system, messages, stream, background, store, previous, webhook, echoed
    )


def _webhook(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        return ResponseWebhook.model_validate(value).stored()
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in ("webhook", *error["loc"]))
        raise OpenAIFieldError(where, error["msg"]) from None

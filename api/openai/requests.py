"""OpenAI request bodies (chat and text completions) mapped to the fields of a job.

Used by /v1 and the OpenAI batch input format. An explicit null means the field's default, as
in OpenAI's API and vLLM's server. A field neither of them knows is refused by name, as
OpenAI's own API does; so is a field they know that this service does not honour yet, unless
its value is the default (a client library that sends `"best_of": 1` works).
"""

from typing import Any

from vqueue.contract.logprobs import MAX_LOGPROBS
from vqueue.contract.sampling import OPENAI_SAMPLING_KEYS, VLLM_SAMPLING_KEYS

CHAT_COMPLETIONS = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
ENDPOINTS = (CHAT_COMPLETIONS, COMPLETIONS)

# Passed through unchanged; the job's own validation bounds them.
_SAMPLING = OPENAI_SAMPLING_KEYS
_VLLM_EXTRAS = VLLM_SAMPLING_KEYS
# Fields OpenAI or vLLM define that are not honoured here yet: each value here is what the
# field means when it is left out, and only those are accepted.
_DEFAULT_ONLY: dict[str, tuple[Any, ...]] = {
    "best_of": (1,),
    "suffix": ("",),
    "service_tier": ("auto", "default"),
    "store": (False,),
    "metadata": ({},),
    "length_penalty": (1.0,),
    "use_beam_search": (False,),
    "add_generation_prompt": (True,),
    "continue_final_message": (False,),
    "add_special_tokens": (False, True),
    "spaces_between_special_tokens": (True,),
    "truncate_prompt_tokens": (),
    "priority": (0,),
}
# Checked by the job (api/jobs/tools.py).
_TOOL_FIELDS = ("tools", "tool_choice", "parallel_tool_calls")
_COMMON = {
    "model",
    "max_tokens",
    "stop",
    "n",
    "stream",
    "stream_options",
    "user",
    "echo",
    "response_format",
    "logprobs",
    *_SAMPLING,
    *_VLLM_EXTRAS,
    *_DEFAULT_ONLY,
}
ALLOWED_FIELDS = {
    CHAT_COMPLETIONS: _COMMON
    | {"messages", "max_completion_tokens", "top_logprobs", *_TOOL_FIELDS},
    COMPLETIONS: _COMMON | {"prompt"},
}
# "developer" is OpenAI's newer name for the system role.
_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}


class OpenAIFieldError(ValueError):
    def __init__(
        self, param: str, message: str, status_code: int = 400, code: str | None = None
    ) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message
        self.status_code = status_code
        self.code = code


def _content_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise OpenAIFieldError(f"{where}[{i}]", "only text content parts are supported")
            if not isinstance(part.get("text"), str):
                raise OpenAIFieldError(f"{where}[{i}].text", "must be a string")
            texts.append(part["text"])
        return "".join(texts)
    raise OpenAIFieldError(where, "must be a string or a list of text parts")


def _messages(value: Any) -> list[dict[str, Any]]:
    """As the job takes them, which checks each role's fields (api/jobs/schemas.py)."""
    if not isinstance(value, list):
        raise OpenAIFieldError("messages", "must be a list of messages")
    messages = []
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise OpenAIFieldError(f"messages[{i}]", "must be an object")
        extra = set(message) - {"role", "content", "name", "tool_calls", "tool_call_id"}
        if extra:
            raise OpenAIFieldError(f"messages[{i}].{sorted(extra)[0]}", "is not supported")
        role = _ROLES.get(message.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise OpenAIFieldError(
                f"messages[{i}].role", f"must be one of {', '.join(sorted(_ROLES))}"
            )
        content = message.get("content")
        taken: dict[str, Any] = {"role": role}
        if content is not None or role != "assistant":
            taken["content"] = _content_text(content, f"messages[{i}].content")
        for key in ("tool_calls", "tool_call_id"):
            # null, and the empty list some clients send, mean none.
            if message.get(key) not in (None, []):
                taken[key] = message[key]
        messages.append(taken)
    return messages


def _is_token_ids(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, int) and not isinstance(item, bool) for item in value
    )


def _prompt(value: Any) -> dict[str, Any]:
    """The job field of a completion's prompt: a string, or token ids (alone, or as the one
    list of a list), as OpenAI's API and vLLM's server take them."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str | list):
        value = value[0]
    if isinstance(value, str):
        return {"prompt": value}
    if _is_token_ids(value) and value:
        return {"prompt_token_ids": value}
    raise OpenAIFieldError(
        "prompt", "must be one string or one list of token ids (one prompt per request)"
    )


def _response_format(value: Any) -> dict[str, Any] | None:
    """OpenAI's response_format as the structured-output constraint it stands for."""
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"json_object": True}
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise OpenAIFieldError(
                "response_format", "json_schema needs a json_schema object with a schema"
            )
        return {"json": spec["schema"]}
    raise OpenAIFieldError(
        "response_format", "must be an object whose type is text, json_object or json_schema"
    )


def _logprob_count(body: dict[str, Any], name: str) -> int:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LOGPROBS:
        raise OpenAIFieldError(name, f"must be a whole number from 0 to {MAX_LOGPROBS}")
    return value


def _logprobs(endpoint: str, body: dict[str, Any]) -> int | None:
    """How many alternatives to each output token the body asks for, as vLLM reads it: a
    completion's `logprobs` is the count; chat's `logprobs` is a flag, and `top_logprobs`
    the count (ignored without the flag)."""
    if endpoint == COMPLETIONS:
        return _logprob_count(body, "logprobs") if "logprobs" in body else None
    if "logprobs" in body and not isinstance(body["logprobs"], bool):
        raise OpenAIFieldError("logprobs", "must be true or false")
    count = _logprob_count(body, "top_logprobs") if "top_logprobs" in body else 0
    return count if body.get("logprobs") else None


def _is_default(value: Any, defaults: tuple[Any, ...]) -> bool:
    # `True == 1` in Python: a flag never stands for a number, nor a number for a flag.
    return any(
        isinstance(value, bool) == isinstance(default, bool) and value == default
        for default in defaults
    )


def choice_count(body: dict[str, Any], max_choices: int) -> int:
    """How many choices (`n`) the body asks for: each is a job of its own."""
    n = body.get("n")
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise OpenAIFieldError("n", f"must be a whole number from 1, not {n!r}")
    if n > max_choices:
        where = "in a batch file" if max_choices == 1 else "here"
        raise OpenAIFieldError("n", f"at most {max_choices} choices per request {where}")
    return n


def echo_text(endpoint: str, fields: dict[str, Any], body: dict[str, Any]) -> str:
    """What `echo` puts before each choice's text, as vLLM's server does: the prompt of a
    completion; for chat, the last message's content if it is the assistant's (a reply to be
    continued), else nothing."""
    if body.get("echo") is not True:
        return ""
    if endpoint == COMPLETIONS:
        prompt: str = fields.get("prompt", "")  # token ids: decoded by the caller
        return prompt
    last = fields["messages"][-1]
    return (last.get("content") or "") if last["role"] == "assistant" else ""


def job_fields(
    endpoint: str,
    body: Any,
    served_models: set[str],
    *,
    allow_stream: bool = False,
    max_choices: int = 1,
) -> dict[str, Any]:
    """The job fields (prompt or messages, sampling) an OpenAI request body asks for; one job
    of `n`, which the caller makes (see choice_count)."""
    if endpoint not in ALLOWED_FIELDS:
        raise OpenAIFieldError("url", f"must be one of {', '.join(ENDPOINTS)}")
    if not isinstance(body, dict):
        raise OpenAIFieldError("body", "must be a JSON object")
    unknown = sorted(set(body) - ALLOWED_FIELDS[endpoint])
    if unknown:
        raise OpenAIFieldError(unknown[0], "is not a field of this endpoint")
    body = {key: value for key, value in body.items() if value is not None}
    for key in sorted(set(body) & set(_DEFAULT_ONLY)):
        if not _is_default(body[key], _DEFAULT_ONLY[key]):
            raise OpenAIFieldError(key, "is not supported by this service yet")
    model = body.get("model")
    if model is not None and model not in served_models:
        # 404, as from OpenAI's API and vLLM's server.
        raise OpenAIFieldError(
            "model",
            f"{model!r} is not served here; use one of /v1/models",
            404,
            "model_not_found",
        )
    choice_count(body, max_choices)
    if "echo" in body and not isinstance(body["echo"], bool):
        raise OpenAIFieldError("echo", "must be true or false")
    if body.get("echo") and not allow_stream:
        raise OpenAIFieldError("echo", "is not supported in batch files")
    if body.get("stream") and not allow_stream:
        raise OpenAIFieldError("stream", "cannot stream here")
    if (logprobs := _logprobs(endpoint, body)) is not None and body.get("echo"):
        # vLLM would return the prompt's log probabilities too, which no job records.
        raise OpenAIFieldError("echo", "cannot be combined with logprobs here")
    fields: dict[str, Any] = {
        key: body[key] for key in (*_SAMPLING, *_VLLM_EXTRAS, *_TOOL_FIELDS) if key in body
    }
    if logprobs is not None:
        fields["logprobs"] = logprobs
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        fields["max_tokens"] = max_tokens
    if (constraint := _response_format(body.get("response_format", {"type": "text"}))) is not None:
        # As in vLLM, added to structured_outputs (whose whitespace settings apply); a second
        # constraint given there is refused by the job's validation.
        given = fields.get("structured_outputs")
        fields["structured_outputs"] = {**(given if isinstance(given, dict) else {}), **constraint}
    stop = body.get("stop")
    if stop is not None:
        fields["stop"] = [stop] if isinstance(stop, str) else stop
    if endpoint == CHAT_COMPLETIONS:
        if "messages" not in body:
            raise OpenAIFieldError("messages", "is required")
        fields["messages"] = _messages(body["messages"])
    else:
        if "prompt" not in body:
            raise OpenAIFieldError("prompt", "is required")
        fields |= _prompt(body["prompt"])
    return fields

"""vLLM's /tokenize and /detokenize, with the served model's tokenizer in the API process:
the same tokens the engine gets (chat messages rendered as the worker renders them), so a
client can count a prompt before it sends it."""

from typing import Any, Literal, TypeVar

import anyio
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from api.core.auth import CallerDep
from api.core.resources import Resources, ResourcesDep
from api.core.served_tokenizer import ServedTokenizer
from api.jobs.services import JobServices, JobServicesDep
from api.openai.bodies import json_body, served_models
from api.openai.errors import OPENAI_ERRORS, OpenAIError, from_validation, invalid_request

router = APIRouter(tags=["openai"], responses=OPENAI_ERRORS)

# A vocabulary's ids fit in 31 bits; more tokens than this is no one prompt.
MAX_TOKENS_TO_DECODE = 1_000_000


Parsed = TypeVar("Parsed", bound=BaseModel)


class _ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str


class TokenizeRequest(BaseModel):
    """A prompt, or chat messages, as vLLM's /tokenize takes them."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    prompt: str | None = None
    messages: list[_ChatMessage] | None = Field(None, min_length=1)
    # vLLM's defaults: special tokens for a prompt, none beyond the template's for chat.
    add_special_tokens: bool | None = None
    add_generation_prompt: bool = True
    return_token_strs: bool = False


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    tokens: list[StrictInt] = Field(max_length=MAX_TOKENS_TO_DECODE)


async def _parsed(
    request: Request, resources: Resources, services: JobServices, schema: type[Parsed]
) -> tuple[Parsed, ServedTokenizer]:
    body = await json_body(request, resources.settings)
    try:
        parsed = schema.model_validate(body)
    except ValidationError as exc:
        raise from_validation(exc) from None
    model = getattr(parsed, "model", None)
    if model is not None and model not in await served_models(resources):
        raise OpenAIError(
            404,
            f"model: {model!r} is not served here; use one of /v1/models",
            "invalid_request_error",
            "model",
            "model_not_found",
        )
    tokenizer = services.context.tokenizer
    if not tokenizer.ready:
        raise OpenAIError(503, "the tokenizer is not loaded yet; try again shortly", "server_error")
    return parsed, tokenizer


@router.post("/tokenize")
async def tokenize(
    request: Request, resources: ResourcesDep, services: JobServicesDep, _: CallerDep
) -> dict[str, Any]:
    """`prompt` or `messages` as token ids: `count`, `tokens`, the model's `max_model_len`,
    and with `return_token_strs` each token as text."""
    asked, tokenizer = await _parsed(request, resources, services, TokenizeRequest)
    if (asked.prompt is None) == (asked.messages is None):
        raise invalid_request("give exactly one of prompt or messages")
    if asked.messages is not None and not tokenizer.has_chat_template:
        raise invalid_request("the model has no chat template; send a prompt", "messages")

    def tokens_of_request() -> tuple[list[int], list[str] | None]:
        if asked.messages is not None:
            messages = [message.model_dump() for message in asked.messages]
            text = tokenizer.render(messages, add_generation_prompt=asked.add_generation_prompt)
            special = bool(asked.add_special_tokens)
        else:
            assert asked.prompt is not None
            text, special = asked.prompt, asked.add_special_tokens is not False
        tokens = tokenizer.encode(text, add_special_tokens=special)
        return tokens, tokenizer.token_strings(tokens) if asked.return_token_strs else None

    # Off the event loop: a long prompt takes a while to tokenize.
    tokens, strings = await anyio.to_thread.run_sync(tokens_of_request)
    return {
        "count": len(tokens),
        "max_model_len": services.context.limit(),
        "tokens": tokens,
        "token_strs": strings,
    }


@router.post("/detokenize")
async def detokenize(
    request: Request, resources: ResourcesDep, services: JobServicesDep, _: CallerDep
) -> dict[str, Any]:
    """Token ids back to text: `prompt`."""
    asked, tokenizer = await _parsed(request, resources, services, DetokenizeRequest)
    outside = [token for token in asked.tokens if not 0 <= token < tokenizer.vocab_size()]
    if outside:
        raise invalid_request(
            f"token ids {outside[:5]} are outside the model's vocabulary of "
            f"{tokenizer.vocab_size()} tokens",
            "tokens",
        )
    return {"prompt": await anyio.to_thread.run_sync(tokenizer.decode, asked.tokens)}

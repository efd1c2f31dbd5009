"""Whether a prompt and its max_tokens fit the model's context, said the same way by the API
(which refuses the request, 400) and by the worker (which fails a job that got past the API)."""

# A tokenizer makes at most one token per byte of text, plus a few special tokens (BOS).
SPECIAL_TOKENS = 8


def over_context(prompt_tokens: int, max_tokens: int, limit: int) -> str | None:
    """Why the job cannot run in a context of `limit` tokens; None when it fits."""
    if prompt_tokens > limit:
        return f"the prompt is longer than the model's maximum context length of {limit} tokens"
    if prompt_tokens + max_tokens > limit:
        # As vLLM's server refuses it: the engine would cut the answer short instead.
        return (
            f"the prompt ({prompt_tokens} tokens) and max_tokens ({max_tokens}) come to "
            f"{prompt_tokens + max_tokens} tokens, over the model's maximum context length of "
            f"{limit} tokens; shorten the prompt or lower max_tokens"
        )
    return None


def surely_fits(text_bytes: int, max_tokens: int, limit: int) -> bool:
    """True when no tokenizer could make the text too long: checked before tokenizing."""
    return text_bytes + SPECIAL_TOKENS + max_tokens <= limit

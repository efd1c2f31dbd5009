"""Chat messages to the model's prompt text, with the roles the caller gave and no others.

A message's content is data. If it contained a control token of the model (`<|im_start|>`,
`<|im_end|>`...), the engine's tokenizer would read it as that token, and a user turn could
close itself and open a system turn. Each such string in a content is broken with an
invisible WORD JOINER (U+2060), so it reaches the model as the plain characters it shows.
"""

import json
from typing import Any

WORD_JOINER = "\u2060"


def control_tokens(tokenizer: Any) -> list[str]:
    """The tokenizer's special tokens as text, longest first (so none hides inside another)."""
    found = set(getattr(tokenizer, "all_special_tokens", None) or ())
    for added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(added, "special", False):
            found.add(added.content)
    return sorted((token for token in found if len(token) > 1), key=len, reverse=True)


def neutralize(content: str, tokens: list[str]) -> str:
    for token in tokens:
        if token in content:
            content = content.replace(token, token[0] + WORD_JOINER + token[1:])
    return content


def neutralize_all(value: Any, tokens: list[str]) -> Any:
    """Every string in a JSON value (a tool's definition, a call's arguments), keys too."""
    if isinstance(value, str):
        return neutralize(value, tokens)
    if isinstance(value, dict):
        return {neutralize_all(k, tokens): neutralize_all(v, tokens) for k, v in value.items()}
    if isinstance(value, list):
        return [neutralize_all(item, tokens) for item in value]
    return value


def _arguments(text: str) -> Any:
    # As vLLM passes them: tool-use templates expect a call's arguments as an object.
    try:
        return json.loads(text)
    except ValueError:
        return text


class ChatRenderer:
    def __init__(self, tokenizer: Any) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the model has no chat template; send a plain prompt instead")
        self.tokenizer = tokenizer
        self.tokens = control_tokens(tokenizer)

    def render(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        """The prompt text; `tools` (OpenAI's function tools) go to the template as vLLM
        passes them, where a template that knows tools shows them to the model."""
        extra = {"tools": neutralize_all(tools, self.tokens)} if tools else {}
        rendered: str = self.tokenizer.apply_chat_template(
            [self._safe(message) for message in messages],
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            **extra,
        )
        return rendered

    def _safe(self, message: dict[str, Any]) -> dict[str, Any]:
        # An assistant turn of tool calls alone has no content; templates concatenate it.
        safe = {**message, "content": neutralize(message.get("content") or "", self.tokens)}
        if calls := message.get("tool_calls"):
            safe["tool_calls"] = [
                {
                    **call,
                    "function": {
                        "name": neutralize(call["function"]["name"], self.tokens),
                        "arguments": neutralize_all(
                            _arguments(call["function"]["arguments"]), self.tokens
                        ),
                    },
                }
                for call in calls
            ]
        return safe

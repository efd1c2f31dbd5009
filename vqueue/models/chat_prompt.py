"""Chat messages to the model's prompt text, with the roles the caller gave and no others.

A message's content is data. If it contained a control token of the model (`<|im_start|>`,
`<|im_end|>`...), the engine's tokenizer would read it as that token, and a user turn could
close itself and open a system turn. Each such string in a content is broken with an
invisible WORD JOINER (U+2060), so it reaches the model as the plain characters it shows.
"""

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


class ChatRenderer:
    def __init__(self, tokenizer: Any) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the model has no chat template; send a plain prompt instead")
        self.tokenizer = tokenizer
        self.tokens = control_tokens(tokenizer)

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        safe = [{**m, "content": neutralize(m["content"], self.tokens)} for m in messages]
        rendered: str = self.tokenizer.apply_chat_template(
            safe, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        return rendered

"""A prompt's text as Postgres stores it: Postgres text and JSON cannot hold NUL, but a prompt
may (random-token prompts do, and vLLM's server takes them). A text with a NUL is stored
escaped behind a mark; every other text is stored as it is.

The mark is U+FFFF, a noncharacter that no text is meant to hold. A text that holds a NUL or
begins with the mark is stored as the mark, then the text with each mark doubled and each NUL
written as the mark and "0"; reading undoes exactly that, so every text comes back unchanged.
"""

from typing import Any

MARK = "\uffff"
_NUL = "\x00"


def to_stored(text: str) -> str:
    if _NUL not in text and not text.startswith(MARK):
        return text
    return MARK + text.replace(MARK, MARK + MARK).replace(_NUL, MARK + "0")


def from_stored(stored: str) -> str:
    if not stored.startswith(MARK):
        return stored
    out: list[str] = []
    escaped = False
    for char in stored[1:]:
        if escaped:
            out.append(_NUL if char == "0" else char)
            escaped = False
        elif char == MARK:
            escaped = True
        else:
            out.append(char)
    return "".join(out)


def prompt_to_stored(prompt: str | None) -> str | None:
    return None if prompt is None else to_stored(prompt)


def prompt_from_stored(prompt: str | None) -> str | None:
    return None if prompt is None else from_stored(prompt)


def messages_to_stored(messages: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if messages is None:
        return None
    return [{**message, "content": to_stored(message["content"])} for message in messages]


def messages_from_stored(messages: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if messages is None:
        return None
    return [{**message, "content": from_stored(message["content"])} for message in messages]

"""Text as Postgres stores it: Postgres text and JSON cannot hold NUL, but a caller's text may
(random-token prompts do, and vLLM's server takes them). A string with a NUL is stored
escaped behind a mark; every other string is stored as it is.

The mark is U+FFFF, a noncharacter that no text is meant to hold. A string that holds a NUL
or begins with the mark is stored as the mark, then the string with each mark doubled and
each NUL written as the mark and "0"; reading undoes exactly that, so every string comes back
unchanged. The columns that hold callers' text use StoredText and StoredJSON (db/schema.py),
so every statement escapes and unescapes them; COPY, which bypasses column types, calls
to_stored and json_to_stored itself.
"""

from collections.abc import Callable
from typing import Any

from sqlalchemy import Dialect, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

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


def _each_string(value: Any, change: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {change(key): _each_string(item, change) for key, item in value.items()}
    if isinstance(value, list):
        return [_each_string(item, change) for item in value]
    return value


def json_to_stored(value: Any) -> Any:
    """Every string of a JSON value, keys included, as stored."""
    return _each_string(value, to_stored)


def json_from_stored(value: Any) -> Any:
    return _each_string(value, from_stored)


class StoredText(TypeDecorator[str]):
    """A text column that holds any string, NUL included."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else to_stored(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else from_stored(value)


class StoredJSON(TypeDecorator[Any]):
    """A JSONB column whose strings may hold NUL."""

    impl = JSONB
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return json_to_stored(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return json_from_stored(value)

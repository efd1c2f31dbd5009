"""JSON for line-framed bodies (SSE events, JSONL files).

orjson leaves U+2028, U+2029 and U+0085 unescaped, as JSON allows. But clients that split
a body into lines the way Python's `str.splitlines` does (httpx's `iter_lines`, a JSONL
file read with `read_text().splitlines()`) also break lines at those characters, and a
model does now and then sample one: the event or line is cut inside a string. Escaped,
they are the same JSON text and no reader can split on them.
"""

from typing import Any

import orjson

_LINE_BREAKS_ORJSON_KEEPS = (
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
    ("\u0085".encode(), b"\\u0085"),
)


def line_safe_json(value: Any, *, newline: bool = False) -> bytes:
    """`value` as JSON on one line under every line-splitting rule (see the module's note)."""
    encoded = orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE if newline else None)
    for raw, escaped in _LINE_BREAKS_ORJSON_KEEPS:
        # In UTF-8 these byte sequences can only be these characters, so a replace is exact.
        encoded = encoded.replace(raw, escaped)
    return encoded

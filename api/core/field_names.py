"""Which field of a request body a validation error is about, for the error's `field` (jobs
API) or `param` (/v1)."""

import re
from typing import Any

# A check across fields names the one at fault first: "Value error, <field>: ...".
_NAMED_FIELD = re.compile(r"Value error, ([a-z_]+): ")


def field_name(loc: tuple[Any, ...], message: str = "") -> str | None:
    """The field an error is about: its place in the body, and for a check across fields
    (which pydantic places at the object) the field its message names."""
    # FastAPI prefixes the source ("body", "query").
    parts = (
        [str(part) for part in loc[1:]]
        if loc and loc[0] in {"body", "query", "path", "header"}
        else [str(p) for p in loc]
    )
    if (named := _NAMED_FIELD.match(message)) is not None:
        parts.append(named.group(1))
    return ".".join(parts) or None

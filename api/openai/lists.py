"""OpenAI's list shape, for the files and batches listings."""

from typing import Any


def list_page(data: list[dict[str, Any]], *, has_more: bool) -> dict[str, Any]:
    """One page of an OpenAI list (files, batches), with its cursor ids."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }

"""docs/configuration.md is the settings object's own documentation, never a copy that drifts."""

import pytest
from pydantic.fields import FieldInfo

from vqueue.dev.settings_doc import PAGE, render, row
from vqueue.settings import Settings


def test_the_configuration_page_is_written_from_the_settings() -> None:
    assert PAGE.read_text() == render(), (
        "docs/configuration.md is stale: run `python -m vqueue.dev.settings_doc`"
    )


def test_every_setting_is_on_the_page_with_its_default() -> None:
    page = PAGE.read_text()
    for name in Settings.model_fields:
        assert f"| `VQUEUE_{name.upper()}` |" in page, name
    assert "| `VQUEUE_API_PORT` | `8000` |" in page
    assert "| `VQUEUE_MODEL_CACHE_DIR` | `~/.cache/vqueue` |" in page


def test_a_setting_without_a_docstring_is_refused() -> None:
    with pytest.raises(ValueError, match=r"Settings\.mystery has no docstring"):
        row("mystery", FieldInfo(default=1))

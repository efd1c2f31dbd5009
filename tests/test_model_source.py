from pathlib import Path

import pytest

from vqueue.models import default_model
from vqueue.models.source import ModelUnavailableError, resolve_model
from vqueue.settings import DEFAULT_MODEL


def test_a_local_folder_is_used_as_is(tmp_path: Path) -> None:
    assert resolve_model(str(tmp_path), revision=None, cache_dir=tmp_path / "cache") == tmp_path


def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        resolve_model(str(tmp_path / "nope"), revision=None, cache_dir=tmp_path)


def test_the_default_model_comes_from_the_prepared_cache(tmp_path: Path) -> None:
    from vqueue.settings import get_settings

    cache = get_settings().model_cache_dir
    if not default_model.is_prepared(cache):
        pytest.fail("run `make model` first: the default model is not prepared")
    folder = resolve_model(DEFAULT_MODEL, revision=None, cache_dir=cache)
    assert (folder / "model.safetensors").is_file()
    assert (folder / "tokenizer.json").is_file()
    assert "<|im_start|>" in (folder / "chat_template.jinja").read_text()


def _fake_hub_cache(cache: Path, repo_id: str, revision: str) -> Path:
    """The layout huggingface_hub writes: blobs behind a snapshot folder and a ref."""
    repo = cache / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text('{"model_type": "llama"}')
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return snapshot


@pytest.mark.slow
def test_a_hub_id_resolves_through_snapshot_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No hub is reachable here: offline mode serves the model from the shared cache, through
    # the same snapshot_download call a networked worker makes.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = _fake_hub_cache(tmp_path, "acme/tiny-model", revision)
    folder = resolve_model("acme/tiny-model", revision=None, cache_dir=tmp_path)
    assert folder == snapshot
    pinned = resolve_model("acme/tiny-model", revision=revision, cache_dir=tmp_path)
    assert pinned == snapshot


def test_an_unreachable_hub_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="unreachable"):
        resolve_model("acme/not-cached", revision=None, cache_dir=tmp_path)


def test_a_malformed_model_id_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="neither an existing folder"):
        resolve_model("not a valid//id", revision=None, cache_dir=tmp_path)

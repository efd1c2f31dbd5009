"""The queue beside `vllm serve`, both driven by vLLM's own serving benchmark (`vllm bench
serve`): on one host, one after the other, same model and engine arguments, same requests.

    python -m benchmarks.serve_compare --label LABEL [--backend openai-chat] [--jobs 256]

Three cases each: `burst` (every request at once: throughput), `single` (one at a time:
TTFT, TPOT and end-to-end latency without queueing) and `poisson` (arrivals at --rate per
second). The stack runs first (its own database and Redis db, as `make bench`), then vLLM's
server on the engine arguments a worker uses (benchmarks/vllm_serve.py). Writes
OUT/serve-compare-LABEL.json and .md (OUT: --out, default benchmarks/results).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.__main__ import wait_for_workers
from benchmarks.sides import add_side_argument, clean_slate, report_head, results_to_extend, runs
from benchmarks.vllm_serve import running_vllm_serve
from vqueue.dev import stack
from vqueue.models.source import resolve_model
from vqueue.settings import Settings, get_settings

DRIVER = """
import sys
from vllm.benchmarks.serve import add_cli_args, main
try:
    from vllm.utils.argparse_utils import FlexibleArgumentParser
except ImportError:
    from vllm.utils import FlexibleArgumentParser
parser = FlexibleArgumentParser()
add_cli_args(parser)
main(parser.parse_args(sys.argv[1:]))
"""
ENDPOINTS = {"openai": "/v1/completions", "openai-chat": "/v1/chat/completions"}
FIGURES = (
    "completed",
    "failed",
    "output_throughput",
    "median_ttft_ms",
    "p99_ttft_ms",
    "median_tpot_ms",
    "p99_tpot_ms",
    "median_e2el_ms",
    "p99_e2el_ms",
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", required=True)
    parser.add_argument("--backend", choices=sorted(ENDPOINTS), default="openai-chat")
    parser.add_argument("--jobs", type=int, default=256, help="requests of the burst and poisson")
    parser.add_argument("--single", type=int, default=32, help="requests one at a time")
    parser.add_argument("--rate", type=float, default=16.0, help="poisson arrivals per second")
    parser.add_argument("--input-len", type=int, default=128)
    parser.add_argument("--output-len", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    add_side_argument(parser)
    return parser.parse_args()


def cases(args: argparse.Namespace) -> dict[str, list[str]]:
    return {
        "burst": ["--num-prompts", str(args.jobs), "--request-rate", "inf"],
        "single": ["--num-prompts", str(args.single), "--max-concurrency", "1"],
        "poisson": ["--num-prompts", str(args.jobs), "--request-rate", str(args.rate)],
    }


def bench(
    base_url: str, settings: Settings, args: argparse.Namespace, case: list[str], out: Path
) -> dict[str, Any]:
    """One run of vLLM's serving benchmark; its figures."""
    tokenizer = settings.tokenizer or resolve_model(
        settings.model, revision=settings.model_revision, cache_dir=settings.model_cache_dir
    )
    command = [
        sys.executable, "-c", DRIVER,
        "--backend", args.backend,
        "--base-url", base_url,
        "--endpoint", ENDPOINTS[args.backend],
        "--model", settings.model_name,
        "--tokenizer", str(tokenizer),
        "--dataset-name", "random",
        "--random-input-len", str(args.input_len),
        "--random-output-len", str(args.output_len),
        "--ignore-eos",
        "--seed", "7",
        "--percentile-metrics", "ttft,tpot,itl,e2el",
        "--metric-percentiles", "50,99",
        "--disable-tqdm",
        "--save-result",
        "--result-dir", str(out.parent),
        "--result-filename", out.name,
        *case,
    ]  # fmt: skip
    # The benchmark sends OPENAI_API_KEY as its bearer token, to either server.
    env = {**os.environ, "OPENAI_API_KEY": os.environ.get("VQUEUE_API_KEY", "none")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"vllm bench serve failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    result = json.loads(out.read_text())
    return {name: result.get(name) for name in FIGURES}


def side(base_url: str, settings: Settings, args: argparse.Namespace, name: str) -> dict[str, Any]:
    """Every case against one server, after a warm-up burst (kernels compiled, caches made)."""
    # Each run's own result file; the figures kept go into the comparison's.
    scratch = Path(tempfile.mkdtemp(prefix="serve-compare-"))
    bench(base_url, settings, args, cases(args)["burst"], scratch / f"{name}-warm-up.json")
    found = {}
    for case, extra in cases(args).items():
        found[case] = bench(base_url, settings, args, extra, scratch / f"{name}-{case}.json")
        print(f"{name} {case}: {found[case]}", flush=True)
    return found


def table(results: dict[str, Any]) -> str:
    lines = [
        "| case | server | output tok/s | TTFT p50 / p99 ms | TPOT p50 / p99 ms "
        "| end-to-end p50 / p99 ms | failed |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]

    def pair(figures: dict[str, Any], name: str) -> str:
        return f"{figures[f'median_{name}_ms']:,.1f} / {figures[f'p99_{name}_ms']:,.1f}"

    for case in results["queue"]:
        for server in ("queue", "vllm_serve"):
            f = results[server][case]
            lines.append(
                f"| {case} | {server} | {f['output_throughput']:,.0f} | {pair(f, 'ttft')} "
                f"| {pair(f, 'tpot')} | {pair(f, 'e2el')} | {f['failed']} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    settings = get_settings()
    base = args.out / f"serve-compare-{args.label}"
    results = results_to_extend(base.with_suffix(".json"), args.side, report_head(args))
    os.environ["VQUEUE_API_KEY"] = clean_slate(settings)
    if runs(args.side, "queue"):
        stack.up(settings)
        try:
            wait_for_workers(settings, 1)
            results["queue"] = side(stack.base_url(settings), settings, args, "queue")
        finally:
            stack.down(settings)
        # Written after each side: a run cut short (a host's time limit) keeps what it measured.
        base.with_suffix(".json").write_text(json.dumps(results, indent=2))
    if runs(args.side, "peer"):
        log = args.out / f"serve-compare-{args.label}-vllm-serve.log"
        with running_vllm_serve(settings, settings.api_port + 1, log) as url:
            results["vllm_serve"] = side(url, settings, args, "vllm_serve")
        base.with_suffix(".json").write_text(json.dumps(results, indent=2))
    if "queue" in results and "vllm_serve" in results:
        base.with_suffix(".md").write_text(table(results))
        print(table(results), flush=True)


if __name__ == "__main__":
    main()

"""The queue's Batch API beside `vllm run-batch`, on one file of OpenAI batch input: same
model, engine arguments and host, one after the other.

    python -m benchmarks.batch_compare --label LABEL [--requests 10000]

The queue side uploads the file with the openai SDK (`files.create`, `batches.create`), polls
the batch until it ends, and reads its output file meanwhile (results are readable while it
runs); it is timed from the upload to the batch's end. `vllm run-batch` (its module, on the
engine arguments a worker uses) runs the same warm-up file first, then is timed from reading
its input to having written its output, the engine loaded, as the queue's resident worker is;
its engine's load time is reported beside. Both count the output tokens of their output file. Writes
OUT/batch-compare-LABEL.json and .md (OUT: --out, default benchmarks/results).
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import orjson
from openai import OpenAI
from transformers import AutoTokenizer

from benchmarks.__main__ import wait_for_workers
from benchmarks.sides import add_side_argument, clean_slate, report_head, results_to_extend, runs
from benchmarks.vllm_serve import serve_command
from vqueue.dev import stack
from vqueue.models.source import resolve_model
from vqueue.settings import Settings, get_settings

# vLLM's batch runner on its own warm-up file first, then timed on the input, in one engine (its
# module moved between releases; `run_batch(engine_client, args)` is in each).
DRIVER = """
import asyncio, copy, json, os, sys, time
try:
    from vllm.entrypoints.launchers import run_batch as rb
except ImportError:
    from vllm.entrypoints.openai import run_batch as rb
marks = {"started": time.time()}
real = rb.run_batch
async def warm_then_timed(engine_client, args):
    marks["loaded"] = time.time()
    warm = copy.copy(args)
    warm.input_file, warm.output_file = os.environ["WARM_UP_IN"], os.environ["WARM_UP_OUT"]
    await real(engine_client, warm)
    marks["running"] = time.time()
    await real(engine_client, args)
    marks["ran"] = time.time()
rb.run_batch = warm_then_timed
sys.argv = ["run_batch", *sys.argv[1:]]
asyncio.run(rb.main(rb.parse_args()))
print("TIMING " + json.dumps(marks), flush=True)
"""
ENDPOINT: Final = "/v1/chat/completions"
# Its end is seen within a quarter second; its output file read every 2 s meanwhile.
POLL_S = 0.25
READ_EVERY_S = 2.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", required=True)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--input-len", type=int, default=128, help="prompt tokens, about")
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument(
        "--warm-up", type=int, default=256, help="requests before the timed run, on each side"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    add_side_argument(parser)
    return parser.parse_args()


def batch_file(settings: Settings, args: argparse.Namespace, count: int, seed: int) -> bytes:
    """`count` chat requests whose prompts are random tokens of the model's vocabulary, as
    vLLM's random dataset makes them; every request produces exactly --output-len tokens."""
    path = settings.tokenizer or resolve_model(
        settings.model, revision=settings.model_revision, cache_dir=settings.model_cache_dir
    )
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    special = set(tokenizer.all_special_ids)
    vocab = [i for i in range(tokenizer.vocab_size) if i not in special]
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        prompt = tokenizer.decode(rng.choices(vocab, k=args.input_len))
        body = {
            "model": settings.model_name,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": args.output_len,
            "temperature": 0.8,
            "top_p": 0.95,
            "ignore_eos": True,
        }
        line = {"custom_id": f"r-{i}", "method": "POST", "url": ENDPOINT, "body": body}
        lines.append(orjson.dumps(line))
    return b"\n".join(lines) + b"\n"


def output_tokens(content: bytes) -> tuple[int, int, int]:
    """Lines, lines with an answer, and their completion tokens, in an output file."""
    lines = answered = tokens = 0
    for raw in content.splitlines():
        if not raw.strip():
            continue
        lines += 1
        response = orjson.loads(raw).get("response") or {}
        if response.get("status_code") == 200:
            answered += 1
            tokens += response["body"]["usage"]["completion_tokens"]
    return lines, answered, tokens


def queue_run(client: OpenAI, content: bytes, name: str) -> dict[str, Any]:
    """One batch through the queue's Files and Batches APIs, timed from the upload."""
    started = time.perf_counter()
    uploaded = client.files.create(file=(name, content), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h"
    )
    first_result_s = None
    readable: list[tuple[float, int]] = []  # (seconds since upload, output lines readable)
    while batch.status not in ("completed", "failed", "cancelled", "expired"):
        time.sleep(POLL_S)
        batch = client.batches.retrieve(batch.id)
        if batch.status in ("completed", "failed", "cancelled", "expired"):
            break
        since = time.perf_counter() - started
        if readable and since - readable[-1][0] < READ_EVERY_S:
            continue
        # What a user reads while it runs: the output file holds the finished lines.
        assert batch.output_file_id is not None  # the queue names it from the start
        lines = len(client.files.content(batch.output_file_id).content.splitlines())
        readable.append((round(since, 1), lines))
        if lines and first_result_s is None:
            first_result_s = since
    wall_s = time.perf_counter() - started
    assert batch.output_file_id is not None
    lines, answered, tokens = output_tokens(client.files.content(batch.output_file_id).content)
    return {
        "status": batch.status,
        "wall_s": round(wall_s, 2),
        "output_tokens": tokens,
        "output_tokens_per_s": round(tokens / wall_s, 1),
        "answered": answered,
        "output_lines": lines,
        "first_result_s": None if first_result_s is None else round(first_result_s, 2),
        "readable_while_running": readable[:: max(1, len(readable) // 10)],
    }


def run_batch(
    settings: Settings, input_path: Path, warm_up_path: Path, log_path: Path
) -> dict[str, Any]:
    """One `vllm run-batch` of the file after the warm-up's, on the engine arguments a worker
    uses."""
    output = input_path.with_suffix(".out.jsonl")
    # The server's engine flags, less what only the server takes.
    flags = serve_command(settings, 0)[3:]
    flags = flags[flags.index("--port") + 2 :]
    command = [sys.executable, "-c", DRIVER, "-i", str(input_path), "-o", str(output), *flags]
    env = os.environ | {
        "WARM_UP_IN": str(warm_up_path),
        "WARM_UP_OUT": str(warm_up_path.with_suffix(".out.jsonl")),
    }
    with log_path.open("wb") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=3600)
    text = log_path.read_text(errors="replace")
    if done.returncode != 0 or "TIMING " not in text:
        raise SystemExit(f"vllm run-batch failed:\n{text[-3000:]}")
    marks = json.loads(text.rsplit("TIMING ", 1)[1].splitlines()[0])
    lines, answered, tokens = output_tokens(output.read_bytes())
    run_s = marks["ran"] - marks["running"]
    return {
        "run_s": round(run_s, 2),
        "engine_load_s": round(marks["loaded"] - marks["started"], 2),
        "output_tokens": tokens,
        "output_tokens_per_s": round(tokens / run_s, 1),
        "answered": answered,
        "output_lines": lines,
    }


def table(results: dict[str, Any]) -> str:
    queue, peer = results["queue"], results["vllm_run_batch"]
    return (
        "| side | requests answered | output tokens | seconds | output tok/s |\n"
        "| --- | --- | --- | --- | --- |\n"
        f"| queue, upload to last result | {queue['answered']:,} | {queue['output_tokens']:,} "
        f"| {queue['wall_s']:,.1f} | {queue['output_tokens_per_s']:,.0f} |\n"
        f"| `vllm run-batch`, engine loaded | {peer['answered']:,} | {peer['output_tokens']:,} "
        f"| {peer['run_s']:,.1f} | {peer['output_tokens_per_s']:,.0f} |\n"
        f"| `vllm run-batch`, its engine's load added | | | "
        f"{peer['run_s'] + peer['engine_load_s']:,.1f} | "
        f"{peer['output_tokens'] / (peer['run_s'] + peer['engine_load_s']):,.0f} |\n\n"
        f"Queue over `vllm run-batch` (engine loaded): **{results['ratio']:.3f}**. Results "
        f"readable while it ran (seconds after the upload, output lines): "
        f"{queue['readable_while_running']}.\n"
    )


def main() -> None:
    args = parse_args()
    settings = get_settings()
    head = report_head(args)
    scratch = Path(tempfile.mkdtemp(prefix="batch-compare-"))
    content = batch_file(settings, args, args.requests, seed=7)
    input_path = scratch / "input.jsonl"
    input_path.write_bytes(content)
    warm_up = batch_file(settings, args, args.warm_up, seed=8)
    warm_up_path = scratch / "warm-up.jsonl"
    warm_up_path.write_bytes(warm_up)
    base = args.out / f"batch-compare-{args.label}"
    results = results_to_extend(base.with_suffix(".json"), args.side, head)
    if runs(args.side, "queue"):
        key = clean_slate(settings) or os.environ.get("VQUEUE_API_KEY", "none")
        stack.up(settings)
        try:
            wait_for_workers(settings, 1)
            client = OpenAI(base_url=stack.base_url(settings) + "/v1", api_key=key, timeout=600)
            queue_run(client, warm_up, "warm-up.jsonl")
            results["queue"] = queue_run(client, content, "input.jsonl")
            print(f"queue: {results['queue']}", flush=True)
        finally:
            stack.down(settings)
        # Written after each side: a run cut short (a host's time limit) keeps what it measured.
        base.with_suffix(".json").write_text(json.dumps(results, indent=2))
    if runs(args.side, "peer"):
        log = args.out / f"batch-compare-{args.label}-run-batch.log"
        results["vllm_run_batch"] = run_batch(settings, input_path, warm_up_path, log)
        print(f"vllm run-batch: {results['vllm_run_batch']}", flush=True)
        base.with_suffix(".json").write_text(json.dumps(results, indent=2))
    if "queue" in results and "vllm_run_batch" in results:
        queue_pace = results["queue"]["output_tokens_per_s"]
        results["ratio"] = round(queue_pace / results["vllm_run_batch"]["output_tokens_per_s"], 4)
        base.with_suffix(".json").write_text(json.dumps(results, indent=2))
        base.with_suffix(".md").write_text(table(results))
        print(table(results), flush=True)


if __name__ == "__main__":
    main()

"""The benchmark's outputs: a JSON result, a Markdown table and a throughput plot."""

import json
import os
import platform
from pathlib import Path
from typing import Any

from benchmarks import gc_pauses, late_tokens

TARGETS = {
    "throughput_ratio": (">=", 0.95),
    "ttft_overhead_p50_ms": ("<=", None),  # 50 ms on CPU, 15 ms on a GPU: set by the caller
    "single_job_ratio": (">=", 0.97),
    "submit_rate_jobs_s": (">=", 1000.0),
    "sse_lag_p99_ms": ("<=", 20.0),
}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "gpu": None}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = f"{torch.cuda.device_count()}x {torch.cuda.get_device_name()}"
    except ImportError:
        pass
    info["description"] = info["gpu"] or f"{info['cores']}-core CPU ({cpu})"
    return info


def verdicts(result: dict[str, Any], ttft_target_ms: float) -> dict[str, dict[str, Any]]:
    out = {}
    for key, (op, target) in TARGETS.items():
        goal = ttft_target_ms if target is None else target
        value = result.get(key)
        met = None if value is None else (value >= goal if op == ">=" else value <= goal)
        out[key] = {"value": value, "target": f"{op} {goal:g}", "met": met}
    return out


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.write_text(json.dumps(result, indent=2) + "\n")


def write_markdown(path: Path, result: dict[str, Any], command: str) -> None:
    queue, bare = result["queue"], result["bare"]
    lines = [
        f"# Benchmark: {result['label']}",
        "",
        f"{result['date']} · {result['machine']['description']} · model {result['model']} · "
        f"vLLM {result['versions']['vllm']} · torch {result['versions']['torch']}",
        "",
        f"Command: `{command}`",
        "",
        f"Workload: {result['workload']['jobs']} jobs x ~{result['workload']['prompt_tokens']} "
        f"prompt / {result['workload']['output_tokens']} output tokens, temperature "
        f"{result['workload']['temperature']}, top-p {result['workload']['top_p']}, ignore_eos; "
        f"engine {json.dumps(result['engine'])}. Both sides warmed up with the full batch first"
        f" ({_runs(result.get('warmups', 1))}).",
        "",
        "| measure | queue (HTTP + SSE) | bare AsyncLLM | ratio / overhead | target | met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    v = result["verdicts"]

    def row(name: str, q: Any, b: Any, derived: Any, key: str | None) -> None:
        target = v[key]["target"] if key else ""
        met = {True: "yes", False: "**no**", None: ""}[v[key]["met"]] if key else ""
        lines.append(f"| {name} | {q} | {b} | {derived} | {target} | {met} |")

    row(
        "output tokens/s, all jobs at once",
        queue["streamed"]["tok_s"],
        bare["streamed"]["tok_s"],
        result["throughput_ratio"],
        "throughput_ratio",
    )
    row(
        "TTFT p50 (ms)",
        queue["streamed"]["ttft_p50_ms"],
        bare["streamed"]["ttft_p50_ms"],
        result["ttft_overhead_p50_ms"],
        "ttft_overhead_p50_ms",
    )
    row(
        "TTFT p99 (ms)",
        queue["streamed"]["ttft_p99_ms"],
        bare["streamed"]["ttft_p99_ms"],
        result["ttft_overhead_p99_ms"],
        None,
    )
    row(
        "single job tokens/s",
        queue["single_tok_s"],
        bare["single_tok_s"],
        result["single_job_ratio"],
        "single_job_ratio",
    )
    row("polling variant tokens/s", queue["polled"]["tok_s"], "", "", None)
    row("submit rate (jobs/s)", result["submit_rate_jobs_s"], "", "", "submit_rate_jobs_s")
    row(
        "SSE delivery lag p50 / p99 (ms)",
        f"{result['sse_lag_p50_ms']} / {result['sse_lag_p99_ms']}",
        "",
        "",
        "sse_lag_p99_ms",
    )
    if pairs := queue.get("pairs"):
        listed = "; ".join(f"{p['queue_tok_s']} / {p['bare_tok_s']} = {p['ratio']}" for p in pairs)
        lines += [
            "",
            f"The measured runs took turns, queue then bare, with both engines up: {len(pairs)} "
            f"pairs (queue / bare tok/s = ratio): {listed}. The table shows the pair with the "
            "median ratio; the single-job runs took turns too.",
        ]
    if (prepared := bare.get("prepared")) and (against := result.get("against_prepared_bare")):
        lines += [
            "",
            "The bare engine given its inputs ready (token ids, and parameters of each job's own "
            "that it need not copy, all made before its clock started; a run of its own): "
            f"{prepared['tok_s']} tok/s, TTFT p50 {prepared['ttft_p50_ms']} ms. Against it the "
            f"queue's throughput ratio is {against['throughput_ratio']} and its TTFT overhead "
            f"p50 {against['ttft_overhead_p50_ms']} ms.",
        ]
    streamed = queue["streamed"]
    if streamed.get("replayed_tokens"):
        lines += [
            "",
            f"The delivery lag counts the tokens made while their client's stream was open; "
            f"{streamed['replayed_tokens']} tokens made before it opened (the client was still "
            f"connecting) came from the token log on connect, p99 "
            f"{streamed['replay_lag_p99_ms']} ms after they were made.",
        ]
    if late := streamed.get("late"):
        lines += ["", late_tokens.describe(late)]
    if at_redis := queue.get("at_redis"):
        lines += [
            "",
            "The same tokens as they reached Redis (a subscriber to the workers' step messages, "
            f"in a process of its own): lag p50 / p99 {at_redis['lag_p50_ms']} / "
            f"{at_redis['lag_p99_ms']} ms after they were made. "
            + late_tokens.describe(at_redis["late"]),
        ]
        if steps := at_redis.get("first_tokens_by_step"):
            listed = ", ".join(f"{count} at {offset} ms" for offset, count in steps)
            lines += [
                "",
                f"The jobs' first tokens came from {len(steps)} engine steps (jobs, and when "
                f"the worker had the step's output, after the first submit): {listed}.",
            ]
    fan = result["fan_out"]
    lines += [
        "",
        f"{fan['clients']} concurrent SSE clients on {_processes(result)} ({fan['jobs']} jobs): "
        f"{fan['clients_with_every_token']} got every token "
        f"({'all' if fan['all_complete'] else 'NOT all'}), in {fan['seconds']} s.",
        "",
        "Throughput by concurrency (jobs started together):",
        "",
        "| jobs | queue tok/s | bare tok/s | ratio |",
        "| --- | --- | --- | --- |",
    ]
    for level in sorted(queue["levels"], key=int):
        q, b = queue["levels"][level], bare["levels"][level]
        lines.append(f"| {level} | {q} | {b} | {q / b:.3f} |")
    if stages := queue.get("timeline"):
        lines += [
            "",
            "Where the queue's time to first token goes, all jobs at once (ms after the first "
            "submit, from the jobs' timestamps; the clients see the first token "
            f"{queue['streamed']['ttft_p50_ms']} ms after their own submit, p50):",
            "",
            "| stage | first job | median job | last job |",
            "| --- | --- | --- | --- |",
        ]
        for name, at in _stage_rows(stages, queue["streamed"].get("ends", {})):
            lines.append(f"| {name} | {at['first']} | {at['p50']} | {at['last']} |")
        if ended := bare["streamed"].get("ends", {}).get("last token made"):
            lines += [
                "",
                "The bare engine's measured run made its jobs' last tokens at "
                f"{ended['first']} / {ended['p50']} / {ended['last']} ms after its start "
                "(first / median / last job).",
            ]
        if fed := bare.get("at_claim_times"):
            at = fed["first_token"]
            lines += [
                "",
                "The bare engine, fed the same prompts at the instants the worker claimed them "
                f"(a run of its own, {fed['tok_s']} tok/s), gave its first tokens at "
                f"{at['first']} / {at['p50']} / {at['last']} ms (first / median / last job)"
                + _last_tokens(fed.get("last_token"))
                + ": what the engine alone makes of arrivals spread out like the queue's.",
            ]
        if workers := stages.get("workers"):
            lines += [
                "",
                "How the burst was shared out (ms after the first submit):",
                "",
                "| worker | jobs | claimed: first / median / last | first token: same |",
                "| --- | --- | --- | --- |",
            ]
            for name, own in workers.items():
                claimed, first = own["claimed"], own["first_token"]
                lines.append(
                    f"| {name} | {own['jobs']} | {claimed['first']} / {claimed['p50']} / "
                    f"{claimed['last']} | {first['first']} / {first['p50']} / {first['last']} |"
                )
    if (q_tenths := queue["streamed"].get("ttft_deciles_ms")) and (
        b_tenths := bare["streamed"].get("ttft_deciles_ms")
    ):
        lines += [
            "",
            "Time to first token, p10 to p90 (ms after each job's own submit; a burst's "
            "prefill takes a few engine steps, each a step in these rows):",
            "",
            "| side | " + " | ".join(f"p{p}" for p in range(10, 100, 10)) + " |",
            "| --- |" + " --- |" * len(q_tenths),
            "| queue | " + " | ".join(str(v) for v in q_tenths) + " |",
            "| bare | " + " | ".join(str(v) for v in b_tenths) + " |",
        ]
    if cpu := queue.get("cpu"):
        parts = ", ".join(f"{group} {cores}" for group, cores in cpu["busy_cores"].items())
        lines += [
            "",
            f"CPU over the measured run ({cpu['seconds']} s): {cpu['host_busy_cores']} of the "
            f"host's {cpu['cores']} cores busy; by part, in cores: {parts}.",
        ]
    if found := queue.get("stack_gc"):
        lines += ["", gc_pauses.describe(found)]
    if result.get("notes"):
        lines += ["", *result["notes"]]
    path.write_text("\n".join(lines) + "\n")


def _last_tokens(at: dict[str, Any] | None) -> str:
    if not at or at.get("last") is None:
        return ""
    return f" and its last tokens at {at['first']} / {at['p50']} / {at['last']} ms"


def _stage_rows(stages: dict[str, Any], ends: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The timeline's rows in the order a job passes them: to its first token, then from its
    last token to its done event, in the worker, Postgres and the clients."""
    rows = [(s.replace("_", " "), at) for s, at in stages.items() if s not in _END_STAGES]
    for name, source, key in _END_ROWS:
        if key in (at := stages if source == "stages" else ends):
            rows.append((name, at[key]))
    return rows


# The rows after the first token, in the order a job passes them: (row, source, key).
_END_ROWS = [
    ("last token made", "ends", "last token made"),
    ("last token received", "ends", "last token received"),
    ("run ended in the worker (its round's last)", "stages", "run_ended"),
    ("storing began (finished_at)", "stages", "finished"),
    ("result written", "stages", "result_written"),
    ("end published", "stages", "end_published"),
    ("done received", "ends", "done received"),
]
_END_STAGES = {"workers", *(key for _, source, key in _END_ROWS if source == "stages")}


def _processes(result: dict[str, Any]) -> str:
    workers = result.get("api_workers", 1)
    return "one API process" if workers == 1 else f"{workers} API processes"


def write_plot(path: Path, result: dict[str, Any]) -> bool:
    """False when matplotlib is missing (a bare GPU host): `python -m benchmarks.report
    RESULT.json` renders the plot and the table again from the JSON elsewhere."""
    try:
        import matplotlib
    except ImportError:
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted(result["queue"]["levels"], key=int)
    x = [int(level) for level in levels]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    ax.plot(x, [result["bare"]["levels"][lv] for lv in levels], "o-", label="bare AsyncLLM")
    ax.plot(x, [result["queue"]["levels"][lv] for lv in levels], "s--", label="vqueue (HTTP + SSE)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(x, [str(v) for v in x])
    ax.set_xlabel("jobs running at once")
    ax.set_ylabel("output tokens/s")
    ax.set_title(f"{result['label']}: {result['model']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _runs(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def main() -> None:
    import sys

    for name in sys.argv[1:]:
        path = Path(name)
        result = json.loads(path.read_text())
        write_markdown(path.with_suffix(".md"), result, result.get("command", ""))
        write_plot(path.with_suffix(".png"), result)


if __name__ == "__main__":
    main()

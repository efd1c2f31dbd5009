"""GET /stats and GET /metrics move with the jobs: numbers, not only names."""

import re
import time

from prometheus_client.parser import text_string_to_metric_families

from vqueue.client.api_client import VQueueClient
from vqueue.settings import Settings


def metric(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    pattern = rf"^{re.escape(name)}{re.escape(labels)} (\S+)$" if labels else rf"^{name} (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def metric_values(text: str, name: str) -> list[float]:
    """Every sample of a labelled metric (one per worker, say)."""
    return [float(v) for v in re.findall(rf"^{re.escape(name)}{{[^}}]*}} (\S+)$", text, re.M)]


def test_metrics_count_finished_jobs_tokens_and_latencies(client: VQueueClient) -> None:
    before = client.http.get("/metrics").text
    jobs = [client.submit(prompt=f"Count to {i}:", max_tokens=6, ignore_eos=True) for i in range(3)]
    finals = [client.wait(job["id"], timeout=120) for job in jobs]
    assert all(job["status"] == "succeeded" for job in finals)
    # The worker records a run's figures right after its result: give it a moment.
    deadline = time.monotonic() + 10
    while True:
        after = client.http.get("/metrics")
        done = metric(after.text, "vqueue_jobs_finished_total", '{status="succeeded"}')
        if done >= metric(before, "vqueue_jobs_finished_total", '{status="succeeded"}') + 3:
            break
        assert time.monotonic() < deadline, "finished jobs were not counted"
        time.sleep(0.2)
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    assert (
        metric(text, "vqueue_output_tokens_total")
        >= metric(before, "vqueue_output_tokens_total") + 18
    )
    for histogram in (
        "vqueue_job_queue_seconds",
        "vqueue_job_time_to_first_token_seconds",
        "vqueue_job_duration_seconds",
    ):
        assert metric(text, f"{histogram}_count") >= metric(before, f"{histogram}_count") + 3
        assert metric(text, f"{histogram}_bucket", '{le="+Inf"}') == metric(
            text, f"{histogram}_count"
        )
        assert metric(text, f"{histogram}_sum") > 0
    assert metric(text, "vqueue_workers") >= 1
    assert "# TYPE vqueue_queue_depth gauge" in text


def test_metrics_carry_vllms_names_for_its_dashboards(
    client: VQueueClient, settings: Settings
) -> None:
    job = client.wait(client.submit(prompt="Count:", max_tokens=5, ignore_eos=True)["id"])
    assert job["status"] == "succeeded"
    deadline = time.monotonic() + 10
    while True:
        families = {
            family.name: family
            for family in text_string_to_metric_families(client.http.get("/metrics").text)
        }
        generated = families["vllm:generation_tokens"].samples[0]
        if generated.value >= job["usage"]["completion_tokens"]:
            break
        assert time.monotonic() < deadline, "the run's tokens were not counted"
        time.sleep(0.2)
    assert generated.labels == {"model_name": settings.model_name}
    prompt = families["vllm:prompt_tokens"].samples[0].value
    assert prompt >= job["usage"]["prompt_tokens"] > 0
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting"):
        (sample,) = families[name].samples
        assert sample.labels == {"model_name": settings.model_name}
        assert sample.value >= 0
    # The engine's KV-cache use, one sample per worker (VQUEUE_ENGINE_STATS is on here).
    assert all(0 <= s.value <= 1 for s in families["vllm:kv_cache_usage_perc"].samples)
    assert families["vllm:kv_cache_usage_perc"].samples
    # And its prefix cache: prompt tokens looked up, of them found, since it started.
    queries = families["vllm:prefix_cache_queries"].samples
    hits = families["vllm:prefix_cache_hits"].samples
    assert queries
    assert [s.labels for s in queries] == [s.labels for s in hits]
    assert all(q.value >= h.value >= 0 for q, h in zip(queries, hits, strict=True))
    assert sum(q.value for q in queries) >= job["usage"]["prompt_tokens"]
    ttft = families["vllm:time_to_first_token_seconds"]
    assert ttft.type == "histogram"
    count = next(s for s in ttft.samples if s.name.endswith("_count"))
    assert count.labels == {"model_name": settings.model_name}
    assert count.value >= 1


def test_stats_show_backlog_running_workers_and_rate(client: VQueueClient) -> None:
    cancelled_before = client.http.get("/stats").json()["finished"].get("cancelled", 0)
    long_jobs = [
        client.submit(prompt=f"Story {i}:", max_tokens=1500, ignore_eos=True) for i in range(40)
    ]
    # 40 jobs on a worker with 32 slots: some run, some wait. Postgres knows at once; the
    # worker's figures come with its next heartbeat (every second here). The jobs are long
    # enough to be cancelled while running even after a stall of the machine.
    deadline = time.monotonic() + 300
    while True:
        stats = client.http.get("/stats").json()
        busy = [
            w
            for w in stats["workers"]
            if w["running"] > 0 and w.get("engine") and w["engine"]["running"] > 0
        ]
        if stats["running"] > 0 and stats["backlog"] > 0 and stats["tokens_per_s"] > 0 and busy:
            break
        assert time.monotonic() < deadline, stats
        time.sleep(0.5)
    assert stats["runners"] == len(stats["workers"]) >= 1
    worker = busy[0]
    assert worker["max_num_seqs"] == 32
    assert 0 <= worker["waiting"] <= worker["running"] <= 32
    # The engine's own view (VQUEUE_ENGINE_STATS is on in the tests): its running requests
    # hold KV-cache blocks.
    assert worker["engine"]["waiting"] >= 0
    assert 0 < worker["engine"]["kv_cache_usage"] <= 1
    text = client.http.get("/metrics").text
    assert max(metric_values(text, "vqueue_engine_kv_cache_usage_ratio")) > 0
    assert max(metric_values(text, "vqueue_worker_running_jobs")) > 0
    # The engine's heap is frozen before the first job (vqueue/gc_heap.py), and the young
    # generations are still collected as jobs run, in the worker and in the API alike.
    assert worker["gc"]["frozen_objects"] > 100_000
    assert sum(metric_values(text, "vqueue_worker_gc_collections_total")) > 0
    assert sum(metric_values(text, "vqueue_api_gc_collections_total")) > 0
    assert len(metric_values(text, "vqueue_worker_gc_pause_seconds_total")) == 3 * len(
        stats["workers"]
    )
    assert stats["oldest_queued_s"] > 0
    assert sum(stats["backlog_by_priority"].values()) == stats["backlog"]
    for job in long_jobs:
        client.http.post(f"/jobs/{job['id']}/cancel")
    deadline = time.monotonic() + 300
    while client.http.get("/stats").json()["running"] > 0:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    stats = client.http.get("/stats").json()
    assert stats["backlog"] == 0
    # Cancelled while running (counted by the worker) and while queued (by the API) alike.
    cancelled = sum(client.get(job["id"])["status"] == "cancelled" for job in long_jobs)
    assert cancelled > 32
    deadline = time.monotonic() + 120
    while stats["finished"].get("cancelled", 0) < cancelled_before + cancelled:
        assert time.monotonic() < deadline, stats["finished"]
        time.sleep(0.2)
        stats = client.http.get("/stats").json()
    assert stats["finished"]["cancelled"] == cancelled_before + cancelled

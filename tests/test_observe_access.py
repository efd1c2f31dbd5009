"""Who sees the queue's figures: /stats shows a key that is not an admin only its own jobs,
and /metrics answers an admin key or the scraper's token (real stack)."""

import os

import httpx

from tests.helpers import http
from tests.test_auth import bearer, new_key


def test_stats_show_a_key_its_own_jobs_only(base_url: str) -> None:
    alice, bob = bearer(new_key("stats-alice")), bearer(new_key("stats-bob"))
    job = httpx.post(f"{base_url}/jobs", json={"prompt": "Hi.", "max_tokens": 2}, headers=alice)
    assert job.status_code == 202
    whole = http.get(f"{base_url}/stats").json()
    own = httpx.get(f"{base_url}/stats", headers=bob).json()
    assert (own["backlog"], own["running"], own["finished"], own["output_tokens"]) == (
        0,
        0,
        {},
        0,
    )
    # Of the workers, only what they serve; the admin sees hosts, pids and load too.
    assert all(set(worker) == {"model", "max_model_len"} for worker in own["workers"])
    assert all("name" in worker for worker in whole["workers"])
    alices = httpx.get(f"{base_url}/stats", headers=alice).json()
    assert alices["backlog"] + alices["running"] + sum(alices["finished"].values()) == 1


def test_metrics_answer_an_admin_or_the_scrape_token_only(base_url: str) -> None:
    token = {"Authorization": f"Bearer {os.environ['VQUEUE_METRICS_TOKEN']}"}
    scraped = httpx.get(f"{base_url}/metrics", headers=token)
    assert scraped.status_code == 200
    assert "vqueue_queue_depth" in scraped.text
    assert http.get(f"{base_url}/metrics").status_code == 200  # an admin key
    user = httpx.get(f"{base_url}/metrics", headers=bearer(new_key("metrics-user")))
    assert user.status_code == 403
    assert user.json()["error"]["code"] == "forbidden"
    wrong = httpx.get(f"{base_url}/metrics", headers={"Authorization": "Bearer scrape-wrong"})
    assert wrong.status_code == 401
    assert httpx.get(f"{base_url}/metrics").status_code == 401

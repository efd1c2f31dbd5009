"""The web page in a real headless Chromium (Debian's, driven by Playwright) against the stack."""

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.helpers import ADMIN_KEY
from vqueue.client.api_client import VQueueClient

SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "web.png"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is needed (make test installs it)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def bare_page(browser: Browser, base_url: str) -> Iterator[Page]:
    """The page as a first visit finds it: no API key stored."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    opened = context.new_page()
    opened.goto(base_url + "/")
    yield opened
    context.close()


@pytest.fixture
def page(bare_page: Page) -> Page:
    """The page with the test suite's key stored, as after a user entered it."""
    bare_page.evaluate("key => localStorage.setItem('vqueue.apiKey', key)", ADMIN_KEY)
    bare_page.reload()
    return bare_page


def ask(page: Page, prompt: str, max_tokens: int) -> None:
    page.fill("#prompt", prompt)
    page.fill("#max-tokens", str(max_tokens))
    page.click("#submit")


def test_an_answer_streams_in_before_the_job_ends(page: Page, client: VQueueClient) -> None:
    expect(page.locator("#stat-workers")).to_contain_text("SmolLM2")
    ask(page, "Write a long story about a dragon who learns to bake bread.", 300)
    # Text is on the page while the job still runs: it arrived token by token.
    page.wait_for_function(
        "document.getElementById('answer').textContent.length > 0", polling=50, timeout=120_000
    )
    assert page.text_content("#job-status") == "running"
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=180_000)
    expect(page.locator("#answer-figures")).to_contain_text("tok/s")
    expect(page.locator("#answer-figures")).to_contain_text("time to first token")
    answer = page.text_content("#answer")
    newest = client.http.get("/jobs", params={"limit": 1}).json()["data"][0]
    assert newest["text"] == answer
    expect(page.locator("#jobs li").first).to_contain_text("succeeded")
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_cancel_stops_a_running_job(page: Page, client: VQueueClient) -> None:
    # Greedy, this prompt counts on for thousands of tokens: the job is still running when
    # the cancel lands (a sampled answer may end on its own first).
    page.fill("#temperature", "0")
    ask(page, "1, 2, 3, 4, 5, 6, 7,", 1900)  # with the prompt, within the 2,048 context
    page.wait_for_function(
        "document.getElementById('answer').textContent.length > 0", polling=50, timeout=120_000
    )
    page.click("#cancel")
    expect(page.locator("#job-status")).to_contain_text("cancelled", timeout=60_000)
    newest = client.http.get("/jobs", params={"limit": 1}).json()["data"][0]
    assert newest["status"] == "cancelled"
    assert newest["text"]


def test_a_batch_upload_reaches_100_percent_with_results(page: Page, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    lines = [
        {"prompt": f"Colour number {i} is", "custom_id": f"c{i}", "max_tokens": 4} for i in range(5)
    ]
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    page.set_input_files("#batch-file", str(prompts))
    expect(page.locator("#batch-results")).to_be_visible(timeout=120_000)
    assert page.eval_on_selector("#batch-progress", "bar => bar.value") == 100
    expect(page.locator("#batch-status")).to_contain_text("completed: 5 / 5 done")
    with page.expect_download() as download:
        page.click("#batch-results")
    results = Path(download.value.path()).read_text().splitlines()
    assert [json.loads(line)["custom_id"] for line in results] == [f"c{i}" for i in range(5)]


def test_without_a_key_the_page_asks_for_one_then_keeps_and_sends_it(bare_page: Page) -> None:
    page = bare_page
    expect(page.locator("#stat-workers")).to_contain_text("API key is needed")
    expect(page.locator("#key-box")).to_have_attribute("open", "")
    page.fill("#api-key", ADMIN_KEY)
    with page.expect_request(lambda request: request.url.endswith("/stats")) as sent:
        page.dispatch_event("#api-key", "change")
    assert sent.value.headers.get("authorization") == f"Bearer {ADMIN_KEY}"
    # With the key the queue figures load: one worker, the default model.
    expect(page.locator("#stat-workers")).to_contain_text("SmolLM2")
    page.reload()
    assert page.input_value("#api-key") == ADMIN_KEY


def test_the_page_and_its_assets_are_served_by_the_api(client: VQueueClient) -> None:
    page = client.http.get("/")
    assert page.status_code == 200
    assert "<title>vqueue</title>" in page.text
    for asset in ("/static/app.js", "/static/app.css"):
        assert client.http.get(asset).status_code == 200
    # Nothing is fetched from the internet: every asset is served here.
    assert "http://" not in page.text
    assert "https://" not in page.text
    assert "url(" not in client.http.get("/static/app.css").text

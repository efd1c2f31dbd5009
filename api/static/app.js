// The vqueue page: ask and watch the answer stream, upload a batch, see the queue.
// Plain JavaScript, no build step. Streams are read with fetch (not EventSource) so that the
// API key can travel in the Authorization header.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "vqueue.apiKey";
let current = null; // { id, controller } of the job being watched

function headers(extra = {}) {
  const key = localStorage.getItem(KEY_STORAGE);
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers) });
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) {
    const message = body?.error?.message || `${response.status} ${response.statusText}`;
    throw Object.assign(new Error(message), { status: response.status });
  }
  return body;
}

// Server-Sent Events from a fetch body: yields {event, data, id}.
async function* sse(path, signal) {
  const response = await fetch(path, { headers: headers(), signal });
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = { event: "message", data: "", id: null };
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const [field, ...rest] = line.split(":");
        const text = rest.join(":").replace(/^ /, "");
        if (field === "event") event.event = text;
        else if (field === "data") event.data += text;
        else if (field === "id") event.id = text;
      }
      if (event.data) yield { ...event, data: JSON.parse(event.data) };
    }
  }
}

// Follow one job's stream into the answer box; replays from the start, then live.
async function watch(jobId) {
  current?.controller.abort();
  const controller = new AbortController();
  const watching = { id: jobId, controller, ended: false };
  current = watching;
  const answer = $("answer");
  answer.textContent = "";
  $("answer-figures").textContent = "";
  $("cancel").disabled = false;
  setStatus("queued");
  const started = performance.now();
  let firstAt = null;
  try {
    for await (const event of sse(`/jobs/${jobId}/stream`, controller.signal)) {
      if (event.event === "delta") {
        if (firstAt === null) { firstAt = performance.now(); setStatus("running"); }
        answer.textContent += event.data.text;
      } else if (event.event === "queued" && firstAt === null) {
        setStatus(waitText(event.data));
      } else if (event.event === "restart") {
        answer.textContent = "";
      } else if (event.event === "done") {
        watching.ended = true;
        finish(event.data, started, firstAt);
      }
    }
  } catch (error) {
    if (error.name !== "AbortError") setStatus(`stream lost: ${error.message}`);
  } finally {
    if (current?.id === jobId) $("cancel").disabled = true;
  }
}

// "queued: 12 ahead, starts in about 40 s (ends about 14:02:10)", as far as the pace is known.
function waitText(wait) {
  const parts = [`queued: ${wait.position} ahead`];
  if (wait.estimated_start_at) {
    const seconds = Math.max(0, (new Date(wait.estimated_start_at) - Date.now()) / 1000);
    parts.push(`starts in about ${Math.round(seconds)} s`);
    parts.push(`(ends about ${new Date(wait.estimated_finish_at).toLocaleTimeString()})`);
  }
  return parts.join(", ").replace(", (", " (");
}

function finish(job, started, firstAt) {
  setStatus(job.status + (job.error ? `: ${job.error}` : ""));
  const tokens = job.usage?.completion_tokens;
  const parts = [];
  if (job.first_token_at && job.started_at && job.finished_at) {
    const first = new Date(job.first_token_at), end = new Date(job.finished_at);
    const ttft = (first - new Date(job.created_at)) / 1000;
    parts.push(`time to first token ${ttft.toFixed(2)} s`);
    if (tokens && end > first) parts.push(`${(tokens / ((end - first) / 1000)).toFixed(1)} tok/s`);
  } else if (firstAt !== null) {
    parts.push(`first token after ${((firstAt - started) / 1000).toFixed(2)} s`);
  }
  if (tokens !== undefined && tokens !== null) parts.push(`${tokens} tokens`);
  $("answer-figures").textContent = parts.join(" · ");
  refreshJobs();
}

function setStatus(text) { $("job-status").textContent = text; }

function requestBody() {
  const prompt = $("prompt").value;
  const system = $("system").value.trim();
  const body = {
    max_tokens: Number($("max-tokens").value),
    temperature: Number($("temperature").value),
    top_p: Number($("top-p").value),
    priority: Number($("priority").value),
  };
  if ($("chat-mode").checked) {
    body.messages = [
      ...(system ? [{ role: "system", content: system }] : []),
      { role: "user", content: prompt },
    ];
  } else {
    body.prompt = prompt;
  }
  return body;
}

async function submit(event) {
  event.preventDefault();
  $("submit").disabled = true;
  try {
    const job = await api("/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(requestBody()),
    });
    refreshJobs();
    watch(job.id);
  } catch (error) {
    setStatus(error.message);
  } finally {
    $("submit").disabled = false;
  }
}

async function cancel() {
  if (!current) return;
  const watched = current;
  try {
    const job = await api(`/jobs/${watched.id}/cancel`, { method: "POST" });
    // The stream's done event can come before this answer: the end it showed stays.
    if (!watched.ended) setStatus(job.status === "cancelled" ? "cancelled" : "cancelling…");
  } catch (error) {
    setStatus(error.message);
  }
}

async function refreshJobs() {
  try {
    const page = await api("/jobs?limit=15");
    const list = $("jobs");
    list.replaceChildren(...page.data.map((job) => {
      const item = document.createElement("li");
      item.dataset.id = job.id;
      const status = document.createElement("span");
      status.className = `status ${job.status}`;
      status.textContent = job.status;
      const what = document.createElement("span");
      what.className = "what";
      what.textContent = job.prompt ?? job.messages?.at(-1)?.content ?? "";
      what.title = job.id;
      item.append(status, what);
      item.addEventListener("click", () => watch(job.id));
      return item;
    }));
  } catch { /* the header shows whether the API answers */ }
}

async function refreshStats() {
  try {
    const stats = await api("/stats");
    $("stat-backlog").textContent = stats.backlog;
    $("stat-running").textContent = stats.running;
    $("stat-rate").textContent = stats.tokens_per_s;
    const models = [...new Set(stats.workers.map((w) => w.model))].join(", ");
    $("stat-workers").textContent = stats.runners ? `${stats.runners} · ${models}` : "none";
  } catch (error) {
    if (error.status === 401) {
      // No key, or a revoked one: say so where the key goes.
      $("key-box").open = true;
      $("stat-workers").textContent = "an API key is needed (top right)";
    } else {
      $("stat-workers").textContent = `unavailable (${error.message})`;
    }
  }
}

async function uploadBatch(file) {
  const form = new FormData();
  form.append("file", file);
  const progress = $("batch-progress");
  $("batch-results").hidden = true;
  progress.hidden = false;
  progress.value = 0;
  $("batch-status").textContent = `uploading ${file.name}…`;
  let batch;
  try {
    batch = await api("/batches", { method: "POST", body: form });
  } catch (error) {
    $("batch-status").textContent = error.message;
    progress.hidden = true;
    return;
  }
  for (;;) {
    const c = batch.counts;
    const done = c.succeeded + c.failed + c.cancelled + (c.expired || 0);
    progress.value = c.total ? Math.round((100 * done) / c.total) : 100;
    const left = batch.estimated_seconds_left;
    $("batch-status").textContent = `${batch.status}: ${done} / ${c.total} done, ${c.running} running` +
      (c.failed ? `, ${c.failed} failed` : "") + (left ? ` · about ${Math.round(left)} s left` : "");
    if (["completed", "failed", "cancelled"].includes(batch.status)) break;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    batch = await api(`/batches/${batch.id}`);
  }
  showResultsLink(batch);
}

async function showResultsLink(batch) {
  // Fetched with the key, then offered as a file: a plain link could not send the header.
  const response = await fetch(`/batches/${batch.id}/results`, { headers: headers() });
  const link = $("batch-results");
  link.href = URL.createObjectURL(await response.blob());
  link.download = `batch-${batch.id}-results.jsonl`;
  link.hidden = false;
  refreshJobs();
}

function setUpDrop() {
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) uploadBatch(e.dataTransfer.files[0]);
  });
  $("batch-file").addEventListener("change", (e) => {
    if (e.target.files.length) uploadBatch(e.target.files[0]);
    e.target.value = "";
  });
}

function setUp() {
  const keyInput = $("api-key");
  keyInput.value = localStorage.getItem(KEY_STORAGE) ?? "";
  keyInput.addEventListener("change", () => {
    const key = keyInput.value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key); else localStorage.removeItem(KEY_STORAGE);
    refreshStats();
    refreshJobs();
  });
  $("chat-mode").addEventListener("change", (e) => { $("system").hidden = !e.target.checked; });
  $("ask-form").addEventListener("submit", submit);
  $("cancel").addEventListener("click", cancel);
  setUpDrop();
  refreshStats();
  refreshJobs();
  setInterval(refreshStats, 2000);
  setInterval(refreshJobs, 3000);
}

document.addEventListener("DOMContentLoaded", setUp);

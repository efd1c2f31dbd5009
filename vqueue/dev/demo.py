"""The seed's six questions, sent through the API and printed as their tokens stream in."""

from typing import TextIO

from vqueue.client.api_client import VQueueClient

SEED_QUESTIONS = [
    "Implement a Python function to compute the Fibonacci numbers.",
    "What is the fable involving a fox and grapes?",
    "What were the major contributing factors to the fall of the Roman Empire?",
    "Describe the city of the future, considering advances in technology, environmental "
    "changes, and societal shifts.",
    "What is the product of 9 and 8?",
    "Who was Emperor Norton I, and what was his significance in San Francisco's history?",
]


def run_demo(client: VQueueClient, out: TextIO, max_tokens: int = 256) -> None:
    # Submit all six first so the worker batches them, then follow each stream in turn: the
    # later ones replay what they already produced, then go on live.
    jobs = [
        client.submit(
            messages=[{"role": "user", "content": question}], max_tokens=max_tokens, temperature=0.7
        )
        for question in SEED_QUESTIONS
    ]
    for question, job in zip(SEED_QUESTIONS, jobs, strict=True):
        out.write(f"\n\033[1m>>> {question}\033[0m  (job {job['id']})\n")
        for event in client.stream(job["id"]):
            if event.event == "delta":
                out.write(event.data["text"])
                out.flush()
            elif event.event in {"error", "cancelled", "expired"}:
                out.write(f"\n[{event.event}: {event.data.get('message')}]")
            elif event.event == "done":
                usage = event.data["usage"]
                out.write(
                    f"\n\033[2m[{event.data['status']}, {usage['completion_tokens']} tokens, "
                    f"finish: {event.data['finish_reason']}]\033[0m\n"
                )
        out.flush()

"""What the API and the workers share, and nothing else: task and Redis key names, token-log
entries and live events, task messages, the worker heartbeat, the job counters, and the queue
both sides hand job ids to."""

"""vqueue: a durable job queue for LLM inference."""

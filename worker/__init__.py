"""The GPU (or CPU) worker: a Celery process holding one resident vLLM engine."""

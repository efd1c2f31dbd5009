"""`make bench`: the queue end to end beside the bare vLLM engine, on the same machine."""

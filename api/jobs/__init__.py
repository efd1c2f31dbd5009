"""Jobs: submit, poll, list, cancel, and follow a job's tokens over SSE."""

"""The HTTP gateway: submits jobs to Postgres and the queue, serves results and token streams."""

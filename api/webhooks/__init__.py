"""Webhooks: a job, response or batch names a URL; its events are signed (Standard Webhooks)
and delivered from the outbox in Postgres, with retries, by every API process."""

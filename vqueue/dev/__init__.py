"""Development tooling: the local stack behind `make up` / `make run`, the demo it streams, and
the writer of docs/configuration.md."""

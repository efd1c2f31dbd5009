"""`python -m worker.healthcheck`: exit 0 while this host's worker heartbeats (its engine is
loaded and Redis takes its beats), 1 otherwise; for a container's or a unit's health check."""

import sys
import time

from vqueue.settings import get_settings

# Beats missed before the worker counts as unhealthy, as for its heartbeat key in Redis.
MISSED_BEATS = 3


def healthy() -> bool:
    settings = get_settings()
    try:
        age = time.time() - settings.worker_health_file.stat().st_mtime
    except OSError:
        return False
    return age <= MISSED_BEATS * settings.worker_heartbeat_s


def main() -> None:
    sys.exit(0 if healthy() else 1)


if __name__ == "__main__":
    main()

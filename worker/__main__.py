"""`python -m worker`: start one worker with the settings from the environment."""

from vqueue.logs import configure_logging
from worker.app import app, settings


def main() -> None:
    configure_logging(settings.log_format)
    app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={settings.effective_worker_concurrency}",
            f"--queues={settings.queue_name}",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
        ]
    )


if __name__ == "__main__":
    main()

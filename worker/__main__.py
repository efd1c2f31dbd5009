"""`python -m worker`: start one worker with the settings from the environment."""

import logging

from worker.app import app, settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
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

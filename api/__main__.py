"""`python -m api`: serve the API with the settings from the environment."""

import uvicorn

from vqueue.settings import get_settings


def main() -> None:
    settings = get_settings()
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.api_workers,
        log_level="info",
        # Our handler (api.app configures it in each process), not uvicorn's own.
        log_config=None,
        timeout_graceful_shutdown=5,
        timeout_keep_alive=settings.api_keepalive_s,
    )


if __name__ == "__main__":
    main()

"""Operating the API: health and readiness, stats and metrics, the web page, heartbeats."""

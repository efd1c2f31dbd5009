"""The HTTP client of the API and the `vqueue` command line built on it."""

"""The OpenAI-compatible API: completions, chat completions, models, files and batches."""

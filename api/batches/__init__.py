"""Batches: bulk uploads of prompts, their progress, results and cancellation."""

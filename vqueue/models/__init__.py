"""The served model as both sides need to know it: where its files are (a folder, a hub id, or
the default model from PyPI), how chat turns become its prompt, and whether a prompt fits its
context."""

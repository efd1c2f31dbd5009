"""Control loops that run in every API process and worker, one at a time across them (an
advisory lock per round): the reconciler and the batch feeder."""

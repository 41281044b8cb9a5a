"""The run engine: a session resolves a run, the runner drives rows through a graph with
async concurrency (and worker processes), the store keeps exactly-once records, the cache and
checkpoints make resume cheap; logs and status describe a run folder."""

"""A pipeline: one source, one model, one task, publishing results; threads and supervision."""

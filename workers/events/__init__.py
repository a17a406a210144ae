"""The Redis event protocol: a Stream per job for the backlog, a channel per job for live."""

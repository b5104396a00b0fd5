"""One module per command; each takes plain values and returns an exit code."""

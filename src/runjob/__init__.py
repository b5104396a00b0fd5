"""runjob: a job runner for scheduled jobs."""

__version__ = "0.1.0"

"""`runjob export crontab|systemd|kubernetes`: the registry's schedules as code."""

"""One Kubernetes CronJob (batch/v1) per scheduled job instance, as YAML.

The CronJob takes over what runjob does on a host: `concurrencyPolicy: Forbid` is the
lock, `activeDeadlineSeconds` the whole run's budget, `backoffLimit: 0` because runjob
retries inside the pod. The container runs `runjob NAME k=v`, so records, retries and
notifications are the same as on a host; the image must hold runjob and the registry
(RUNJOB_CONFIG points at it).
"""

from __future__ import annotations

from runjob import cron
from runjob.schedule import Entry, entries, run_budget

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.config import Registry

NAME_LIMIT = 52  # CronJob names: the controller appends 11 characters for its Jobs
LABEL_LIMIT = 63
DEFAULT_STARTING_DEADLINE_S = 120
CONFIG_IN_IMAGE = "/etc/runjob/jobs.toml"


def _label(value: str) -> str:
    """A valid label value: [A-Za-z0-9._-], at most 63, alphanumeric at both ends."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]", "-", value)[:LABEL_LIMIT].strip("-._")


def cronjob(entry: Entry, image: str, namespace: str | None) -> dict[str, Any]:
    job = entry.job
    name = "runjob-" + entry.safe_slug("a-z0-9-", NAME_LIMIT - len("runjob-")).lower()
    labels = {"app.kubernetes.io/name": "runjob", "app.kubernetes.io/managed-by": "runjob",
              "runjob.dev/job": _label(job.name)}  # fmt: skip
    for role, owner in job.owners.items():
        if owner:
            labels[f"runjob.dev/owner-{role}"] = _label(owner)
    annotations = {"runjob.dev/description": job.description, "runjob.dev/idempotency": job.idempotency,
                   "runjob.dev/command": " ".join(["runjob", *entry.words])}  # fmt: skip
    metadata: dict[str, Any] = {"name": name, "labels": labels, "annotations": annotations}
    if namespace:
        metadata["namespace"] = namespace
    spec: dict[str, Any] = {
        "schedule": cron.expand(job.schedule or ""),
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": int(job.catch_up or DEFAULT_STARTING_DEADLINE_S),
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {
            "metadata": {"labels": dict(labels)},
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": int(run_budget(job)) + 30,
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{
                            "name": "runjob",
                            "image": image,
                            "command": ["runjob", *entry.words],
                            "env": [{"name": "RUNJOB_CONFIG", "value": CONFIG_IN_IMAGE}],
                        }],
                    },
                },
            },
        },
    }  # fmt: skip
    if job.timezone:
        spec["timeZone"] = job.timezone
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": metadata, "spec": spec}


def render(registry: Registry, image: str, namespace: str | None) -> dict[str, str]:
    """File name -> YAML of one CronJob, for every scheduled entry."""
    import yaml

    out = {}
    for entry in entries(registry):
        doc = cronjob(entry, image, namespace)
        out[f"{doc['metadata']['name']}.yaml"] = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    return out

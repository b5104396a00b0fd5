"""One Kubernetes CronJob (batch/v1) per scheduled job instance, as YAML.

The CronJob takes over what runjob does on a host: `concurrencyPolicy: Forbid` is the
lock, `activeDeadlineSeconds` the whole run's budget, `backoffLimit: 0` because runjob
retries inside the pod. The container runs `runjob NAME k=v`, so records, retries and
notifications are the same as on a host; the image must hold runjob. The registry comes
from a ConfigMap (exported too) mounted where RUNJOB_CONFIG points, the state in a
directory runjob creates (0700) inside a writable emptyDir (RUNJOB_STATE_DIR), and each
name in a job's `secrets` from the Secret `runjob-secrets`. The schedule is written in
robfig/cron's dialect (the API
server's parser; dialects.kubernetes), and every `$` in the command as `$$`, since the
kubelet expands `$(NAME)` and `$$` there.
"""

from __future__ import annotations

from runjob.errors import ConfigError
from runjob.export import dialects, names
from runjob.registry import lock_keys
from runjob.registry.budget import outer_budget
from runjob.schedule import timers
from runjob.schedule.entry import Entry
from runjob.schedule.scheduled import entries

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.registry.config import Registry

NAME_LIMIT = 52  # CronJob names: the controller appends 11 characters for its Jobs
LABEL_LIMIT = 63
DEFAULT_STARTING_DEADLINE_S = 120
CONFIG_DIR = "/etc/runjob"  # where runjob looks for jobs.toml: the ConfigMap is mounted here
CONFIG_MAP = "runjob-registry"
SECRET = "runjob-secrets"  # the Secret holding one key per name in a job's `secrets`
STATE_VOLUME = "/var/lib/runjob"  # a writable emptyDir; often world-writable, so never the state dir itself
STATE_DIR = f"{STATE_VOLUME}/state"  # RUNJOB_STATE_DIR: runjob creates it inside the volume, mode 0700


def _label(value: str) -> str:
    """A valid label value: [A-Za-z0-9._-], at most 63, alphanumeric at both ends."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]", "-", value)[:LABEL_LIMIT].strip("-._")


def cronjob_name(entry: Entry) -> str:
    return names.object_name(entry, "runjob-", "a-z0-9-", NAME_LIMIT, lower=True)


def cronjob(entry: Entry, schedule: str, image: str, namespace: str | None) -> dict[str, Any]:
    job = entry.job
    name = cronjob_name(entry)
    labels = {
        "app.kubernetes.io/name": "runjob",
        "app.kubernetes.io/managed-by": "runjob",
        "runjob.dev/job": _label(job.name),
    }
    for role, owner in job.owners.items():
        if owner:
            labels[f"runjob.dev/owner-{role}"] = _label(owner)
    annotations = {
        "runjob.dev/description": job.description,
        "runjob.dev/idempotency": job.idempotency,
        "runjob.dev/command": " ".join(["runjob", *entry.words]),
    }
    metadata: dict[str, Any] = {"name": name, "labels": labels, "annotations": annotations}
    if namespace:
        metadata["namespace"] = namespace
    spec: dict[str, Any] = {
        "schedule": schedule,
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": int(job.catch_up or DEFAULT_STARTING_DEADLINE_S),
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {
            "metadata": {"labels": dict(labels)},
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": outer_budget(job),
                "template": {"metadata": {"labels": dict(labels)}, "spec": _pod(entry, image)},
            },
        },
    }
    if job.timezone:
        spec["timeZone"] = job.timezone
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": metadata, "spec": spec}


def _pod(entry: Entry, image: str) -> dict[str, Any]:
    """The pod: `runjob NAME k=v` with the registry from the ConfigMap, a writable state
    volume, and each of the job's secrets from the Secret by name."""
    env: list[dict[str, Any]] = [
        {"name": "RUNJOB_CONFIG", "value": f"{CONFIG_DIR}/jobs.toml"},
        {"name": "RUNJOB_STATE_DIR", "value": STATE_DIR},  # wins over the registry's state_dir
    ]
    env += [{"name": s, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": s}}} for s in entry.job.secrets]
    return {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "runjob",
                "image": image,
                # the kubelet expands $(NAME) and turns $$ into $ in command and args
                "command": [w.replace("$", "$$") for w in ["runjob", *entry.words]],
                "env": env,
                "volumeMounts": [
                    {"name": "registry", "mountPath": CONFIG_DIR, "readOnly": True},
                    {"name": "state", "mountPath": STATE_VOLUME},
                ],
            }
        ],
        "volumes": [{"name": "registry", "configMap": {"name": CONFIG_MAP}}, {"name": "state", "emptyDir": {}}],
    }


def config_map(registry: Registry, namespace: str | None) -> dict[str, Any]:
    """The registry file itself, for the pods to mount at CONFIG_DIR."""
    with open(registry.path, encoding="utf-8") as f:
        text = f.read()
    metadata: dict[str, Any] = {"name": CONFIG_MAP, "labels": {"app.kubernetes.io/managed-by": "runjob"}}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"jobs.toml": text}}


def render(registry: Registry, image: str, namespace: str | None) -> tuple[dict[str, str], list[str]]:
    """File name -> YAML of one CronJob for every scheduled entry, and the notes for stderr."""
    import yaml

    out, errors, named = {}, [], []
    notes = []
    for entry in entries(registry):
        if timers.kind(entry.job.schedule) == timers.AT:
            notes.append(
                f"{entry.job.name}: one-time ({entry.job.schedule}) left out: a CronJob has no year; "
                "run it with `runjob tick` or create a Kubernetes Job for it"
            )
            continue
        try:
            schedule = dialects.kubernetes(entry.job.schedule or "")
        except dialects.Untranslatable as e:
            errors.append(f'jobs.{entry.job.name}.schedule: Kubernetes cannot run "{entry.job.schedule}": {e}')
            continue
        doc = cronjob(entry, schedule, image, namespace)
        named.append((doc["metadata"]["name"], entry))
        out[f"{doc['metadata']['name']}.yaml"] = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    if errors:
        raise ConfigError(errors, registry.path)
    names.check_unique(named, "CronJob", registry)
    registry_doc = yaml.safe_dump(config_map(registry, namespace), sort_keys=False, allow_unicode=True)
    return {f"configmap-{CONFIG_MAP}.yaml": registry_doc} | out, notes + _shared_lock_notes(named)


def _shared_lock_notes(named: list[tuple[str, Entry]]) -> list[str]:
    """One note per lock key that several CronJobs share: Forbid and file locks do not span CronJobs."""
    by_key: dict[str, list[str]] = {}
    for name, entry in named:
        job = entry.job
        defaults = {k: spec["default"] for k, spec in job.params.items() if spec["default"] is not None}
        key = lock_keys.resolve(job.lock_key, job.name, defaults | entry.params)
        if not job.lock_backend:
            by_key.setdefault(key, []).append(name)
    return [
        f'CronJobs {", ".join(group)} share the lock key "{key}" but run independently: concurrencyPolicy '
        "Forbid holds per CronJob and a pod's file lock is private to it; set lock_backend "
        '(a Redis lock, see "Many hosts: Redis locks") to keep them apart'
        for key, group in by_key.items()
        if len(group) > 1
    ]

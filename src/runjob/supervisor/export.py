"""Workers as code: a systemd service and a Kubernetes Deployment per `[workers.NAME]`.

Both run `runjob supervise NAME`, so records, restarts inside the supervisor and give-up
are the same as on a terminal. The outer manager's limits mirror the worker's:
- systemd: Restart= from restart.policy, RestartSec= from restart.delay, StartLimitBurst=
  burst + 1 (SPEC: the first start is not a restart) within StartLimitIntervalSec=, and
  MemoryMax= for the whole service: every instance's memory_max plus HEADROOM for runjob
  itself, so runjob's graceful restart comes before the kernel's OOM killer.
  KillMode=mixed: systemd's SIGTERM goes to runjob only, which stops each instance with
  its stop_signal and stop_grace; TimeoutStopSec= leaves it STOP_MARGIN_S more.
- Kubernetes: one pod per instance (replicas = instances, each pod `supervise NAME
  --instances 1`), a memory limit of memory_max plus HEADROOM, and
  terminationGracePeriodSeconds = stop_grace + STOP_MARGIN_S.
"""

from __future__ import annotations

import math
import os

from runjob.export import kubernetes, systemd

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runjob.registry.config import Registry

HEADROOM = 64 * 1024 * 1024  # runjob's own RSS, with room to spare
STOP_MARGIN_S = 5  # after stop_grace: runjob's SIGKILL, its last records, its exit


def _seconds(value: float) -> int:
    return max(1, math.ceil(value))


def systemd_units(registry: Registry, runjob_path: str) -> dict[str, str]:
    config = os.path.abspath(registry.path)
    return {
        f"runjob-worker-{name}.service": _service(name, w, runjob_path, config) for name, w in registry.workers.items()
    }


def _service(name: str, w: dict[str, Any], runjob_path: str, config: str) -> str:
    r = w["restart"]
    title = f"runjob worker {name}" + (f": {w['description']}" if w["description"] else "")
    exec_start = " ".join(systemd._quote(word) for word in [runjob_path, "--config", config, "supervise", name])
    lines = [
        "[Unit]",
        f"Description={systemd._text(title)}",
        f"StartLimitIntervalSec={_seconds(r['within'])}",
        f"StartLimitBurst={r['burst'] + 1}",
        "",
        "[Service]",
        "Type=exec",
    ]
    if w["secrets"]:
        lines.append(f"EnvironmentFile={systemd.SECRETS_FILE}")
    lines += [
        f"ExecStart={exec_start}",
        f"Restart={r['policy']}",
        f"RestartSec={_ms(r['delay'])}",
        "KillMode=mixed",
        f"TimeoutStopSec={_seconds(w['stop_grace']) + STOP_MARGIN_S}",
    ]
    if w["memory_max"]:
        lines.append(f"MemoryMax={w['memory_max'] * w['instances'] + HEADROOM}")
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def kubernetes_docs(registry: Registry, image: str, namespace: str | None) -> dict[str, str]:
    import yaml

    out = {}
    for name, w in registry.workers.items():
        doc = deployment(name, w, image, namespace)
        out[f"{doc['metadata']['name']}.yaml"] = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    return out


def deployment(name: str, w: dict[str, Any], image: str, namespace: str | None) -> dict[str, Any]:
    object_name = f"runjob-worker-{name}".replace(".", "-").replace("_", "-")[: kubernetes.LABEL_LIMIT].rstrip("-")
    labels = {
        "app.kubernetes.io/name": "runjob",
        "app.kubernetes.io/managed-by": "runjob",
        "runjob.dev/worker": kubernetes._label(name),
    }
    metadata: dict[str, Any] = {
        "name": object_name,
        "labels": labels,
        "annotations": {"runjob.dev/description": w["description"]},
    }
    if namespace:
        metadata["namespace"] = namespace
    pod = _pod(name, w, image)
    spec = {
        "replicas": w["instances"],
        "selector": {"matchLabels": dict(labels)},
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}


def _pod(name: str, w: dict[str, Any], image: str) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": "RUNJOB_CONFIG", "value": f"{kubernetes.CONFIG_DIR}/jobs.toml"},
        {"name": "XDG_STATE_HOME", "value": kubernetes.STATE_DIR},
    ]
    env += [{"name": s, "valueFrom": {"secretKeyRef": {"name": kubernetes.SECRET, "key": s}}} for s in w["secrets"]]
    container: dict[str, Any] = {
        "name": "runjob",
        "image": image,
        "command": [word.replace("$", "$$") for word in ["runjob", "supervise", name, "--instances", "1"]],
        "env": env,
        "volumeMounts": [
            {"name": "registry", "mountPath": kubernetes.CONFIG_DIR, "readOnly": True},
            {"name": "state", "mountPath": kubernetes.STATE_DIR},
        ],
    }
    if w["memory_max"]:
        limit = _quantity(w["memory_max"] + HEADROOM)
        container["resources"] = {"limits": {"memory": limit}, "requests": {"memory": limit}}
    return {
        "terminationGracePeriodSeconds": _seconds(w["stop_grace"]) + STOP_MARGIN_S,
        "containers": [container],
        "volumes": [
            {"name": "registry", "configMap": {"name": kubernetes.CONFIG_MAP}},
            {"name": "state", "emptyDir": {}},
        ],
    }


def _quantity(size: int) -> str:
    """Bytes as a Kubernetes quantity: Mi when whole, else plain bytes."""
    return f"{size >> 20}Mi" if size % (1 << 20) == 0 else str(size)

"""`cocina build --target cloud`: container images and Kubernetes manifests.

Written into the output directory:

    Dockerfile            CPU image: Python 3.11 slim, torch's CPU wheel, cocina, cocina's CPU kernels compiled
    Dockerfile.cuda       CUDA image (NVIDIA's runtime base), the same cocina, the kernels compiled too
    .dockerignore
    wheels/               cocina's own wheel (the image installs it, with its dependencies from the index)
    app/                  the project (and `app/model/` with the weights of a language model)
    k8s/                  kustomization.yaml, serviceaccount, configmap, secret, deployment, service, pdb,
                          scaledobject (KEDA, the default autoscaler), hpa.yaml + prometheus-adapter-rules.yaml
                          (the alternative without KEDA), README.md

Probes follow what cocina's endpoints mean: the startupProbe and readiness use `/health` (503 until the warm
models are loaded, and while draining), so a replica whose model fails to load never becomes ready and gets no
traffic; liveness uses Cog's `/health-check`, which answers 200 whenever the server's loop runs, busy or not, so a
replica under load is never killed for being busy. `terminationGracePeriodSeconds` covers the preStop pause,
cocina's drain and a margin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cocina.deploy import monitoring
from cocina.deploy.source import BuildSource

PORT = 5000
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: Every variant of cocina's CPU kernels (cocina.engine.cpu_kernels.VARIANTS; a test keeps the two equal), all
#: compiled into an image: compiling needs only the compiler, not a CPU that runs them.
KERNEL_VARIANTS = ("avx512bf16", "avx512vnni", "avx512", "avx2")
KERNEL_BUILD_FLAGS = " ".join(f"--variant {name}" for name in KERNEL_VARIANTS)


@dataclass(frozen=True)
class CloudOptions:
    """What the manifests need to know beyond the model: where the image is, how to scale, who to ask."""

    image: str = "registry.example.com/cocina/model:latest"
    replicas_min: int = 4
    replicas_max: int = 16
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    namespace: str | None = None
    cpu: str = "2"
    memory: str = "8Gi"
    threads: int = 2
    load_budget_s: int = 600  # the startupProbe's budget for loading the model
    drain_grace_s: int = 30
    pre_stop_s: int = 5
    lease_s: int = 20
    torch_version: str = "2.13.0"
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not 1 <= self.replicas_min <= self.replicas_max:
            raise ValueError(f"replicas: need 1 <= min <= max, got {self.replicas_min}..{self.replicas_max}")


def dockerfile_cpu(wheel: str, opts: CloudOptions) -> str:
    return f"""# cocina: {{name}} on CPU. Built by `cocina build --target cloud`.
FROM python:3.11-slim-bookworm

# gcc compiles cocina's CPU kernels below (and stays: the kernel cache is keyed by the compiler).
# Debian's packages are not pinned: the base image's release pins their versions.
# hadolint ignore=DL3008
RUN apt-get update \\
    && apt-get install -y --no-install-recommends gcc libc6-dev libgomp1 \\
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_NO_CACHE_DIR=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    COCINA_CACHE_DIR=/opt/cocina/cache \\
    HF_HUB_OFFLINE=1 \\
    TRANSFORMERS_OFFLINE=1

# torch first, from its CPU index: from PyPI it would pull several GB of CUDA libraries.
RUN python -m venv /opt/cocina/venv \\
    && /opt/cocina/venv/bin/pip install --index-url {TORCH_CPU_INDEX} torch=={opts.torch_version}
COPY wheels/{wheel} /tmp/wheels/
RUN /opt/cocina/venv/bin/pip install /tmp/wheels/{wheel} \\
    && rm -rf /tmp/wheels
# cocina's CPU kernels, compiled now rather than at the first request of every new pod: every variant, since
# the nodes' CPUs need not be this build host's (each pod loads the best one its CPU runs).
RUN /opt/cocina/venv/bin/cocina kernels build --strict {KERNEL_BUILD_FLAGS}

COPY app/ /app/
RUN useradd --system --uid 10001 --home-dir /var/lib/cocina --create-home cocina
USER 10001
EXPOSE {PORT}
ENTRYPOINT ["/opt/cocina/venv/bin/cocina", "serve", "{{name}}=/app"]
CMD ["--host", "0.0.0.0", "--port", "{PORT}", "--data-dir", "/var/lib/cocina"]
"""


def dockerfile_cuda(wheel: str, opts: CloudOptions) -> str:
    return f"""# cocina: {{name}} on NVIDIA GPUs. Built by `cocina build --target cloud`.
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

# Python 3.11 from Ubuntu; gcc for cocina's CPU kernels (the CPU paths of the engine keep them).
# Ubuntu's packages are not pinned: the base image's release pins their versions.
# hadolint ignore=DL3008
RUN apt-get update \\
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv gcc libc6-dev libgomp1 \\
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_NO_CACHE_DIR=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    COCINA_CACHE_DIR=/opt/cocina/cache \\
    HF_HUB_OFFLINE=1 \\
    TRANSFORMERS_OFFLINE=1

# torch from PyPI is the CUDA 12 build.
RUN python3.11 -m venv /opt/cocina/venv \\
    && /opt/cocina/venv/bin/pip install torch=={opts.torch_version}
COPY wheels/{wheel} /tmp/wheels/
RUN /opt/cocina/venv/bin/pip install /tmp/wheels/{wheel} \\
    && rm -rf /tmp/wheels
RUN /opt/cocina/venv/bin/cocina kernels build --strict {KERNEL_BUILD_FLAGS}

COPY app/ /app/
RUN useradd --system --uid 10001 --home-dir /var/lib/cocina --create-home cocina
USER 10001
EXPOSE {PORT}
ENTRYPOINT ["/opt/cocina/venv/bin/cocina", "serve", "{{name}}=/app"]
CMD ["--host", "0.0.0.0", "--port", "{PORT}", "--data-dir", "/var/lib/cocina"]
"""


def finish_dockerfile(text: str, source: BuildSource) -> str:
    """Name the model, and point the engine at the weights shipped in app/model/ when there are some."""
    text = text.replace("{name}", source.name)
    if source.model_dir is not None:
        text = text.replace("COPY app/ /app/\n", "COPY app/ /app/\nENV COCINA_MODEL=/app/model\n")
    return text


DOCKERIGNORE = """# Only what the Dockerfiles copy: the project and cocina's wheel.
*
!app/
!wheels/
"""


def _labels(source: BuildSource) -> dict[str, str]:
    return {"app.kubernetes.io/name": source.slug, "app.kubernetes.io/part-of": "cocina"}


def _meta(source: BuildSource, name: str, opts: CloudOptions) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": _labels(source)}
    if opts.namespace:
        meta["namespace"] = opts.namespace
    return meta


def manifests(source: BuildSource, opts: CloudOptions) -> dict[str, dict[str, Any]]:
    """File name -> Kubernetes object."""
    name = source.slug
    labels = _labels(source)
    serve_args = [
        "--host",
        "0.0.0.0",
        "--port",
        str(PORT),
        "--data-dir",
        "/var/lib/cocina",
        "--store",
        "$(COCINA_STORE)",
        "--lease",
        str(opts.lease_s),
        "--drain-grace",
        str(opts.drain_grace_s),
        "--max-queue",
        str(source.queue_target() * 2),
        "--public-metrics",
        *opts.extra_args,
    ]
    if source.language_model:
        serve_args += ["--max-num-seqs", str(source.max_num_seqs)]
    probe_port = {"port": "http"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(source, name, opts),
        "spec": {
            "replicas": opts.replicas_min,
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": opts.load_budget_s + 600,
            "selector": {"matchLabels": labels},
            # New pods must be ready (model loaded) before old ones go: capacity never drops during a rollout.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "serviceAccountName": name,
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": opts.pre_stop_s + opts.drain_grace_s + 15,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "fsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "cocina",
                            "image": opts.image,
                            "imagePullPolicy": "IfNotPresent",
                            "args": serve_args,
                            "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
                            "envFrom": [{"configMapRef": {"name": f"{name}-config"}}],
                            "env": [
                                {
                                    "name": "COCINA_STORE",
                                    "valueFrom": {"secretKeyRef": {"name": f"{name}-secrets", "key": "store-url"}},
                                },
                                {
                                    "name": "COCINA_API_TOKEN",
                                    "valueFrom": {"secretKeyRef": {"name": f"{name}-secrets", "key": "api-token"}},
                                },
                            ],
                            "resources": {
                                "requests": {"cpu": opts.cpu, "memory": opts.memory},
                                "limits": {"memory": opts.memory},
                            },
                            # Loading may take minutes: the startup probe gives it `load_budget_s` before liveness
                            # starts counting.
                            "startupProbe": {
                                "httpGet": {"path": "/health", **probe_port},
                                "periodSeconds": 10,
                                "timeoutSeconds": 5,
                                "failureThreshold": max(1, opts.load_budget_s // 10),
                            },
                            # Ready = the server accepts and its warm models are loaded; 503 while draining.
                            "readinessProbe": {
                                "httpGet": {"path": "/health", **probe_port},
                                "periodSeconds": 5,
                                "timeoutSeconds": 3,
                                "failureThreshold": 2,
                            },
                            # Alive = the server's loop answers; busy or idle does not matter.
                            "livenessProbe": {
                                "httpGet": {"path": "/health-check", **probe_port},
                                "periodSeconds": 10,
                                "timeoutSeconds": 5,
                                "failureThreshold": 6,
                            },
                            "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(opts.pre_stop_s)]}}},
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [
                                {"name": "data", "mountPath": "/var/lib/cocina"},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(source, name, opts),
        "spec": {
            "type": "ClusterIP",
            "selector": labels,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(source, name, opts),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": labels},
            # A pod that never became ready (its model failed to load) may be evicted: it serves nothing.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(source, f"{name}-config", opts),
        "data": {
            # Threads per replica, set explicitly: torch would otherwise take every core of the node.
            "OMP_NUM_THREADS": str(opts.threads),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        },
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(source, f"{name}-secrets", opts),
        "type": "Opaque",
        # Placeholders: replace before applying (k8s/README.md), e.g. with `kubectl create secret ... --dry-run`.
        "stringData": {
            "store-url": "postgresql://cocina:CHANGE-ME@postgres:5432/cocina",
            "api-token": "CHANGE-ME",
        },
    }
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(source, name, opts),
        "automountServiceAccountToken": False,
    }
    query = monitoring.queue_depth_query(name)
    scaled = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _meta(source, name, opts),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicaCount": opts.replicas_min,
            "maxReplicaCount": opts.replicas_max,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "fallback": {"failureThreshold": 3, "replicas": opts.replicas_min},
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        # Up at once (a queue is users waiting); down slowly (loading a model again is costly).
                        "scaleUp": {
                            "stabilizationWindowSeconds": 0,
                            "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}],
                        },
                        "scaleDown": {
                            "stabilizationWindowSeconds": 300,
                            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                        },
                    }
                }
            },
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": opts.prometheus_url,
                        "query": query,
                        # Replicas = ceil(queue / threshold): each replica takes the backlog it drains at once.
                        "threshold": str(source.queue_target()),
                        "ignoreNullValues": "false",
                    },
                }
            ],
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(source, name, opts),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": opts.replicas_min,
            "maxReplicas": opts.replicas_max,
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {"name": "cocina_queue_depth", "selector": {"matchLabels": {"job": name}}},
                        "target": {"type": "AverageValue", "averageValue": str(source.queue_target())},
                    },
                }
            ],
            "behavior": scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"],  # type: ignore[index]
        },
    }
    return {
        "serviceaccount.yaml": account,
        "configmap.yaml": config,
        "secret.yaml": secret,
        "deployment.yaml": deployment,
        "service.yaml": service,
        "pdb.yaml": pdb,
        "scaledobject.yaml": scaled,
        "hpa.yaml": hpa,
    }


def adapter_rules(job: str) -> dict[str, Any]:
    """prometheus-adapter's `rules:` values for the HPA alternative: the queue depth as an external metric."""
    return {
        "rules": {
            "external": [
                {
                    "seriesQuery": f'cocina_queue_depth{{job="{job}"}}',
                    "resources": {"overrides": {"namespace": {"resource": "namespace"}}},
                    "name": {"as": "cocina_queue_depth"},
                    "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>})",
                }
            ]
        }
    }


def k8s_readme(source: BuildSource, opts: CloudOptions) -> str:
    name = source.slug
    return f"""# {source.name} on Kubernetes

Made by `cocina build --target cloud` for version `{source.version[:12]}`.

1. Build and push the image (the Dockerfiles are one level up; `Dockerfile.cuda` for NVIDIA GPUs):
   `docker build -t {opts.image} .. && docker push {opts.image}`
2. Put real values in the secret (a PostgreSQL URL shared by the replicas, the API token):
   `kubectl create secret generic {name}-secrets --from-literal=store-url=postgresql://... \\
    --from-literal=api-token=$(openssl rand -hex 24) --dry-run=client -o yaml > secret.yaml`
3. `kubectl apply -k .` — Deployment ({opts.replicas_min} replicas), Service, PodDisruptionBudget, ConfigMap,
   Secret, ServiceAccount and the KEDA ScaledObject ({opts.replicas_min} to {opts.replicas_max} replicas on
   `{monitoring.queue_depth_query(name)}`, one replica per {source.queue_target()} waiting predictions).
   Prometheus must scrape the pods with `job="{name}"` (the pod annotations say where).
4. Without KEDA: drop `scaledobject.yaml` from kustomization.yaml, add `hpa.yaml`, and give prometheus-adapter
   the rules in `prometheus-adapter-rules.yaml`.

Probes: startup and readiness on `/health` (ready once the model is loaded; a replica whose model fails to load
never receives traffic), liveness on `/health-check` (never tied to the engine being idle). The termination grace
({opts.pre_stop_s + opts.drain_grace_s + 15} s) covers the preStop pause ({opts.pre_stop_s} s) and cocina's drain
({opts.drain_grace_s} s). Predictions live in PostgreSQL with leases: a pod killed mid-prediction loses nothing,
another replica re-runs its work once the lease ({opts.lease_s} s) runs out.
"""


def write_cloud(source: BuildSource, out: Path, wheel: str, opts: CloudOptions) -> list[Path]:
    """Write the cloud target's files (the app and the wheel are already in `out`)."""
    written: list[Path] = []

    def put(rel: str, text: str) -> None:
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)

    put("Dockerfile", finish_dockerfile(dockerfile_cpu(wheel, opts), source))
    put("Dockerfile.cuda", finish_dockerfile(dockerfile_cuda(wheel, opts), source))
    put(".dockerignore", DOCKERIGNORE)
    objects = manifests(source, opts)
    for file, obj in objects.items():
        put(f"k8s/{file}", yaml.safe_dump(obj, sort_keys=False))
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [f for f in objects if f != "hpa.yaml"],
    }
    put("k8s/kustomization.yaml", yaml.safe_dump(kustomization, sort_keys=False))
    put("k8s/prometheus-adapter-rules.yaml", yaml.safe_dump(adapter_rules(source.slug), sort_keys=False))
    put("k8s/README.md", k8s_readme(source, opts))
    return written

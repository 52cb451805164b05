"""`cocina build --target onprem`: your own servers, two ways.

    install.sh + {slug}.service + {slug}.env.example   cocina in a virtualenv under /opt/cocina, run by a hardened
                                                       systemd unit (`systemd-analyze security` exposure < 5)
    compose.yaml + Dockerfile + .env                   cocina, PostgreSQL, Prometheus and Grafana on one host
    prometheus/prometheus.yml, rules/, tests/          scrape config, recording and alerting rules, rule tests
    grafana/provisioning/..., grafana/dashboards/      the Prometheus data source and cocina's dashboard
    wheels/, app/                                      cocina's wheel and the project (as for the cloud target)

The unit runs as a dynamic user with a private /tmp, no capabilities, a read-only system, and only the state
and cache directories writable. It does not set MemoryDenyWriteExecute: PyTorch's oneDNN kernels are generated
at run time (JIT) and need executable memory they wrote.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cocina.deploy import monitoring
from cocina.deploy.cloud import PORT, CloudOptions, dockerfile_cpu, finish_dockerfile
from cocina.deploy.source import BuildSource


@dataclass(frozen=True)
class OnpremOptions:
    prefix: str = "/opt/cocina"  # where install.sh puts the virtualenv and the app
    port: int = PORT
    threads: int = 2
    replicas_max: int = 1  # for the backlog alert: one host
    drain_grace_s: int = 30
    prometheus_image: str = "prom/prometheus:v2.42.0"
    grafana_image: str = "grafana/grafana:10.4.2"
    postgres_image: str = "postgres:15"


def systemd_unit(source: BuildSource, opts: OnpremOptions) -> str:
    model_env = f"Environment=COCINA_MODEL={opts.prefix}/app/model\n" if source.model_dir is not None else ""
    return f"""# cocina serving {source.name} (version {source.version[:12]}). Installed by install.sh.
[Unit]
Description=cocina: {source.name}
Documentation=file://{opts.prefix}/README.md
After=network-online.target postgresql.service
Wants=network-online.target

[Service]
Type=exec
Environment=COCINA_STORE=/var/lib/cocina/predictions.db
Environment=COCINA_CACHE_DIR=/var/cache/cocina
Environment=HF_HOME=/var/cache/cocina/huggingface
Environment=HF_HUB_OFFLINE=1
Environment=TRANSFORMERS_OFFLINE=1
Environment=OMP_NUM_THREADS={opts.threads}
{model_env}# COCINA_STORE=postgresql://... and COCINA_API_TOKEN=... (kept out of the unit, mode 0600)
EnvironmentFile=-/etc/cocina/{source.slug}.env
ExecStart={opts.prefix}/venv/bin/cocina serve {source.name}={opts.prefix}/app --host 0.0.0.0 --port {opts.port} \\
    --data-dir /var/lib/cocina --store ${{COCINA_STORE}} --drain-grace {opts.drain_grace_s} --public-metrics
WorkingDirectory=/var/lib/cocina
# cocina drains on SIGTERM: running predictions get --drain-grace seconds; systemd waits a little longer.
KillSignal=SIGTERM
TimeoutStopSec={opts.drain_grace_s + 20}
Restart=on-failure
RestartSec=5

# Hardening (systemd-analyze security: exposure below 5).
DynamicUser=yes
StateDirectory=cocina
CacheDirectory=cocina
UMask=0077
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateUsers=yes
DevicePolicy=closed
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
KeyringMode=private
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
NotifyAccess=none
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
"""


def install_script(source: BuildSource, wheel: str, opts: OnpremOptions) -> str:
    return f"""#!/usr/bin/env bash
# Install {source.name} as a systemd service: a virtualenv in {opts.prefix}, the project, the unit.
# Run as root from this directory. Dependencies come from your package index (or set PIP_FIND_LINKS to a
# wheelhouse; `cocina build --target edge` makes one for machines without a network).
set -euo pipefail
cd "$(dirname "$0")"
prefix={opts.prefix}
python3 -m venv "$prefix/venv"
# torch's CPU build first: from PyPI's default index it would pull several GB of CUDA libraries.
"$prefix/venv/bin/pip" install --index-url https://download.pytorch.org/whl/cpu torch
"$prefix/venv/bin/pip" install "wheels/{wheel}"
rm -rf "$prefix/app" && cp -r app "$prefix/app"
cp README.md "$prefix/README.md"
install -d -m 0750 /etc/cocina
[ -f /etc/cocina/{source.slug}.env ] || install -m 0600 {source.slug}.env.example /etc/cocina/{source.slug}.env
install -m 0644 {source.slug}.service /etc/systemd/system/{source.slug}.service
systemctl daemon-reload
systemctl enable --now {source.slug}.service
echo "{source.slug}: http://$(hostname):{opts.port}/health"
"""


def prometheus_config(job: str, target: str, token_file: str, rules_glob: str) -> dict[str, Any]:
    """Prometheus's config: scrape cocina every 15 s as `job`, load the rules."""
    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": [rules_glob],
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": "/metrics",
                # cocina's API token (every route but the probes needs it, /metrics too)
                "authorization": {"type": "Bearer", "credentials_file": token_file},
                "static_configs": [{"targets": [target]}],
            }
        ],
    }


def rule_tests(job: str, queue_target: int, replicas_max: int) -> dict[str, Any]:
    """`promtool test rules`: each alert fires on the series it watches, and stays quiet on healthy ones."""
    backlog = queue_target * replicas_max
    inst = 'instance="cocina:5000"'
    return {
        "rule_files": ["../rules/cocina.rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f'up{{job="{job}", {inst}}}', "values": "1 1 0 0 0 0"},
                    {
                        "series": f'cocina_queue_depth{{job="{job}", {inst}, model_name="{job}"}}',
                        "values": f"0 {backlog + 1}x10",
                    },
                    {
                        "series": f'cocina_predictions_total{{job="{job}", {inst}, status="succeeded"}}',
                        "values": "0+10x20",
                    },
                    {
                        "series": f'cocina_predictions_total{{job="{job}", {inst}, status="failed"}}',
                        "values": "0+5x20",
                    },
                    {
                        "series": f'vllm:kv_cache_usage_perc{{job="{job}", {inst}, model_name="{job}"}}',
                        "values": "0.99x20",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "1m", "alertname": "CocinaDown", "exp_alerts": []},
                    {
                        "eval_time": "4m",
                        "alertname": "CocinaDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical", "job": job, "instance": "cocina:5000"},
                                "exp_annotations": {"summary": _summary(job, "CocinaDown", queue_target, replicas_max)},
                            }
                        ],
                    },
                    {"eval_time": "3m", "alertname": "CocinaQueueBacklog", "exp_alerts": []},
                    {
                        "eval_time": "7m",
                        "alertname": "CocinaQueueBacklog",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning"},
                                "exp_annotations": {
                                    "summary": _summary(job, "CocinaQueueBacklog", queue_target, replicas_max)
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "15m",
                        "alertname": "CocinaPredictionsFailing",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning"},
                                "exp_annotations": {
                                    "summary": _summary(job, "CocinaPredictionsFailing", queue_target, replicas_max)
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "15m",
                        "alertname": "CocinaKVCacheFull",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "model_name": job},
                                "exp_annotations": {
                                    "summary": _summary(job, "CocinaKVCacheFull", queue_target, replicas_max)
                                },
                            }
                        ],
                    },
                ],
                "promql_expr_test": [
                    {
                        "expr": "cocina:queue_depth:sum",
                        "eval_time": "2m",
                        "exp_samples": [
                            {"labels": f'cocina:queue_depth:sum{{model_name="{job}"}}', "value": backlog + 1}
                        ],
                    }
                ],
            }
        ],
    }


def _summary(job: str, alert: str, queue_target: int, replicas_max: int) -> str:
    return next(r.summary for r in monitoring.alert_rules(job, queue_target, replicas_max) if r.name == alert)


def compose(source: BuildSource, opts: OnpremOptions) -> dict[str, Any]:
    slug = source.slug
    return {
        "version": "3.8",
        "services": {
            "postgres": {
                "image": opts.postgres_image,
                "restart": "unless-stopped",
                "environment": {
                    "POSTGRES_USER": "cocina",
                    "POSTGRES_DB": "cocina",
                    "POSTGRES_PASSWORD": "${POSTGRES_PASSWORD}",
                },
                "volumes": ["postgres-data:/var/lib/postgresql/data"],
                "healthcheck": {
                    "test": ["CMD-SHELL", "pg_isready -U cocina -d cocina"],
                    "interval": "5s",
                    "timeout": "3s",
                    "retries": 10,
                },
            },
            "cocina": {
                "build": {"context": ".", "dockerfile": "Dockerfile"},
                "image": f"cocina/{slug}:{source.version[:12]}",
                "restart": "unless-stopped",
                "depends_on": {"postgres": {"condition": "service_healthy"}},
                "command": [
                    "--host",
                    "0.0.0.0",
                    "--port",
                    str(opts.port),
                    "--data-dir",
                    "/var/lib/cocina",
                    "--store",
                    "postgresql://cocina:${POSTGRES_PASSWORD}@postgres:5432/cocina",
                    "--drain-grace",
                    str(opts.drain_grace_s),
                ],
                "environment": {"COCINA_API_TOKEN": "${COCINA_API_TOKEN}", "OMP_NUM_THREADS": str(opts.threads)},
                "ports": [f"{opts.port}:{opts.port}"],
                "volumes": ["cocina-data:/var/lib/cocina"],
                "stop_grace_period": f"{opts.drain_grace_s + 15}s",
                "healthcheck": {
                    "test": [
                        "CMD",
                        "/opt/cocina/venv/bin/python",
                        "-c",
                        "import urllib.request, sys; "
                        f"urllib.request.urlopen('http://127.0.0.1:{opts.port}/health', timeout=3)",
                    ],
                    "interval": "10s",
                    "timeout": "5s",
                    "retries": 3,
                    "start_period": "600s",
                },
            },
            "prometheus": {
                "image": opts.prometheus_image,
                "restart": "unless-stopped",
                "command": [
                    "--config.file=/etc/prometheus/prometheus.yml",
                    "--storage.tsdb.path=/prometheus",
                    "--storage.tsdb.retention.time=30d",
                ],
                "volumes": [
                    "./prometheus:/etc/prometheus:ro",
                    "prometheus-data:/prometheus",
                ],
                "ports": ["9090:9090"],
                "depends_on": ["cocina"],
            },
            "grafana": {
                "image": opts.grafana_image,
                "restart": "unless-stopped",
                "environment": {
                    "GF_SECURITY_ADMIN_PASSWORD": "${GRAFANA_ADMIN_PASSWORD}",
                    "GF_AUTH_ANONYMOUS_ENABLED": "false",
                },
                "volumes": [
                    "./grafana/provisioning:/etc/grafana/provisioning:ro",
                    "./grafana/dashboards:/var/lib/grafana/dashboards:ro",
                    "grafana-data:/var/lib/grafana",
                ],
                "ports": ["3000:3000"],
                "depends_on": ["prometheus"],
            },
        },
        "volumes": {"postgres-data": {}, "cocina-data": {}, "prometheus-data": {}, "grafana-data": {}},
    }


def grafana_datasource() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "uid": monitoring.DATASOURCE_UID,
                "type": "prometheus",
                "access": "proxy",
                "url": "http://prometheus:9090",
                "isDefault": True,
            }
        ],
    }


def grafana_dashboards_provider() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "cocina",
                "type": "file",
                "disableDeletion": True,
                "options": {"path": "/var/lib/grafana/dashboards"},
            }
        ],
    }


def readme(source: BuildSource, opts: OnpremOptions) -> str:
    slug = source.slug
    return f"""# {source.name} on your own servers

Made by `cocina build --target onprem` for version `{source.version[:12]}`.

## One host, with Docker: cocina + PostgreSQL + Prometheus + Grafana

    docker compose up -d --build      # or docker-compose (1.29+)

`.env` holds fresh random secrets made by the build (PostgreSQL's password, cocina's API token, Grafana's admin
password): keep it private. cocina answers on port {opts.port} (`/health`, the Cog, Replicate and OpenAI APIs),
Prometheus on 9090 (with cocina's recording and alerting rules: `promtool test rules prometheus/tests/*.yml`),
Grafana on 3000 with the "cocina: {slug}" dashboard provisioned (its panels use vLLM's metric names and
`model_name` label, so vLLM dashboards work on cocina's metrics too).

## Without containers: systemd

    sudo ./install.sh                 # /opt/cocina/venv, /opt/cocina/app, /etc/systemd/system/{slug}.service
    sudoedit /etc/cocina/{slug}.env   # COCINA_STORE=postgresql://... to share predictions, COCINA_API_TOKEN=...

The unit is hardened (`systemd-analyze security {slug}.service`: exposure below 5): a dynamic user, no
capabilities, read-only system, private /tmp and devices, a system-call filter. On SIGTERM cocina drains: running
predictions get {opts.drain_grace_s} s to finish.
"""


def write_onprem(source: BuildSource, out: Path, wheel: str, opts: OnpremOptions) -> list[Path]:
    written: list[Path] = []
    job = source.slug

    def put(rel: str, text: str, mode: int = 0o644) -> None:
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
        written.append(path)

    token = secrets.token_hex(24)
    put(f"{job}.service", systemd_unit(source, opts))
    put(
        f"{job}.env.example",
        f"# COCINA_STORE=postgresql://cocina:PASSWORD@127.0.0.1:5432/cocina\nCOCINA_API_TOKEN={token}\n",
        0o600,
    )
    put("install.sh", install_script(source, wheel, opts), 0o755)
    put("Dockerfile", finish_dockerfile(dockerfile_cpu(wheel, CloudOptions()), source))
    put("compose.yaml", yaml.safe_dump(compose(source, opts), sort_keys=False, width=200))
    put(
        ".env",
        f"POSTGRES_PASSWORD={secrets.token_hex(16)}\nCOCINA_API_TOKEN={token}\n"
        f"GRAFANA_ADMIN_PASSWORD={secrets.token_hex(12)}\n",
        0o600,
    )
    # Beside prometheus.yml (a relative path resolves there), readable by the Prometheus container's user.
    put("prometheus/api-token", token, 0o644)
    put(
        "prometheus/prometheus.yml",
        yaml.safe_dump(prometheus_config(job, f"cocina:{opts.port}", "api-token", "rules/*.yml"), sort_keys=False),
    )
    queue_target = source.queue_target()
    put(
        "prometheus/rules/cocina.rules.yml",
        yaml.safe_dump(monitoring.rules_document(job, queue_target, opts.replicas_max), sort_keys=False, width=200),
    )
    put(
        "prometheus/tests/cocina.test.yml",
        yaml.safe_dump(rule_tests(job, queue_target, opts.replicas_max), sort_keys=False, width=200),
    )
    put("grafana/provisioning/datasources/prometheus.yml", yaml.safe_dump(grafana_datasource(), sort_keys=False))
    put("grafana/provisioning/dashboards/cocina.yml", yaml.safe_dump(grafana_dashboards_provider(), sort_keys=False))
    put(f"grafana/dashboards/{job}.json", monitoring.dashboard_json(job))
    put("README.md", readme(source, opts))
    return written

"""The PromQL every target shares: dashboard panels, recording rules, alerts and the autoscalers' query.

One source for all of them, so that the number an operator watches on the dashboard is the number KEDA, the HPA
and Ray Serve scale on, and the tests evaluate exactly these strings against a real Prometheus scraping a live
cocina. Every query selects on `job` (the scrape job: the service's name) and, where it is per model, on vLLM's
`model_name` label, so a vLLM dashboard's queries also work on cocina's `vllm:*` series.

Grafana variables appear as `$job` and `$model_name` in panel queries only; rules and autoscalers name the job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DATASOURCE_UID = "cocina-prometheus"


def queue_depth_query(job: str) -> str:
    """What the autoscalers scale on: predictions waiting in every replica's queues (one series; KEDA needs one)."""
    return f'sum(cocina_queue_depth{{job="{job}"}})'


@dataclass(frozen=True)
class Rule:
    """A recording rule (`record`) or an alert (`alert`, with `for_`, severity and a summary)."""

    name: str
    expr: str
    alert: bool = False
    for_: str = ""
    severity: str = ""
    summary: str = ""

    def to_yaml_dict(self) -> dict[str, Any]:
        if not self.alert:
            return {"record": self.name, "expr": self.expr}
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity},
            "annotations": {"summary": self.summary},
        }


def _p95(histogram: str, selector: str) -> str:
    return f"histogram_quantile(0.95, sum by (le, model_name) (rate({histogram}_bucket{{{selector}}}[5m])))"


def recording_rules(job: str) -> list[Rule]:
    sel = f'job="{job}"'
    return [
        Rule("cocina:queue_depth:sum", f"sum by (model_name) (cocina_queue_depth{{{sel}}})"),
        Rule("cocina:predictions_running:sum", f"sum by (model_name) (cocina_predictions_running{{{sel}}})"),
        Rule(
            "cocina:predictions:rate5m",
            f"sum by (model_name, status) (rate(cocina_predictions_total{{{sel}}}[5m]))",
        ),
        Rule(
            "cocina:http_request_duration_seconds:p95_5m",
            "histogram_quantile(0.95, sum by (le, surface) "
            f'(rate(cocina_http_request_duration_seconds_bucket{{{sel}, surface!="internal"}}[5m])))',
        ),
        Rule(
            "cocina:time_to_first_token_seconds:p95_5m",
            _p95("vllm:time_to_first_token_seconds", sel),
        ),
        Rule(
            "cocina:generation_tokens:rate5m",
            f"sum by (model_name) (rate(vllm:generation_tokens_total{{{sel}}}[5m]))",
        ),
    ]


def alert_rules(job: str, queue_target: int, replicas_max: int) -> list[Rule]:
    sel = f'job="{job}"'
    backlog = queue_target * replicas_max
    return [
        Rule(
            "CocinaDown",
            f"up{{{sel}}} == 0",
            alert=True,
            for_="1m",
            severity="critical",
            summary="A cocina replica has not answered Prometheus's scrapes for a minute.",
        ),
        Rule(
            "CocinaQueueBacklog",
            f"sum(cocina_queue_depth{{{sel}}}) > {backlog}",
            alert=True,
            for_="5m",
            severity="warning",
            summary=f"More than {backlog} predictions have waited for 5 minutes: the autoscaler is at its maximum "
            f"({replicas_max} replicas of {queue_target}) or cannot add replicas.",
        ),
        Rule(
            "CocinaPredictionsFailing",
            f'sum(rate(cocina_predictions_total{{{sel}, status="failed"}}[5m])) '
            f"/ sum(rate(cocina_predictions_total{{{sel}}}[5m])) > 0.05",
            alert=True,
            for_="10m",
            severity="warning",
            summary="More than 5% of predictions have failed for 10 minutes.",
        ),
        Rule(
            "CocinaKVCacheFull",
            f"max by (model_name) (vllm:kv_cache_usage_perc{{{sel}}}) > 0.95",
            alert=True,
            for_="10m",
            severity="warning",
            summary="A language model's KV cache has been over 95% full for 10 minutes: requests queue or are "
            "preempted; give it more --kv-cache or more replicas.",
        ),
    ]


def rules_document(job: str, queue_target: int, replicas_max: int, interval: str = "15s") -> dict[str, Any]:
    """Prometheus's rule file (recording rules evaluated every `interval`)."""
    return {
        "groups": [
            {
                "name": f"{job}-recording",
                "interval": interval,
                "rules": [r.to_yaml_dict() for r in recording_rules(job)],
            },
            {
                "name": f"{job}-alerts",
                "rules": [r.to_yaml_dict() for r in alert_rules(job, queue_target, replicas_max)],
            },
        ]
    }


@dataclass(frozen=True)
class Panel:
    title: str
    expr: str
    unit: str = "short"
    legend: str = "{{model_name}}"


def panels() -> list[Panel]:
    """The dashboard: queues and running predictions (what autoscaling sees), outcomes, latencies, tokens."""
    m = 'job=~"$job", model_name=~"$model_name"'
    return [
        Panel("Predictions waiting (all models)", 'sum(cocina_queue_depth{job=~"$job"})', legend="waiting"),
        Panel("Queue depth per model", f"sum by (model_name) (cocina_queue_depth{{{m}}})"),
        Panel("Predictions running", f"sum by (model_name) (cocina_predictions_running{{{m}}})"),
        Panel(
            "Predictions finished / s",
            f"sum by (model_name, status) (rate(cocina_predictions_total{{{m}}}[5m]))",
            unit="reqps",
            legend="{{model_name}} {{status}}",
        ),
        Panel("Replicas up", 'count(up{job=~"$job"} == 1)', legend="replicas"),
        Panel(
            "HTTP latency p95",
            "histogram_quantile(0.95, sum by (le) "
            '(rate(cocina_http_request_duration_seconds_bucket{job=~"$job", surface!="internal"}[5m])))',
            unit="s",
            legend="p95",
        ),
        Panel("Requests waiting (vLLM)", f"sum by (model_name) (vllm:num_requests_waiting{{{m}}})"),
        Panel("Requests running (vLLM)", f"sum by (model_name) (vllm:num_requests_running{{{m}}})"),
        Panel("KV cache usage", f"max by (model_name) (vllm:kv_cache_usage_perc{{{m}}})", unit="percentunit"),
        Panel(
            "Time to first token p95",
            _p95("vllm:time_to_first_token_seconds", m),
            unit="s",
        ),
        Panel(
            "Inter-token latency p95",
            _p95("vllm:inter_token_latency_seconds", m),
            unit="s",
        ),
        Panel(
            "End-to-end latency p95",
            _p95("vllm:e2e_request_latency_seconds", m),
            unit="s",
        ),
        Panel(
            "Generated tokens / s",
            f"sum by (model_name) (rate(vllm:generation_tokens_total{{{m}}}[5m]))",
            unit="short",
        ),
        Panel(
            "Prompt tokens / s",
            f"sum by (model_name) (rate(vllm:prompt_tokens_total{{{m}}}[5m]))",
            unit="short",
        ),
    ]


def dashboard(job: str) -> dict[str, Any]:
    """A Grafana dashboard (schema 39) of `panels()`, on the provisioned Prometheus data source."""
    datasource = {"type": "prometheus", "uid": DATASOURCE_UID}
    out: list[dict[str, Any]] = []
    for i, panel in enumerate(panels()):
        out.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": panel.title,
                "datasource": datasource,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
                "targets": [{"refId": "A", "datasource": datasource, "expr": panel.expr, "legendFormat": panel.legend}],
            }
        )
    return {
        "uid": f"{job}-overview"[:40],
        "title": f"cocina: {job}",
        "tags": ["cocina", "vllm"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {
                    "name": "job",
                    "type": "custom",
                    "query": job,
                    "current": {"text": job, "value": job},
                    "options": [{"text": job, "value": job, "selected": True}],
                },
                {
                    "name": "model_name",
                    "type": "query",
                    "datasource": datasource,
                    "query": {"query": 'label_values(cocina_model_loaded{job=~"$job"}, model_name)', "refId": "v"},
                    "definition": 'label_values(cocina_model_loaded{job=~"$job"}, model_name)',
                    "includeAll": True,
                    "allValue": ".+",
                    "multi": True,
                    "refresh": 2,
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },
        "panels": out,
    }


def dashboard_json(job: str) -> str:
    return json.dumps(dashboard(job), indent=2) + "\n"

"""Deploying cocina: `cocina build --target edge|onprem|cloud` and replicas on Ray Serve.

- `source.py`: what a build is made from (a project directory today; a pushed version of the hub later), checked
  before anything is written.
- `monitoring.py`: the PromQL every target shares (dashboard panels, recording rules, alerts, the autoscalers'
  queue-depth query), so that what the dashboard shows is what the autoscaler scales on.
- `cloud.py` (Kubernetes manifests, Dockerfiles), `onprem.py` (systemd unit, compose with PostgreSQL, Prometheus
  and Grafana), `edge.py` (an offline bundle: wheelhouse, model, launcher; GGUF export in `gguf_export.py`).
- `build.py`: runs one target into a staging directory and moves it into place only when it is complete.
- `ray_serve.py`: N cocina replicas as a Ray Serve deployment with cocina's app as ingress, sharing PostgreSQL.
"""

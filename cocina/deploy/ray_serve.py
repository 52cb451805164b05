"""cocina replicas on Ray Serve: `cocina deploy ray PROJECT --replicas N --store postgresql://...`.

Each replica is a Ray Serve deployment replica whose ingress is cocina's own ASGI app (`create_app` over a
`Serving`): the three APIs, admission, leases and metrics are exactly `cocina serve`'s. What Ray adds is the
cluster: placing replicas, restarting dead ones, routing HTTP to them, and autoscaling. What cocina keeps is
durability: every prediction is a row in the shared PostgreSQL store, leased to the replica running it; when a
replica dies (SIGKILL, a lost node) its leases are reclaimed by the others and its predictions re-run
(`cocina/serving/recovery.py`). Ray alone would fail requests in flight on a dead replica.

- **Readiness.** A replica's ASGI lifespan starts serving and then waits for its warm models to load; a model
  whose setup fails makes the replica's start-up fail, so Ray never routes traffic to it (and retries it). Later,
  `check_health` fails when a warm model's setup has failed.
- **Autoscaling on queue depth.** Each replica reports its models' queued plus running predictions
  (`record_autoscaling_stats`); `queue_depth_policy` asks for ceil(total / target) replicas, where the target is
  the engine's batch capacity (or the predictor's concurrency), between min and max replicas; up at once, down
  one at a time after `downscale_delay_s` of lower demand.
- **Bounded queues.** cocina's per-model queue answers 429 with Retry-After when full; Ray's own queue in front
  of the replicas is bounded too (`max_queued_requests`) and answers 503 with Retry-After.
- **Threads.** Each replica takes `num_cpus` of Ray's CPUs and runs with OMP_NUM_THREADS set to `threads`
  (torch would otherwise use every core of the node in every replica).
"""

from __future__ import annotations

import math
import os
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ray import serve

from cocina.deploy.source import BuildError


@dataclass(frozen=True)
class ReplicaSettings:
    """What every replica is built from: plain data, so it travels to replica processes as it is."""

    targets: tuple[str, ...]
    models: tuple[str, ...] = ()
    name: str | None = None
    store: str = ""
    data_dir: str = ".cocina"  # shared by replicas: the file store (inputs and outputs that are files)
    public_url: str = "http://127.0.0.1:8000"
    lease_s: float = 20.0
    max_queue: int = 64
    concurrency: int | None = None
    threads: int = 1
    load_timeout_s: float = 300.0
    drain_grace_s: float = 30.0
    api_token: str | None = None
    engine_options: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # for the replica and its models' processes


@dataclass(frozen=True)
class ScaleSettings:
    replicas_min: int = 1
    replicas_max: int = 1
    target_per_replica: int = 4  # predictions (queued + running) one replica takes before another is wanted
    num_cpus: float = 1.0
    max_queued_requests: int = 256
    upscale_delay_s: float = 5.0
    downscale_delay_s: float = 120.0
    retry_after_s: int = 1
    max_constructor_retry_count: int = 20  # a replica whose models never load is retried this often, then given up


def queue_depth_policy(ctx: Any) -> tuple[int, dict[str, Any]]:
    """Ray Serve autoscaling policy: replicas for the predictions waiting or running in cocina's queues.

    `ctx.config.target_ongoing_requests` is the backlog one replica takes (the engine's batch capacity);
    scale-ups apply at once, scale-downs one replica at a time once demand stayed lower for
    `downscale_delay_s`."""
    state = dict(ctx.policy_state or {})
    metrics = ctx.aggregated_metrics or {}
    depth = float(sum((metrics.get("cocina_queue_depth") or {}).values()))
    target = float(getattr(ctx.config, "target_ongoing_requests", None) or 1.0)
    low, high = ctx.capacity_adjusted_min_replicas, ctx.capacity_adjusted_max_replicas
    wanted = min(max(math.ceil(depth / target), low), high)
    current = ctx.target_num_replicas
    now = ctx.current_time or 0.0
    if wanted >= current:
        state.pop("lower_since", None)
        return wanted, state
    since = state.setdefault("lower_since", now)
    delay = float(getattr(ctx.config, "downscale_delay_s", 0.0) or 0.0)
    if now - since >= delay:
        state.pop("lower_since", None)
        return current - 1, state
    return current, state


@serve.ingress()
class CocinaReplica:
    """One cocina server as a Ray Serve replica (its ASGI app is built in the replica's process)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = ReplicaSettings(**settings)
        # Threads for this replica and its models' processes (they inherit the environment).
        os.environ.update(self.settings.env)
        os.environ["OMP_NUM_THREADS"] = str(self.settings.threads)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        self.serving: Any = None

    def __serve_build_asgi_app__(self) -> Any:
        from cocina.server.app import create_app
        from cocina.server.cli import build_specs
        from cocina.server.config import ServerConfig
        from cocina.serving import Serving, ServingConfig
        from cocina.serving.spec import check_unique

        s = self.settings
        specs = build_specs(
            list(s.targets),
            list(s.models),
            name=s.name,
            served_model_names=[],
            engine_options=s.engine_options,
            environ=dict(os.environ),
        )
        check_unique(specs)
        default = specs[0].name
        specs = [spec.replace(warm=True) for spec in specs]  # a replica serves all its models, loaded
        config = ServingConfig(
            data_dir=Path(s.data_dir),
            store_url=s.store,
            public_url=s.public_url,
            lease_s=s.lease_s,
            max_queue=s.max_queue,
            concurrency=s.concurrency,
            load_timeout_s=s.load_timeout_s,
            drain_grace_s=s.drain_grace_s,
        )
        self.serving = serving = Serving(config, specs, default=default)
        app = create_app(serving, ServerConfig(api_token=s.api_token, drain_grace_s=s.drain_grace_s))
        started = app.router.lifespan_context

        @asynccontextmanager
        async def ready_when_loaded(application: Any) -> Any:
            async with started(application) as state:
                # Ray routes to a replica once its start-up ends: end it only when the models are loaded, and
                # fail it (Ray retries the replica) when one cannot be.
                await serving.wait_warm(s.load_timeout_s)
                yield state

        app.router.lifespan_context = ready_when_loaded
        return app

    async def check_health(self) -> None:
        if self.serving is None:
            return
        problem = self.serving.unhealthy()
        if problem is not None:
            raise RuntimeError(problem)

    async def record_autoscaling_stats(self) -> dict[str, float]:
        if self.serving is None or not hasattr(self.serving, "models"):
            return {"cocina_queue_depth": 0.0}
        return {"cocina_queue_depth": float(sum(rt.num_queued + rt.num_running for rt in self.serving.models))}


def deployment(settings: ReplicaSettings, scale: ScaleSettings) -> Any:
    """The bound Ray Serve application: `serve.run(deployment(...))`."""
    from ray.serve.config import AutoscalingConfig, AutoscalingPolicy, BackpressureConfig

    if not settings.store.startswith(("postgresql://", "postgres://")):
        raise BuildError("replicas share their predictions through PostgreSQL: give --store postgresql://...")
    if not 1 <= scale.replicas_min <= scale.replicas_max:
        raise BuildError(f"replicas: need 1 <= min <= max, got {scale.replicas_min}..{scale.replicas_max}")
    options: dict[str, Any] = {
        "name": "cocina",
        "ray_actor_options": {
            "num_cpus": scale.num_cpus,
            "runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(settings.threads)}},
        },
        # Requests a replica holds at once: cocina queues beyond its running predictions itself (and answers
        # 429 when its queue is full), so a replica takes its running and queued predictions.
        "max_ongoing_requests": max(settings.max_queue + (settings.concurrency or scale.target_per_replica), 8),
        "max_queued_requests": scale.max_queued_requests,
        "backpressure_config": BackpressureConfig(status_code=503, retry_after_s=scale.retry_after_s),
        "graceful_shutdown_timeout_s": settings.drain_grace_s + 5,
        "max_constructor_retry_count": scale.max_constructor_retry_count,
        "health_check_period_s": 5.0,
        "health_check_timeout_s": 10.0,
    }
    if scale.replicas_min == scale.replicas_max:
        options["num_replicas"] = scale.replicas_min
    else:
        options["autoscaling_config"] = AutoscalingConfig(
            min_replicas=scale.replicas_min,
            max_replicas=scale.replicas_max,
            target_ongoing_requests=scale.target_per_replica,
            upscale_delay_s=scale.upscale_delay_s,
            downscale_delay_s=scale.downscale_delay_s,
            policy=AutoscalingPolicy(policy_function="cocina.deploy.ray_serve:queue_depth_policy"),
        )
    make: Any = serve.deployment  # typed as a decorator factory; called on the class it is the deployment
    return make(CocinaReplica).options(**options).bind(asdict(settings))


def run(settings: ReplicaSettings, scale: ScaleSettings, *, host: str, port: int, address: str | None) -> None:
    """Start (or join, with `address`) a Ray cluster, run the replicas behind Ray's HTTP proxy on host:port,
    and block until interrupted; then shut the application down (replicas drain)."""
    import signal
    import threading

    import ray

    # No usage reporting to the outside: cocina runs where there may be no network.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    app = deployment(settings, scale)
    if address is None:
        # A cluster of this machine alone: its processes talk over the loopback only.
        ray.init(include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    else:
        ray.init(address=address, log_to_driver=False)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(app, name="cocina", route_prefix="/", blocking=False)
        print(f"cocina: {scale.replicas_min}..{scale.replicas_max} replicas on http://{host}:{port}", flush=True)
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()

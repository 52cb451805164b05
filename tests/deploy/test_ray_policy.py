"""The Ray Serve autoscaling policy on cocina's queue depth, and the replica settings that are refused, without a
cluster: the policy is a pure function of the context Ray gives it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("ray", reason="Ray Serve is an optional extra: pip install 'cocina[ray]'")

from cocina.deploy.ray_serve import ReplicaSettings, ScaleSettings, deployment, queue_depth_policy
from cocina.deploy.source import BuildError


@dataclass
class Config:
    target_ongoing_requests: float = 8
    downscale_delay_s: float = 60


@dataclass
class Context:
    """The fields of Ray's AutoscalingContext the policy reads."""

    depths: list[float]
    target_num_replicas: int = 4
    current_time: float = 0.0
    policy_state: dict[str, Any] = field(default_factory=dict)
    capacity_adjusted_min_replicas: int = 4
    capacity_adjusted_max_replicas: int = 16
    config: Config = field(default_factory=Config)

    @property
    def aggregated_metrics(self) -> dict[str, dict[str, float]]:
        return {"cocina_queue_depth": {f"replica-{i}": d for i, d in enumerate(self.depths)}}


def test_scales_up_at_once_to_the_queue_over_the_batch_capacity() -> None:
    wanted, _ = queue_depth_policy(Context([30, 30, 30, 30]))  # 120 waiting or running, 8 per replica
    assert wanted == 15
    assert queue_depth_policy(Context([400, 0, 0, 0]))[0] == 16  # capped at the maximum
    assert queue_depth_policy(Context([0, 0, 0, 0]))[0] == 4  # never under the minimum


def test_scales_down_one_replica_at_a_time_after_the_delay() -> None:
    ctx = Context([8, 0, 0, 0, 0, 0], target_num_replicas=6, current_time=100.0)
    wanted, state = queue_depth_policy(ctx)
    assert wanted == 6 and state["lower_since"] == 100.0  # lower demand noticed, not acted on yet
    later = Context([8, 0, 0, 0, 0, 0], target_num_replicas=6, current_time=130.0, policy_state=state)
    assert queue_depth_policy(later)[0] == 6
    after = Context([8, 0, 0, 0, 0, 0], target_num_replicas=6, current_time=161.0, policy_state=state)
    wanted, state = queue_depth_policy(after)
    assert wanted == 5 and "lower_since" not in state  # one step down, and the clock starts again
    busy = Context([16] * 6, target_num_replicas=6, current_time=170.0, policy_state={"lower_since": 100.0})
    wanted, state = queue_depth_policy(busy)
    assert wanted == 12 and "lower_since" not in state  # demand came back: up at once, the wait forgotten


def test_replicas_need_postgres_and_sane_bounds() -> None:
    with pytest.raises(BuildError, match="give --store postgresql://"):
        deployment(ReplicaSettings(targets=(".",), store="/tmp/p.db"), ScaleSettings())
    with pytest.raises(BuildError, match="need 1 <= min <= max"):
        deployment(ReplicaSettings(targets=(".",), store="postgresql://x@127.0.0.1/db"), ScaleSettings(5, 2))

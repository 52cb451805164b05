"""Deployments: a release is a weighted set of versions of one model; routing is sticky by a key.

A release's configuration is `{"versions": [{"version": id, "weight": w}, ...], "min_instances": n,
"max_instances": n}` with weights that are whole percentages summing to 100. A request carrying a sticky key
(its API key, the `Cocina-Sticky` header or the `cocina_sticky` cookie) always lands on the same version of a
release: the key and the deployment's name hash to a point in 0..99 that falls in one version's share. Without
a key, the version is drawn by weight.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cocina.serving.errors import InvalidRequest


@dataclass(frozen=True)
class Split:
    """One version of a release and its share of the traffic, in percent."""

    version: str
    weight: int


def parse_split(text: str) -> list[Split]:
    """`A=90,B=10` (or a single version id, 100%) -> splits; version ids may be prefixes resolved later."""
    splits = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        version, sep, weight = part.partition("=")
        if not sep:
            splits.append(Split(version.strip(), 100))
            continue
        try:
            splits.append(Split(version.strip(), int(weight)))
        except ValueError:
            raise InvalidRequest(f"weight {weight!r} of {version} is not a whole number", param="versions") from None
    if not splits:
        raise InvalidRequest("a release needs at least one version", param="versions")
    return splits


def splits_of(configuration: Mapping[str, Any]) -> list[Split]:
    return [Split(str(v["version"]), int(v["weight"])) for v in configuration.get("versions", [])]


def check_configuration(
    model: str, splits: Iterable[Split], min_instances: int, max_instances: int, known: set[str]
) -> dict[str, Any]:
    """A release's configuration, checked: known versions of `model`, whole weights of 1..100 that sum to 100,
    each version once, and 0 <= min_instances <= max_instances."""
    splits = list(splits)
    if not splits:
        raise InvalidRequest("a release needs at least one version", param="versions")
    seen: set[str] = set()
    for s in splits:
        if s.version not in known:
            raise InvalidRequest(f"version {s.version} of {model} not found", param="versions")
        if s.version in seen:
            raise InvalidRequest(f"version {s.version} is listed twice", param="versions")
        seen.add(s.version)
        if not 1 <= s.weight <= 100:
            raise InvalidRequest(f"the weight of {s.version} must be 1..100, got {s.weight}", param="versions")
    total = sum(s.weight for s in splits)
    if total != 100:
        raise InvalidRequest(f"the weights must sum to 100; they sum to {total}", param="versions")
    if min_instances < 0 or max_instances < 0:
        raise InvalidRequest("min_instances and max_instances must be >= 0", param="min_instances")
    if min_instances > max_instances:
        raise InvalidRequest(
            f"min_instances ({min_instances}) must not exceed max_instances ({max_instances})", param="min_instances"
        )
    return {
        "versions": [{"version": s.version, "weight": s.weight} for s in splits],
        "min_instances": min_instances,
        "max_instances": max_instances,
    }


def choose(deployment: str, splits: list[Split], sticky_key: str | None) -> Split:
    """The version a request goes to: by its sticky key's hash when it has one, else drawn by weight."""
    if len(splits) == 1:
        return splits[0]
    if sticky_key:
        digest = hashlib.sha256(f"{deployment}\0{sticky_key}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") % 100
    else:
        point = random.randrange(100)
    edge = 0
    for s in splits:
        edge += s.weight
        if point < edge:
            return s
    return splits[-1]

"""Releases and routing: weights checked, sticky keys keep one user on one version, traffic splits by weight."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from cocina.hub.deployments import Split, check_configuration, choose, parse_split
from cocina.serving.errors import InvalidRequest

A, B = "a" * 64, "b" * 64


def test_parse_split() -> None:
    assert parse_split(f"{A}=90,{B}=10") == [Split(A, 90), Split(B, 10)]
    assert parse_split(A) == [Split(A, 100)]
    with pytest.raises(InvalidRequest):
        parse_split(f"{A}=ninety")
    with pytest.raises(InvalidRequest):
        parse_split(" , ")


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        ([Split(A, 90), Split(B, 20)], "sum to 110"),
        ([Split(A, 50), Split("c" * 64, 50)], "not found"),
        ([Split(A, 50), Split(A, 50)], "listed twice"),
        ([Split(A, 100), Split(B, 0)], "must be 1..100"),
        ([], "at least one version"),
    ],
)
def test_bad_releases(splits: list[Split], message: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        check_configuration("acme/m", splits, 0, 1, {A, B})
    assert message in err.value.message


def test_instances_bounds() -> None:
    with pytest.raises(InvalidRequest):
        check_configuration("acme/m", [Split(A, 100)], 2, 1, {A})
    with pytest.raises(InvalidRequest):
        check_configuration("acme/m", [Split(A, 100)], -1, 1, {A})
    ok = check_configuration("acme/m", [Split(A, 90), Split(B, 10)], 1, 2, {A, B})
    assert ok == {
        "versions": [{"version": A, "weight": 90}, {"version": B, "weight": 10}],
        "min_instances": 1,
        "max_instances": 2,
    }


def test_sticky_keys_stay_and_the_split_holds() -> None:
    splits = [Split(A, 90), Split(B, 10)]
    keys = [f"user-{i}" for i in range(20_000)]
    first = {k: choose("acme/prod", splits, k).version for k in keys}
    assert all(choose("acme/prod", splits, k).version == first[k] for k in keys[:2000])  # one user, one version
    share = Counter(first.values())[B] / len(keys)
    assert 0.09 < share < 0.11, share
    random.seed(7)
    unsticky = Counter(choose("acme/prod", splits, None).version for _ in range(20_000))
    assert 0.09 < unsticky[B] / 20_000 < 0.11
    # Another deployment with the same split puts a user elsewhere independently.
    other = {k: choose("acme/other", splits, k).version for k in keys[:2000]}
    assert other != {k: first[k] for k in keys[:2000]}

"""Layout of clients on actors, and the Ray options' validation (no Ray needed)."""

from __future__ import annotations

import pytest

from fedsim.backend import RayConfig, plan_actors
from fedsim.errors import UserError


def test_one_client_per_actor_while_the_cluster_has_room():
    plan = plan_actors(3, cluster_cpus=4, cluster_gpus=0, config=RayConfig())
    assert (plan.num_actors, plan.clients_per_actor, plan.threads, plan.gpus_per_actor) == (3, 1, 1, 0.0)
    assert plan.groups([2, 0, 1]) == [[0], [1], [2]]


def test_more_clients_than_room_are_spread_evenly():
    plan = plan_actors(1000, cluster_cpus=2, cluster_gpus=0, config=RayConfig())
    assert (plan.num_actors, plan.clients_per_actor) == (2, 500)
    groups = plan.groups(list(range(1000)))
    assert [len(g) for g in groups] == [500, 500] and sorted(sum(groups, [])) == list(range(1000))
    half = plan_actors(10, cluster_cpus=2, cluster_gpus=0, config=RayConfig(cpus_per_actor=0.5))
    assert (half.num_actors, half.clients_per_actor, half.threads) == (4, 3, 1)
    capped = plan_actors(10, cluster_cpus=8, cluster_gpus=0, config=RayConfig(max_actors=3, cpus_per_actor=2))
    assert (capped.num_actors, capped.clients_per_actor, capped.threads) == (3, 4, 2)


def test_explicit_clients_per_actor():
    plan = plan_actors(10, cluster_cpus=4, cluster_gpus=0, config=RayConfig(clients_per_actor=5))
    assert (plan.num_actors, plan.clients_per_actor) == (2, 5)
    with pytest.raises(UserError, match="--ray.clients-per-actor"):
        plan_actors(10, cluster_cpus=2, cluster_gpus=0, config=RayConfig(clients_per_actor=2))
    with pytest.raises(UserError, match="--ray.cpus-per-actor"):
        plan_actors(10, cluster_cpus=2, cluster_gpus=0, config=RayConfig(cpus_per_actor=4))


def test_gpu_share():
    assert plan_actors(8, 4, 1, RayConfig()).gpus_per_actor == 0.25        # fractional share of one GPU
    assert plan_actors(2, 2, 4, RayConfig()).gpus_per_actor == 2.0          # whole GPUs above one
    assert plan_actors(8, 4, 0, RayConfig()).gpus_per_actor == 0.0          # CPU-only: none requested
    assert plan_actors(8, 4, 2, RayConfig(gpus_per_actor=0)).gpus_per_actor == 0.0
    with pytest.raises(UserError, match="--ray.gpus-per-actor"):
        plan_actors(8, 4, 1, RayConfig(gpus_per_actor=0.5))


@pytest.mark.parametrize("option, value", [("round_timeout_s", -1.0), ("cpus_per_actor", 0.0),
                                           ("gpus_per_actor", -0.5), ("clients_per_actor", -1),
                                           ("max_restarts", -1)])
def test_invalid_options_name_the_option(option, value):
    from dataclasses import replace

    with pytest.raises(UserError, match="--ray." + option.replace("_", "-")):
        replace(RayConfig(), **{option: value}).validate()

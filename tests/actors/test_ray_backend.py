"""The Ray backend: same results as the local one, lost actors, late clients, resume.

One local Ray (2 CPUs) serves every test (``ray_cluster``); runs are tiny, and each
uses 2 client actors plus the server actor.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import replace

import pytest

from actors.client_actor import ClientActor
from fedsim.algorithms.fedavg import FedAvgConfig
from fedsim.backend import RayConfig
from fedsim.callbacks import CheckpointCallback, RunCallback
from fedsim.commands.training_run import backend_started, prepare, simulate
from fedsim.simulation import run_federation
from runtime_helpers import TINY_HYPEVAE, assert_same_results, tiny_command

RAY = RayConfig(num_cpus=2, max_actors=2)


@pytest.mark.parametrize("command, actors", [
    pytest.param(tiny_command("fedhypevae", clients=2, rounds=2, epsilon=1.0,
                              training=replace(tiny_command().training, rounds=2, batch_size=32)), 1,
                 id="fedhypevae-eps1"),
    # statistics first: the warm start (a server step before round 0) and the footprint DP-SGD
    pytest.param(tiny_command("fedhypevae", clients=2, rounds=2, epsilon=1.0,
                              fedhypevae=replace(TINY_HYPEVAE, training="stats-first", observation_variance=True,
                                                 statistics_share=0.5, warm_start_steps=20, warm_start_batch=32)),
                 1, id="fedhypevae-stats-first"),
    pytest.param(tiny_command("fedavg", rounds=3, training=replace(tiny_command().training, rounds=3,
                                                                    client_fraction=0.5)), 2, id="fedavg-sampled"),
])
def test_ray_backend_reproduces_the_local_backend(ray_cluster, command, actors):
    local = simulate(replace(command, backend="local"), prepare(command))
    on_ray = simulate(replace(command, backend="ray", ray=replace(RAY, max_actors=actors)), prepare(command))
    assert_same_results(local, on_ray)


def test_actors_started_before_the_data_loads_give_the_local_backend_results(ray_cluster):
    """``backend_started`` (as ``train`` and ``table`` run): Ray and the actors start before
    ``prepare`` loads the data; the run takes those actors over and reproduces ``local``."""
    command = tiny_command("fedavg", rounds=2, fedavg=FedAvgConfig(private=True))
    on_ray = replace(command, backend="ray", ray=RAY)
    with backend_started(on_ray) as started:
        server, actors = started.server, list(started.client_actors)
        result = simulate(on_ray, prepare(on_ray), started=started)
        assert started.server is None and started.client_actors == []  # taken over, not duplicated
    assert server is not None and len(actors) == 2
    assert_same_results(simulate(replace(command, backend="local"), prepare(command)), result)


def _private_fedavg(rounds: int = 4, clients: int = 4):
    return tiny_command("fedavg", clients=clients, rounds=rounds, fedavg=FedAvgConfig(private=True))


class SlowFourthRound(ClientActor):
    """A client actor whose fourth round takes 2 s more, so that it can be killed inside it."""

    def local_round(self, ids, broadcast, round_index):
        if round_index == 3:
            time.sleep(2.0)
        return super().local_round(ids, broadcast, round_index)


def test_an_actor_killed_mid_round_does_not_stop_the_run_and_its_steps_stay_counted(ray_cluster, tmp_path):
    from actors.driver import ray_federation

    ray_cluster.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    command = _private_fedavg()
    prepared = prepare(command)
    with ray_federation(prepared, RAY, verbose=False, actor_class=SlowFourthRound) as (server, pool):
        class KillDuringRound4(RunCallback):
            def on_round_end(self, round_index, row, result):
                if row["round"] == 3:  # the checkpoint of round 2 exists; round 4 starts right after
                    threading.Timer(0.7, ray_cluster.kill, (pool.actors[0],), {"no_restart": True}).start()

        checkpoints = CheckpointCallback(tmp_path, 2, command.training.rounds, server, pool, command)
        result = run_federation(server, pool, prepared.settings, [KillDuringRound4(), checkpoints])
        assert checkpoints.written == [2, 4, 4]  # rounds 2 and 4, then after the release (before the server reads it)
        events = list(pool.events)
    rows = result.round_metrics
    assert [row["clients"] for row in rows] == [4, 4, 4, 2] and rows[3]["dropped"] == 2
    assert [e["event"] for e in events] == ["restart"] and events[0]["clients"] == [0, 1]
    assert events[0]["round"] == 4
    assert len(result.evaluations) == 4 and len(result.privacy_records) == 4
    # DP-SGD is planned from the public bound, not n_i (fedsim/privacy/plan.py)
    per_round = {c.client_id: command.training.local_epochs * math.ceil(command.privacy.max_records / 16)
                 for c in prepared.federation.clients}
    # every client is charged 4 rounds: clients 0 and 1 reported 3, and the round they
    # died in counts in full although its update was lost
    assert {r.client_id: r.steps for r in result.privacy_records} == {cid: 4 * n for cid, n in per_round.items()}


class SlowFirstRound(ClientActor):
    """A client actor whose first round takes 2 s more, so that it can be killed inside it."""

    def local_round(self, ids, broadcast, round_index):
        if round_index == 0:
            time.sleep(2.0)
        return super().local_round(ids, broadcast, round_index)


def test_a_client_lost_before_its_first_round_never_releases_its_statistics_twice(ray_cluster):
    """Statistics-first FedHypeVAE releases each client's class statistics before round 0.
    An actor killed inside round 1 (no checkpoint, no confirmed round) restarts from the
    initial state: the finalisation reuses the warm start's releases (the server is never
    sent a second release with fresh noise), and the restarted clients' accountants still
    charge the one release they made (the pool confirmed it)."""
    from actors.driver import ray_federation

    ray_cluster.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    command = tiny_command("fedhypevae", clients=4, rounds=2, epsilon=1.0,
                           fedhypevae=replace(TINY_HYPEVAE, training="stats-first", statistics_share=0.5,
                                              warm_start_steps=5, warm_start_batch=32))
    prepared = prepare(command)
    with ray_federation(prepared, RAY, verbose=False, actor_class=SlowFirstRound) as (server, pool):
        releases_asked = []
        release = pool.release
        pool.release = lambda ids: releases_asked.append(list(ids)) or release(ids)

        class KillDuringRound1(RunCallback):
            def on_round_start(self, round_index, ids):
                if round_index == 0:
                    threading.Timer(0.7, ray_cluster.kill, (pool.actors[0],), {"no_restart": True}).start()

        result = run_federation(server, pool, prepared.settings, [KillDuringRound1()])
        events = list(pool.events)
    assert [e["event"] for e in events] == ["restart"] and events[0]["round"] == 1
    assert releases_asked == [[0, 1, 2, 3]]  # the warm start's; the finalisation reuses them
    for record in result.privacy_records:
        releases = [entry for entry in record.history if entry[1] == 1.0]
        assert len(releases) == 1, record.client_id  # charged once, restarted or not
        assert record.epsilon_total <= command.privacy.epsilon * (1 + 1e-6)


def test_late_clients_are_left_out_of_the_round_but_their_steps_counted(ray_cluster):
    command = _private_fedavg(rounds=3, clients=2)
    ray = replace(RAY, round_timeout_s=1e-3, max_actors=1)
    result = simulate(replace(command, backend="ray", ray=ray), prepare(command))
    assert any(row.get("dropped", 0) > 0 for row in result.round_metrics)
    assert sum(row["clients"] + row.get("dropped", 0) for row in result.round_metrics) == 3 * 2
    client_ids = [c.client_id for c in prepare(command).federation.clients]
    assert {r.client_id: r.steps for r in result.privacy_records} == {  # late rounds ran, and count
        cid: 3 * math.ceil(command.privacy.max_records / 16) for cid in client_ids}


@pytest.mark.slow
def test_resume_on_ray_from_a_local_checkpoint(ray_cluster, tmp_path):
    command = tiny_command("fedavg", rounds=4, checkpoint_every=2)
    whole = simulate(command, prepare(command))

    class Interrupt(Exception):
        pass

    class Die(RunCallback):
        def on_round_end(self, round_index, row, result):
            if row["round"] == 3:
                raise Interrupt

    with pytest.raises(Interrupt):
        simulate(command, prepare(command), [Die()], run_dir=tmp_path)
    resumed = replace(command, backend="ray", ray=RAY, resume=tmp_path)
    assert_same_results(whole, simulate(resumed, prepare(resumed), run_dir=tmp_path))


@pytest.mark.slow
def test_a_thousand_clients_with_sampling(ray_cluster):
    from fedsim.data.synthetic import SyntheticConfig

    command = tiny_command("fedavg", clients=1000, rounds=2)
    command = replace(command, data=replace(command.data, synthetic=SyntheticConfig(n_samples=25_000, dim=8,
                                                                                     num_classes=3)),
                      training=replace(command.training, client_fraction=0.1), backend="ray",
                      ray=RayConfig(num_cpus=2))
    result = simulate(command, prepare(command))
    assert [row["clients"] for row in result.round_metrics] == [100, 100]
    assert len(result.evaluations) == 1000


@pytest.mark.slow
def test_the_cli_joins_the_cluster_named_by_ray_address(ray_cluster, tmp_path):
    """``RAY_ADDRESS`` set: ``python -m fedsim.run --backend ray`` joins that cluster
    (here the tests' own) instead of starting one, and leaves it running."""
    import os
    import subprocess

    from ray._private.state import jobs

    address = ray_cluster.get_runtime_context().gcs_address
    jobs_before = len(jobs())
    args = ["--backend", "ray", "--algorithm", "fedavg", "--data.num-clients", "2", "--training.rounds", "1",
            "--data.synthetic.n-samples", "200", "--data.synthetic.dim", "8", "--no-progress",
            "--checkpoint-every", "0", "--out", str(tmp_path / "run")]
    done = subprocess.run([sys.executable, "-m", "fedsim.run", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "RAY_ADDRESS": address})
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "summary.json").exists()
    assert len(jobs()) == jobs_before + 1  # the run was a job of this cluster
    assert ray_cluster.is_initialized() and ray_cluster.cluster_resources().get("CPU") == 2


class DiesRightAfterItsRelease(ClientActor):
    """Completes its release task, then dies at the next call (the first instance only: a
    restarted actor is a new instance that has released nothing)."""

    released_here = False

    def release(self, ids):
        self.released_here = True
        return super().release(ids)

    def _die_if_released(self):
        import os

        if self.released_here and 0 in self.clients:
            os._exit(1)

    def accountants(self, ids):
        self._die_if_released()
        return super().accountants(ids)

    def evaluate(self, ids, artifact, global_test=None):
        self._die_if_released()
        return super().evaluate(ids, artifact, global_test)


def test_an_actor_lost_right_after_its_release_keeps_the_release_charged(ray_cluster):
    """dp-stats (aggregate placement): actor 0's release task completes and its releases
    reach the server, then the actor dies.  The restarted clients' ledgers must still
    charge that release: the accountant state is confirmed from the release task itself,
    never from a later call the actor may not live to answer."""
    from actors.driver import ray_federation

    ray_cluster.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    privacy = replace(tiny_command().privacy, epsilon=2.0, noise_placement="aggregate")
    command = tiny_command("dp-stats", clients=4, rounds=1, privacy=privacy)
    prepared = prepare(command)
    with ray_federation(prepared, RAY, verbose=False, actor_class=DiesRightAfterItsRelease) as (server, pool):
        result = run_federation(server, pool, prepared.settings)
        events = list(pool.events)
    assert [e["event"] for e in events] == ["restart"] and events[0]["clients"] == [0, 1]
    sigma = result.privacy_records[2].stats_noise_multiplier  # a client that was not restarted
    for record in result.privacy_records:
        assert [tuple(entry) for entry in record.history] == [(sigma, 1.0, 1)], record.client_id
        assert record.epsilon_total == pytest.approx(result.privacy_records[2].epsilon_total)

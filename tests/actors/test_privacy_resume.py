"""``--resume`` after a kill in the middle of a round (local backend): the rounds started
before the crash stay charged, and the replayed round runs on fresh noise (never the
noise its first run released); and every output lists what its ε covers."""

from __future__ import annotations

import json
from dataclasses import replace

import pyarrow.parquet as pq
import pytest
import torch

from fedsim.algorithms.registry import algorithm_module
from fedsim.callbacks import RunCallback
from fedsim.checkpoint import load_checkpoint
from fedsim.commands.train import TrainCommand
from fedsim.commands.training_run import prepare, run_settings, run_training
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.coverage import STATUSES
from fedsim.privacy.journal import read_journal
from fedsim.simulation import LocalClientPool
from runtime_helpers import tiny_command


class Killed(Exception):
    pass


def test_resume_after_a_kill_mid_round_charges_it_and_reseeds_its_noise(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    privacy = PrivacyConfig(epsilon=1.0, reproducible_noise=True, max_records=64)
    command = tiny_command("dp-cvae", clients=2, rounds=3, checkpoint_every=2, privacy=privacy)
    seen: dict = {}
    original = LocalClientPool.local_round

    def local_round(self, ids, broadcast, round_index):
        if round_index == 2 and "first" not in seen:  # client 0 releases its update, then the process dies
            seen["first"] = self.clients[ids[0]].local_round(broadcast, round_index)[0]
            seen["steps"] = self.clients[ids[0]].privacy_state.accountant.dp_sgd_steps()
            raise Killed
        outcomes = original(self, ids, broadcast, round_index)
        if round_index == 2:
            seen["replayed"] = outcomes[0][0]
        return outcomes

    monkeypatch.setattr(LocalClientPool, "local_round", local_round)
    with pytest.raises(Killed):
        run_training(replace(command, out=run_dir))
    assert load_checkpoint(run_dir).rounds_done == 2
    assert read_journal(run_dir)["started"][-1] == [2, [0, 1]]

    run_training(TrainCommand(resume=run_dir, backend="local", progress=False))
    first, replayed = seen["first"], seen["replayed"]
    assert first.client_id == replayed.client_id == 0
    assert not all(torch.equal(first.delta[k], replayed.delta[k]) for k in first.delta)  # fresh noise
    ledger = json.loads((run_dir / "privacy.json").read_text())
    per_round = command.training.local_epochs * -(-privacy.max_records // command.training.batch_size)
    steps = {row["client_id"]: row["steps"] for row in ledger["clients"]}
    assert seen["steps"] == 3 * per_round
    assert steps == {0: 4 * per_round, 1: 4 * per_round}  # 3 rounds + the started round 3, charged
    assert all(row["epsilon_total"] <= privacy.epsilon * (1 + 1e-6) for row in ledger["clients"])  # the reserve
    assert read_journal(run_dir)["resumes"] == 1


def test_outputs_list_coverage_and_note_pooled_train_standardisation(tmp_path):
    command = tiny_command("dp-cvae", clients=2, rounds=1, out=tmp_path, privacy=PrivacyConfig(max_records=64))
    command = replace(command, data=replace(command.data, standardize="pooled-train"),
                      evaluation=replace(command.evaluation, selection="global"))
    summary = run_training(command)
    assert "pooled-train" in summary["privacy_note"] and "selection=global" in summary["privacy_note"]
    assert "add/remove" in summary["neighbouring"]
    metadata = json.loads(pq.read_schema(tmp_path / "synthetic.parquet").metadata[b"fedsim.coverage"])
    ledger = json.loads((tmp_path / "privacy.json").read_text())
    for coverage in (summary["coverage"], metadata, ledger["coverage"]):
        assert {entry["status"] for entry in coverage} <= set(STATUSES)
        by_output = {entry["output"]: entry["status"] for entry in coverage}
        assert by_output["synthetic.parquet"] == "not-covered"  # pooled statistics read without noise
        assert by_output["metrics.parquet (per-round losses, seconds)"] == "simulator-side"
    assert "pooled-train" in json.loads(pq.read_schema(tmp_path / "synthetic.parquet").metadata[b"fedsim.note"])


def test_a_plain_private_run_is_dp_where_it_releases(tmp_path):
    command = tiny_command("dp-cvae", clients=2, rounds=1, out=tmp_path, privacy=PrivacyConfig(max_records=64))
    command = replace(command, evaluation=replace(command.evaluation, selection="per-client"))
    summary = run_training(command)
    assert summary["privacy_note"] == ""
    by_output = {entry["output"]: entry["status"] for entry in summary["coverage"]}
    assert by_output["synthetic.parquet"] == "dp" and by_output["client updates (sample count, Eq. 10 weights)"] == "dp"
    assert by_output["summary.json and clients.parquet (downstream metrics)"] == "simulator-side"
    assert by_output["privacy_journal.json (runs with checkpoints)"] == "public-by-assumption"


class CrashAfterRelease(RunCallback):
    """Stops the run once the clients' statistics reached the server (a kill after the release)."""

    def on_finish(self, result):
        raise Killed


@pytest.mark.parametrize("algorithm,placement", [("dp-stats", "aggregate"), ("dp-stats", "client"),
                                                 ("fedhypevae", "aggregate")])
def test_resume_after_the_release_hands_the_server_the_same_release(tmp_path, monkeypatch, algorithm, placement):
    """A crash after the final release (secure noise): the resumed run must not draw a second,
    uncharged release on fresh noise; the server reads the very statistics it read before and
    every accountant holds one release."""
    run_dir = tmp_path / "run"
    privacy = PrivacyConfig(epsilon=2.0, max_records=64, noise_placement=placement)  # secure noise
    command = tiny_command(algorithm, clients=3, rounds=1, checkpoint_every=1, privacy=privacy, out=run_dir)
    server_class = type(algorithm_module(algorithm).make_server(prepare(command).spec, run_settings(command)))
    pooled_reads: list = []
    original = server_class.finalize

    def finalize(self, releases):
        pooled_reads.append([torch.cat([r.statistics.counts, r.statistics.sums.ravel()]) for r in releases])
        return original(self, releases)

    monkeypatch.setattr(server_class, "finalize", finalize)
    with pytest.raises(Killed):
        run_training(command, callbacks=[CrashAfterRelease()])
    run_training(TrainCommand(resume=run_dir, backend="local", progress=False))
    first, resumed = pooled_reads
    assert all(torch.equal(a, b) for a, b in zip(first, resumed))
    ledger = json.loads((run_dir / "privacy.json").read_text())
    for row in ledger["clients"]:
        releases = [entry for entry in row["history"] if entry[1] == 1.0 and entry[2] == 1]
        assert releases == [[row["stats_noise_multiplier"], 1.0, 1]]
        assert row["epsilon_total"] <= privacy.epsilon * (1 + 1e-6)


class KilledInRound0(RunCallback):
    def on_round_start(self, round_index, ids):
        raise Killed


def test_a_stats_first_run_killed_before_its_first_round_resumes_with_the_same_release(tmp_path, monkeypatch):
    """The warm start's releases are checkpointed (after 0 rounds) before the server reads
    them: a run killed in round 0 resumes, and its server warm-starts on the same releases."""
    from fedsim.algorithms.fedhypevae import FedHypeVAEServer

    run_dir = tmp_path / "run"
    privacy = PrivacyConfig(epsilon=2.0, max_records=64, noise_placement="aggregate")  # secure noise
    command = tiny_command("fedhypevae", clients=3, rounds=1, checkpoint_every=1, privacy=privacy, out=run_dir)
    command = replace(command, fedhypevae=replace(command.fedhypevae, training="stats-first"))
    reads: list = []
    original = FedHypeVAEServer.warm_start

    def warm_start(self, releases):
        reads.append([r.statistics.sums.clone() for r in releases])
        return original(self, releases)

    monkeypatch.setattr(FedHypeVAEServer, "warm_start", warm_start)
    with pytest.raises(Killed):
        run_training(command, callbacks=[KilledInRound0()])
    assert load_checkpoint(run_dir).rounds_done == 0
    run_training(TrainCommand(resume=run_dir, backend="local", progress=False))
    first, resumed = reads
    assert all(torch.equal(a, b) for a, b in zip(first, resumed))
    ledger = json.loads((run_dir / "privacy.json").read_text())
    for row in ledger["clients"]:
        assert [entry for entry in row["history"] if entry[1:] == [1.0, 1]] == [[row["stats_noise_multiplier"], 1.0, 1]]

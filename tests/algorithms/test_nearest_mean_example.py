"""The README's "Adding a method" example: its module and record, run end to end through
``python -m fedsim.run train``, and checked against an independent computation."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fedsim.run  # noqa: F401  (the CLI's option classes are built: register() must refuse now)
from fedsim.algorithms import registry
from fedsim.algorithms.examples import nearest_mean
from fedsim.algorithms.registry import MethodRecord, RunSettings
from fedsim.algorithms.spec import FederationSpec, TrainingConfig
from fedsim.data.federation import DataConfig, load_federation
from fedsim.data.synthetic import SyntheticConfig
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.privacy.config import PrivacyConfig

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DATA = DataConfig(num_clients=4, synthetic=SyntheticConfig(n_samples=800, dim=16, num_classes=4))
DATA_ARGS = ["--data.num-clients", "4", "--data.synthetic.n-samples", "800", "--data.synthetic.dim", "16",
             "--data.synthetic.num-classes", "4"]


def readme_record_block() -> str:
    """The README's python block that registers the example's record."""
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
    [block] = [b for b in blocks if "register(MethodRecord(" in b]
    return block


def test_the_readme_shows_the_module_verbatim():
    assert Path(nearest_mean.__file__).read_text(encoding="utf-8") in README


def independent_scores(normalize: bool, seed: int = 0) -> list[float]:
    """Per-client test accuracy of the nearest pooled class mean, in NumPy."""
    federation = load_federation(DATA, seed)

    def features(x):
        x = np.asarray(x, dtype=np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12) if normalize else x

    x = np.concatenate([features(c.x_train) for c in federation.clients])
    y = np.concatenate([c.y_train for c in federation.clients])
    means = np.stack([x[y == k].mean(axis=0) for k in range(federation.num_classes)])
    scores = []
    for client in federation.clients:
        distances = ((features(client.x_test)[:, None, :] - means[None]) ** 2).sum(-1)
        scores.append(float((distances.argmin(1) == client.y_test).mean()))
    return scores


def test_server_means_are_the_pooled_class_means():
    federation = load_federation(DATA, 0)
    spec = FederationSpec(len(federation.clients), federation.num_classes, federation.dim,
                          tuple(federation.class_names))
    settings = RunSettings("nearest-mean", nearest_mean.NearestMeanConfig(), PrivacyConfig(),
                           TrainingConfig(rounds=1, batch_size=1), EvaluationConfig(), 0)
    clients = [nearest_mean.make_client(c, spec, settings) for c in federation.clients]
    server = nearest_mean.make_server(spec, settings)
    server.aggregate([client.local_round(server.broadcast(), 0)[0] for client in clients])
    artifact = server.finalize([client.release() for client in clients])
    x = np.concatenate([c.x_train for c in federation.clients]).astype(np.float64)
    y = np.concatenate([c.y_train for c in federation.clients])
    expected = np.stack([x[y == k].mean(axis=0) for k in range(federation.num_classes)])
    np.testing.assert_allclose(artifact.means.numpy(), expected, rtol=1e-12, atol=1e-12)
    assert all(client.privacy_state.epsilon() == float("inf") for client in clients)  # sums sent in the clear


def test_register_refuses_a_known_name_and_a_late_registration():
    record = MethodRecord("nearest-mean", "Nearest mean", "fedsim.algorithms.examples.nearest_mean",
                          "fedsim.algorithms.examples.nearest_mean:NearestMeanConfig", "help",
                          batch_size=None, privacy="none", synthesis=False)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(MethodRecord(**{**record.__dict__, "name": "fedavg"}))
    with pytest.raises(RuntimeError, match="before importing fedsim.commands"):
        registry.register(record)  # fedsim.run is imported above: the CLI would not see it
    assert "nearest-mean" not in registry.NAMES and "nearest-mean" not in registry.BY_NAME


def test_the_cli_does_not_know_the_method_without_its_record(capsys):
    with pytest.raises(SystemExit) as exit_info:
        fedsim.run.main(["train", "--algorithm", "nearest-mean", "--backend", "local"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("normalize", [pytest.param(False, marks=pytest.mark.slow), True])
def test_readme_example_runs_through_the_train_command(tmp_path, normalize):
    """The README's record block, then ``fedsim.run.main`` as ``python -m fedsim.run`` calls
    it, in a fresh interpreter (so the record is registered before the CLI is built)."""
    script = readme_record_block() + "\nimport sys\nfrom fedsim.run import main\nsys.exit(main(sys.argv[1:]))\n"
    out = tmp_path / "run"
    args = ["train", "--algorithm", "nearest-mean", "--backend", "local", "--training.rounds", "2",
            "--threads", "1", "--no-progress", "--out", str(out), *DATA_ARGS]
    if normalize:
        args.append("--nearest-mean.normalize")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    summary = json.loads((out / "summary.json").read_text())
    ledger = json.loads((out / "privacy.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert summary["algorithm"] == "nearest-mean" and summary["rounds"] == 2
    assert float(summary["epsilon_max"]) == float("inf") and float(ledger["epsilon_max"]) == float("inf")
    assert config["nearest_mean"]["normalize"] is normalize
    assert not (out / "synthetic.parquet").exists()
    scores = independent_scores(normalize)
    assert summary["acc_mean"] == pytest.approx(float(np.mean(scores)), rel=1e-12)
    assert summary["acc_mean"] > 1.5 / DATA.synthetic.num_classes  # well above chance


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)

"""``--device`` (fedsim.device): one place resolves it, with a fake CUDA check here (the
machine has no GPU); ``cuda`` without a GPU, or for a CPU-only method, is refused on the
command line (exit 2, no traceback, no run directory); Ray asks for GPU shares only when
the clients may use them; DP noise lands on the requested device with the CPU's values."""

from __future__ import annotations

import pytest
import torch

from fedsim.algorithms.fedavg import FedAvgConfig
from fedsim.algorithms.fedhypevae.config import FedHypeVAEConfig
from fedsim.algorithms.registry import RunSettings
from fedsim.algorithms.spec import TrainingConfig
from fedsim.backend import RayConfig, plan_actors
from fedsim.device import CPU, check_device, resolve_device, to_device
from fedsim.errors import UserError
from fedsim.evaluation.downstream import EvaluationConfig
from fedsim.privacy.config import PrivacyConfig
from fedsim.privacy.noise import SeededNoise
from fedsim.privacy.secure_noise import SecureNoise
from fedsim.run import main


@pytest.fixture
def gpu(monkeypatch):
    """Make torch appear to have (True) or lack (False) a CUDA GPU."""
    def set_available(available: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    return set_available


def settings(algorithm: str, method, device: str) -> RunSettings:
    return RunSettings(algorithm, method, PrivacyConfig(), TrainingConfig(batch_size=16), EvaluationConfig(), 0,
                       device)


def test_auto_resolves_to_cuda_only_where_torch_sees_a_gpu(gpu):
    gpu(True)
    assert resolve_device("auto") == torch.device("cuda") == resolve_device("cuda")
    assert resolve_device("cpu") == CPU
    gpu(False)
    assert resolve_device("auto") == CPU == resolve_device("cpu")
    with pytest.raises(UserError, match="--device cuda: torch sees no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(UserError, match="valid: auto, cpu, cuda"):
        resolve_device("gpu")


def test_methods_without_device_support_stay_on_the_cpu(gpu):
    gpu(True)
    assert settings("fedavg", FedAvgConfig(), "auto").device_here() == torch.device("cuda")
    assert settings("dp-fedprox", FedAvgConfig(), "cuda").device_option == "cuda"
    hypevae = settings("fedhypevae", FedHypeVAEConfig(), "auto")
    assert hypevae.device_option == "cpu" and hypevae.device_here() == CPU == hypevae.server_device_here()
    assert settings("fedavg", FedAvgConfig(), "cpu").server_device_here() == CPU
    with pytest.raises(UserError, match="fedhypevae runs on the CPU only"):
        check_device("cuda", False, "fedhypevae")
    check_device("cuda", True, "fedavg")  # a GPU is there
    gpu(False)
    assert settings("fedavg", FedAvgConfig(), "auto").device_here() == CPU
    with pytest.raises(UserError, match="no CUDA GPU"):
        check_device("cuda", True, "fedavg")
    check_device("cuda", True, "fedavg", local_gpu_check=False)  # joining a cluster: Ray decides
    check_device("auto", False, "fedhypevae")


@pytest.mark.parametrize("algorithm", ["fedavg", "fedhypevae"])
def test_cuda_without_a_gpu_exits_2_before_any_work(gpu, tmp_path, capsys, algorithm):
    gpu(False)
    run_dir = tmp_path / "run"
    code = main(["train", "--algorithm", algorithm, "--device", "cuda", "--backend", "local", "--out", str(run_dir)])
    message = capsys.readouterr().err
    assert code == 2, message
    assert "--device cuda" in message and "Traceback" not in message
    assert len([line for line in message.strip().splitlines() if line.strip()]) == 1
    assert not run_dir.exists()


def test_ray_requests_gpu_shares_only_for_clients_that_may_use_them():
    assert plan_actors(8, 4, 1, RayConfig(), "auto").gpus_per_actor == 0.25
    assert plan_actors(8, 4, 1, RayConfig(), "cuda").gpus_per_actor == 0.25
    assert plan_actors(8, 4, 1, RayConfig(), "cpu").gpus_per_actor == 0.0
    assert plan_actors(8, 4, 1, RayConfig(gpus_per_actor=0.1), "cpu").gpus_per_actor == 0.1  # as asked
    assert plan_actors(8, 4, 0, RayConfig(), "auto").gpus_per_actor == 0.0
    with pytest.raises(UserError, match="--device cuda: the Ray cluster has no GPUs"):
        plan_actors(8, 4, 0, RayConfig(), "cuda")


@pytest.mark.parametrize("source", ["seeded", "secure"])
def test_noise_lands_on_the_requested_device_with_the_cpus_values(source):
    def fresh():
        return SeededNoise(torch.Generator().manual_seed(3)) if source == "seeded" else SecureNoise()

    on_meta = fresh().gaussian((3, 4), 1.5, dtype=torch.float64, device=torch.device("meta"))
    assert on_meta.device.type == "meta" and on_meta.shape == (3, 4) and on_meta.dtype == torch.float64
    assert fresh().gaussian((5,), 0.0, device=torch.device("meta")).device.type == "meta"
    if source == "seeded":  # the same stream gives the same values wherever they go
        assert torch.equal(fresh().gaussian((3, 4), 1.5, device=CPU), fresh().gaussian((3, 4), 1.5))


def test_to_device_keeps_cpu_tensors_as_they_are():
    tensors = {"w": torch.ones(2)}
    assert to_device(tensors, CPU) is tensors
    moved = to_device(tensors, torch.device("meta"))
    assert moved["w"].device.type == "meta" and tensors["w"].device == CPU

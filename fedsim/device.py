"""Where a process puts its tensors: ``--device auto|cpu|cuda``, decided in one place.

:func:`resolve_device` turns the option into a ``torch.device`` in the process that runs
the clients (the driver for ``--backend local``, each client actor for ``--backend ray``):
``cpu``; ``cuda`` (the process's current CUDA device; an error if torch sees none);
``auto`` — CUDA when torch sees a GPU in that process, else the CPU.  A Ray client actor
sees a GPU only when it was given a share of one (``--ray.gpus-per-actor``, or by default
the cluster's GPUs divided among the client actors when the device is not ``cpu``), so
``auto`` means "CUDA when the actor was given a GPU".

``RunSettings.device_here`` applies it to a method: the methods whose clients and server
keep their models, data and DP noise on a device (``MethodRecord.runs_on_device``:
FedAvg, FedProx, FedLambda, DP-FedAvg, DP-FedProx) get the resolved device; the others
run on the CPU (``--device cuda`` with one of them is refused by :func:`check_device`).  Messages
between clients and the server (the broadcast Φ, the updates, the released artifacts and
checkpoints) are CPU tensors: each client moves Φ to its device once per round and its
update back once.  On the CPU nothing moves (``.to(cpu)`` of a CPU tensor is the tensor
itself), so CPU results are bit for bit those of fedsim without this option.  The CUDA
path has not been run on a GPU (README, "Devices").
"""

from __future__ import annotations

from typing import Literal, Mapping

import torch
from torch import Tensor

from fedsim.errors import UserError

DeviceName = Literal["auto", "cpu", "cuda"]
DEVICE_NAMES: tuple[str, ...] = ("auto", "cpu", "cuda")
CPU = torch.device("cpu")


def cuda_available() -> bool:
    """Whether torch sees a usable CUDA GPU in this process (the one place that asks)."""
    return bool(torch.cuda.is_available())


def resolve_device(name: str) -> torch.device:
    """The ``torch.device`` of ``--device name`` in this process (module docstring);
    a ``UserError`` for ``cuda`` without a GPU or an unknown name."""
    if name == "cpu":
        return CPU
    if name == "auto":
        return torch.device("cuda") if cuda_available() else CPU
    if name == "cuda":
        if not cuda_available():
            raise UserError("--device cuda: torch sees no CUDA GPU on this machine; use --device cpu or auto.")
        return torch.device("cuda")
    raise UserError(f"--device {name!r} is not a device; valid: auto, cpu, cuda.")


def check_device(name: str, runs_on_device: bool, algorithm: str, option: str = "--device",
                 local_gpu_check: bool = True) -> None:
    """Refuse, before any work, a device the run cannot use: an unknown name; ``cuda``
    for a method that runs on the CPU only; ``cuda`` where torch sees no GPU in this
    process (``local_gpu_check``: the clients run here or on a Ray instance started here)."""
    if name not in DEVICE_NAMES:
        raise UserError(f"{option} {name!r} is not a device; valid: auto, cpu, cuda.")
    if name != "cuda":
        return
    if not runs_on_device:
        raise UserError(f"{option} cuda: {algorithm} runs on the CPU only; use --device cpu or auto "
                        "(devices: fedavg, fedprox, fedlambda, dp-fedavg, dp-fedprox).")
    if local_gpu_check and not cuda_available():
        raise UserError(f"{option} cuda: torch sees no CUDA GPU on this machine; use --device cpu or auto.")


def to_device(tensors: Mapping[str, Tensor], device: torch.device) -> Mapping[str, Tensor]:
    """``tensors`` on ``device``: the mapping itself when every tensor is there already
    (always so on the CPU), else a dict of moved tensors."""
    if all(tensor.device == device for tensor in tensors.values()):
        return tensors
    return {name: tensor.to(device) for name, tensor in tensors.items()}

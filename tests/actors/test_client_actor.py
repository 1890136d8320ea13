"""What a client actor returns (the class runs in-process here; no Ray needed)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from actors.client_actor import ClientActor
from actors.messages import ClientReport
from fedsim.algorithms.base import ClientUpdate
from fedsim.commands.training_run import prepare
from runtime_helpers import tiny_command


def _tensors(value, seen=None):
    """Every tensor or array reachable from ``value``."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return []
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        return [value.detach()]
    if isinstance(value, np.ndarray):
        return [torch.as_tensor(value)] if value.dtype.kind in "fiu" else []
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item, seen)]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item, seen)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [t for f in dataclasses.fields(value) for t in _tensors(getattr(value, f.name), seen)]
    return []


def test_a_client_actor_returns_messages_and_ledgers_only(tmp_path):
    prepared = prepare(tiny_command(clients=2, rounds=1))
    actor = ClientActor(prepared.federation.clients, prepared.spec, prepared.settings, threads=1)
    server = prepared.module.make_server(prepared.spec, prepared.settings)
    updates, reports = actor.local_round([0, 1], server.broadcast(), 0)
    assert all(isinstance(u, ClientUpdate) for u in updates) and all(isinstance(r, ClientReport) for r in reports)
    assert all(set(r.accountant) <= {"accountant", "delta", "history", "kinds"} for r in reports)
    returned = _tensors([updates, reports, actor.release([0, 1]), actor.epsilons([0, 1]),
                         actor.privacy_records([0, 1]), actor.save_states(str(tmp_path))])
    private = []
    for client in actor.clients.values():
        private += [p.detach() for n, p in client.model.named_parameters() if n.split(".")[0] in ("encoder", "client_code")]
        private += [torch.as_tensor(client.data.x_train)]
    for tensor in returned:
        for secret in private:
            assert not (tensor.shape == secret.shape and torch.equal(tensor.float(), secret.float()))
    # a checkpoint leaves as files the actor writes, described by a shard list
    assert actor.save_states(str(tmp_path)) == [{"file": "clients-000000.pt", "ids": [0, 1]}]


def test_a_client_actor_works_on_private_writable_copies_of_its_data():
    prepared = prepare(tiny_command(clients=2, rounds=1))
    data = [dataclasses.replace(d, x_train=d.x_train.copy()) for d in prepared.federation.clients]
    for d in data:
        d.x_train.setflags(write=False)  # as arrays fetched from Ray's object store are
    actor = ClientActor(data, prepared.spec, prepared.settings)
    assert all(c.data.x_train.flags.writeable for c in actor.clients.values())


def test_a_client_actor_starts_without_opacus_or_scikit_learn():
    """An actor's start-up imports (its module and a method's) leave out Opacus and
    scikit-learn: a run without DP never loads Opacus, evaluation loads scikit-learn."""
    probe = ("import sys, actors.client_actor, fedsim.algorithms.fedavg; "
             "print(sorted(m for m in ('opacus', 'sklearn') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert done.stdout.strip() == "[]"

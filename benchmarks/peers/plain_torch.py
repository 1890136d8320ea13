"""The floor: a plain PyTorch FedAvg loop in one process, no framework (not a test).

    python benchmarks/peers/plain_torch.py [--rounds 20] [--data runs/peers/....npz]

Every round each client copies the global linear model, trains one local epoch
(:func:`job.train_local_epochs`), and the server sets the global parameters to the
``n_i``-weighted mean of the client models.  Prints one JSON line (job.report).
"""

from __future__ import annotations

import time

import job  # first: stamps the start time when run by hand


def main() -> None:
    arguments = job.parse_arguments(__doc__.splitlines()[0])
    import torch

    data = job.load_job_data(arguments.data)
    torch.manual_seed(job.DATA_SEED)
    generator = torch.Generator().manual_seed(job.DATA_SEED)
    global_model = torch.nn.Linear(data.dim, data.num_classes)
    client_model = torch.nn.Linear(data.dim, data.num_classes)
    tensors = [(torch.from_numpy(c.x_train), torch.from_numpy(c.y_train)) for c in data.clients]
    weights = job.fedavg_weights([len(y) for _, y in tensors])
    round_ends = []
    for _ in range(arguments.rounds):
        total = [torch.zeros_like(p) for p in global_model.parameters()]
        for (x, y), weight in zip(tensors, weights):
            client_model.load_state_dict(global_model.state_dict())
            job.train_local_epochs(client_model, x, y, generator)
            with torch.no_grad():
                for accumulated, p in zip(total, client_model.parameters()):
                    accumulated.add_(p, alpha=float(weight))
        with torch.no_grad():
            for p, value in zip(global_model.parameters(), total):
                p.copy_(value)
        round_ends.append(time.time())
    job.report("plain PyTorch loop", round_ends,
               job.test_accuracy(global_model.weight.detach().numpy(), global_model.bias.detach().numpy(), data),
               torch=torch.__version__, threads=torch.get_num_threads())


if __name__ == "__main__":
    main()

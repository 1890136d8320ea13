"""fedsim's FedAvg on the peer job, through fedsim's own API (not a test).

    python benchmarks/peers/fedsim_job.py --backend ray   [--rounds 20] [--data ...]
    python benchmarks/peers/fedsim_job.py --backend local

The job's ``.npz`` becomes a :class:`fedsim.data.federation.Federation` (the same
records; fedsim generated them), and the run is ``fedsim train --algorithm fedavg``'s:
:func:`fedsim.commands.training_run.simulate` with a :class:`TrainCommand` of the job's
schedule (1 local epoch, batch 128; fedsim's FedAvg defaults are the job's lr, momentum
and weight decay).  ``--backend ray`` starts a fresh local Ray (no dashboard) inside
the timed process, as the CLI does.  fedsim draws Poisson batches of expected size 128
(its DP-ready sampler, ``⌈n/B⌉`` steps an epoch) where the other scripts shuffle; the
number of steps and the expected batch are the same.  Prints one JSON line (job.report).
"""

from __future__ import annotations

import time

import job  # first: stamps the start time when run by hand


def add_backend(parser) -> None:
    parser.add_argument("--backend", choices=("ray", "local"), default="ray",
                        help="fedsim's --backend (default ray, as the CLI).")


def federation_of(data: job.JobData):
    """The job's arrays as fedsim's Federation."""
    from fedsim.data.federation import ClientData, Federation

    clients = tuple(ClientData(c.client_id, c.x_train, c.y_train, c.x_val, c.y_val, c.x_test, c.y_test,
                               data.num_classes) for c in data.clients)
    return Federation(clients, data.num_classes, data.dim, tuple(str(k) for k in range(data.num_classes)),
                      "synthetic")


def main() -> None:
    arguments = job.parse_arguments(__doc__.splitlines()[0], add_backend)
    from fedsim.algorithms.fedavg import FedAvgConfig
    from fedsim.algorithms.registry import algorithm_module
    from fedsim.callbacks import RunCallback
    from fedsim.algorithms.spec import FederationSpec, TrainingConfig
    from fedsim.commands.train import TrainCommand
    from fedsim.commands.training_run import Prepared, run_settings, simulate, validate

    data = job.load_job_data(arguments.data)
    command = TrainCommand(
        algorithm="fedavg", backend=arguments.backend, seed=job.DATA_SEED,
        training=TrainingConfig(rounds=arguments.rounds, local_epochs=job.LOCAL_EPOCHS,
                                batch_size=job.BATCH_SIZE),
        fedavg=FedAvgConfig(lr=job.LR, momentum=job.MOMENTUM, weight_decay=job.WEIGHT_DECAY),
        checkpoint_every=0, progress=False)
    validate(command)
    federation = federation_of(data)
    prepared = Prepared(
        federation, FederationSpec(len(federation.clients), federation.num_classes, federation.dim,
                                   federation.class_names),
        run_settings(command), algorithm_module(command.algorithm))
    round_ends: list[float] = []

    class RoundClock(RunCallback):
        def on_round_end(self, round_index, row, result):
            round_ends.append(time.time())

    result = simulate(command, prepared, [RoundClock()])
    model = result.artifact.model
    import fedsim
    import torch

    job.report(f"fedsim --backend {arguments.backend}", round_ends,
               job.test_accuracy(model.weight.detach().numpy(), model.bias.detach().numpy(), data),
               fedsim=fedsim.__version__, torch=torch.__version__)


if __name__ == "__main__":
    main()

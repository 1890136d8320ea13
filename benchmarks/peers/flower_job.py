"""Flower's simulation runtime on the peer job (not a test; needs ``flwr[simulation]``).

    python benchmarks/peers/flower_job.py [--rounds 20] [--data ...]

Flower 1.42's Message API, as in its PyTorch quickstart: a ``ClientApp`` whose
``train`` loads the global ``ArrayRecord`` into a ``torch.nn.Linear``, trains one local
epoch (:func:`job.train_local_epochs`, the plain loop's client step) and replies with
its weights and ``num-examples``; a ``ServerApp`` running the built-in
``flwr.serverapp.strategy.FedAvg`` (weights ∝ ``num-examples``, every node every round,
no federated evaluation).  ``flwr.simulation.run_simulation`` runs them on 10 virtual
SuperNodes with its Ray backend, one CPU per ClientApp (so two run at a time on two
cores, as fedsim's two client actors; Flower's default is two CPUs each).  Each
worker process reads the job's ``.npz`` once and keeps it (the usual Flower pattern
of a module-level dataset cache).  The end of each round is taken when the strategy
calls ``evaluate_fn`` after aggregating; the final accuracy comes from the last
round's arrays.  Prints one JSON line (job.report).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import job  # first: stamps the start time when run by hand

HERE = Path(__file__).resolve().parent


def main() -> None:
    arguments = job.parse_arguments(__doc__.splitlines()[0])
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    # Ray's worker processes inherit this environment: they import `job` from here.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    import flwr
    import torch
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    data = job.cached_job_data(arguments.data)
    dim, classes, clients = data.dim, data.num_classes, len(data.clients)
    data_path = str(Path(arguments.data).resolve())

    client_app = ClientApp()

    @client_app.train()
    def train(message: Message, context: Context) -> Message:
        config = message.content["config"]
        partition = int(context.node_config["partition-id"])
        client = job.cached_job_data(Path(config["data"])).clients[partition]
        model = torch.nn.Linear(dim, classes)
        model.load_state_dict(message.content["arrays"].to_torch_state_dict())
        seed = job.DATA_SEED * 1_000_003 + int(config["server-round"]) * 1_009 + partition
        job.train_local_epochs(model, torch.from_numpy(client.x_train), torch.from_numpy(client.y_train),
                               torch.Generator().manual_seed(seed))
        reply = RecordDict({"arrays": ArrayRecord(model.state_dict()),
                            "metrics": MetricRecord({"num-examples": len(client.y_train)})})
        return Message(content=reply, reply_to=message)

    round_ends: list[float] = []
    final: dict[str, float] = {}
    server_app = ServerApp()

    @server_app.main()
    def server(grid: Grid, context: Context) -> None:
        torch.manual_seed(job.DATA_SEED)
        initial = ArrayRecord(torch.nn.Linear(dim, classes).state_dict())

        def end_of_round(server_round: int, arrays: ArrayRecord):
            if server_round >= 1:
                round_ends.append(time.time())
            if server_round == arguments.rounds:
                state = arrays.to_torch_state_dict()
                final["accuracy"] = job.test_accuracy(state["weight"].numpy(), state["bias"].numpy(), data)
            return None

        strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=clients,
                          min_available_nodes=clients)
        strategy.start(grid=grid, initial_arrays=initial, num_rounds=arguments.rounds,
                       train_config=ConfigRecord({"data": data_path}), evaluate_fn=end_of_round)

    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=clients,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": os.cpu_count(), "logging_level": logging.WARNING,
                                                 "log_to_driver": False}})
    if len(round_ends) != arguments.rounds or "accuracy" not in final:
        sys.exit(f"Flower finished {len(round_ends)} of {arguments.rounds} rounds; see its log above.")
    job.report("Flower simulation", round_ends, final["accuracy"], flwr=flwr.__version__, torch=torch.__version__)


if __name__ == "__main__":
    main()

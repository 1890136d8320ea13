"""Apple's pfl-research simulation on the peer job (not a test; needs ``pfl[pytorch]``).

    python benchmarks/peers/pfl_job.py [--rounds 20] [--data ...]

pfl 0.6's PyTorch path, as in its examples: a ``torch.nn.Linear`` with the ``loss`` and
``metrics`` methods pfl asks for, wrapped in ``pfl.model.pytorch.PyTorchModel`` (local
optimizer SGD with the job's lr, momentum and weight decay, created afresh for every
user; central optimizer SGD with lr 1, i.e. the averaged model difference is applied
as is), ``pfl.algorithm.FederatedAveraging`` on a ``SimulatedBackend`` whose
``WeightByDatapoints`` postprocessor weights each client's difference by its n_i.
The 10 clients are a ``FederatedDataset`` with the ``minimize_reuse`` user sampler and
a cohort of 10, so every client trains once every round.  pfl runs the users one after
the other in this one process and walks each user's records in stored order (the
job's records are in random order) in batches of 128.  pfl evaluates the users before
and after local training on the first iteration whatever ``evaluation_frequency``
says; no later round evaluates.  The end of each round is taken in a callback's
``after_central_iteration``.  Prints one JSON line (job.report).
"""

from __future__ import annotations

import functools
import time

import job  # first: stamps the start time when run by hand


def main() -> None:
    arguments = job.parse_arguments(__doc__.splitlines()[0])
    import numpy as np
    import pfl
    import torch
    from pfl.aggregate.simulate import SimulatedBackend
    from pfl.aggregate.weighting import WeightByDatapoints
    from pfl.algorithm import FederatedAveraging, NNAlgorithmParams
    from pfl.callback.base import TrainingProcessCallback
    from pfl.data.federated_dataset import FederatedDataset
    from pfl.data.sampling import get_user_sampler
    from pfl.hyperparam import NNEvalHyperParams, NNTrainHyperParams
    from pfl.metrics import Metrics, Weighted
    from pfl.model.pytorch import PyTorchModel

    class LinearClassifier(torch.nn.Linear):
        """The job's linear classifier with pfl's ``loss`` and ``metrics``."""

        def loss(self, x, y, eval=False):  # noqa: A002 (pfl's keyword)
            self.eval() if eval else self.train()
            return torch.nn.functional.cross_entropy(self(x), y.long())  # pfl hands labels over as float32

        @torch.no_grad()
        def metrics(self, x, y, eval=False):  # noqa: A002
            self.eval() if eval else self.train()
            logits, y = self(x), y.long()
            loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct = (logits.argmax(dim=1) == y).sum().item()
            return {"loss": Weighted(loss, len(y)), "accuracy": Weighted(correct, len(y))}

    class RoundClock(TrainingProcessCallback):
        """Wall-clock time at the end of every central iteration."""

        def __init__(self) -> None:
            self.round_ends: list[float] = []

        def after_central_iteration(self, aggregate_metrics, model, *, central_iteration):
            self.round_ends.append(time.time())
            return False, Metrics()

    data = job.load_job_data(arguments.data)
    np.random.seed(job.DATA_SEED)
    torch.manual_seed(job.DATA_SEED)
    classifier = LinearClassifier(data.dim, data.num_classes)
    model = PyTorchModel(
        model=classifier,
        local_optimizer_create=functools.partial(torch.optim.SGD, momentum=job.MOMENTUM,
                                                 weight_decay=job.WEIGHT_DECAY),
        central_optimizer=torch.optim.SGD(classifier.parameters(), lr=1.0))
    user_ids = [c.client_id for c in data.clients]
    training_data = FederatedDataset.from_slices({c.client_id: [c.x_train, c.y_train] for c in data.clients},
                                                 get_user_sampler("minimize_reuse", user_ids))
    backend = SimulatedBackend(training_data=training_data, val_data=None, postprocessors=[WeightByDatapoints()])
    clock = RoundClock()
    FederatedAveraging().run(
        algorithm_params=NNAlgorithmParams(central_num_iterations=arguments.rounds,
                                           evaluation_frequency=arguments.rounds + 1,
                                           train_cohort_size=len(user_ids), val_cohort_size=0),
        backend=backend, model=model,
        model_train_params=NNTrainHyperParams(local_learning_rate=job.LR, local_num_epochs=job.LOCAL_EPOCHS,
                                              local_batch_size=job.BATCH_SIZE),
        model_eval_params=NNEvalHyperParams(local_batch_size=None),
        callbacks=[clock])
    job.report("pfl-research", clock.round_ends,
               job.test_accuracy(classifier.weight.detach().numpy(), classifier.bias.detach().numpy(), data),
               pfl=pfl.__version__, torch=torch.__version__)


if __name__ == "__main__":
    main()

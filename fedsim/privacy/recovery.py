"""The privacy ledger of a client whose worker was lost (``--backend ray`` fault recovery).

When a client actor dies, :class:`~actors.pool.RayClientPool` restarts its clients from
the last checkpoint (or their initial state) and calls :func:`recover_client` for each
of them.  Their DP-SGD steps since that checkpoint WERE run, and the updates of the
completed rounds were released, so the restored accountant must not simply be the
checkpoint's:

* it is set to the last accountant the client reported after a completed round
  (when that is further along than the restored one),
* plus a full round of steps (:func:`round_charge`: ``local_epochs × ⌈n/B⌉`` steps at
  the plan's σ and q, the round the plan was calibrated for) for every round that was
  started but not confirmed (the round in which the actor died, and any round it was
  late for): the ledger errs on the side of more ε;
* the client's noise generator is re-seeded from a fresh stream: re-running rounds from
  old generator states on a new broadcast would reuse noise already released, and two
  outputs with the same noise would reveal their noiseless difference.
"""

from __future__ import annotations

import torch

from fedsim.privacy.accounting import ClientAccountant
from fedsim.seeding import torch_generator


def round_charge(client, local_epochs: int) -> tuple[float, float, int] | None:
    """``(σ, q, steps)`` of one full local round of ``client`` (None without DP): the
    ``local_epochs × ⌈n/B⌉`` DP-SGD steps its plan was calibrated for."""
    privacy, plan = getattr(client, "privacy", None), getattr(client, "plan", None)
    if plan is None or privacy is None:
        raise RuntimeError(f"client {client.client_id} ({type(client).__name__}) has no DP plan; "
                           "fault recovery cannot charge its lost rounds")
    if not privacy.private:
        return None
    return plan.noise_multiplier, plan.sample_rate, local_epochs * plan.steps_per_epoch


def recover_client(client, confirmed: dict | None, unconfirmed_rounds: int, local_epochs: int,
                   seed: int, round_index: int, restart: int) -> None:
    """Fix a client just restored from a checkpoint after its worker died (module docstring).

    ``confirmed`` is the accountant state it reported after its last completed round
    (None if it completed none since it was built); ``unconfirmed_rounds`` the rounds it
    started without confirming.  The accountant object is updated in place (trainers
    hold references to it)."""
    accountant = client.accountant
    if confirmed is not None:
        reported = ClientAccountant.from_state_dict(confirmed)
        if reported.steps(False) >= accountant.steps(False):
            accountant.history[:] = reported.history
            accountant.kinds[:] = reported.kinds
    charge = round_charge(client, local_epochs)
    if charge is not None and unconfirmed_rounds > 0:
        sigma, rate, steps = charge
        accountant.record(sigma, rate, steps * unconfirmed_rounds, kind="dp-sgd")
    fresh = torch_generator(seed, "recovery", client.client_id, round_index, restart)
    client.generator.manual_seed(int(torch.randint(0, 2**62, (1,), generator=fresh)))

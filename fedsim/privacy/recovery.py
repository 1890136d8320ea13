"""The privacy ledger of a client whose worker was lost (``--backend ray`` fault recovery).

When a client actor dies, :class:`~actors.pool.RayClientPool` restarts its clients from
the last checkpoint (or their initial state) and calls :func:`recover_client` for each
of them.  Their DP-SGD steps since that checkpoint WERE run, and the updates of the
completed rounds were released, so the restored accountant must not simply be the
checkpoint's:

* it is set to the last accountant the client reported after a completed round
  (when that is further along than the restored one),
* plus a full round of steps (:meth:`~fedsim.privacy.state.PrivacyState.round_charge`:
  ``local_epochs × ⌈n/B⌉`` steps at the plan's σ and q, the round the plan was
  calibrated for) for every round that was started but not confirmed (the round in
  which the actor died, and any round it was late for): the ledger errs on the side of
  more ε;
* the client's noise source is re-seeded from a fresh stream (a no-op for the secure
  source, which keeps no state): re-running rounds from old noise states on a new
  broadcast would reuse noise already released, and two outputs with the same noise
  would reveal their noiseless difference.

Recovery touches the client's privacy state only
(:attr:`~fedsim.algorithms.base.Client.privacy_state`).
"""

from __future__ import annotations

from typing import Any

import torch

from fedsim.algorithms.base import Client
from fedsim.privacy.accounting import ClientAccountant
from fedsim.privacy.dp_trainer import record_dp_sgd_steps
from fedsim.seeding import torch_generator


def recover_client(client: Client, confirmed: dict[str, Any] | None, unconfirmed_rounds: int, seed: int,
                   round_index: int, restart: int | str) -> None:
    """Fix a client just restored from a checkpoint after its worker died (module docstring).

    ``confirmed`` is the accountant state it reported after its last completed round
    (None if it completed none since it was built); ``unconfirmed_rounds`` the rounds it
    started without confirming, each charged as a full round; ``restart`` names the
    event (a worker restart's number, or ``"resume-k"``) so that every re-seed is distinct.  The accountant object is
    updated in place (its holders see the change)."""
    state = client.privacy_state
    accountant = state.accountant
    if confirmed is not None:
        reported = ClientAccountant.from_state_dict(confirmed)
        if reported.mechanism_runs() >= accountant.mechanism_runs():
            accountant.history[:] = reported.history
            accountant.kinds[:] = reported.kinds
    if state.round_charge() is not None and unconfirmed_rounds > 0:
        record_dp_sgd_steps(state, state.steps_per_round() * unconfirmed_rounds)
    fresh = torch_generator(seed, "recovery", client.client_id, round_index, restart)
    state.noise.reseed(int(torch.randint(0, 2**62, (1,), generator=fresh)))

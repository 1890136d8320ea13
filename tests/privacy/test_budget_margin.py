"""A ledger that never ends above its target silently: σ keeps ``--privacy.reserved-rounds``
for rounds charged again after a failure; beyond them a client stops with a clear error
before it exceeds the target, FedHypeVAE's release refuses with the same error instead of
failing inside the calibration, and a ledger above target says so."""

from __future__ import annotations

import dataclasses

import pytest

from client_kit import PRIVACY, client_data, make_client
from fedsim.errors import UserError
from fedsim.privacy.dp_trainer import record_dp_sgd_steps
from fedsim.privacy.ledger import ledger_note
from fedsim.privacy.recovery import recover_client
from fedsim.privacy.state import PrivacyBudgetExhausted


@pytest.mark.parametrize("algorithm", ["dp-cvae", "dp-cgan"])
def test_recovered_generative_client_ends_within_target_or_stops(algorithm):
    privacy = dataclasses.replace(PRIVACY, reserved_rounds=1)
    client, server = make_client(algorithm, client_data(40), privacy, rounds=2)
    broadcast = server.broadcast()
    client.local_round(broadcast, 0)
    recover_client(client, None, unconfirmed_rounds=1, seed=3, round_index=1, restart=1)  # lost round 2, charged
    client.local_round(broadcast, 1)  # round 2 run again: within the reserve
    assert client.privacy_state.epsilon() <= privacy.epsilon * (1 + 1e-6)
    assert ledger_note([client.privacy_record()]).find("ABOVE TARGET") < 0
    recover_client(client, None, unconfirmed_rounds=1, seed=3, round_index=2, restart=2)  # beyond the reserve
    assert client.privacy_state.epsilon() > privacy.epsilon  # the charged steps were run: reported, not hidden
    assert "ABOVE TARGET" in ledger_note([client.privacy_record()])
    steps = client.privacy_state.accountant.dp_sgd_steps()
    with pytest.raises(PrivacyBudgetExhausted, match="reserved-rounds") as error:
        client.local_round(broadcast, 2)
    assert isinstance(error.value, UserError)  # the CLI prints it as one sentence (exit code 2)
    assert client.privacy_state.accountant.dp_sgd_steps() == steps  # refused before running a step


def test_without_reserve_a_charged_round_stops_the_client():
    privacy = dataclasses.replace(PRIVACY, reserved_rounds=0)
    client, server = make_client("dp-cvae", client_data(40), privacy, rounds=2)
    client.local_round(server.broadcast(), 0)
    recover_client(client, None, unconfirmed_rounds=1, seed=3, round_index=1, restart=1)
    with pytest.raises(PrivacyBudgetExhausted):
        client.local_round(server.broadcast(), 1)


def test_fedhypevae_release_after_overspent_dp_sgd_is_a_clear_error():
    client, server = make_client("fedhypevae", client_data(40), rounds=1)
    state = client.privacy_state
    record_dp_sgd_steps(state, state.plan.total_steps + state.steps_per_round())  # charged beyond the plan
    with pytest.raises(PrivacyBudgetExhausted, match="statistics release"):
        client.release()


def test_fedhypevae_release_within_the_plan_fills_the_budget():
    client, server = make_client("fedhypevae", client_data(40), rounds=1)
    record_dp_sgd_steps(client.privacy_state, client.privacy_state.plan.total_steps)  # every planned step
    client.release()
    assert client.privacy_state.epsilon() == pytest.approx(PRIVACY.epsilon, rel=1e-3)

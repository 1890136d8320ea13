"""``python -m fedsim.run table`` end to end on a tiny configuration, and resuming."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
import torch

from fedsim.commands import table_run
from fedsim.commands.table import TableCommand
from fedsim.run import main

TINY_OPTIONS = [
    "--run.data.dataset", "synthetic", "--quick", "--run.data.num-clients", "3", "--alphas", "0.5",
    "--no-progress", "--run.threads", "1",
    "--run.data.synthetic.n-samples", "300", "--run.data.synthetic.dim", "8",
    "--run.data.synthetic.num-classes", "3",
    "--run.fedhypevae.hidden-dim", "16", "--run.fedhypevae.latent-dim", "4", "--run.fedhypevae.meta-steps", "10",
    "--run.fedhypevae.hyper-hidden", "16", "--run.fedhypevae.code-dim", "4",
    "--run.dp-cvae.hidden-dim", "16", "--run.dp-cvae.latent-dim", "4",
    "--run.dp-cgan.latent-dim", "4", "--run.dp-cgan.generator-hidden", "16", "16",
    "--run.dp-cgan.discriminator-hidden", "16", "16",
    "--run.evaluation.probe.steps", "20", "--run.privacy.reproducible-noise",
    "--run.privacy.max-records", "256",  # the public bound ≥ the largest client's train records (133)
]
TINY = [*TINY_OPTIONS, "--jobs", "1"]  # in this process (the tests count the runs)
METHOD_LABELS = ["FedAvg (no DP)", "FedProx (no DP)", "FedLambda (no DP)", "DP-CGAN", "DP-CVAE", "FedHypeVAE",
                 "DP-FedAvg", "DP-FedProx", "dp-stats"]
BOUND_LABELS = ["local-only (bound)", "pooled-real (bound)", "centralised (bound)"]


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def count_runs(monkeypatch):
    calls = []
    original = table_run.run_one

    def counting(planned):
        calls.append(planned.filename)
        return original(planned)

    monkeypatch.setattr(table_run, "run_one", counting)
    return calls


def test_table_end_to_end_and_resume(tmp_path, count_runs, capsys):
    out = tmp_path / "table"
    assert main(["table", *TINY, "--out", str(out)]) == 0
    assert len(count_runs) == 24  # (9 methods + 3 bounds) × (IID, α = 0.5) × 1 seed
    for name in ("table.md", "table.csv", "summary.csv", "clients.parquet", "table.png", "table_config.json"):
        assert (out / name).stat().st_size > 0
    assert (out / "table.png").read_bytes()[:4] == b"\x89PNG"
    markdown = (out / "table.md").read_text()
    main_table, bounds_table = markdown.split("## Spread across seeds")[0].split("### Bounds (not methods)")
    for label in METHOD_LABELS:
        assert f"| {label} |" in main_table and f"| {label} |" not in bounds_table
    for label in BOUND_LABELS:
        assert f"| {label} |" in bounds_table and f"| {label} |" not in main_table
    for heading in ("IID ACC (%)", "α = 0.5 BACC (%)", "IID global BACC (%)", "α = 0.5 ε", "Privacy actually spent",
                    "Fidelity", "**"):
        assert heading in markdown
    assert "∞ (no DP)" in main_table and "1.000" in main_table
    printed = capsys.readouterr().out
    assert all(label in printed for label in METHOD_LABELS + BOUND_LABELS) and "global BACC" in printed
    clients = pd.read_parquet(out / "clients.parquet")
    assert len(clients) == 24 * 3
    assert {"lambda", "acc", "bacc", "f1", "global_acc", "global_bacc", "epsilon", "seed", "kind"} <= set(clients.columns)
    assert clients["global_bacc"].notna().all()
    summary = pd.read_csv(out / "summary.csv")
    assert {"acc_mean", "acc_std_clients", "acc_std_seeds", "global_bacc_mean", "epsilon_max",
            "fidelity_mmd2"} <= set(summary.columns)
    private = summary[summary["method"].isin(["DP-CGAN", "DP-CVAE", "FedHypeVAE", "DP-FedAvg", "DP-FedProx",
                                              "dp-stats"])]
    assert len(private) == 12
    # below the target by the reserved round's share (--privacy.reserved-rounds 1 of 2 + 1 rounds)
    assert (private["epsilon_max"] <= 1.0 + 1e-6).all() and (private["epsilon_max"] > 0.75).all()
    assert private[private["method"].isin(["DP-CGAN", "DP-CVAE", "FedHypeVAE", "dp-stats"])]["fidelity_mmd2"].notna().all()
    bounds = summary[summary["kind"] == "bound"]
    assert sorted(bounds["method"].unique()) == sorted(BOUND_LABELS) and bounds["fidelity_mmd2"].isna().all()
    table_csv = pd.read_csv(out / "table.csv")
    assert list(table_csv["Kind"]) == ["method"] * 9 + ["bound"] * 3
    first_markdown = markdown

    count_runs.clear()
    assert main(["table", *TINY, "--out", str(out)]) == 0
    assert count_runs == []                                     # everything reused
    assert (out / "table.md").read_text() == first_markdown

    (out / "results" / "dp-cvae__iid__seed0.json").unlink()   # an interrupted table
    (out / "results" / "bound-pooled-real__dirichlet-0.5__seed0.json").unlink()
    assert main(["table", *TINY, "--out", str(out)]) == 0
    assert count_runs == ["dp-cvae__iid__seed0.json", "bound-pooled-real__dirichlet-0.5__seed0.json"]
    assert (out / "table.md").read_text() == first_markdown     # same seed, same result


def test_changed_configuration_is_refused(tmp_path, count_runs, capsys):
    out = tmp_path / "table"
    args = [*TINY, "--methods", "fedavg", "--bounds", "local-only", "--out", str(out)]
    assert main(["table", *args]) == 0
    assert main(["table", *args, "--run.training.rounds", "1"]) == 2
    assert "different configuration" in capsys.readouterr().err
    record = json.loads((out / "results" / "fedavg__iid__seed0.json").read_text())
    assert record["config"]["training"]["rounds"] == 2
    assert main(["table", *args, "--run.evaluation.test", "client"]) == 2  # a bound's options changed too
    capsys.readouterr()
    for name in ("fedavg__iid__seed0.json", "bound-local-only__iid__seed0.json"):
        # a record from before the protocol revision (its defaults evaluated differently)
        path = out / "results" / name
        old = json.loads(path.read_text())
        assert old.pop("protocol_revision") == table_run.PROTOCOL_REVISION
        path.write_text(json.dumps(old))
        assert main(["table", *args]) == 2
        assert "protocol revision 1" in capsys.readouterr().err
        path.write_text(json.dumps(dict(old, protocol_revision=table_run.PROTOCOL_REVISION)))
    assert main(["table", *args]) == 0


def test_bound_records_ignore_method_options(tmp_path):
    table = TableCommand(bounds=("centralised",), methods=("fedavg",), quick=True)
    other = dataclasses.replace(table, run=dataclasses.replace(table.run, training=dataclasses.replace(
        table.run.training, rounds=7)))
    bound, = [r for r in table_run.plan(table) if r.row.kind == "bound" and r.configuration.key == "iid"]
    same, = [r for r in table_run.plan(other) if r.row.kind == "bound" and r.configuration.key == "iid"]
    assert table_run.fingerprint(bound.command, bound.row) == table_run.fingerprint(same.command, same.row)


def test_plan_with_ablations_and_presets():
    table = TableCommand(ablations=True, quick=True, seeds=(4, 5))
    runs = table_run.plan(table)
    assert len(runs) == (9 + 4 + 3) * 2 * 1
    assert {r.seed for r in runs} == {4} and {r.command.training.rounds for r in runs if r.row.kind == "method"} == {2}
    by_key = {r.row.key: r.command for r in runs if r.configuration.key == "dirichlet-0.3"}
    assert by_key["fedhypevae-no-hypernetwork"].fedhypevae.hypernetwork is False
    assert by_key["fedhypevae-no-mmd"].fedhypevae.lambda_mmd == 0.0
    assert by_key["fedhypevae-no-metacode"].fedhypevae.meta_fit is False
    assert by_key["fedhypevae-paper-mode"].privacy.privacy_mode == "paper"
    assert by_key["fedhypevae"].privacy.privacy_mode == "strict"
    assert by_key["dp-cvae"].data.alpha == 0.3 and by_key["dp-cvae"].data.partition == "dirichlet"
    assert table.table_directory().name == "table-synthetic-quick"


@pytest.mark.parametrize("args,message", [(["--methods"], "methods"), (["--no-iid", "--alphas"], "configuration"),
                                          (["--methods", "fedavg", "--ablations"], "ablations"),
                                          (["--bounds", "local-only", "local-only"], "--bounds"),
                                          (["--run.dp-fedavg.no-private"], "--run.dp-fedavg.private")])
def test_bad_options_are_one_sentence_errors(tmp_path, args, message, capsys):
    assert main(["table", "--out", str(tmp_path / "t"), *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("args,named", [
    (["--run.algorithm", "fedavg"], ["--run.algorithm", "--methods"]),
    (["--run.seed", "3"], ["--run.seed", "--seeds"]),
    (["--run.data.partition", "iid"], ["--run.data.partition", "--iid"]),
    (["--run.data.alpha", "1.0"], ["--run.data.alpha", "--alphas"]),
    (["--run.out", "elsewhere"], ["--run.out", "--out"]),
    (["--run.resume", "elsewhere"], ["--run.resume"]),
])
def test_options_the_table_sets_are_refused_under_run(tmp_path, args, named, capsys):
    out = tmp_path / "t"
    assert main(["table", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert all(option in err for option in named) and "Traceback" not in err
    assert not out.exists()


def test_run_options_are_validated_under_their_table_name(tmp_path, capsys):
    out = tmp_path / "t"
    assert main(["table", "--out", str(out), "--run.fedhypevae.meta-codes", "0"]) == 2
    assert "--run.fedhypevae.meta-codes must be an integer >= 1, got 0." in capsys.readouterr().err
    assert not out.exists()


def test_one_source_per_run_option():
    table = TableCommand()
    assert {"dataset", "num_clients", "rounds", "epsilon", "delta", "clip_norm", "partition_seed"}.isdisjoint(
        f.name for f in dataclasses.fields(TableCommand))
    run = table_run.plan(table)[0].command
    assert run.training.rounds == 50 and run.data.partition_seed == 0 and run.backend == "local"
    labels = [row.name for row in table_run.table_rows(table)]
    assert labels == METHOD_LABELS
    assert [row.name for row in table_run.bound_rows(table)] == BOUND_LABELS


def test_a_record_written_before_an_option_existed_is_reused(tmp_path, count_runs, capsys):
    """Upgrading fedsim (new options at their defaults) must not orphan a half-finished table;
    a record of an older fedsim that lacks an option is refused once that option is changed."""
    out = tmp_path / "table"
    args = [*TINY, "--methods", "fedavg", "--bounds", "local-only", "--out", str(out)]
    assert main(["table", *args]) == 0
    for name in ("fedavg__iid__seed0.json", "bound-local-only__iid__seed0.json"):
        path = out / "results" / name
        record = json.loads(path.read_text())
        del record["config"]["evaluation"]["test"]   # as if written before --evaluation.test existed
        record["fingerprint"] = "written-by-an-older-fedsim"
        path.write_text(json.dumps(record))
    count_runs.clear()
    assert main(["table", *args]) == 0
    assert count_runs == []
    assert main(["table", *args, "--run.evaluation.test", "client"]) == 2
    assert "different configuration" in capsys.readouterr().err


def run_records(out) -> dict[str, dict]:
    """Every run's saved record, without its wall time."""
    records = {path.name: json.loads(path.read_text()) for path in sorted((out / "results").glob("*.json"))}
    return {name: {key: value for key, value in record.items() if key != "seconds"} for name, record in records.items()}


def test_parallel_runs_write_the_sequential_table(tmp_path, capsys):
    subset = ["--methods", "fedavg", "dp-fedavg", "dp-cvae", "dp-stats", "--bounds", "local-only"]
    sequential, parallel = tmp_path / "jobs1", tmp_path / "jobs2"
    assert main(["table", *TINY, *subset, "--out", str(sequential)]) == 0
    (parallel / "results").mkdir(parents=True)  # an interrupted parallel table: two runs finished
    for name in ("dp-cvae__iid__seed0.json", "bound-local-only__dirichlet-0.5__seed0.json"):
        (parallel / "results" / name).write_bytes((sequential / "results" / name).read_bytes())
    assert main(["table", *TINY_OPTIONS, *subset, "--jobs", "2", "--out", str(parallel)]) == 0
    err = capsys.readouterr().err
    assert "10 runs (2 already finished)" in err and "2 runs at a time, 1 torch thread(s) each" in err
    assert len(run_records(parallel)) == 10 and run_records(parallel) == run_records(sequential)
    assert (parallel / "table.csv").read_text() == (sequential / "table.csv").read_text()


def test_a_workers_user_error_is_the_sequential_one(tmp_path, capsys):
    # a Dirichlet partition this skewed leaves a client under --data.min-samples: a UserError inside the α runs
    failing = ["--methods", "fedavg", "--bounds", "local-only", "--alphas", "0.01", "--run.data.min-samples", "90"]
    errors = []
    for jobs in ("1", "2"):
        assert main(["table", *TINY_OPTIONS, *failing, "--jobs", jobs, "--out", str(tmp_path / jobs)]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        errors.append([line for line in err.splitlines() if line.startswith("error:")])
    assert errors[0] == errors[1] and len(errors[0]) == 1 and "--data.min-samples 90" in errors[0][0]


@pytest.mark.parametrize("args", [["--dataset", "digits"], ["--dataset=digits"]])
def test_dataset_shortcut_sets_the_runs_dataset(monkeypatch, args):
    """``table --dataset X`` (as ``train --data.dataset X``) is ``table --run.data.dataset X``."""
    import fedsim.run

    seen = []
    monkeypatch.setattr(fedsim.run, "execute", lambda command: seen.append(command) or 0)
    assert main(["table", *args, "--quick"]) == 0
    assert isinstance(seen[0], TableCommand) and seen[0].run.data.dataset == "digits"

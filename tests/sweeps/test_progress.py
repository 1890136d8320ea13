"""Progress lines: trials done/total and ETA."""

from __future__ import annotations

from types import SimpleNamespace

from sweeps.tune_progress import SweepProgress, format_duration, progress_line


def test_durations():
    assert [format_duration(s) for s in (0, 42, 185, 3720)] == ["0s", "42s", "3m05s", "1h02m"]


def test_eta_extrapolates_this_sessions_throughput():
    assert progress_line(10, 2, 0, 2, 60.0, 0) == "sweep: 2/10 trials done, 2 running, 1m00s elapsed, ETA 4m00s"
    # 4 trials were done before a resume: only the 2 new ones set the rate.
    assert progress_line(10, 6, 1, 2, 60.0, 4).endswith("ETA 2m00s")
    assert "(1 errored)" in progress_line(10, 6, 1, 2, 60.0, 4)
    assert progress_line(10, 0, 0, 2, 5.0, 0).endswith("ETA after the first trial ends")
    assert progress_line(3, 3, 0, 0, 5.0, 0).endswith("finished")


def test_callback_prints_when_a_trial_ends(capsys):
    callback = SweepProgress(total=3, interval=1e9)
    callback.setup()
    trials = [SimpleNamespace(trial_id=str(i), status=s) for i, s in enumerate(["TERMINATED", "RUNNING", "PENDING"])]
    callback.on_step_end(iteration=0, trials=trials)  # first line always prints
    callback.on_step_end(iteration=1, trials=trials)  # throttled
    callback.on_trial_complete(iteration=2, trials=trials, trial=trials[1])
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("sweep: 1/3 trials done, 1 running")
    assert lines[1].startswith("sweep: 2/3 trials done, 0 running") and "ETA" in lines[1]

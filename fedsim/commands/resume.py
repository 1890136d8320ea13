"""``train --resume``: which configuration an interrupted run continues with, and the one
list of *runtime* options (they change how a run executes, not what it computes).

:data:`RUNTIME_FIELDS` is used wherever two configurations are compared for "same
results": the ``--resume`` merge (:func:`resume_command`), the ``table`` command's run
fingerprints, a sweep trial continuing from its checkpoint, and a sweep's definition.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from fedsim.errors import UserError

RUNTIME_FIELDS = ("backend", "ray", "threads", "progress", "out", "resume", "checkpoint_every")
"""TrainCommand fields that change how a run executes, not what it computes."""


def results_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` (a :func:`fedsim.outputs.config_dict`) without the runtime fields: the
    options that determine a run's results."""
    return {key: value for key, value in config.items() if key not in RUNTIME_FIELDS}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"privacy.epsilon": 1.0, ...}``: every leaf field of a (nested) dataclass or of a
    nested JSON-ready dict (a saved configuration)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            out.update(_flatten(getattr(value, f.name), f"{prefix}{f.name}."))
        return out
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def same_results_config(saved: dict[str, Any], current: dict[str, Any], default: dict[str, Any]) -> bool:
    """Whether a result saved with configuration ``saved`` (a :func:`fedsim.outputs.config_dict`,
    possibly written by an older fedsim) is a result of ``current``: every option of
    ``saved`` has the same value in ``current``, and every option that ``saved`` lacks (added
    to fedsim since) is at its ``default`` in ``current``.  An option that ``saved`` has and
    ``current`` lacks (removed or renamed) is a mismatch.  Runtime fields are ignored.

    The rule assumes what fedsim's options promise: a new option's default reproduces the
    behaviour from before it existed."""
    def leaves(config: dict[str, Any]) -> dict[str, Any]:
        round_trip = json.loads(json.dumps(config))  # tuples → lists, as in a saved file
        return {key: value for key, value in _flatten(round_trip).items()
                if key.split(".")[0] not in RUNTIME_FIELDS}

    before, now, base = leaves(saved), leaves(current), leaves(default)
    if set(before) - set(now):
        return False
    return all(before[key] == value if key in before else base.get(key, object()) == value
               for key, value in now.items())


def resume_command(current, saved, run_dir: str | Path):
    """The command a ``--resume run_dir`` continues with: ``saved`` (the run's own
    configuration) with the runtime options of ``current``, i.e. of this command line
    (backend, Ray options, threads, progress, checkpoint cadence; they do not change
    results).  Options that change results must not be given with ``--resume`` unless
    they equal the saved ones (a UserError names them)."""
    default = type(current)()
    now, before, base = _flatten(current), _flatten(saved), _flatten(default)

    def runtime(key: str) -> bool:
        return key.split(".")[0] in RUNTIME_FIELDS

    conflicts = [key for key, value in now.items()
                 if not runtime(key) and value != base.get(key) and value != before.get(key)]
    if conflicts:
        options = ", ".join("--" + k.replace("_", "-") for k in conflicts[:4])
        raise UserError(f"--resume {run_dir} continues the run with its saved configuration; drop {options} "
                        "(they differ from the saved values).")
    overrides = {name: getattr(current, name) for name in RUNTIME_FIELDS}
    overrides["out"] = Path(run_dir)
    overrides["resume"] = Path(run_dir)
    return dataclasses.replace(saved, **overrides)

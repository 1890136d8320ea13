"""``sweeps/privacy_utility.py`` run as a file (as ``ray submit`` runs it) against an
existing Ray instance named by RAY_ADDRESS; and the cluster config's shape.

The Ray instance is ``ray start --head --block`` in its own session and temp dir, stopped
by terminating that process (its ``--block`` mode shuts down what it started) — not by
``ray stop``, which would stop every Ray instance of this user on a shared machine."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sweep_helpers import TINY_FEDERATION

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "sweeps" / "privacy_utility.py"


TOKEN_MODE = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
"""Ray's token mode with the token in the environment: without it, Ray writes ~/.ray/auth_token,
after which every Ray start on this machine (later tests', the user's) prints a token warning."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_head(temp_dir: str, port: int) -> subprocess.Popen:
    ray = Path(sys.executable).parent / "ray"
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **TOKEN_MODE}
    process = subprocess.Popen(
        [str(ray), "start", "--head", "--block", "--num-cpus", "2", "--include-dashboard=false",
         "--port", str(port), "--node-ip-address", "127.0.0.1", "--temp-dir", temp_dir, "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address_file = Path(temp_dir) / "ray_current_cluster"
    deadline = time.monotonic() + 120
    while not address_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_head(process)
            pytest.fail("ray start --head did not come up")
        time.sleep(0.5)
    return process


def stop_head(process: subprocess.Popen) -> None:
    """Terminate the ``ray start --block`` process we started, then its process group."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # leftovers of the group we created, if any
    except ProcessLookupError:
        pass
    process.wait()


def test_script_runs_against_ray_address(tmp_path):
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must be < 108 chars
    port = free_port()
    head = start_head(temp_dir, port)
    try:
        out = tmp_path / "sweep"
        # An explicit address needs the token mode said explicitly (Ray ≥ 2.5x: token auth).
        env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}", **TOKEN_MODE}
        run = subprocess.run(
            [sys.executable, str(SCRIPT), "--out", str(out), "--methods", "fedhypevae", "--epsilons", "inf",
             "--alphas", "iid", "--seeds", "0", *TINY_FEDERATION],  # one trial: the cluster is what is tested
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
        assert run.returncode == 0, run.stderr[-3000:]
        assert f"on 127.0.0.1:{port}" in run.stderr
        results = pd.read_parquet(out / "results.parquet")
        assert len(results) == 1 and (results["status"] == "ok").all()
        assert (out / "plots" / "bacc_vs_epsilon.png").is_file()
    finally:
        stop_head(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_cluster_config_installs_torch_first_and_has_a_gpu_worker():
    config = yaml.safe_load((ROOT / "sweeps" / "cluster.yaml").read_text())
    nodes = config["available_node_types"]
    assert config["head_node_type"] in nodes
    assert any(node.get("resources", {}).get("GPU", 0) > 0 for node in nodes.values())
    setup = "\n".join(config["setup_commands"])
    assert setup.index("torch") < setup.index("-e ~/fedsim")
    assert any("fedsim" in str(target) for target in config["file_mounts"])

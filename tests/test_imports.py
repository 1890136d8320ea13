"""Every module of the library, the Ray runtime and the sweeps imports on its own,
whatever is imported first (catches circular imports that only bite when a user
imports a submodule directly)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import importlib, pkgutil, sys
PACKAGES = ("fedsim", "actors", "sweeps")
names = []
for package in PACKAGES:
    root = importlib.import_module(package)
    names += [package] + sorted(m.name for m in pkgutil.walk_packages(root.__path__, package + ".")
                                if not m.name.endswith("__main__"))
failures = []
for name in names:
    for loaded in [m for m in sys.modules if m.split(".")[0] in PACKAGES]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as error:  # report every failing module, not only the first
        failures.append(f"{name}: {type(error).__name__}: {error}")
print("\\n".join(failures))
print("MODULES", len(names))
sys.exit(1 if failures else 0)
"""


def test_each_module_imports_first():
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout, not an installed copy
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    count = int(result.stdout.strip().splitlines()[-1].split()[-1])
    assert count > 50  # the walk found the packages' modules


def test_library_has_no_ray_import():
    offenders = [str(path.relative_to(ROOT)) for path in (ROOT / "fedsim").rglob("*.py")
                 if any(line.strip().startswith(("import ray", "from ray"))
                        for line in path.read_text().splitlines())]
    assert offenders == []

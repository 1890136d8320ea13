"""Every module of the library imports on its own, whatever is imported first (catches
circular imports that only bite when a user imports a submodule directly)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import importlib, pkgutil, sys
import fedsim
names = sorted(m.name for m in pkgutil.walk_packages(fedsim.__path__, "fedsim."))
failures = []
for name in names:
    for loaded in [m for m in sys.modules if m == "fedsim" or m.startswith("fedsim.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as error:  # report every failing module, not only the first
        failures.append(f"{name}: {type(error).__name__}: {error}")
print(len(names))
print("\\n".join(failures))
sys.exit(1 if failures else 0)
"""


def test_each_fedsim_module_imports_first():
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert int(result.stdout.split()[0]) > 30  # the walk found the package's modules


def test_library_has_no_ray_import():
    offenders = [str(path.relative_to(ROOT)) for path in (ROOT / "fedsim").rglob("*.py")
                 if any(line.strip().startswith(("import ray", "from ray"))
                        for line in path.read_text().splitlines())]
    assert offenders == []

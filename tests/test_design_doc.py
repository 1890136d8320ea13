"""docs/design.md names only things that exist, and the docstrings that cite it cite sections it has."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
PACKAGES = ("fedsim", "actors", "sweeps", "benchmarks", "tests")


def design_text() -> str:
    return DESIGN.read_text(encoding="utf-8")


def cited_paths() -> list[str]:
    """Every repository path the document names (``fedsim/…py``, ``tests/…py``, ``fedsim/algorithms/fedhypevae/``)."""
    pattern = r"\b((?:%s)/[\w/]*?(?:\.py|/))(?=[\s`),.;:]|$)" % "|".join(PACKAGES)
    return sorted(set(re.findall(pattern, design_text(), flags=re.MULTILINE)))


def cited_names() -> list[str]:
    """Every backticked dotted name rooted in one of the packages (``fedsim.x.y``, ``actors.pool.Z``)."""
    pattern = r"`((?:fedsim|actors|sweeps)(?:\.\w+)+)`"
    return sorted(set(re.findall(pattern, design_text())))


def resolve(dotted: str):
    """Import the longest module prefix of ``dotted``, then get the remaining attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            value = getattr(value, attribute)
        return value
    raise ModuleNotFoundError(dotted)


def test_the_document_names_paths_and_names_at_all():
    """The extraction below finds what it should (so the existence checks are not vacuous)."""
    assert "fedsim/privacy/dp_trainer.py" in cited_paths()
    assert "fedsim/algorithms/fedhypevae/" in cited_paths()
    assert "fedsim.privacy.dp_trainer.DPTrainer" in cited_names()
    assert len(cited_paths()) > 20 and len(cited_names()) > 40


@pytest.mark.parametrize("path", cited_paths())
def test_every_cited_path_exists(path):
    assert (ROOT / path).exists(), f"docs/design.md cites {path}, which does not exist"


@pytest.mark.parametrize("name", cited_names())
def test_every_cited_dotted_name_imports(name):
    assert resolve(name) is not None


def test_resolve_fails_on_a_name_that_does_not_exist():
    with pytest.raises(AttributeError):
        resolve("fedsim.privacy.dp_trainer.NoSuchTrainer")


def docstring_citations() -> list[tuple[str, str]]:
    """``(file, section)`` of every ``docs/design.md, "Section"`` citation in the code and tests."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == Path(__file__).resolve():
                continue  # this file's docstrings describe the pattern
            text = path.read_text(encoding="utf-8")
            for section in re.findall(r'docs/design\.md,\s+"([^"]+)"', text):
                found.append((str(path.relative_to(ROOT)), section))
    return found


def test_no_docstring_cites_a_design_file_the_repository_does_not_have():
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if re.search(r"(?<![\w/])DESIGN\.md", path.read_text(encoding="utf-8")):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_every_cited_section_exists():
    headings = set(re.findall(r"^#+ (.+)$", design_text(), flags=re.MULTILINE))
    citations = docstring_citations()
    assert len(citations) >= 8
    missing = [(path, section) for path, section in citations if section not in headings]
    assert missing == []

"""The experiment scripts use the installed package as any user would (issue 11): no edits of
``sys.path``, no imports of other scripts, no private (underscore) names of ``aster_ext``.

Checked on the scripts' syntax trees, so a script that only does it inside a function is caught
too. Shared helpers of several scripts belong in ``aster_ext.experiments``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _script_paths() -> list[Path]:
    paths = sorted(SCRIPTS.glob("*.py"))
    if not paths:
        pytest.fail(f"no scripts found in {SCRIPTS}")
    return paths


def problems(source: str, sibling_modules: set[str]) -> list[str]:
    """What the module docstring forbids, found in ``source`` (line: what)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys":
            found.append(f"{node.lineno}: uses sys.path")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in sibling_modules:
                    found.append(f"{node.lineno}: imports the script {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            top = node.module.split(".")[0]
            if top in sibling_modules:
                found.append(f"{node.lineno}: imports from the script {node.module}")
            if top == "aster_ext":
                private = [a.name for a in node.names if a.name.startswith("_")]
                private += [part for part in node.module.split(".") if part.startswith("_")]
                if private:
                    found.append(f"{node.lineno}: imports private names {private} of {node.module}")
    return found


def test_the_checker_finds_each_kind_of_problem() -> None:
    bad = (
        "import sys\nsys.path.insert(0, 'x')\n"
        "from other_script import helper\n"
        "import other_script\n"
        "from aster_ext.verify import _hidden, public\n"
        "def f():\n    from aster_ext._private import thing\n"
    )
    found = problems(bad, {"other_script"})
    assert sorted(int(line.split(":")[0]) for line in found) == [2, 3, 4, 5, 7]
    assert problems("import numpy\nfrom aster_ext.verify import box_corners\n", {"other_script"}) == []


@pytest.mark.parametrize("path", _script_paths(), ids=lambda p: p.name)
def test_script_uses_only_the_installed_package(path: Path) -> None:
    siblings = {p.stem for p in _script_paths()} - {path.stem}
    assert problems(path.read_text(), siblings) == [], path.name


def test_every_results_file_has_a_producer() -> None:
    """Each table of results/ is rebuilt by a reproduce step or a script step, or is a declared
    record (so ``reproduce --all`` regenerates every table); every script step's script exists."""
    from aster_ext.experiments.reproduce import STEP_FILES, STEPS
    from aster_ext.experiments.script_steps import RECORDS, SCRIPT_STEPS

    assert set(STEP_FILES) == set(STEPS)
    produced = {f for files in STEP_FILES.values() for f in files}
    produced |= {f for step in SCRIPT_STEPS.values() for f in step.writes}
    produced |= set(RECORDS) | {"MANIFEST.json"}
    results = SCRIPTS.parent / "results"
    on_disk = {p.name for p in results.iterdir() if p.is_file()}
    assert on_disk, f"no results in {results}"
    assert sorted(on_disk - produced) == []
    assert sorted(produced - on_disk) == []  # a declared file that no longer exists: fix the registry
    for name, step in SCRIPT_STEPS.items():
        assert (SCRIPTS / step.script).is_file(), (name, step.script)

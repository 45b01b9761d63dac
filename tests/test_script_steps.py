"""``reproduce --all`` runs the checkout's scripts as steps (aster_ext.experiments.script_steps):
the mechanics on a stand-in checkout whose script writes one csv."""

from __future__ import annotations

from pathlib import Path

import pytest

from aster_ext.errors import UserError
from aster_ext.experiments.script_steps import ScriptStep, check_can_run, run_script_step

SCRIPT = """
import sys
from pathlib import Path
root = Path(__file__).resolve().parents[1]
if sys.argv[1:] == ["fail"]:
    print("going wrong"); sys.exit(3)
(root / "results").mkdir(exist_ok=True)
with open(root / "results" / "t.csv", "a") as fh:
    fh.write(",".join(sys.argv[1:]) + "\\n")
print("wrote", sys.argv[1:])
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "table.py").write_text(SCRIPT)
    (tmp_path / "results").mkdir()
    return tmp_path


def test_script_step_runs_every_invocation_and_records_it(checkout: Path) -> None:
    step = ScriptStep("table.py", (("a",), ("b", "c")), ("t.csv",), "a stand-in table")
    entries = run_script_step("t", step, checkout / "results", checkout / "work", checkout / "scripts")
    assert (checkout / "results" / "t.csv").read_text() == "a\nb,c\n"
    (entry,) = entries.values()
    assert entry["files"] == ["t.csv"]
    assert entry["commands"] == ["python scripts/table.py a", "python scripts/table.py b c"]
    log = Path(entry["log"]).read_text()
    assert "$ python scripts/table.py b c" in log and "wrote ['b', 'c']" in log


def test_script_step_failure_names_the_command_and_log(checkout: Path) -> None:
    step = ScriptStep("table.py", (("fail",), ("never",)), ("t.csv",), "a stand-in table")
    with pytest.raises(RuntimeError, match=r"table.py fail exited with 3 \(log: .*t.log\)"):
        run_script_step("t", step, checkout / "results", checkout / "work", checkout / "scripts")
    assert not (checkout / "results" / "t.csv").exists()  # the second invocation never ran
    assert "going wrong" in (checkout / "work" / "t.log").read_text()


def test_script_steps_write_only_the_checkouts_results(checkout: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="run them without --results"):
        check_can_run(tmp_path / "elsewhere", checkout / "scripts")
    with pytest.raises(UserError, match="scripts/ folder, not found"):
        check_can_run(checkout / "results", tmp_path / "no-scripts")
    check_can_run(checkout / "results", checkout / "scripts")


def test_reproduce_refuses_script_tables_in_quick_mode_or_elsewhere(tmp_path: Path) -> None:
    from aster_ext.experiments.reproduce import reproduce

    with pytest.raises(UserError, match="--quick has no short version"):
        reproduce(tmp_path / "r", tmp_path / "w", True, 1, None, False, ("hls4ml",))
    with pytest.raises(UserError, match="run them without --results"):
        reproduce(tmp_path / "r", tmp_path / "w", False, 1, None, False, ("cnn",))
    with pytest.raises(UserError, match="unknown tables"):
        reproduce(tmp_path / "r", tmp_path / "w", False, 1, None, False, ("no_such_table",))

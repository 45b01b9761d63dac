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


def test_a_direct_run_records_the_files_it_rewrote(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run_recorded: a script run by hand gets a manifest entry naming its command and, per file, the
    run that last wrote it; files it did not rewrite keep the earlier entry's record; a failed run
    and a run under ``reproduce`` (SCRIPT_RUN_ENV set) record nothing."""
    import json
    import sys

    from aster_ext.experiments import script_steps as ss

    step = ScriptStep("table.py", ((),), ("t.md", "t.csv", "u.csv"), "a stand-in table")
    monkeypatch.setattr(ss, "SCRIPT_STEPS", {"t": step})
    monkeypatch.delenv(ss.SCRIPT_RUN_ENV, raising=False)
    results = checkout / "results"
    (results / "u.csv").write_text("old\n")
    older = {"date_utc": "2026-01-01T00:00:00+00:00", "commit": "c0ffee", "packages": {"numpy": "1"}}
    older["tables"] = {"t.md": {"files": ["t.md", "u.csv"], "commands": ["python scripts/table.py"]}}
    (results / "MANIFEST.json").write_text(json.dumps(older))
    script = str(checkout / "scripts" / "table.py")
    monkeypatch.setattr(sys, "argv", [script, "--fast"])

    def writes_two() -> int:
        (results / "t.md").write_text("new\n")
        (results / "t.csv").write_text("new\n")
        return 0

    assert ss.run_recorded(script, writes_two) == 0
    m = json.loads((results / "MANIFEST.json").read_text())
    entry = m["tables"]["t.md"]
    assert entry["files"] == ["t.md", "t.csv", "u.csv"] and entry["run"] == "direct"
    assert entry["commands"] == ["python scripts/table.py --fast"]
    runs = entry["file_runs"]
    assert runs["t.md"]["command"] == runs["t.csv"]["command"] == "python scripts/table.py --fast"
    earlier = {"date_utc": older["date_utc"], "commit": "c0ffee", "command": "python scripts/table.py"}
    assert runs["u.csv"] == earlier
    assert m["packages"] == {"numpy": "1"} and m["commit"] == "c0ffee"  # the run's block: not its to rewrite

    before = (results / "MANIFEST.json").read_text()

    def fails() -> int:
        (results / "t.md").write_text("half\n")
        return 1

    assert ss.run_recorded(script, fails) == 1
    monkeypatch.setenv(ss.SCRIPT_RUN_ENV, "t")
    assert ss.run_recorded(script, writes_two) == 0
    assert (results / "MANIFEST.json").read_text() == before
    monkeypatch.delenv(ss.SCRIPT_RUN_ENV)
    assert ss.run_recorded(script, lambda: None) == 0  # wrote nothing: nothing to record
    assert (results / "MANIFEST.json").read_text() == before

    def same_bytes() -> None:  # e.g. a re-render from the csv: the computing run keeps its record
        (results / "t.csv").write_text("new\n")

    assert ss.run_recorded(script, same_bytes) == 0
    assert (results / "MANIFEST.json").read_text() == before


def test_a_script_of_two_tables_records_the_one_it_wrote(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One script, two steps (e.g. the same measurement with a longer time limit into other files):
    a direct run records the step whose files it changed, and only that one."""
    import json
    import sys

    from aster_ext.experiments import script_steps as ss

    short = ScriptStep("table.py", ((),), ("t.md",), "short")
    long = ScriptStep("table.py", (("--long", "--out", "results/t_long"),), ("t_long.md",), "long")
    monkeypatch.setattr(ss, "SCRIPT_STEPS", {"t": short, "t_long": long})
    monkeypatch.delenv(ss.SCRIPT_RUN_ENV, raising=False)
    results = checkout / "results"
    (results / "MANIFEST.json").write_text(json.dumps({"tables": {}}))
    script = str(checkout / "scripts" / "table.py")
    monkeypatch.setattr(sys, "argv", [script, "--long", "--out", "results/t_long"])
    assert ss.steps_of_script("table.py") == ["t", "t_long"]
    long_cmd = "python scripts/table.py --long --out results/t_long"
    assert ss.run_recorded(script, lambda: (results / "t_long.md").write_text("long\n") and 0) == 0
    tables = json.loads((results / "MANIFEST.json").read_text())["tables"]
    assert list(tables) == [ss.table_key("t_long", long)]
    assert tables[ss.table_key("t_long", long)]["commands"] == [long_cmd]
    monkeypatch.setattr(sys, "argv", [script])
    assert ss.run_recorded(script, lambda: (results / "t.md").write_text("short\n") and 0) == 0
    tables = json.loads((results / "MANIFEST.json").read_text())["tables"]
    assert sorted(tables) == sorted([ss.table_key("t", short), ss.table_key("t_long", long)])
    assert tables[ss.table_key("t_long", long)]["commands"] == [long_cmd]


def test_every_script_step_records_its_direct_runs() -> None:
    """Each step's script calls run_recorded from its __main__ block (checked on the source)."""
    from aster_ext.experiments.script_steps import CHECKOUT, SCRIPT_STEPS

    for name, step in SCRIPT_STEPS.items():
        source = (CHECKOUT / "scripts" / step.script).read_text()
        main_block = source[source.rindex('if __name__ == "__main__":') :]
        assert "run_recorded(__file__, main)" in main_block, name


def test_a_manifest_that_is_not_ours_is_never_replaced(
    checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A MANIFEST.json the tool did not write (not JSON, or JSON without ``tables``) is left
    byte for byte: reproduce refuses before any step runs, a script run by hand keeps its tables
    and records nothing."""
    import json
    import sys

    from aster_ext.experiments import reproduce as rep
    from aster_ext.experiments import script_steps as ss

    ran = []
    monkeypatch.setattr(rep, "STEPS", {"good": lambda run: ran.append(1) or {}})
    table = checkout / "results" / "t.csv"
    for text in ("my own notes\n", json.dumps({"mine": [1, 2]})):
        results = tmp_path / "r"
        results.mkdir(exist_ok=True)
        (results / "MANIFEST.json").write_text(text)
        with pytest.raises(UserError, match="not a manifest written by aster-ext"):
            rep.reproduce(results, tmp_path / "work", True, 1, None, progress=False)
        assert (results / "MANIFEST.json").read_text() == text and not ran
        assert sorted(p.name for p in results.iterdir()) == ["MANIFEST.json"]

        step = ScriptStep("table.py", ((),), ("t.csv",), "a stand-in table")
        monkeypatch.setattr(ss, "SCRIPT_STEPS", {"t": step})
        monkeypatch.delenv(ss.SCRIPT_RUN_ENV, raising=False)
        mine = checkout / "results" / "MANIFEST.json"
        mine.write_text(text)
        script = str(checkout / "scripts" / "table.py")
        monkeypatch.setattr(sys, "argv", [script])
        assert ss.run_recorded(script, lambda t=text: table.write_text(t) and 0) == 0
        assert mine.read_text() == text and table.read_text() == text
        assert "not recorded" in capsys.readouterr().err

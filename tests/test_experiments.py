"""Sweep runner: grid files, the append-only store, timeouts, crash retries, kill + resume, Ray = local."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aster_ext.errors import UserError
from aster_ext.experiments import load_grid, run_sweep
from aster_ext.experiments.cell import ROW_FIELDS, TIME_FIELDS, run_cell
from aster_ext.experiments.grid import Cell
from aster_ext.experiments.store import ResultStore, row_key

ROOT = Path(__file__).resolve().parents[1]
KEY = ("model", "eps", "setting", "mode", "granularity", "variant")


def _copy_models(shared_dir: Path, dest: Path, names: tuple[str, ...]) -> list[Path]:
    out = []
    for n in names:
        p = dest / f"{n}.scala"
        shutil.copy(shared_dir / "benchmarks" / "aster" / f"{n}.scala", p)
        out.append(p)
    return out


def _write_grid(path: Path, models: list[str], body: str) -> Path:
    path.write_text("models = [" + ", ".join(f'"{m}"' for m in models) + "]\n" + body)
    return path


SMALL_BODY = """eps = [1e-3]
settings = ["A", "C"]
modes = ["aster", "aster-sound", "refined"]
cell_time_limit = 120
[verify]
samples = 64
search_iters = 2
"""


def _csv_lines(out: Path) -> list[dict[str, str]]:
    with (out / "results.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


# -- grid files ------------------------------------------------------------------------------------


def test_grid_globs_relative_paths_and_cells(tmp_path: Path, shared_dir: Path) -> None:
    _copy_models(shared_dir, tmp_path, ("SmallNN", "TestNN"))
    grid = load_grid(
        _write_grid(
            tmp_path / "g.toml",
            ["*.scala"],
            'eps = [1e-3, 1e-4]\nsettings = ["A"]\nmodes = ["aster", "refined"]\n'
            'granularities = ["neuron", "layer"]\n',
        )
    )
    assert [m.name for m in grid.models] == ["SmallNN.scala", "TestNN.scala"]
    cells = grid.cells()
    # aster: one (layer) cell per (model, eps); refined: one per granularity
    assert len(cells) == 2 * 2 * (1 + 2)
    assert len({c.key for c in cells}) == len(cells)
    assert {c.granularity for c in cells if c.mode == "aster"} == {"layer"}
    assert grid.verify["samples"] == 400 and grid.cell_time_limit == 300


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('eps = [1e-3]\nsettings = ["A"]\nmodes = ["fast"]\n', "unknown modes"),
        ('eps = [1e-3]\nsettings = ["Z"]\nmodes = ["aster"]\n', "unknown settings"),
        ('eps = [-1]\nsettings = ["A"]\nmodes = ["aster"]\n', "positive number"),
        ('eps = []\nsettings = ["A"]\nmodes = ["aster"]\n', "non-empty list"),
        ('eps = [1e-3]\nsettings = ["A"]\nmodes = ["aster"]\nepsilon = 2\n', "unknown keys"),
        ('eps = [1e-3]\nsettings = ["A"]\nmodes = ["aster"]\n[verify]\nsample = 3\n', "[verify] takes"),
        ("eps = [1e-3\n", "not valid TOML"),
    ],
)
def test_bad_grids_are_clear_errors(tmp_path: Path, shared_dir: Path, body: str, message: str) -> None:
    (model,) = _copy_models(shared_dir, tmp_path, ("SmallNN",))
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        load_grid(_write_grid(tmp_path / "g.toml", [str(model)], body))


def test_grid_refuses_missing_models_and_name_clashes(tmp_path: Path, shared_dir: Path) -> None:
    body = 'eps = [1e-3]\nsettings = ["A"]\nmodes = ["aster"]\n'
    with pytest.raises(UserError, match="not found"):
        load_grid(_write_grid(tmp_path / "g.toml", ["nothere.scala"], body))
    with pytest.raises(UserError, match="no model matches"):
        load_grid(_write_grid(tmp_path / "g.toml", ["none*.scala"], body))
    (tmp_path / "b").mkdir()
    _copy_models(shared_dir, tmp_path, ("SmallNN",))
    _copy_models(shared_dir, tmp_path / "b", ("SmallNN",))
    with pytest.raises(UserError, match="two models named 'SmallNN'"):
        load_grid(_write_grid(tmp_path / "g.toml", ["SmallNN.scala", "b/SmallNN.scala"], body))


# -- the store ------------------------------------------------------------------------------------


def _row(model: str, eps: float, message: str = "") -> dict[str, Any]:
    return {"model": model, "eps": eps, "setting": "A", "mode": "aster", "granularity": "layer",
            "variant": "full", "status": "ok", "certified": 1e-3 / 3, "hw": 12,
            "message": message}  # fmt: skip


def test_store_round_trips_rows_exactly(tmp_path: Path) -> None:
    store = ResultStore(tmp_path, ROW_FIELDS)
    store.append(_row("N", 1e-3, message='quoted "text", with commas'))
    store.append(_row("N", 1e-5))
    rows = ResultStore(tmp_path, ROW_FIELDS).rows()
    assert [r["certified"] for r in rows] == [1e-3 / 3, 1e-3 / 3]  # full float precision
    assert rows[0]["message"] == 'quoted "text", with commas' and rows[0]["hw"] == 12
    expected = {row_key(_row("N", 1e-3)), row_key(_row("N", 1e-5))}
    assert ResultStore(tmp_path, ROW_FIELDS).finished() == expected


def test_store_refuses_multiline_values_and_other_columns(tmp_path: Path) -> None:
    store = ResultStore(tmp_path, ROW_FIELDS)
    with pytest.raises(ValueError, match="one line"):
        store.append(_row("N", 1e-3, message="two\nlines"))
    assert len(_csv_lines(tmp_path)) == 0
    with pytest.raises(UserError, match="other columns"):
        ResultStore(tmp_path, ROW_FIELDS[:-1])


def test_store_never_touches_a_foreign_results_file(tmp_path: Path) -> None:
    foreign = "model,score\nmine,1"  # no trailing newline: must not be "repaired"
    (tmp_path / "results.csv").write_text(foreign)
    with pytest.raises(UserError, match="other columns"):
        ResultStore(tmp_path, ROW_FIELDS)
    assert (tmp_path / "results.csv").read_text() == foreign


def test_store_cuts_a_torn_last_line(tmp_path: Path) -> None:
    store = ResultStore(tmp_path, ROW_FIELDS)
    store.append(_row("N", 1e-3))
    with (tmp_path / "results.csv").open("a") as fh:
        fh.write("N,1e-05,A,aster,layer,full,o")  # a row cut short
    store = ResultStore(tmp_path, ROW_FIELDS)
    assert store.finished() == {row_key(_row("N", 1e-3))}
    store.append(_row("M", 1e-3))
    assert [r["model"] for r in _csv_lines(tmp_path)] == ["N", "M"]


def test_store_of_an_older_version_gains_the_new_columns(tmp_path: Path) -> None:
    old_fields = ROW_FIELDS[:-1]
    ResultStore(tmp_path, old_fields).append(_row("N", 1e-3, message="a, b"))
    store = ResultStore(tmp_path, ROW_FIELDS)
    store.append({**_row("M", 1e-3), ROW_FIELDS[-1]: 7})
    rows = {r["model"]: r for r in store.rows()}
    assert rows["N"]["message"] == "a, b" and rows["N"][ROW_FIELDS[-1]] is None
    assert rows["M"][ROW_FIELDS[-1]] == 7


def test_store_refuses_a_different_verify_budget(tmp_path: Path) -> None:
    store = ResultStore(tmp_path, ROW_FIELDS)
    store.check_fingerprint({"verify": {"samples": 10}})
    store.check_fingerprint({"verify": {"samples": 10}})
    with pytest.raises(UserError, match="another --out"):
        store.check_fingerprint({"verify": {"samples": 11}})


# -- running --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sweep_writes_one_row_per_cell_and_rerun_skips(tmp_path: Path, shared_dir: Path) -> None:
    (model,) = _copy_models(shared_dir, tmp_path, ("SmallNN",))
    grid = load_grid(_write_grid(tmp_path / "g.toml", [str(model)], SMALL_BODY))
    out = tmp_path / "out"
    first = run_sweep(grid, out, workers=2, progress=False)
    assert (first.total, first.skipped, first.written, first.crashed) == (6, 0, 6, [])
    rows = ResultStore(out, ROW_FIELDS).rows()
    assert {r["mode"] for r in rows} == {"aster", "aster-sound", "refined"}
    for r in rows:
        assert r["status"] == "ok" and r["n_params"] == 9 and r["max_observed"] > 0
        if r["mode"] != "aster":  # sound modes: the verify search never exceeds the certificate
            assert r["violations"] == 0 and r["max_observed"] <= r["certified"] <= 1e-3
    # the same cell in-process gives the same row (the child process changes nothing)
    cell = next(c for c in grid.cells() if c.mode == "refined" and c.setting == "A")
    direct = run_cell(cell)
    stored = next(r for r in rows if row_key(r) == cell.key)
    for f in ("certified", "hw", "daisy_area", "frac_bits", "max_observed", "violations"):
        assert stored[f] == direct[f], f
    again = run_sweep(grid, out, workers=2, progress=False)
    assert (again.skipped, again.written) == (6, 0)
    assert len(_csv_lines(out)) == 6
    # each run that wrote rows is logged with its wall time (a resumed store keeps every run's)
    (log,) = ResultStore(out, ROW_FIELDS).runs()
    assert (log["written"], log["skipped"], log["workers"]) == (6, 0, 2)
    assert log["wall_s"] == pytest.approx(first.wall_s) and log["label"] == "sweep"


def test_failed_cells_still_carry_the_network_size(tmp_path: Path, shared_dir: Path) -> None:
    """Sizes come from the quantize result's own layers when it succeeds, else from loading the model:
    both give the same numbers."""
    (model,) = _copy_models(shared_dir, tmp_path, ("TestNN",))
    base = {
        "model": "TestNN",
        "model_path": str(model),
        "setting": "A",
        "granularity": "layer",
        "ilp_time_limit": 20.0,
        "verify": (
            ("samples", 16),
            ("search_iters", 1),
            ("search_batch", 8),
            ("search_starts", 2),
            ("exact_candidates", 1),
            ("seed", 0),
        ),
    }
    ok = run_cell(Cell(eps=1e-2, mode="aster", **base))
    bad = run_cell(Cell(eps=1e-12, mode="aster", **base))
    assert ok["status"] == "ok" and bad["status"] == "infeasible"
    sizes = ("n_layers", "n_neurons", "n_params")
    assert [ok[k] for k in sizes] == [bad[k] for k in sizes] and ok["n_params"] > 0


def test_variant_cells_switch_the_analysis_and_stay_sound(tmp_path: Path, shared_dir: Path) -> None:
    (model,) = _copy_models(shared_dir, tmp_path, ("TestNN",))
    body = SMALL_BODY.replace('settings = ["A", "C"]', 'settings = ["A"]').replace(
        '"aster", "aster-sound", "refined"', '"aster", "refined"'
    )
    grid_path = _write_grid(
        tmp_path / "g.toml",
        [str(model)],
        body.replace("[verify]", 'variants = ["full", "interval-ranges", "layer-granularity"]\n[verify]'),
    )
    grid = load_grid(grid_path)
    assert sorted((c.mode, c.variant) for c in grid.cells()) == [
        ("aster", "full"),
        ("refined", "full"),
        ("refined", "interval-ranges"),
        ("refined", "layer-granularity"),
    ]
    run_sweep(grid, tmp_path / "out", workers=2, progress=False)
    stored = ResultStore(tmp_path / "out", ROW_FIELDS).rows()
    rows = {r["variant"]: r for r in stored if r["mode"] == "refined"}
    full, layer = rows["full"], rows["layer-granularity"]
    for r in rows.values():
        assert r["status"] == "ok" and r["violations"] == 0 and r["max_observed"] <= r["certified"] <= 1e-3
    # one format per layer: every layer's per-neuron bits are equal, and it cannot be cheaper
    assert all(len(set(b)) == 1 for b in json.loads(layer["frac_bits"])["dot"])
    assert any(len(set(b)) > 1 for b in json.loads(full["frac_bits"])["dot"])
    assert layer["hw"] >= full["hw"]


def test_graph_cells_have_no_setting_and_run_like_mode_graph(tmp_path: Path, shared_dir: Path) -> None:
    """``modes = ["graph"]``: one cell per model x eps x granularity (setting "-"), whatever the
    settings; in the sweep's child processes (which start the guarded HiGHS solves of their own)
    each certifies eps over the box, verify finds nothing above the bound, and the row equals the
    same cell run in-process."""
    (model,) = _copy_models(shared_dir, tmp_path, ("SmallNN",))
    body = SMALL_BODY.replace('modes = ["aster", "aster-sound", "refined"]', 'modes = ["refined", "graph"]')
    body = body.replace("[verify]", 'granularities = ["neuron", "layer"]\n[verify]')
    grid = load_grid(_write_grid(tmp_path / "g.toml", [str(model)], body))
    cells = grid.cells()
    assert sorted((c.mode, c.setting, c.granularity) for c in cells if c.mode == "graph") == [
        ("graph", "-", "layer"),
        ("graph", "-", "neuron"),
    ]
    assert len(cells) == 2 * 2 + 2 and len({c.key for c in cells}) == len(cells)
    summary = run_sweep(grid, tmp_path / "out", workers=2, progress=False)
    assert summary.written == 6 and not summary.crashed
    rows = [r for r in ResultStore(tmp_path / "out", ROW_FIELDS).rows() if r["mode"] == "graph"]
    assert len(rows) == 2
    for r in rows:
        assert r["status"] == "ok", r["message"]
        assert r["violations"] == 0 and 0 < r["max_observed"] <= r["certified"] <= 1e-3
        assert r["hw"] > 0 and r["n_params"] == 9 and r["verify_samples"] > 0
    cell = next(c for c in cells if c.mode == "graph" and c.granularity == "neuron")
    direct = run_cell(cell)
    stored = next(r for r in rows if row_key(r) == cell.key)
    for f in ("certified", "hw", "frac_bits", "max_observed", "violations"):
        assert stored[f] == direct[f], f
    # a grid of graph cells only needs no settings
    only = load_grid(_write_grid(tmp_path / "g2.toml", [str(model)], 'eps = [1e-3]\nmodes = ["graph"]\n'))
    assert [(c.mode, c.setting, c.granularity) for c in only.cells()] == [("graph", "-", "neuron")]
    with pytest.raises(UserError, match="'settings' must be a non-empty list"):
        load_grid(_write_grid(tmp_path / "g3.toml", [str(model)], 'eps = [1e-3]\nmodes = ["graph", "aster"]'))


def test_cell_over_its_time_limit_is_a_timeout_row(tmp_path: Path, shared_dir: Path) -> None:
    (model,) = _copy_models(shared_dir, tmp_path, ("AC6",))
    body = 'eps = [1e-3]\nsettings = ["B"]\nmodes = ["refined"]\ncell_time_limit = 0.3\n'
    grid = load_grid(_write_grid(tmp_path / "g.toml", [str(model)], body))
    t0 = time.perf_counter()
    summary = run_sweep(grid, tmp_path / "out", workers=1, progress=False)
    assert time.perf_counter() - t0 < 30  # killed, not waited for
    (row,) = ResultStore(tmp_path / "out", ROW_FIELDS).rows()
    assert summary.written == 1 and row["status"] == "timeout" and row["certified"] is None
    assert "0.3 s" in row["message"]


def crash_first_attempt(cell: Cell) -> dict[str, Any]:
    """A stand-in cell body (runs in the child): dies hard once per model, then runs normally."""
    marker = Path(cell.model_path + f".{cell.mode}.crashed")
    if not marker.exists():
        marker.write_text("")
        os._exit(9)
    return run_cell(cell)


def crash_always(cell: Cell) -> dict[str, Any]:
    """A stand-in cell body that always dies without a row (like an out-of-memory kill)."""
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


def test_crashed_cells_are_retried_and_never_stored(tmp_path: Path, shared_dir: Path) -> None:
    (model,) = _copy_models(shared_dir, tmp_path, ("SmallNN",))
    body = SMALL_BODY.replace('settings = ["A", "C"]', 'settings = ["A"]')
    grid = load_grid(_write_grid(tmp_path / "g.toml", [str(model)], body))
    out = tmp_path / "out"
    hard = run_sweep(grid, out, workers=2, progress=False, cell_fn=crash_always)
    assert (hard.written, len(hard.crashed)) == (0, 3)
    assert _csv_lines(out) == []  # nothing half-written, nothing recorded
    retried = run_sweep(grid, out, workers=2, progress=False, cell_fn=crash_first_attempt)
    assert (retried.written, retried.crashed) == (3, [])
    assert len(list(tmp_path.glob("*.crashed"))) == 3  # each cell did crash once first
    assert {r["status"] for r in ResultStore(out, ROW_FIELDS).rows()} == {"ok"}


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_killed_sweep_resumes_without_lost_or_duplicated_rows(tmp_path: Path, shared_dir: Path) -> None:
    models = _copy_models(shared_dir, tmp_path, ("SmallNN", "TestNN", "InvPendulumNN"))
    body = SMALL_BODY.replace("eps = [1e-3]", "eps = [1e-3, 1e-4]").replace(
        'settings = ["A", "C"]', 'settings = ["A", "B", "C", "D"]'
    )
    grid_path = _write_grid(tmp_path / "g.toml", [str(m) for m in models], body)
    total = len(load_grid(grid_path).cells())
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "aster_ext.cli", "sweep", str(grid_path), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if (out / "results.csv").exists() and len(_csv_lines(out)) >= 5:
                break
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # the driver only: its cell processes must notice and exit
        proc.wait()
        deadline = time.monotonic() + 20
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _group_alive(proc.pid), "cell processes outlived the killed sweep"
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    partial = _csv_lines(out)
    assert 5 <= len(partial) < total
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(partial)} already done, {total - len(partial)} rows written" in rerun.stdout
    lines = _csv_lines(out)
    keys = [tuple(r[k] for k in KEY) for r in lines]
    assert len(keys) == len(set(keys)) == total
    assert lines[: len(partial)] == partial  # earlier rows untouched
    assert {r["status"] for r in lines} <= {"ok", "infeasible"}


@pytest.mark.slow
def test_ray_gives_the_same_rows_as_the_local_pool(tmp_path: Path, shared_dir: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'aster_ext[experiments]')")
    (model,) = _copy_models(shared_dir, tmp_path, ("SmallNN",))
    grid = load_grid(_write_grid(tmp_path / "g.toml", [str(model)], SMALL_BODY))
    local = run_sweep(grid, tmp_path / "local", workers=2, progress=False)
    ray = run_sweep(grid, tmp_path / "ray", workers=2, ray_address="auto", progress=False)
    assert local.written == ray.written == 6 and ray.backend == "ray"

    def table(out: Path) -> dict[tuple[str, ...], dict[str, Any]]:
        rows = ResultStore(out, ROW_FIELDS).rows()
        return {row_key(r): {k: v for k, v in r.items() if k not in TIME_FIELDS} for r in rows}

    assert table(tmp_path / "local") == table(tmp_path / "ray")


# -- tables, figures, manifest --------------------------------------------------------------------


@pytest.mark.slow
def test_reproduce_writes_tables_figures_and_manifest(
    tmp_path: Path, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aster_ext.experiments import reproduce as rep
    from aster_ext.experiments.grid import Grid

    model = shared_dir / "benchmarks" / "aster" / "SmallNN.scala"
    tiny = {
        "modes": Grid(models=[model], eps=[1e-3, 1e-5], settings=["A"], modes=list(rep.MODES),
                      verify={"samples": 64, "search_starts": 4, "search_iters": 2, "search_batch": 16,
                              "exact_candidates": 2, "seed": 0}),
        "ablation": Grid(models=[model], eps=[1e-3], settings=["A"], modes=["refined"],
                         variants=["no-relu-stability"],
                         verify={"samples": 64, "search_starts": 4, "search_iters": 2, "search_batch": 16,
                                 "exact_candidates": 2, "seed": 0}),
        "violations": Grid(models=[model], eps=[1e-3], settings=["A", "C"], modes=["aster"],
                           verify={"samples": 100, "search_starts": 4, "search_iters": 3, "search_batch": 16,
                                   "exact_candidates": 2, "seed": 0}),
    }  # fmt: skip
    monkeypatch.setattr(rep, "grids", lambda quick: tiny)
    results = tmp_path / "results"
    manifest = rep.reproduce(
        results, tmp_path / "work", True, 2, None, progress=False, tables=("modes", "aster_violations")
    )
    on_disk = json.loads((results / "MANIFEST.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert on_disk["packages"]["HiGHS"] and on_disk["packages"]["numpy"] and on_disk["cpu"]["cores"]
    assert len(on_disk["commit"]) == 40 and on_disk["seeds"]["verify"] == 0
    assert {"modes.md", "aster_reproduction.md", "aster_violations.md", "figures"} <= set(on_disk["tables"])
    assert all(t["wall_s"] >= 0 for t in on_disk["tables"].values())
    # sweep times that survive resuming: the logged runs and the cells' own times
    sweep = on_disk["sweeps"]["modes"]
    assert (sweep["runs"], sweep["runs_written"]) == (1, sweep["cells"]) and sweep["cell_s"] > 0
    assert "sum of the cells' own times" in (results / "modes.md").read_text()
    modes = list(csv.DictReader((results / "modes.csv").open()))
    assert len(modes) == 2 * 3 and {r["mode"] for r in modes} == {"aster", "aster-sound", "refined"}
    ablation = list(csv.DictReader((results / "ablation.csv").open()))
    assert [r["variant"] for r in ablation] == ["full", "no-relu-stability"]
    repro = list(csv.DictReader((results / "aster_reproduction.csv").open()))
    assert len(repro) == 2 * 2 and all(r["source"] == "SmallNN.scala" for r in repro)
    # the original tool's objective joins the eps = 1e-3 rows only
    assert all(bool(r["ref_objective"]) == (float(r["eps"]) == 1e-3) for r in repro)
    violations = list(csv.DictReader((results / "aster_violations.csv").open()))
    assert [r["setting"] for r in violations] == ["A", "C"] and all(r["status"] == "ok" for r in violations)
    for r in violations:  # the sound certificate of Aster's program is never exceeded
        assert float(r["observed_over_independent"]) <= 1 and int(r["samples"]) >= 100
    assert (work := tmp_path / "work" / "violations" / "results.csv").exists() and work.stat().st_size
    md = (results / "modes.md").read_text()
    for name in ("pareto_hw", "frac_bits_layer", "frac_bits_neuron", "certified_vs_observed", "time_vs_size"):
        assert (results / "figures" / f"{name}.png").stat().st_size > 1000
        assert (results / "figures" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
        assert f"](figures/{name}.png)" in md


def test_compare_csv_reports_differences_but_not_times(tmp_path: Path) -> None:
    from aster_ext.experiments.compare import compare_csv

    (tmp_path / "a.csv").write_text("benchmark,eps,hw,time_s\nN,0.001,5,1.0\nM,1e-05,7,2.0\nO,0.1,1,1\n")
    (tmp_path / "b.csv").write_text("benchmark,eps,hw,time_s\nN,1e-3,5,9.0\nM,0.00001,8,2.0\nP,0.1,1,1\n")
    diff = compare_csv(tmp_path / "a.csv", tmp_path / "b.csv", ["benchmark", "eps"])
    assert diff.matched == 2 and diff.only_new == [("O", "0.1")] and diff.only_old == [("P", "0.1")]
    assert dict(diff.differing) == {"hw": 1} and diff.examples["hw"][0][1:] == ("7", "8")


# -- tables of their own cells (aster_ext.experiments.tasks) -------------------------------------


def square_task(x: float, fail: bool = False, sleep: float = 0.0) -> dict[str, Any]:
    """A stand-in table cell (runs in the child): x squared, or an exception, after ``sleep`` s."""
    time.sleep(sleep)
    if fail:
        raise ValueError(f"no square of {x}")
    return {"status": "ok", "square": x * x, "pid": os.getpid()}


def _square_tasks(items: list[dict[str, Any]]) -> list[Any]:
    from aster_ext.experiments.tasks import tasks_of

    return tasks_of(__name__, "square_task", items, lambda kw: {"x": kw["x"]})


def test_table_tasks_store_rows_resume_and_report_failures(tmp_path: Path) -> None:
    from aster_ext.experiments.tasks import run_tasks

    tasks = _square_tasks([{"x": 1.5}, {"x": 2}, {"x": 3, "fail": True}])
    first = run_tasks(tasks, tmp_path, ["x", "status", "square", "pid"], workers=2, time_limit=60)
    assert [r["x"] for r in first.rows] == [1.5, 2, 3]  # task order, not finishing order
    assert [r["square"] for r in first.rows[:2]] == [2.25, 4]
    assert first.rows[2]["status"].startswith("error: ValueError: no square of 3")  # shown, not hidden
    assert first.rows[0]["pid"] != os.getpid()  # each task in a child process
    again = run_tasks(tasks, tmp_path, ["x", "status", "square", "pid"], workers=2, time_limit=60)
    assert again.rows == first.rows  # nothing rerun: same pids
    more = run_tasks(tasks + _square_tasks([{"x": 4.0}]), tmp_path, ["x", "status", "square", "pid"], 1)
    assert len(_csv_lines(tmp_path)) == 4 and more.rows[3]["square"] == 16


def test_table_without_a_status_column_refuses_failed_tasks(tmp_path: Path) -> None:
    from aster_ext.experiments.tasks import run_tasks

    tasks = _square_tasks([{"x": 1.0}, {"x": 2.0, "sleep": 30.0}])
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"1 tasks failed: 2.0: timeout \(2 s\)"):
        run_tasks(tasks, tmp_path, ["x", "square"], workers=2, time_limit=2)
    assert time.perf_counter() - t0 < 20  # killed, not waited for


def test_value_keys_match_across_csv_round_trips() -> None:
    from aster_ext.experiments.store import value_key

    assert value_key([1, "A", 0.001]) == value_key(["1.0", "A", "1e-3"]) == value_key([1.0, "A", "0.001"])
    assert value_key(["sample0±2lv", "True"]) == ("sample0±2lv", "True")


def test_reproduce_cli_reports_failed_tables_in_one_line_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed table ends `aster-ext experiments reproduce` with exit status 1 and one line per
    failed table naming why, not a traceback; the tables that worked are written."""
    from aster_ext.cli import main
    from aster_ext.experiments import reproduce as rep

    def good(run: Any) -> dict[str, Any]:
        (run.results / "good.md").write_text("ok\n")
        return {"good.md": {"files": ["good.md"], "wall_s": 0.5}}

    def bad(run: Any) -> dict[str, Any]:
        raise ValueError("broken table")

    monkeypatch.setattr(rep, "STEPS", {"good": good, "bad": bad})
    results = tmp_path / "results"
    argv = ["experiments", "reproduce", "--quick", "--quiet", "--results", str(results)]
    assert main([*argv, "--resume", str(tmp_path / "work")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[0].startswith("aster-ext: error: 1 table(s) failed")
    assert any(ln.strip().startswith("bad:") and "broken table" in ln for ln in err.splitlines())
    assert (results / "good.md").read_text() == "ok\n"


def test_reproduce_records_failed_steps_and_keeps_older_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aster_ext.experiments import reproduce as rep

    def good(run: Any) -> dict[str, Any]:
        (run.results / "good.md").write_text("ok\n")
        return {"good.md": {"files": ["good.md"], "wall_s": 0.5}}

    def bad(run: Any) -> dict[str, Any]:
        raise ValueError("broken table")

    results = tmp_path / "results"
    results.mkdir()
    older = {"date_utc": "2026-01-01T00:00:00+00:00", "commit": "c0ffee", "tables": {"old.md": {"wall_s": 9}}}
    older |= {"work": "w0", "sweeps": {"modes": {"cells": 3}}, "sweep_stores": {"modes": "w0/results.csv"}}
    (results / "MANIFEST.json").write_text(json.dumps(older))
    monkeypatch.setattr(rep, "STEPS", {"good": good, "bad": bad})
    with pytest.raises(RuntimeError, match="broken table"):
        rep.reproduce(results, tmp_path / "work", True, 1, None, progress=False)
    m = json.loads((results / "MANIFEST.json").read_text())
    assert m["tables"]["good.md"]["wall_s"] == 0.5 and len(m["tables"]["good.md"]["commit"]) == 40
    good_entry = m["tables"]["good.md"]
    assert good_entry["step"] == "good" and good_entry["step_cpu_s"] >= 0 and good_entry["step_wall_s"] >= 0
    summary = rep.step_times(m, 2)
    assert [ln.split()[0] for ln in summary[1:]] == ["good", "bad", "sum"]  # a failed step took time too
    assert "broken table" in m["tables"]["bad.md"]["error"] and "broken table" in m["failed"]["bad"]
    kept = {"wall_s": 9, "date_utc": older["date_utc"], "commit": "c0ffee", "dirty": None}
    assert m["tables"]["old.md"] == kept
    # the earlier run's sweep details stay beside the tables they describe (no sweep ran here)
    stamp = {"date_utc": older["date_utc"], "commit": "c0ffee", "work": "w0"}
    assert m["sweeps"]["modes"] == {"cells": 3, **stamp}
    assert m["sweep_stores"] == {"modes": "w0/results.csv"}
    with pytest.raises(UserError, match="unknown tables"):
        rep.reproduce(results, tmp_path / "work", True, 1, None, progress=False, tables=("nope",))


def test_quick_runs_its_background_step_beside_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--quick starts QUICK_BACKGROUND steps first in a thread (without a progress bar); the other steps
    run meanwhile, and the manifest ends with every step's entry."""
    import threading

    from aster_ext.experiments import reproduce as rep

    started = threading.Event()
    seen: dict[str, Any] = {}

    def slow(run: Any) -> dict[str, Any]:
        seen["slow_progress"] = run.progress
        started.set()
        time.sleep(0.5)
        seen["slow_done"] = time.perf_counter()
        return {"slow.md": {"wall_s": 0.5}}

    def fast(run: Any) -> dict[str, Any]:
        assert started.wait(5)
        seen["fast_done"] = time.perf_counter()
        return {"fast.md": {"wall_s": 0.0}}

    monkeypatch.setattr(rep, "STEPS", {"fast": fast, "slow": slow})
    monkeypatch.setattr(rep, "QUICK_BACKGROUND", ("slow",))
    m = rep.reproduce(tmp_path / "results", tmp_path / "work", True, 1, None, progress=True)
    assert seen["fast_done"] < seen["slow_done"] and seen["slow_progress"] is False
    assert {"fast.md", "slow.md"} <= set(m["tables"]) and m["failed"] == {}
    on_disk = json.loads((tmp_path / "results" / "MANIFEST.json").read_text())
    assert {"fast.md", "slow.md"} <= set(on_disk["tables"])


def _header(path: Path) -> list[str]:
    return path.read_text().splitlines()[0].split(",")


def _build_quick(module: Any, tmp_path: Path) -> list[dict[str, str]]:
    """``module.build`` in its --quick version; its CSV has the columns of the committed table."""
    results = tmp_path / "results"
    results.mkdir(exist_ok=True)
    from aster_ext.experiments.tasks import TableRun

    files = module.build(TableRun(results, tmp_path / "work", quick=True, workers=2))
    assert {p.name for p in files} == {f"{module.TABLE}.csv", f"{module.TABLE}.md"}
    assert _header(results / f"{module.TABLE}.csv") == _header(ROOT / "results" / f"{module.TABLE}.csv")
    assert (results / f"{module.TABLE}.md").read_text().startswith("# ")
    return list(csv.DictReader((results / f"{module.TABLE}.csv").open()))


@pytest.mark.slow
def test_quick_refined_timing(tmp_path: Path) -> None:
    from aster_ext.experiments import refined_timing

    rows = _build_quick(refined_timing, tmp_path)
    assert len(rows) == 4 * 2 and {r["setting"] for r in rows} == {"A", "C"}
    for r in rows:
        assert r["status"] in ("ok", "infeasible") and float(r["total_s"]) > 0
        if r["status"] == "ok":
            assert 0 < float(r["certified"]) <= 1e-3 and int(r["hw"]) > 0
            assert 0 <= float(r["solver_s"]) <= float(r["total_s"])
    # its cells are the modes sweep's (same store, same cells): the modes grid finds them finished
    from aster_ext.experiments.reproduce import grids

    store = ResultStore(tmp_path / "work", ROW_FIELDS)
    modes_keys = {c.key for c in grids(True)["modes"].cells()}
    assert {row_key(r) for r in store.rows()} <= modes_keys and len(store.rows()) == 8


@pytest.mark.slow
def test_quick_cpp_check_is_bit_exact(tmp_path: Path) -> None:
    from aster_ext.experiments import cpp_check

    rows = _build_quick(cpp_check, tmp_path)
    assert sorted(r["mode"] for r in rows) == sorted(cpp_check.MODES)
    assert all(r["status"] == "ok" and r["bit_exact"] == "True" and r["inputs"] == "400" for r in rows)


@pytest.mark.slow
def test_quick_activations_e2e(tmp_path: Path) -> None:
    from aster_ext.experiments import activations_e2e

    (row,) = _build_quick(activations_e2e, tmp_path)
    assert row["activation"] == "sigmoid" and row["status"] == "ok" and row["violations"] == "0"
    assert row["bit_exact_cpp"] == "True" and float(row["observed"]) <= float(row["certified"]) <= 1e-2


@pytest.mark.slow
def test_quick_tightness_breakdown_shares_and_soundness(tmp_path: Path) -> None:
    from aster_ext.experiments import tightness_breakdown as tb

    rows = _build_quick(tb, tmp_path)
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(rows) == 8 and ok
    for r in ok:
        shares = sum(float(r[k]) for k in tb.SHARES)
        assert 0.5 < shares <= 1 + 1e-9  # the rest of the bound is the float slack
        assert 0 < float(r["observed"]) <= float(r["bound"]) and float(r["tightness"]) >= 1
        assert float(r["loose"]) * float(r["align"]) == pytest.approx(float(r["tightness"]), rel=1e-9)


@pytest.mark.slow
def test_quick_aster_lp_match(tmp_path: Path) -> None:
    from aster_ext.experiments import aster_lp_match

    rows = _build_quick(aster_lp_match, tmp_path)
    assert len(rows) == 16 and {r["benchmark"] for r in rows} == {"SmallNN", "TestNN", "InvPendulumNN",
                                                                  "LyapunovNN"}  # fmt: skip
    assert all(r["lp_match"] == "yes" and r["claimed_match"] == "yes" for r in rows)
    assert all(r["agreement"] == "same optimum" or r["agreement"] == "both infeasible" for r in rows)


@pytest.mark.slow
def test_quick_nonlinear_top1(tmp_path: Path) -> None:
    from aster_ext.experiments import nonlinear

    (row,) = _build_quick(nonlinear, tmp_path)
    assert (row["network"], row["box"], row["top1_certified"]) == ("tansig_200_50_onnx", "sample0±2lv", "1/1")
    assert float(row["eps_min"]) <= float(row["certified"]) <= float(row["eps_used"])
    assert float(row["max_diff_bound"]) < float(row["min_margin"])


@pytest.mark.slow
def test_quick_tightness_nonlinear_is_sound(tmp_path: Path) -> None:
    from aster_ext.experiments import tightness_nonlinear as tn

    rows = _build_quick(tn, tmp_path)
    assert {r["network"] for r in rows} == {"mlp_sigmoid", "synth_sigmoid"}
    for r in rows:
        assert r["outside_sym"] == "0" and r["outside_int"] == "0"
        if r["sym_median"]:
            sym, interval = float(r["sym_median"]), float(r["int_median"])
            assert sym >= 1 - 1e-9 and interval >= sym - 1e-9
    (fixture,) = [r for r in rows if r["network"] == "mlp_sigmoid" and r["layer"] == "all"]
    assert float(fixture["max_observed"]) <= float(fixture["certified"]) and fixture["violations"] == "0"


def test_timing_sums_cell_times_and_lists_logged_runs(tmp_path: Path) -> None:
    from aster_ext.experiments.timing import timing_lines

    store = ResultStore(tmp_path, ROW_FIELDS)
    base = {"model": "m", "setting": "A", "granularity": "layer", "variant": "full", "status": "ok"}
    store.append({**base, "eps": 1e-3, "mode": "aster", "time_s": 2.0, "solver_s": 1.0, "verify_s": 4.0})
    store.append({**base, "eps": 1e-5, "mode": "refined", "time_s": 30.0, "solver_s": 20.0, "verify_s": 24.0})
    store.log_run({"label": "modes", "wall_s": 120.0, "written": 2, "workers": 2})
    lines = timing_lines(tmp_path, workers=2, top=1)
    assert "2 cells; quantize 32 s (HiGHS 21 s), verify 28 s; sum 1.0 min, /2 workers = 0.5 min" in lines[0]
    assert any("m 1e-05 A refined full ok: 30.0 / 20.0 / 24.0" in ln for ln in lines)
    assert lines[-1].startswith("run modes") and "2 rows in 2.0 min wall" in lines[-1]


def busy_task(x: float) -> dict[str, Any]:
    """A stand-in cell that burns about ``x`` s of CPU in the child."""
    t0 = time.process_time()
    while time.process_time() - t0 < x:
        pass
    return {"status": "ok", "x": x}


def test_children_report_their_cpu_time_to_the_driver() -> None:
    """The manifest's per-step CPU time counts the cells' child processes (forkserver children are
    not the driver's, so getrusage(RUSAGE_CHILDREN) alone would miss them)."""
    from aster_ext.experiments.runner import children_cpu_s, run_limited

    before = children_cpu_s()
    row = run_limited(0.3, 60, busy_task, lambda x: {"x": x})
    assert row == {"status": "ok", "x": 0.3}
    assert 0.3 <= children_cpu_s() - before < 5


def test_reproduce_never_writes_over_files_it_did_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A --results folder holding a user's file named like one of the tables: reproduce refuses
    before any step runs and leaves the folder as it was. Files a run wrote (even one whose step
    failed half-way) are the tool's from then on, so a rerun replaces them."""
    from aster_ext.experiments import reproduce as rep
    from aster_ext.experiments.manifest import check_files_are_ours

    ran: list[str] = []
    fail = {"now": False}

    def mine(run: Any) -> dict[str, Any]:
        ran.append("mine")
        (run.results / "t.md").write_text("table\n")
        if fail["now"]:
            raise ValueError("half-way")
        return {"t.md": {"files": ["t.md"], "wall_s": 0.1}}

    monkeypatch.setattr(rep, "STEPS", {"mine": mine})
    monkeypatch.setattr(rep, "STEP_FILES", {"mine": ("t.md",)})
    results = tmp_path / "r"
    results.mkdir()
    (results / "t.md").write_text("my notes\n")
    with pytest.raises(UserError, match=r"did not write and would replace: t\.md"):
        rep.reproduce(results, tmp_path / "w", True, 1, None, progress=False)
    assert not ran and (results / "t.md").read_text() == "my notes\n"
    assert sorted(p.name for p in results.iterdir()) == ["t.md"]

    # an empty folder: the run writes t.md and lists it; a rerun may replace it
    fresh = tmp_path / "fresh"
    fail["now"] = True  # the step writes t.md, then fails
    with pytest.raises(RuntimeError, match="half-way"):
        rep.reproduce(fresh, tmp_path / "w2", True, 1, None, progress=False)
    assert json.loads((fresh / "MANIFEST.json").read_text())["written_files"] == ["t.md"]
    fail["now"] = False
    rep.reproduce(fresh, tmp_path / "w2", True, 1, None, progress=False)
    assert ran == ["mine", "mine"]
    # a file our manifest does not list stays foreign
    (fresh / "u.md").write_text("mine\n")
    with pytest.raises(UserError, match=r"u\.md"):
        check_files_are_ours(fresh, ["t.md", "u.md"])
    check_files_are_ours(fresh, ["t.md", "u.md"], {"u.md"})


def test_git_tracked_lists_the_committed_files_of_a_folder(tmp_path: Path) -> None:
    import subprocess

    from aster_ext.experiments.manifest import git_tracked

    repo = tmp_path / "repo"
    (repo / "results" / "figures").mkdir(parents=True)
    for name in ("results/a.md", "results/figures/f.png", "results/untracked.md", "other.md"):
        (repo / name).write_text("x\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    tracked = ["results/a.md", "results/figures/f.png", "other.md"]
    subprocess.run(["git", "-C", str(repo), "add", *tracked], check=True)
    assert git_tracked(repo, repo / "results") == {"a.md", "figures/f.png"}
    assert git_tracked(tmp_path / "not-a-repo", tmp_path) == set()


def test_reproduce_plan_lists_steps_with_their_last_recorded_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``reproduce --plan`` runs nothing and writes nothing; it lists the chosen steps with the
    wall time of their last recorded run (a step's own time, a script run by hand with its
    command), unknown where the manifest has none, and the sum of the known ones."""
    from aster_ext.experiments import reproduce as rep

    ran: list[str] = []
    monkeypatch.setattr(rep, "STEPS", {"a": lambda run: ran.append("a"), "b": lambda run: ran.append("b")})
    results = tmp_path / "r"
    results.mkdir()
    manifest = {
        "tables": {
            "a.md": {"step": "a", "step_wall_s": 120.0, "wall_s": 100.0, "commit": "c" * 40},
            "a2.md": {"step": "a", "step_wall_s": 120.0, "wall_s": 5.0},  # same step: counted once
            "b.md": {"step": "b", "error": "broken", "wall_s": 9.0},  # a failed run is no record
        }
    }
    (results / "MANIFEST.json").write_text(json.dumps(manifest))
    before = sorted(p.name for p in results.iterdir())
    assert rep.main(["reproduce", "--results", str(results), "--plan"]) == 0
    out = capsys.readouterr().out
    assert not ran and sorted(p.name for p in results.iterdir()) == before
    line_a = next(ln for ln in out.splitlines() if ln.startswith("a "))
    assert "2.0m" in line_a and "cccccccc" in line_a
    assert "no run recorded" in next(ln for ln in out.splitlines() if ln.startswith("b "))
    assert "2 steps; recorded wall times sum to 2.0 min, 1 without a record (b)" in out
    lines = rep.plan_lines(
        {"tables": {"t.md": {"step": "a", "wall_s": 60.0, "run": "direct", "commands": ["python s.py --x"]}}},
        ["a"],
    )
    assert "by hand: python s.py --x" in lines[1] and "1.0m" in lines[1]
    # a script table written file by file: the runs that last wrote each file are summed; a
    # record without its time takes the entry's when it is the entry's own run; a file of the
    # step with no record, or a run of unknown time, makes the step partly recorded
    from aster_ext.experiments.script_steps import ScriptStep

    step = ScriptStep("s.py", ((),), ("a.csv", "b.csv", "c.csv"), "a stand-in")
    monkeypatch.setattr(rep, "SCRIPT_STEPS", {"s": step})
    runs = {
        "a.csv": {"date_utc": "2026-01-02T00:00", "command": "python s.py --resume"},  # the entry's run
        "b.csv": {"date_utc": "2026-01-01T00:00", "command": "python s.py", "wall_s": 120.0},
    }
    entry = {"step": "s", "run": "direct", "date_utc": "2026-01-02T00:00", "wall_s": 60.0}
    entry |= {"commands": ["python s.py --resume"], "file_runs": runs}
    lines = rep.plan_lines({"tables": {"s.md": entry}}, ["s"])
    assert ">=3.0m" in lines[1] and "no record of c.csv" in lines[1] and "1 partly recorded (s)" in lines[2]
    runs["c.csv"] = dict(runs["b.csv"])
    lines = rep.plan_lines({"tables": {"s.md": entry}}, ["s"])
    assert "  3.0m" in lines[1] and "partly" not in lines[2]
    with pytest.raises(UserError, match="unknown tables"):
        rep.chosen_steps(("nope",), False)

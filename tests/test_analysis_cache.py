"""The analysis cache a reproduce run shares between its tables (aster_ext.experiments.analysis_cache):
a hit returns the stored analysis; any change to the model file, the options or the cache folder's
key inputs misses (never a stale analysis)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from aster_ext.experiments import analysis_cache as ac
from aster_ext.pipeline import QuantizeOptions


@pytest.fixture
def small(tmp_path: Path, shared_dir: Path) -> Path:
    model = tmp_path / "SmallNN.scala"
    shutil.copy(shared_dir / "benchmarks" / "aster" / "SmallNN.scala", model)
    return model


def test_key_follows_model_bytes_and_every_option(small: Path) -> None:
    opts = QuantizeOptions(error=1e-3, setting="C")
    key = ac.analysis_key(small, opts)
    assert key == ac.analysis_key(small, QuantizeOptions(error=1e-3, setting="C"))
    assert key != ac.analysis_key(small, QuantizeOptions(error=1e-3, setting="A"))
    assert key != ac.analysis_key(small, QuantizeOptions(error=1e-3, setting="C", mode="aster"))
    assert key != ac.analysis_key(small, QuantizeOptions(error=1e-3, setting="C", time_limit=30.0))
    small.write_bytes(small.read_bytes() + b"\n// same network, other bytes\n")
    assert key != ac.analysis_key(small, opts)


def test_hit_returns_the_stored_analysis_and_a_changed_model_recomputes(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv(ac.ENV, str(cache))
    opts = QuantizeOptions(error=1e-3, setting="C")
    first = ac.analyse_cached(small, opts)
    assert first.infeasible is None and len(list(cache.glob("*.pkl"))) == 1
    # a planted entry under the same key is what a hit returns (the analysis is not recomputed)
    planted = ac.Analysis(first.layers, first.program, first.certificate, [0.0], [1.0], None)
    ac.store(small, opts, planted)
    assert ac.analyse_cached(small, opts).input_upper == [1.0]
    # another model file (even one byte): a miss, computed afresh and stored beside the first
    small.write_bytes(small.read_bytes() + b"\n// changed\n")
    again = ac.analyse_cached(small, opts)
    assert list(again.input_upper) != [1.0] and len(list(cache.glob("*.pkl"))) == 2
    a, b = first.program.layers[0], again.program.layers[0]
    assert np.array_equal(np.asarray(a.weight_raw), np.asarray(b.weight_raw))


def test_infeasible_targets_are_cached_and_no_env_means_no_files(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ac.ENV, raising=False)
    opts = QuantizeOptions(error=1e-12, setting="A", mode="aster-sound")
    got = ac.analyse_cached(small, opts)
    assert got.infeasible and ac.load(small, opts) is None  # no folder: nothing stored
    monkeypatch.setenv(ac.ENV, str(tmp_path / "c"))
    ac.analyse_cached(small, opts)
    hit = ac.load(small, opts)
    assert hit is not None and hit.infeasible == got.infeasible


def test_a_sweep_cell_shares_its_analysis_with_the_tables(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A modes-sweep cell stores its quantize's analysis; the tables' ``analyse_cached`` with the same
    options then loads it without analysing (``pipeline.analyse`` replaced by a failure)."""
    import aster_ext.pipeline as pipeline
    from aster_ext.experiments.cell import run_cell
    from aster_ext.experiments.grid import Cell

    monkeypatch.setenv(ac.ENV, str(tmp_path / "cache"))
    verify = (("samples", 16), ("search_starts", 1), ("search_iters", 1), ("search_batch", 8),
              ("exact_candidates", 1), ("seed", 0))  # fmt: skip
    cell = Cell("SmallNN", str(small), 1e-3, "C", "refined", "neuron", 60.0, verify)
    row = run_cell(cell)
    assert row["status"] == "ok"

    def no_analysis(*args: object, **kwargs: object) -> None:
        raise AssertionError("analysed again")

    monkeypatch.setattr(pipeline, "analyse", no_analysis)
    got = ac.analyse_cached(small, QuantizeOptions(error=1e-3, mode="refined", setting="C", time_limit=60.0))
    assert got.infeasible is None and float(got.certificate.bound) == pytest.approx(float(row["certified"]))
    with pytest.raises(AssertionError, match="analysed again"):  # other options: not in the cache
        ac.analyse_cached(small, QuantizeOptions(error=1e-3, mode="refined", setting="A"))

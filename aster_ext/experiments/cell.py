"""One sweep cell in-process: ``pipeline.quantize`` into a temporary directory, then ``verify_program``.

The row holds the cell's identity, its outcome (``status``: ok | infeasible | error; the runner adds
timeout), the bound (certified for sound modes, Aster's own claim for ``aster``), costs of the
emitted types, the verify result (max observed error, tightness = bound / observed, violations),
the fractional bits per layer / neuron (JSON) and timings. Floats are kept at full precision so
tables computed from the store equal tables computed in memory.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .grid import Cell

ROW_FIELDS = [
    "model", "eps", "setting", "mode", "granularity", "status", "certified", "claimed", "independent_bound",
    "smallest_eps", "daisy_area", "hw", "mult_bilinear", "aster_objective", "frac_bits", "max_observed",
    "tightness", "violations", "n_layers", "n_neurons", "n_params", "solver_s", "time_s", "verify_s",
    "model_path", "message",
]  # fmt: skip
#: columns that depend on the machine's speed, not on the computation
TIME_FIELDS = ("solver_s", "time_s", "verify_s")
MESSAGE_CHARS = 200


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:MESSAGE_CHARS]


def network_size(model_path: str) -> dict[str, int]:
    """Layers, neurons (outputs of all dense layers) and parameters (weights + biases)."""
    from ..frontend import load_model
    from ..ir import ACTIVATIONS, dense_chain

    net, _ = load_model(model_path)
    layers = dense_chain(net, frozenset(ACTIVATIONS))
    return {
        "n_layers": len(layers),
        "n_neurons": int(sum(lay.weight.shape[0] for lay in layers)),
        "n_params": int(sum(lay.weight.size + lay.bias.size for lay in layers)),
    }


def run_cell(cell: Cell) -> dict[str, Any]:
    """Quantize + verify one cell; every failure becomes a row (status error/infeasible), never a raise."""
    from ..errors import InfeasibleError, UserError
    from ..pipeline import QuantizeOptions, quantize
    from ..verify import VerifyBudget, verify_program

    row: dict[str, Any] = {
        "model": cell.model, "eps": cell.eps, "setting": cell.setting, "mode": cell.mode,
        "granularity": cell.granularity, "model_path": cell.model_path,
    }  # fmt: skip
    try:
        row.update(network_size(cell.model_path))
    except Exception as exc:  # reported in the row, never hidden
        row.update(status="error", time_s=0.0, message=_one_line(f"{type(exc).__name__}: {exc}"))
        return row
    opts = QuantizeOptions(
        error=cell.eps,
        mode=cell.mode,
        setting=cell.setting,
        granularity=cell.granularity,
        time_limit=cell.ilp_time_limit,
    )
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="aster-ext-cell-") as tmp:
            res = quantize(Path(cell.model_path), opts, Path(tmp) / "out")
    except InfeasibleError as exc:
        row.update(status="infeasible", time_s=time.perf_counter() - t0, message=_one_line(str(exc)))
        if exc.smallest_error is not None:
            row["smallest_eps"] = float(exc.smallest_error)
        return row
    except UserError as exc:
        row.update(status="error", time_s=time.perf_counter() - t0, message=_one_line(str(exc)))
        return row
    except Exception as exc:
        row.update(
            status="error", time_s=time.perf_counter() - t0, message=_one_line(f"{type(exc).__name__}: {exc}")
        )
        return row
    row["time_s"] = time.perf_counter() - t0
    r = res.report
    cost = r["cost"]
    row.update(
        status="ok",
        certified=float(r["certified_error"]),
        claimed=float(r["claimed_error"]),
        independent_bound=float(r["independent_bound"]),
        daisy_area=int(cost["daisy_area"]),
        hw=int(cost["hw"]),
        mult_bilinear=int(cost["mult_bilinear"]),
        aster_objective=cost.get("aster_objective", ""),
        frac_bits=json.dumps(r["frac_bits"], separators=(",", ":")),
        solver_s=float(r["solver"]["time_s"]),
        message=_one_line("; ".join(r.get("notes", []))),
    )
    budget = VerifyBudget(**dict(cell.verify))
    t1 = time.perf_counter()
    try:
        vr = verify_program(
            res.program,
            res.layers,
            res.spec.input_lower,
            res.spec.input_upper,
            np.asarray(r["certified_error_per_output"], dtype=np.float64),
            bool(r["input_on_grid"]),
            budget,
        )
    except Exception as exc:
        message = _one_line(f"verify: {type(exc).__name__}: {exc}")
        row.update(verify_s=time.perf_counter() - t1, message=message)
        return row
    row.update(
        max_observed=float(vr.max_observed_error),
        tightness=float(vr.ratio),
        violations=int(vr.violations),
        verify_s=time.perf_counter() - t1,
    )
    return row

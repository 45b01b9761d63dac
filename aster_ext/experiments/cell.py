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
    "model", "eps", "setting", "mode", "granularity", "variant", "status", "certified", "claimed",
    "independent_bound", "smallest_eps", "daisy_area", "hw", "mult_bilinear", "aster_objective", "frac_bits",
    "max_observed", "tightness", "violations", "n_layers", "n_neurons", "n_params", "solver_s", "time_s",
    "verify_s", "model_path", "message", "verify_samples",
]  # fmt: skip
#: columns that depend on the machine's speed, not on the computation
TIME_FIELDS = ("solver_s", "time_s", "verify_s")
MESSAGE_CHARS = 200


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:MESSAGE_CHARS]


def network_size(model_path: str) -> dict[str, int]:
    """Layers, neurons (outputs of all dense layers) and parameters (weights + biases)."""
    from ..frontend import load_model

    net, _ = load_model(model_path)
    return net_size(net)


def net_size(net: Any) -> dict[str, int]:
    """``network_size`` of a network already loaded (a graph cell's own ``res.network``)."""
    from ..ir import ACTIVATIONS, dense_chain

    return layers_size(dense_chain(net, frozenset(ACTIVATIONS)))


def layers_size(layers: list[Any]) -> dict[str, int]:
    """``network_size`` of a dense chain already loaded (the quantize result's own layers: the model
    file, which takes up to seconds to parse, is then read once per cell instead of twice)."""
    return {
        "n_layers": len(layers),
        "n_neurons": int(sum(lay.weight.shape[0] for lay in layers)),
        "n_params": int(sum(lay.weight.size + lay.bias.size for lay in layers)),
    }


def _add_size(row: dict[str, Any], model_path: str, net: Any = None) -> dict[str, Any]:
    """The network's size on a row whose run did not return its layers (infeasible, error), or from
    ``net`` when the run loaded it; a model that does not load (or is no dense chain) leaves the size
    empty (the row already says why the run failed)."""
    try:
        row.update(net_size(net) if net is not None else network_size(model_path))
    except Exception:  # the run's own status and message stand
        pass
    return row


def _failure_row(cell: Cell, row: dict[str, Any], exc: Exception, t0: float) -> dict[str, Any]:
    """The row of a quantize run that raised: ``infeasible`` (with the smallest error the analysis
    certifies, when known) or ``error``, its message on one line, and the network's size."""
    from ..errors import InfeasibleError, UserError

    row["time_s"] = time.perf_counter() - t0
    if isinstance(exc, InfeasibleError):
        row.update(status="infeasible", message=_one_line(str(exc)))
        if exc.smallest_error is not None:
            row["smallest_eps"] = float(exc.smallest_error)
    elif isinstance(exc, UserError):
        row.update(status="error", message=_one_line(str(exc)))
    else:
        row.update(status="error", message=_one_line(f"{type(exc).__name__}: {exc}"))
    return _add_size(row, cell.model_path)


def cell_identity(cell: Cell) -> dict[str, Any]:
    """The columns that name a cell."""
    return {
        "model": cell.model, "eps": cell.eps, "setting": cell.setting, "mode": cell.mode,
        "granularity": cell.granularity, "variant": cell.variant, "model_path": cell.model_path,
    }  # fmt: skip


def run_cell(cell: Cell) -> dict[str, Any]:
    """Quantize + verify one cell; every failure becomes a row (status error/infeasible), never a raise."""
    row = cell_identity(cell)
    if cell.variant != "full":
        return _run_variant(cell, row)
    return _run_quantize(cell, row)


def _run_quantize(cell: Cell, row: dict[str, Any]) -> dict[str, Any]:
    """The main job exactly as ``aster-ext quantize`` runs it (into a temporary directory)."""
    from ..errors import InfeasibleError
    from ..pipeline import QuantizeOptions, quantize

    if cell.mode == "aster-original":
        return _run_original(cell, row)
    if cell.mode == "graph":
        return _run_graph(cell, row)

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
    except Exception as exc:
        if isinstance(exc, InfeasibleError):
            _share(cell, opts, None, str(exc), exc.smallest_error)
        return _failure_row(cell, row, exc, t0)
    row["time_s"] = time.perf_counter() - t0
    _share(cell, opts, res)
    row.update(layers_size(res.layers))
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
    per_output = np.asarray(r["certified_error_per_output"], dtype=np.float64)
    return _verify(cell, row, res.program, res.layers, res.spec, per_output, bool(r["input_on_grid"]))


#: the graph path's ILP knob granularity of a grid granularity
GRAPH_GRANULARITY = {"neuron": "channel", "layer": "layer"}


def _run_graph(cell: Cell, row: dict[str, Any]) -> dict[str, Any]:
    """``aster-ext quantize --mode graph`` in-process: the graph path with ``cell.eps`` on every
    output over the whole input box (``classify.quantize_classify`` with ``whole_box``; per-neuron
    or per-layer ILP knobs), then the execution checks ``verify`` runs on a graph program (the
    grid's ``samples`` random and corner inputs and ``search_iters`` local-search rounds on the
    bit-exact simulator). ``certified`` = ``claimed`` = the certified max |error| over the box."""
    from ..classify import ClassifyOptions, quantize_classify
    from ..classify_verify import SimulatorLogits, read_claims, verify_regions

    opts = ClassifyOptions(
        error=cell.eps,
        whole_box=True,
        granularity=GRAPH_GRANULARITY[cell.granularity],
        time_limit=cell.ilp_time_limit,
    )
    t0 = time.perf_counter()
    try:
        res = quantize_classify(Path(cell.model_path), opts, None)
    except Exception as exc:
        return _failure_row(cell, row, exc, t0)
    row["time_s"] = time.perf_counter() - t0
    _add_size(row, cell.model_path, res.network)
    r = res.report
    [region] = r["regions"]
    if not region["certified"]:
        row.update(status="infeasible", message=_one_line(f"not certified: {region['reason']}"))
        return row
    bound = float(region["logit_error_bound"])
    frac_bits = {f["node"]: f["frac"] for f in r["formats"]}
    row.update(
        status="ok",
        certified=bound,
        claimed=bound,
        hw=int(r["cost"]["hw"]),
        mult_bilinear=int(r["cost"]["mult_bilinear"]),
        frac_bits=json.dumps(frac_bits, separators=(",", ":")),
        solver_s=float(r["timings"]["certify_s"]),
    )
    verify = dict(cell.verify)
    t1 = time.perf_counter()
    try:
        claims = read_claims(r, len(region["logit_error_lo"]), Path(cell.model_path).name)
        sim = SimulatorLogits(res.program)
        [check] = verify_regions(
            res.network, res.regions, claims, sim, verify["samples"], verify["search_iters"], verify["seed"]
        )
    except Exception as exc:
        message = _one_line(f"verify: {type(exc).__name__}: {exc}")
        row.update(verify_s=time.perf_counter() - t1, message=message)
        return row
    observed = float(check.max_logit_error)
    row.update(
        max_observed=observed,
        tightness=bound / observed if observed > 0 else float("inf"),
        violations=int(check.violations + sim.overflows),
        verify_samples=int(check.checked),
        verify_s=time.perf_counter() - t1,
    )
    return row


#: cells whose analysis a reproduce run shares with its other tables (``analysis_cache``): the
#: tightness_breakdown and cpp_check tables ask for ε >= 1e-3 only
SHARE_MIN_EPS = 1e-3


def _share(cell: Cell, opts: Any, res: Any, infeasible: str | None = None, smallest: float | None = None
           ) -> None:  # fmt: skip
    """Store the cell's analysis for the other tables of a reproduce run (no-op outside one); a
    failure to store never changes the cell's row."""
    from . import analysis_cache as ac

    if ac.cache_dir() is None or cell.eps < SHARE_MIN_EPS:
        return
    try:
        if res is None:
            got = ac.Analysis(None, None, None, None, None, infeasible, smallest)
        else:
            spec = res.spec
            got = ac.Analysis(res.layers, res.program, res.certificate, spec.input_lower, spec.input_upper)
        ac.store(Path(cell.model_path), opts, got)
    except Exception:  # the cache is an optimisation only
        pass


def _run_original(cell: Cell, row: dict[str, Any]) -> dict[str, Any]:
    """The user's build of the original Aster (``quantize --mode aster-original``) and its verify:
    ``certified`` and ``claimed`` both hold its claim (not a certificate), ``hw`` stays empty (its
    C++ is not costed by our model), violations count inputs whose exact error exceeds the claim."""
    from ..errors import InfeasibleError
    from ..original import quantize_original, verify_original_directory

    _add_size(row, cell.model_path)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aster-ext-cell-") as tmp:
        out = Path(tmp) / "out"
        try:
            r = quantize_original(Path(cell.model_path), cell.eps, cell.setting, out)
        except InfeasibleError as exc:
            row.update(status="infeasible", time_s=time.perf_counter() - t0, message=_one_line(str(exc)))
            return row
        except Exception as exc:
            message = _one_line(f"{type(exc).__name__}: {exc}")
            row.update(status="error", time_s=time.perf_counter() - t0, message=message)
            return row
        row.update(
            status="ok",
            time_s=time.perf_counter() - t0,
            certified=float(r["claimed_error"]),
            claimed=float(r["claimed_error"]),
            daisy_area=int(r["daisy_area"]) if r["daisy_area"] is not None else "",
            aster_objective=r["objective"] if r["objective"] is not None else "",
            frac_bits=_bits_json(
                [f["dot_frac_bits"] for f in r["formats"]], [f["bias_frac_bits"] for f in r["formats"]]
            ),
            solver_s=float(r["original"]["run_s"]),
            message="the original Aster's own claim (not certified)",
        )
        budget = dict(cell.verify)
        t1 = time.perf_counter()
        try:
            vr = verify_original_directory(out, r, int(budget["samples"]), int(budget["seed"]))
        except Exception as exc:
            row.update(
                verify_s=time.perf_counter() - t1, message=_one_line(f"verify: {type(exc).__name__}: {exc}")
            )
            return row
    row.update(
        max_observed=float(vr.max_observed_error),
        tightness=float(vr.ratio),
        violations=int(vr.violations + vr.screened_only_violations),
        verify_samples=int(vr.samples),
        verify_s=time.perf_counter() - t1,
    )
    return row


def _verify(cell: Cell, row: dict[str, Any], program: Any, layers: Any, spec: Any, per_output: np.ndarray,
            input_on_grid: bool) -> dict[str, Any]:  # fmt: skip
    """Search for inputs whose error exceeds ``per_output`` with the grid's verify budget."""
    from ..verify import VerifyBudget, verify_program

    t1 = time.perf_counter()
    try:
        vr = verify_program(
            program, layers, spec.input_lower, spec.input_upper, per_output, input_on_grid,
            VerifyBudget(**dict(cell.verify)),
        )  # fmt: skip
    except Exception as exc:
        message = _one_line(f"verify: {type(exc).__name__}: {exc}")
        row.update(verify_s=time.perf_counter() - t1, message=message)
        return row
    row.update(
        max_observed=float(vr.max_observed_error),
        tightness=float(vr.ratio),
        violations=int(vr.violations),
        verify_samples=int(vr.samples),
        verify_s=time.perf_counter() - t1,
    )
    return row


def _run_variant(cell: Cell, row: dict[str, Any]) -> dict[str, Any]:
    """Refined mode with the analysis switches of ``VARIANTS[cell.variant]`` (``assign_refined``
    directly: ``quantize`` always runs the full analysis), then cost and verify as for any cell."""
    from ..aster.settings import SETTINGS
    from ..cost import program_cost
    from ..errors import InfeasibleError
    from ..frontend import load_model
    from ..ir import dense_chain
    from ..pipeline import allowed_activations, cpp_identifier
    from ..refined import assign_refined
    from .grid import VARIANTS

    if cell.mode != "refined":
        raise ValueError(f"variant {cell.variant} is a refined-mode analysis switch")
    switches = dict(VARIANTS[cell.variant])
    granularity = str(switches.pop("granularity", cell.granularity))
    try:
        net, spec = load_model(cell.model_path)
        layers = dense_chain(net, allowed_activations("refined"))
    except Exception as exc:  # reported in the row, never hidden
        row.update(status="error", time_s=0.0, message=_one_line(f"{type(exc).__name__}: {exc}"))
        return row
    row.update(layers_size(layers))
    t0 = time.perf_counter()
    try:
        res = assign_refined(
            layers, spec.input_lower, spec.input_upper, cell.eps, cell.setting, granularity,
            cell.ilp_time_limit, cpp_identifier(net.name), **switches,
        )  # fmt: skip
    except InfeasibleError as exc:
        row.update(status="infeasible", time_s=time.perf_counter() - t0, message=_one_line(str(exc)))
        if exc.smallest_error is not None:
            row["smallest_eps"] = float(exc.smallest_error)
        return row
    except Exception as exc:
        row.update(
            status="error", time_s=time.perf_counter() - t0, message=_one_line(f"{type(exc).__name__}: {exc}")
        )
        return row
    row["time_s"] = time.perf_counter() - t0
    cost = program_cost(res.program)
    cert = res.certificate
    row.update(
        status="ok",
        certified=float(cert.bound),
        claimed=float(res.claimed_error),
        daisy_area=int(cost.daisy_area),
        hw=int(cost.hw),
        mult_bilinear=int(cost.mult_bilinear),
        frac_bits=_bits_json(res.dot_bits, res.bias_bits),
        solver_s=float(res.solver_time_s),
    )
    per_output = np.asarray(cert.output_bound, dtype=np.float64)
    return _verify(cell, row, res.program, layers, spec, per_output, SETTINGS[cell.setting].no_init_error)


def _bits_json(dot: list[Any], bias: list[Any]) -> str:
    return json.dumps({"dot": _bits(dot), "bias": _bits(bias)}, separators=(",", ":"))


def _bits(bits: list[Any]) -> list[Any]:
    return [list(map(int, b)) if isinstance(b, list | tuple | np.ndarray) else int(b) for b in bits]

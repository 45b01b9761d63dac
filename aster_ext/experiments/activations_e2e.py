"""Table ``activations_e2e``: every activation end to end, ``aster-ext quantize`` then ``aster-ext verify``.

For each trained fixture ``tests/fixtures/mlp_<act>.onnx`` (+ ``.spec.json``; written by
``scripts/train_fixtures.py``) the CLI quantises at ε = 1e-2 (refined mode, setting A) and verifies
with its default budget (random + corner samples, adversarial search, exact re-check of the worst
points) including the g++ compile of the generated HLS C++ against ap_types and the bit-exact
comparison with the simulator.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from .tasks import TableRun, tasks_of

TABLE = "activations_e2e"
FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
ACTS = [
    "sigmoid",
    "tanh",
    "softplus",
    "elu",
    "leaky_relu",
    "silu",
    "gelu",
    "gelu_tanh",
    "hard_sigmoid",
    "hard_tanh",
]
QUICK = ["sigmoid"]
EPS = 1e-2
FIELDS = [
    "activation",
    "status",
    "certified",
    "observed",
    "ratio",
    "violations",
    "bit_exact_cpp",
    "samples",
    "impl",
    "hw",
    "table_bits",
    "quantize_s",
    "verify_s",
]


def run_activation(act: str) -> dict[str, Any]:
    """quantize + verify of the fixture of ``act`` through the command line, in a temporary folder."""
    from ..cli import main as cli

    with tempfile.TemporaryDirectory(prefix="aster-ext-e2e-") as tmp:
        out = Path(tmp) / act
        t0 = time.perf_counter()
        rc = cli(
            ["quantize", str(FIXTURES / f"mlp_{act}.onnx"), "--error", str(EPS), "--out", str(out), "--quiet"]
        )
        t1 = time.perf_counter()
        if rc != 0:
            return {"status": f"quantize exit {rc}"}
        rc_v = cli(["verify", str(out), "--quiet"])
        t2 = time.perf_counter()
        rep = json.loads((out / "report.json").read_text())
        ver = json.loads((out / "verify.json").read_text())
    impls = sorted(
        ("interpolating " if d.get("interpolating") else "")
        + d["kind"]
        + (f" {d['entries']}" if "entries" in d else "")
        for d in rep["activation_impls"]
    )
    return {
        "status": "ok" if rc_v == 0 else f"verify exit {rc_v}",
        "certified": rep["certified_error"],
        "observed": ver["max_observed_error"],
        "ratio": rep["certified_error"] / ver["max_observed_error"] if ver["max_observed_error"] else None,
        "violations": ver["violations"],
        "bit_exact_cpp": ver["bit_exact_cpp"],
        "samples": ver["samples"],
        "impl": "; ".join(impls),
        "hw": rep["cost"]["hw"],
        "table_bits": rep["cost"].get("table_bits", 0),
        "quantize_s": t1 - t0,
        "verify_s": t2 - t1,
    }


def build(run: TableRun) -> list[Path]:
    """Run (or resume) the activations in ``work/activations_e2e``; write results/activations_e2e.csv/.md."""
    acts = QUICK if run.quick else ACTS
    tasks = tasks_of(
        __name__, "run_activation", [{"act": a} for a in acts], lambda kw: {"activation": kw["act"]}
    )
    rows = run.rows(TABLE, tasks, FIELDS)
    return run.write(TABLE, rows, FIELDS, markdown(rows))


def _f(v: object) -> str:
    return format(v, ".4g") if isinstance(v, float) else ("" if v is None else str(v))


def markdown(rows: list[dict[str, Any]]) -> str:
    ok = sum(
        r.get("status") == "ok" and r.get("violations") == 0 and str(r.get("bit_exact_cpp")) == "True"
        for r in rows
    )
    lines = [
        "# Every activation end to end (aster-ext experiments reproduce, table 'activations_e2e')",
        "",
        f"`aster-ext quantize` (refined, setting A, ε = {EPS:g}) then `aster-ext verify` (default budget, "
        "C++ compiled with g++ against ap_types and compared bit for bit with the simulator) on the trained "
        "fixtures tests/fixtures/mlp_<act>.onnx.",
        "",
        f"- {ok} of {len(rows)} activations: verify OK, 0 violations, bit-exact C++",
        "",
        "| " + " | ".join(FIELDS) + " |",
        "|" + "---|" * len(FIELDS),
    ]
    lines += ["| " + " | ".join(_f(r.get(k)) for k in FIELDS) + " |" for r in rows]
    return "\n".join(lines) + "\n"

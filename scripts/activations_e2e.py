#!/usr/bin/env python
"""Every activation end to end: `aster-ext quantize` then `aster-ext verify` (with the C++ check).

For each trained fixture ``tests/fixtures/mlp_<act>.onnx`` (+ ``.spec.json``; written by
``scripts/train_fixtures.py``) the CLI quantises at ε = 1e-2 (refined mode, setting A) and
verifies with its default budget (random + corner samples, adversarial search, exact/mpmath
re-check of the worst points) including the g++ compile of the generated HLS C++ against
ap_types and the bit-exact comparison with the simulator.

Writes results/activations_e2e.{md,csv}.  Usage: python scripts/activations_e2e.py [--acts ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aster_ext.cli import main as cli  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
RESULTS = ROOT / "results"
ACTS = [
    "sigmoid", "tanh", "softplus", "elu", "leaky_relu", "silu", "gelu", "gelu_tanh",
    "hard_sigmoid", "hard_tanh",
]  # fmt: skip
EPS = 1e-2
FIELDS = [
    "activation", "status", "certified", "observed", "ratio", "violations", "bit_exact_cpp", "samples",
    "impl", "hw", "table_bits", "quantize_s", "verify_s",
]  # fmt: skip


def run(act: str, tmp: Path) -> dict[str, object]:
    out = tmp / act
    model = FIXTURES / f"mlp_{act}.onnx"
    t0 = time.perf_counter()
    rc = cli(["quantize", str(model), "--error", str(EPS), "--out", str(out), "--quiet"])
    t1 = time.perf_counter()
    if rc != 0:
        return {"activation": act, "status": f"quantize exit {rc}"}
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
        "activation": act,
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


def _f(v: object) -> str:
    return format(v, ".4g") if isinstance(v, float) else str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--acts", nargs="*", default=ACTS)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for act in args.acts:
            row = run(act, Path(tmp))
            msg = f"{act}: {row.get('status')} bound {row.get('certified')} observed {row.get('observed')}"
            print(msg, f"bit-exact {row.get('bit_exact_cpp')}", file=sys.stderr)
            rows.append(row)
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "activations_e2e.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    ok = sum(
        r.get("status") == "ok" and r.get("violations") == 0 and r.get("bit_exact_cpp") is True for r in rows
    )
    lines = [
        "# Every activation end to end (scripts/activations_e2e.py)",
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
    lines += ["| " + " | ".join(_f(r.get(k, "")) for k in FIELDS) + " |" for r in rows]
    (RESULTS / "activations_e2e.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

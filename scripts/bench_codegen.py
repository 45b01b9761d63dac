"""Measure code generation, g++ compile time, simulation speed and C++/simulator agreement.

    python scripts/bench_codegen.py [--sizes 12,256,128,64,1] [--layout aster|column|uniform|row]
                                    [--opt -O1] [--samples 500]

Layouts: ``aster`` = Aster's per-column weight formats (one loop per layer), ``column`` = random
per-column formats (many distinct C++ types), ``uniform`` = one format per role and layer,
``row`` = random per-neuron formats (the fully unrolled fallback; slow to compile).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aster_ext.codegen import compile_harness, generate_harness, generate_hls, layer_layouts, run_harness  # noqa: E402
from aster_ext.simulate import choose_dtype, simulate_raw  # noqa: E402
from tests.programs import aster_like_program, random_inputs, random_program  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="12,256,128,64,1")
    ap.add_argument("--layout", default="aster", choices=["aster", "column", "uniform", "row"])
    ap.add_argument("--opt", default="-O1")
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    sizes = [int(v) for v in args.sizes.split(",")]
    rng = np.random.default_rng(args.seed)
    if args.layout == "aster":
        prog = aster_like_program(rng, sizes, name="bench")
    else:
        prog = random_program(
            rng,
            sizes,
            layout=args.layout,
            width=(16, 32),
            acc_width=(30, 50),
            int_bits=(2, 8),
            name="bench",
            pool=4 if args.layout == "row" else None,
        )
    n_w = sum(lp.weight_raw.size for lp in prog.layers)
    print(
        f"network {sizes}: {n_w} weights, layouts {layer_layouts(prog)}, simulator path {choose_dtype(prog)}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-codegen-") as tmp:
        out = Path(tmp)
        t = time.perf_counter()
        files = generate_hls(prog, out / "hls")
        size_kb = files["source"].stat().st_size / 1e3
        print(f"generate_hls: {time.perf_counter() - t:.2f} s, {size_kb:.0f} kB of C++")
        harness = generate_harness(prog, out / "h")
        t = time.perf_counter()
        binary = compile_harness([files["source"], harness], out / "h" / "bin", opt=args.opt)
        print(f"g++ {args.opt} (2 translation units, parallel): {time.perf_counter() - t:.1f} s")
        x = random_inputs(rng, prog, args.samples)
        t = time.perf_counter()
        y_sim = simulate_raw(prog, x)
        print(f"simulate_raw: {(time.perf_counter() - t) / len(x) * 1e3:.2f} ms/sample")
        t = time.perf_counter()
        y_cpp = run_harness(binary, x)
        print(f"C++ harness: {(time.perf_counter() - t) / len(x) * 1e3:.2f} ms/sample")
        same = y_sim.tolist() == y_cpp.tolist()
        print(f"bit-exact on {len(x)} samples: {same}")
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()

"""g++ / ap_types helpers for the tests that compile C++ (they fail, never skip, without them)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aster_ext.codegen.compile import find_ap_types, find_cxx
from aster_ext.errors import UserError


def require_toolchain() -> Path:
    """The ap_types directory; a missing g++ or hls4ml is a test failure with a clear message."""
    try:
        find_cxx()
        return find_ap_types()
    except UserError as exc:
        pytest.fail(f"C++ toolchain for the bit-exactness tests is missing: {exc}")


def random_raw(rng: np.random.Generator, width: int, n: int) -> list[int]:
    """``n`` random signed raw integers of ``width`` bits (any width), as Python ints."""
    nbytes = (width + 7) // 8 + 1
    return [int.from_bytes(rng.bytes(nbytes), "little") % (1 << width) - (1 << (width - 1)) for _ in range(n)]


def assert_impls_cpp_bit_exact(impls: list[tuple[str, Any, int]], tmp_path: Path, stem: str) -> None:
    """Compile every activation implementation's C++ (``impl.cpp``) into one program that evaluates it
    on every raw input of a signed ``in_width``-bit ap_fixed at the implementation's in_frac, and
    assert the outputs equal ``impl.apply`` bit for bit. ``impls``: (C++ name, impl, in_width)."""
    ap = require_toolchain()
    cxx = find_cxx()
    src = ["#include <ap_fixed.h>", "#include <cstdio>", ""]
    main = ["int main() {"]
    expected: list[int] = []
    for name, impl, in_w in impls:
        r_lo, r_hi = -(1 << (in_w - 1)), (1 << (in_w - 1)) - 1
        ts = np.arange(r_lo, r_hi + 1, dtype=np.int64).astype(object)
        vals = [int(v) for v in impl.apply(ts)]
        out_w = max(2, max(abs(v) for v in vals).bit_length() + 2)
        in_t = f"ap_fixed<{in_w}, {in_w - impl.in_frac}>"
        out_t = f"ap_fixed<{out_w}, {out_w - impl.out_frac}>"
        src.append(impl.cpp(name, in_t, out_t))
        main += [
            f"  for (long long r = {r_lo}; r <= {r_hi}; ++r) {{",
            f"    {in_t} t; t.range() = ap_int<{in_w}>(r);",
            f"    ap_int<{out_w}> o; o.range() = {name}(t).range();",
            '    std::printf("%s\\n", o.to_string(10).c_str());',
            "  }",
        ]
        expected += vals
    main += ["  return 0;", "}"]
    cpp = tmp_path / f"{stem}.cpp"
    cpp.write_text("\n".join(src + main) + "\n")
    exe = tmp_path / stem
    proc = subprocess.run(
        [cxx, "-std=c++14", "-O1", f"-I{ap}", str(cpp), "-o", str(exe)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[:4000]
    run = subprocess.run([str(exe)], capture_output=True, text=True, check=True)
    got = [int(line) for line in run.stdout.split()]
    assert len(got) == len(expected)
    bad = [i for i, (g, e) in enumerate(zip(got, expected, strict=True)) if g != e]
    assert not bad, f"{len(bad)} mismatches, first at {bad[0]}: C++ {got[bad[0]]} vs apply {expected[bad[0]]}"

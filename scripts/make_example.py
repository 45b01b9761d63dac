"""Write examples/tiny_controller.scala: a small ReLU controller (3-12-12-2) with seeded random weights.

The network is this project's own (not from any benchmark); it exists so the README's first
command has something to quantise. Rerun to regenerate: python scripts/make_example.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def fmt_list(values: np.ndarray) -> str:
    return ", ".join(f"{v:.6g}" for v in values)


def main() -> None:
    rng = np.random.default_rng(2026)
    sizes = [3, 12, 12, 2]
    lines = [
        "import daisy.lang._",
        "import Vector._",
        "",
        "// A small ReLU controller with seeded random weights (aster_ext example, scripts/make_example.py).",
        "object TinyController {",
        "",
        "  def nn1(x: Vector): Vector = {",
        "    require(lowerBounds(x, List(-1, -2, -0.5)) &&",
        "      upperBounds(x, List(1, 2, 0.5)))",
        "",
    ]
    for k in range(1, len(sizes)):
        w = rng.normal(0, 1.0 / np.sqrt(sizes[k - 1]), (sizes[k], sizes[k - 1]))
        rows = ",\n".join(f"      List({fmt_list(r)})" for r in w)
        lines += [f"    val weights{k} = Matrix(List(", rows + "))", ""]
    for k in range(1, len(sizes)):
        b = rng.normal(0, 0.1, sizes[k])
        lines.append(f"    val bias{k} = Vector(List({fmt_list(b)}))")
    lines.append("")
    prev = "x"
    for k in range(1, len(sizes)):
        act = "relu" if k < len(sizes) - 1 else "linear"
        lines.append(f"    val layer{k} = {act}(weights{k} * {prev} + bias{k})")
        prev = f"layer{k}"
    lines += [f"    {prev}", "", "  } ensuring(res => res +/- 1e-3)", "", "}", ""]
    out = Path(__file__).resolve().parents[1] / "examples" / "tiny_controller.scala"
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

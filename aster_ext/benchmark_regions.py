"""Classification regions stored beside the repository's benchmarks (``benchmarks/*.regions.npz``).

A regions file holds, for R regions over an input of N values (flattened in the C order of the
ONNX input tensor, the same order as a spec's ``input_lower``): ``lower`` [R, N] and ``upper``
[R, N] (float64), ``labels`` [R] (int) and ``names`` [R] (str). Region r is the box
{x : lower[r] <= x <= upper[r]} on which the label ``labels[r]`` must stay the argmax. The
loader returns the same :class:`Region` objects that ``classify.regions_from_spec`` builds from a
spec's ``regions`` list, so scripts and the CLI's certification treat both alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aster_ext.graph_program.certify import Region


def load_regions_npz(path: Path, n_inputs: int | None = None) -> list[Region]:
    """Regions of ``path``; raises ValueError on a malformed file (shapes, NaN, lower > upper)."""
    with np.load(path, allow_pickle=False) as z:
        lower = np.asarray(z["lower"], dtype=float)
        upper = np.asarray(z["upper"], dtype=float)
        labels = np.asarray(z["labels"])
        names = [str(s) for s in z["names"]]
    if lower.ndim != 2 or lower.shape != upper.shape or labels.shape != (lower.shape[0],):
        raise ValueError(f"{path}: lower/upper must be [R, N] and labels [R]")
    if len(names) != lower.shape[0]:
        raise ValueError(f"{path}: {len(names)} names for {lower.shape[0]} regions")
    if n_inputs is not None and lower.shape[1] != n_inputs:
        raise ValueError(f"{path}: boxes have {lower.shape[1]} inputs, the network {n_inputs}")
    if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
        raise ValueError(f"{path}: non-finite bound")
    if np.any(lower > upper):
        raise ValueError(f"{path}: lower > upper")
    if not np.issubdtype(labels.dtype, np.integer) or np.any(labels < 0):
        raise ValueError(f"{path}: labels must be non-negative integers")
    return [Region(name, lower[r].copy(), upper[r].copy(), int(labels[r])) for r, name in enumerate(names)]


def benchmark_regions(shared: Path, repo_root: Path, stem: str) -> tuple[Path, list[Region]]:
    """ONNX path and regions of benchmark ``stem``: a spec under ``shared/cnn`` with ``regions``
    (names = the vnnlib file names), else ``shared/external/STEM.onnx`` with the regions file
    ``repo_root/benchmarks/STEM.regions.npz`` (see :func:`load_regions_npz`)."""
    import json

    cnn_spec = shared / "cnn" / f"{stem}.spec.json"
    if cnn_spec.exists():
        spec = json.loads(cnn_spec.read_text())
        regs = [
            Region(
                Path(r["vnnlib"]).name,
                np.array(r["lower"], float),
                np.array(r["upper"], float),
                int(r["label"]),
            )
            for r in spec["regions"]
        ]
        return shared / "cnn" / f"{stem}.onnx", regs
    npz = repo_root / "benchmarks" / f"{stem}.regions.npz"
    spec = json.loads((shared / "external" / f"{stem}.spec.json").read_text())
    n_in = int(np.prod(spec["input_shape"]))
    return shared / "external" / f"{stem}.onnx", load_regions_npz(npz, n_in)

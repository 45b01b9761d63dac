"""Figures of a sweep (matplotlib, Agg back end): PNG and SVG under ``results/figures/``.

- ``pareto_hw``: hw cost vs ε per benchmark, one line per mode (log-log; per benchmark the setting
  with the most feasible cells, named in its panel): the cost each mode pays for a tighter target.
- ``frac_bits_layer``: fractional bits of the dot products per layer (aster, aster-sound; ε = 1e-3,
  setting A), benchmarks × layers.
- ``frac_bits_neuron``: refined mode's fractional bits per neuron (ε = 1e-3, setting A), one panel
  per benchmark, layers × neurons.
- ``certified_vs_observed``: bound (certified, or claimed for ``aster``) vs max observed error,
  log-log with the line y = x (points above the line: the bound holds on every input tried).
- ``time_vs_size``: analysis time (quantize) vs network parameters, log-log.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

MODE_STYLE = {"aster": ("tab:red", "s"), "aster-sound": ("tab:orange", "^"), "refined": ("tab:blue", "o")}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "aster-ext"  # fixed SVG element ids: reruns diff cleanly
    import matplotlib.pyplot as plt

    return plt


def _full(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        r for r in rows if r["variant"] == "full" and (r["mode"] != "refined" or r["granularity"] == "neuron")
    ]


def _save(fig: Any, out: Path, name: str) -> list[Path]:
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    fig.savefig(paths[0], dpi=110, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(paths[1], bbox_inches="tight", metadata={"Date": None, "Creator": None})
    _plt().close(fig)
    return paths


def _grid(n: int) -> tuple[int, int]:
    cols = min(6, max(1, n))
    return math.ceil(n / cols), cols


def pareto_setting(rows: list[dict[str, Any]], name: str) -> str | None:
    """The setting of a benchmark's Pareto panel: the one with the most feasible (mode, ε) cells
    (ties: A before B, C, D); None when no cell of the benchmark is feasible."""
    count: dict[str, int] = {}
    for r in _full(rows):
        if r["model"] == name and r["status"] == "ok":
            count[r["setting"]] = count.get(r["setting"], 0) + 1
    return min(count, key=lambda s: (-count[s], s)) if count else None


def pareto(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """hw cost vs ε per benchmark and mode, in the benchmark's setting with the most feasible cells
    (``pareto_setting``; named in the panel title): many benchmarks are infeasible in setting A."""
    plt = _plt()
    ok = [r for r in _full(rows) if r["status"] == "ok"]
    names = sorted({r["model"] for r in _full(rows)})
    eps_all = sorted({float(r["eps"]) for r in _full(rows)})
    nr, nc = _grid(len(names))
    fig, axes = plt.subplots(nr, nc, figsize=(2.6 * nc, 2.2 * nr), squeeze=False, layout="constrained")
    for ax, name in zip(axes.flat, names, strict=False):
        setting = pareto_setting(rows, name)
        ax.set_xscale("log")
        ax.set_xlim(eps_all[0] / 3, eps_all[-1] * 3)
        if setting is None:
            ax.set_title(f"{name}: nothing feasible", fontsize=8)
            ax.set_yticks([])
            ax.tick_params(labelsize=6)
            continue
        for mode, (color, marker) in MODE_STYLE.items():
            pts = sorted(
                (r["eps"], r["hw"])
                for r in ok
                if r["model"] == name and r["mode"] == mode and r["setting"] == setting
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), color=color, marker=marker, label=mode, lw=1, ms=4)
        ax.set_yscale("log")
        ax.set_title(f"{name} (setting {setting})", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    from matplotlib.lines import Line2D

    # the legend names every mode, also when the first panel lacks one (infeasible there)
    handles = [Line2D([], [], color=c, marker=m, lw=1, ms=4) for c, m in MODE_STYLE.values()]
    fig.legend(handles, list(MODE_STYLE), loc="outside upper center", ncol=3, fontsize=8)
    fig.supxlabel("error target ε")
    fig.supylabel("hw cost (missing point = infeasible)")
    return _save(fig, out, "pareto_hw")


def frac_bits_layer(
    rows: list[dict[str, Any]], out: Path, eps: float = 1e-3, setting: str = "A"
) -> list[Path]:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 7), squeeze=False, layout="constrained")
    for ax, mode in zip(axes.flat, ("aster", "aster-sound"), strict=True):
        cells = sorted(
            (r["model"], json.loads(r["frac_bits"])["dot"])
            for r in _full(rows)
            if r["mode"] == mode and r["status"] == "ok" and r["eps"] == eps and r["setting"] == setting
        )
        width = max((len(b) for _, b in cells), default=1)
        data = np.full((max(len(cells), 1), width), np.nan)
        for i, (_, bits) in enumerate(cells):
            data[i, : len(bits)] = bits
        im = ax.imshow(data, aspect="auto", cmap="viridis")
        ax.set_yticks(range(len(cells)), [n for n, _ in cells], fontsize=7)
        ax.set_xlabel("layer")
        ax.set_xticks(range(width))
        ax.set_title(f"{mode}: dot fractional bits (ε={eps:g}, {setting})", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.6)
    return _save(fig, out, "frac_bits_layer")


def frac_bits_neuron(
    rows: list[dict[str, Any]], out: Path, eps: float = 1e-3, setting: str = "A"
) -> list[Path]:
    plt = _plt()
    cells = sorted(
        (r["model"], json.loads(r["frac_bits"])["dot"])
        for r in _full(rows)
        if r["mode"] == "refined" and r["status"] == "ok" and r["eps"] == eps and r["setting"] == setting
    )
    nr, nc = _grid(max(len(cells), 1))
    fig, axes = plt.subplots(nr, nc, figsize=(2.8 * nc, 1.8 * nr), squeeze=False, layout="constrained")
    for ax, (name, bits) in zip(axes.flat, cells, strict=False):
        layers = [b if isinstance(b, list) else [b] for b in bits]
        data = np.full((len(layers), max(len(b) for b in layers)), np.nan)
        for i, b in enumerate(layers):
            data[i, : len(b)] = b
        im = ax.imshow(data, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.set_yticks(range(len(layers)))
        ax.set_ylabel("layer", fontsize=6)
        ax.tick_params(labelsize=6)
        fig.colorbar(im, ax=ax, shrink=0.8).ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(cells) :]:
        ax.axis("off")
    fig.suptitle(f"refined: dot fractional bits per neuron (ε={eps:g}, setting {setting}; x = neuron)")
    return _save(fig, out, "frac_bits_neuron")


def certified_vs_observed(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5), layout="constrained")
    lo, hi = math.inf, 0.0
    for mode, (color, marker) in MODE_STYLE.items():
        pts = [
            (r["max_observed"], r["certified"])
            for r in _full(rows)
            if r["mode"] == mode and r["status"] == "ok" and (r.get("max_observed") or 0) > 0
        ]
        if not pts:
            continue
        x, y = np.array(pts).T
        lo, hi = min(lo, x.min(), y.min()), max(hi, x.max(), y.max())
        label = f"{mode} ({'claimed' if mode == 'aster' else 'certified'})"
        ax.scatter(x, y, s=10, color=color, marker=marker, label=label, alpha=0.7)
    if hi > 0:
        ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="y = x")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("max observed error (verify search)")
    ax.set_ylabel("error bound")
    ax.legend(fontsize=8)
    return _save(fig, out, "certified_vs_observed")


def time_vs_size(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.5), layout="constrained")
    for mode, (color, marker) in MODE_STYLE.items():
        pts = [
            (r["n_params"], r["time_s"])
            for r in _full(rows)
            if r["mode"] == mode and r["status"] == "ok" and r.get("n_params")
        ]
        if pts:
            x, y = np.array(pts, dtype=float).T
            ax.scatter(x, y, s=10, color=color, marker=marker, label=mode, alpha=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("network parameters (weights + biases)")
    ax.set_ylabel("quantize time [s] (analysis, ILP, certificate, code)")
    ax.legend(fontsize=8)
    return _save(fig, out, "time_vs_size")


FIGURES: dict[str, tuple[str, Callable[[list[dict[str, Any]], Path], list[Path]]]] = {
    "pareto_hw": ("hw cost vs error target per benchmark (its setting with the most feasible cells)", pareto),
    "frac_bits_layer": ("fractional bits per layer (aster, aster-sound)", frac_bits_layer),
    "frac_bits_neuron": ("fractional bits per neuron (refined)", frac_bits_neuron),
    "certified_vs_observed": ("bound vs max observed error (log-log, y = x)", certified_vs_observed),
    "time_vs_size": ("quantize time vs network size (log-log)", time_vs_size),
}


def write_figures(rows: list[dict[str, Any]], results: Path) -> list[tuple[str, str]]:
    """Every figure into ``results/figures``; returns (title, path relative to results) of the PNGs."""
    out = results / "figures"
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for name, (title, draw) in FIGURES.items():
        paths = draw(rows, out)
        made.append((title, str(paths[0].relative_to(results))))
        del name
    return made

"""Sweep grids: the cross product models × ε × settings × modes (× granularities) as cells.

A grid file is TOML (read with ``tomllib``)::

    models = ["../benchmarks/aster/*.scala", "net.onnx"]   # globs allowed; relative to the file
    eps = [1e-3, 1e-5]
    settings = ["A", "B", "C", "D"]
    modes = ["aster", "aster-sound", "refined"]   # or "aster-original" (ASTER_HOME, .scala models),
                                        # or "graph" (quantize --mode graph: no settings, one cell)
    granularities = ["neuron"]          # optional (refined and graph modes; Aster's are per layer)
    variants = ["full"]                 # optional (refined mode only): analysis switches, see VARIANTS
    cell_time_limit = 300               # optional: wall-clock seconds per cell, then status=timeout
    ilp_time_limit = 60                 # optional: HiGHS time limit inside a cell
    [verify]                            # optional: the verify budget of every cell
    samples = 400
    search_iters = 15

Every model's input box comes from the model itself (.scala) or ``NAME.spec.json`` beside it
(.onnx). A cell is identified by (model name, ε, setting, mode, granularity, variant); two models with
the same name in one grid are refused, since their rows could not be told apart. The graph mode
has no settings A-D (its cells have setting ``-``, one per model × ε × granularity); a grid of
graph cells only may leave ``settings`` out.
"""

from __future__ import annotations

import glob
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..aster.settings import SETTINGS
from ..errors import UserError
from ..pipeline import GRANULARITIES, MODES

#: modes a grid may name: ours, the graph path (``quantize --mode graph``) and the user's build of the
#: original tool (aster_ext/original.py)
SWEEP_MODES = (*MODES, "graph", "aster-original")
#: the setting column of a graph-mode cell (the graph path has no settings A-D)
NO_SETTING = "-"
#: the verify budget of the modes / aster_reproduction tables (and of tightness_breakdown)
DEFAULT_VERIFY = {
    "samples": 400,
    "search_starts": 16,
    "search_iters": 15,
    "search_batch": 64,
    "exact_candidates": 4,
    "seed": 0,
}
#: refined-mode analysis variants: keyword switches of ``assign_refined`` (each switches one refinement
#: off, for the ablation) plus an optional granularity override; "full" is the analysis ``quantize`` runs
VARIANTS: dict[str, dict[str, object]] = {
    "full": {},
    "interval-ranges": {"symbolic": False},
    "no-relu-stability": {"relu_stability": False},
    "layer-granularity": {"granularity": "layer"},
    "worst-case-dW": {"exact_dw": False},
    "no-bias-folding": {"fold_bias": False},
}
GRID_KEYS = {
    "models", "eps", "settings", "modes", "granularities", "variants", "cell_time_limit", "ilp_time_limit",
    "verify",
}  # fmt: skip


@dataclass(frozen=True)
class Cell:
    """One run: quantize ``model_path`` to ``eps`` in ``setting``/``mode``, then verify it."""

    model: str
    model_path: str
    eps: float
    setting: str
    mode: str
    granularity: str
    ilp_time_limit: float
    verify: tuple[tuple[str, int], ...]
    variant: str = "full"

    @property
    def key(self) -> tuple[str, ...]:
        return cell_key(self.model, self.eps, self.setting, self.mode, self.granularity, self.variant)


def cell_key(
    model: str, eps: float | str, setting: str, mode: str, granularity: str, variant: str
) -> tuple[str, ...]:
    """The identity of a cell as strings (ε through ``repr(float)``, so CSV round trips match)."""
    return (str(model), repr(float(eps)), str(setting), str(mode), str(granularity), str(variant))


@dataclass
class Grid:
    models: list[Path]
    eps: list[float]
    settings: list[str]
    modes: list[str]
    granularities: list[str] = field(default_factory=lambda: ["neuron"])
    variants: list[str] = field(default_factory=lambda: ["full"])
    cell_time_limit: float = 300.0
    ilp_time_limit: float = 60.0
    verify: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_VERIFY))

    def cells(self) -> list[Cell]:
        """All cells; the granularity and variant axes apply to refined mode only (Aster modes: 'layer',
        'full'); graph cells come once per model × ε × granularity, after that ε's other cells."""
        verify = tuple(sorted(self.verify.items()))
        out: list[Cell] = []
        for m in self.models:
            for e in self.eps:
                for s in self.settings:
                    for mode in self.modes:
                        if mode == "graph":
                            continue
                        refined = mode == "refined"
                        for g in self.granularities if refined else ["layer"]:
                            for v in self.variants if refined else ["full"]:
                                out.append(
                                    Cell(m.stem, str(m), float(e), s, mode, g, self.ilp_time_limit, verify, v)
                                )
                if "graph" in self.modes:
                    out += [
                        Cell(m.stem, str(m), float(e), NO_SETTING, "graph", g, self.ilp_time_limit, verify)
                        for g in self.granularities
                    ]
        return out

    def fingerprint(self) -> dict[str, Any]:
        """What every row of a results store depends on besides its own cell (checked on rerun)."""
        return {"ilp_time_limit": self.ilp_time_limit, "verify": dict(sorted(self.verify.items()))}

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"] = [str(m) for m in self.models]
        return d


def _expand_models(entries: list[str], base: Path) -> list[Path]:
    paths: list[Path] = []
    for entry in entries:
        pattern = Path(entry).expanduser()
        pattern = pattern if pattern.is_absolute() else base / pattern
        if glob.has_magic(str(pattern)):
            found = sorted(Path(p) for p in glob.glob(str(pattern)))
            if not found:
                raise UserError(f"grid: no model matches {entry!r}")
            paths += found
        else:
            if not pattern.is_file():
                raise UserError(f"grid: model file not found: {pattern}")
            paths.append(pattern)
    names: dict[str, Path] = {}
    for p in paths:
        if p.stem in names and names[p.stem] != p:
            raise UserError(f"grid: two models named {p.stem!r} ({names[p.stem]} and {p}); rename one")
        names[p.stem] = p
    return list(names.values())


def _list(data: dict[str, Any], key: str, allowed: tuple[str, ...] | None = None) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list) or not value:
        raise UserError(f"grid: '{key}' must be a non-empty list")
    if allowed is not None:
        bad = [v for v in value if v not in allowed]
        if bad:
            raise UserError(f"grid: unknown {key} {bad} (choose from {', '.join(allowed)})")
    return value


def grid_from_dict(data: dict[str, Any], base: Path) -> Grid:
    """Validate a parsed grid; relative model paths and globs are taken relative to ``base``."""
    unknown = sorted(set(data) - GRID_KEYS)
    if unknown:
        raise UserError(f"grid: unknown keys {unknown} (known: {', '.join(sorted(GRID_KEYS))})")
    eps = _list(data, "eps")
    if not all(isinstance(e, int | float) and not isinstance(e, bool) and e > 0 for e in eps):
        raise UserError(f"grid: every eps must be a positive number, got {eps}")
    verify = dict(DEFAULT_VERIFY)
    extra = data.get("verify", {})
    if not isinstance(extra, dict) or set(extra) - set(DEFAULT_VERIFY):
        raise UserError(f"grid: [verify] takes {', '.join(DEFAULT_VERIFY)}")
    verify.update({k: int(v) for k, v in extra.items()})
    modes = _list(data, "modes", SWEEP_MODES)
    only_graph = set(modes) == {"graph"}
    settings = _list(data, "settings", tuple(SETTINGS)) if "settings" in data or not only_graph else []
    return Grid(
        models=_expand_models([str(m) for m in _list(data, "models")], base),
        eps=[float(e) for e in eps],
        settings=settings,
        modes=modes,
        granularities=_list(data, "granularities", GRANULARITIES) if "granularities" in data else ["neuron"],
        variants=_list(data, "variants", tuple(VARIANTS)) if "variants" in data else ["full"],
        cell_time_limit=float(data.get("cell_time_limit", 300.0)),
        ilp_time_limit=float(data.get("ilp_time_limit", 60.0)),
        verify=verify,
    )


def load_grid(path: Path) -> Grid:
    """Read a TOML grid file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UserError(f"grid file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from exc
    return grid_from_dict(data, path.resolve().parent)

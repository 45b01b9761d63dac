"""Share one reproduction's analyses between its tables: the ``modes`` sweep cells store what their
``quantize`` computed; ``tightness_breakdown`` and ``cpp_check``, which need the very same analysis
(same model, same ``QuantizeOptions``, same code), load it instead of solving the ILP again.

Only a ``reproduce`` run turns it on (``ENV``: the folder ``WORK/analysis-cache``); the sweep cells
only write (their ``time_s`` stays the time of a full ``quantize``); the readers never trust a file
beyond its key. The key is the SHA-256 of

- the bytes of the model file and of its ``NAME.spec.json`` (if any: ``frontend.load_model`` reads it),
- every field of the ``QuantizeOptions``,
- the source of every ``.py`` file of the ``aster_ext`` package (so a ``--resume`` after a code change
  recomputes) and the numpy / HiGHS versions,

so a changed model, option or analysis never meets a stale entry. An entry holds the analysis'
``layers``, ``program``, ``certificate``, the input box and whether the target was infeasible
(with the message). Sharing also makes the tables describe one program per (model, options): with a
solver time limit two runs of the same ILP may stop at different (both certified) solutions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: environment variable naming the cache folder (unset: no caching)
ENV = "ASTER_EXT_ANALYSIS_CACHE"
_code_hash: list[str] = []


@dataclass
class Analysis:
    """What ``pipeline.analyse`` found for one (model, options): ``infeasible`` holds the message of
    an InfeasibleError (the other fields then None)."""

    layers: Any
    program: Any
    certificate: Any
    input_lower: Any
    input_upper: Any
    infeasible: str | None = None
    smallest_error: float | None = None


def cache_dir() -> Path | None:
    """The cache folder of this process (``ENV``), or None."""
    d = os.environ.get(ENV)
    return Path(d) if d else None


def code_fingerprint() -> str:
    """SHA-256 over the relative path and bytes of every ``.py`` file of the package, and the versions
    of numpy and highspy (computed once per process)."""
    if not _code_hash:
        import numpy

        root = Path(__file__).resolve().parents[1]
        h = hashlib.sha256()
        for p in sorted(root.rglob("*.py")):
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
        try:
            import highspy

            highs = getattr(highspy, "__version__", "") or str(highspy.Highs().version())
        except Exception:  # pragma: no cover - highspy is a dependency
            highs = "?"
        h.update(f"numpy {numpy.__version__} highs {highs}".encode())
        _code_hash.append(h.hexdigest())
    return _code_hash[0]


def analysis_key(model_path: Path, opts: Any) -> str:
    """The cache key of ``quantize(model_path, opts)``'s analysis (module docstring)."""
    from ..frontend import spec_path_for

    model_path = Path(model_path)
    h = hashlib.sha256()
    h.update(model_path.read_bytes())
    spec = spec_path_for(model_path)
    h.update(b"\0spec\0" + (spec.read_bytes() if spec.is_file() else b""))
    fields = {k: str(v) for k, v in dataclasses.asdict(opts).items()}
    h.update(json.dumps(fields, sort_keys=True).encode())
    h.update(code_fingerprint().encode())
    return h.hexdigest()


def store(model_path: Path, opts: Any, analysis: Analysis, folder: Path | None = None) -> None:
    """Write ``analysis`` under its key (atomically: a reader sees the whole file or none)."""
    folder = folder or cache_dir()
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{analysis_key(model_path, opts)}.pkl"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(analysis, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(model_path: Path, opts: Any, folder: Path | None = None) -> Analysis | None:
    """The stored analysis of (model, options, code), or None."""
    folder = folder or cache_dir()
    if folder is None:
        return None
    path = folder / f"{analysis_key(model_path, opts)}.pkl"
    try:
        with path.open("rb") as f:
            got = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError):
        return None
    return got if isinstance(got, Analysis) else None


def analyse_cached(model_path: Path, opts: Any) -> Analysis:
    """``pipeline.analyse`` of the model at ``model_path`` (its own spec) under ``opts``, from the
    cache when there (else computed and stored); an infeasible target gives ``infeasible`` set."""
    from ..errors import InfeasibleError
    from ..frontend import load_model
    from ..pipeline import analyse, resolve_spec

    hit = load(model_path, opts)
    if hit is not None:
        return hit
    net, model_spec = load_model(model_path)
    spec = resolve_spec(net, model_spec, opts)
    try:
        layers, program, cert, _a, _i, _t = analyse(net, spec, opts)
        got = Analysis(layers, program, cert, spec.input_lower, spec.input_upper)
    except InfeasibleError as exc:
        got = Analysis(None, None, None, spec.input_lower, spec.input_upper, str(exc), exc.smallest_error)
    store(model_path, opts, got)
    return got
